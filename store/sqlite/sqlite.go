// Package sqlite is tokengate's embedded store: one SQLite database file
// in a data directory, through modernc.org/sqlite (pure Go, no cgo).
//
// The database runs in WAL mode with synchronous=FULL, so a write is on
// disk when it returns. Every write goes through one dedicated writer
// connection driven by a group-commit batcher (store/internal/batch):
// concurrent writes share one transaction and one sync. Reads use a
// separate pool of read-only connections and run in parallel with writes.
//
// Several processes may open the same directory at once (the server and
// the admin CLI): SQLite's file locks serialize their write transactions,
// which are kept short, and busy_timeout makes a writer wait for the other
// instead of failing. A write that still cannot get the lock fails with an
// error wrapping oauth.ErrUnavailable.
//
// Contexts: a write whose ctx ends before it is committed returns
// ctx.Err() at once, but if the writer had already taken it into a
// transaction it still commits (a caller that gave up on CreateTokens may
// leave a stored, unused token; one that gave up on RevokeToken may still
// have revoked). A write whose ctx ended before the writer reached it is
// not run. Statements run under the writer's own context, because
// interrupting one would abort the transaction other callers share.
//
// Values: times are stored as UNIX microseconds and read back in UTC;
// the zero time is NULL; empty lists and byte slices read back as nil.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/batch"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// FileName is the database file Open creates in its directory. Beside it
// are SQLite's FileName-wal and FileName-shm, and FileName.lock, which
// coordinates writers of several processes (see fileLock).
const FileName = "tokengate.db"

// openLockTimeout bounds the wait for another process's migrations.
const openLockTimeout = 30 * time.Second

var errLockTimeout = fmt.Errorf("sqlite: timed out waiting for another process's write lock: %w", oauth.ErrUnavailable)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Store is the SQLite implementation of oauth.Store. It is safe for
// concurrent use.
type Store struct {
	path string
	lk   *fileLock
	rdb  *sql.DB // read-only pool
	wdb  *sql.DB // the one writer connection
	cdb  *sql.DB // the background checkpointer's connection

	stopCheckpoints, checkpointsDone chan struct{}
	w                                *writer
	b                                *batch.Batcher[*writer]
	getTok                           *sql.Stmt // on rdb
	now                              func() time.Time
	retention                        time.Duration // of revocation events
	busyTimeout                      time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ oauth.Store = (*Store)(nil)

// Option changes how Open sets up a Store.
type Option func(*options)

type options struct {
	busyTimeout time.Duration
	maxBatch    int
	readers     int
	now         func() time.Time
	retention   time.Duration
}

// WithClock sets the clock the store judges nonce expiry by (UseNonce,
// CreateTokensOnce), so it is the same clock the rest of the server uses;
// default time.Now. Lock waits and checkpoints use real time regardless.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithFeedRetention sets how long revocation events are kept before
// DeleteExpired deletes them; default oauth.DefaultFeedRetention.
func WithFeedRetention(d time.Duration) Option { return func(o *options) { o.retention = d } }

// WithBusyTimeout sets how long a connection waits for another process's
// lock before failing with oauth.ErrUnavailable; default 5s.
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busyTimeout = d } }

// WithMaxBatch sets the most write operations committed in one
// transaction; default 256.
func WithMaxBatch(n int) Option { return func(o *options) { o.maxBatch = n } }

// WithReaders sets the size of the read connection pool; default
// 2*GOMAXPROCS, at least 4.
func WithReaders(n int) Option { return func(o *options) { o.readers = n } }

func buildOptions(opts []Option) options {
	o := options{busyTimeout: 5 * time.Second, maxBatch: 256, readers: max(4, 2*runtime.GOMAXPROCS(0))}
	for _, f := range opts {
		f(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.retention <= 0 {
		o.retention = oauth.DefaultFeedRetention
	}
	return o
}

// Open opens (creating if missing) the database in dir, applies pending
// migrations and starts the writer. dir is created with mode 0700 and the
// database file with mode 0600 (it holds signing keys).
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	o := buildOptions(opts)
	path, lk, err := prepareFile(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, lk: lk, now: o.now, retention: o.retention, busyTimeout: o.busyTimeout}
	if err := s.open(ctx, o); err != nil {
		s.closeDBs()
		lk.close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context, o options) (err error) {
	// Until the writer is ready, no other process may create or migrate
	// the database.
	if err := s.lk.lock(max(o.busyTimeout, openLockTimeout)); err != nil {
		return err
	}
	defer s.lk.unlock()

	if s.wdb, err = sql.Open("sqlite", writerDSN(s.path, o)); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, s.wdb); err != nil {
		return err
	}
	if s.rdb, err = sql.Open("sqlite", readerDSN(s.path, o)); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	s.rdb.SetMaxOpenConns(o.readers)
	s.rdb.SetMaxIdleConns(o.readers)
	s.rdb.SetConnMaxLifetime(0)
	s.rdb.SetConnMaxIdleTime(0)
	if s.getTok, err = s.rdb.PrepareContext(ctx, selectToken+` WHERE id = ?`); err != nil {
		return mapErr(err)
	}
	if s.w, err = newWriter(ctx, s.wdb, s.lk, o.busyTimeout); err != nil {
		return err
	}
	s.b = batch.New[*writer](s.w, batch.Options{MaxBatch: o.maxBatch})
	if s.cdb, err = sql.Open("sqlite", checkpointDSN(s.path, o)); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	s.cdb.SetMaxOpenConns(1)
	s.stopCheckpoints = make(chan struct{})
	s.checkpointsDone = make(chan struct{})
	go s.checkpoints()
	return nil
}

// checkpointInterval is how often the WAL is copied back into the
// database file in the background.
const checkpointInterval = 500 * time.Millisecond

// checkpoints runs PASSIVE checkpoints on a connection of its own until
// Close. Left to the writer alone, a checkpoint ran inside the COMMIT of
// whichever batch crossed the threshold and stalled all token issuance for
// 10-15 ms (the benchmark's p99). A PASSIVE checkpoint takes no lock the
// writer needs, so commits go on while it copies and syncs; the writer's
// own checkpoint then finds little left to copy.
func (s *Store) checkpoints() {
	defer close(s.checkpointsDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopCheckpoints:
			s.checkpoint() // leave little WAL behind for the next process
			return
		case <-t.C:
			s.checkpoint()
		}
	}
}

// walRewindSize is the WAL size past which a checkpoint is finished on the
// writer's own connection, so that the WAL is rewound.
const walRewindSize = 4 << 20

func (s *Store) checkpoint() {
	// Errors are harmless here (busy readers, a concurrent checkpoint from
	// another process): the next tick tries again.
	_, _ = s.cdb.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
	// Under load the writer has appended more frames by the time that pass
	// ends, and the WAL is rewound only once every frame is copied. So the
	// writer itself, between two transactions, copies what the pass left
	// (a few milliseconds' worth): its next transaction starts the WAL over.
	if fi, err := os.Stat(s.path + "-wal"); err == nil && fi.Size() > walRewindSize {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.b.Between(ctx, func() { _, _ = s.w.conn.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`) })
	}
}

// Migrate applies pending migrations to the database in dir (creating it
// if missing) without starting a store. Open migrates too; this is for an
// explicit "migrate" command.
func Migrate(ctx context.Context, dir string) error {
	path, lk, err := prepareFile(dir)
	if err != nil {
		return err
	}
	defer lk.close()
	o := buildOptions(nil)
	if err := lk.lock(max(o.busyTimeout, openLockTimeout)); err != nil {
		return err
	}
	defer lk.unlock()
	db, err := sql.Open("sqlite", writerDSN(path, o))
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return migrate(ctx, db)
}

// prepareFile creates dir and the database file with restrictive modes
// (SQLite gives its -wal and -shm files the database file's mode) and
// returns the file's path and the directory's (unlocked) lock file.
func prepareFile(dir string) (string, *fileLock, error) {
	if dir == "" {
		return "", nil, errors.New("sqlite: empty data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("sqlite: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if strings.Contains(path, "?") {
		// The driver reads everything after '?' as connection parameters.
		return "", nil, fmt.Errorf("sqlite: data directory %q contains '?'", dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", nil, fmt.Errorf("sqlite: %w", err)
	}
	lk, err := openLock(path + ".lock")
	if err != nil {
		return "", nil, fmt.Errorf("sqlite: %w", err)
	}
	return path, lk, nil
}

func writerDSN(path string, o options) string {
	return path + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", o.busyTimeout.Milliseconds()),
		"_pragma=journal_mode(WAL)",
		// Store.checkpoints copies the WAL back in the background and has
		// the writer finish between transactions, so commits do not wait
		// for checkpoints. This in-commit one is only a backstop (readers
		// that never let the WAL rewind): it bounds the WAL near 160 MB.
		"_pragma=wal_autocheckpoint(40000)",
		// FULL: in WAL mode NORMAL may lose the last commits on power loss,
		// and a revocation or a just-issued token must survive it.
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(0)",
		"_pragma=journal_size_limit(67108864)",
		// Migrations run in database/sql transactions; IMMEDIATE takes the
		// write lock up front, so two processes migrating wait for each other.
		"_txlock=immediate",
	}, "&")
}

func checkpointDSN(path string, o options) string {
	return path + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", o.busyTimeout.Milliseconds()),
		"_pragma=synchronous(FULL)",
		"_pragma=wal_autocheckpoint(0)",
	}, "&")
}

func readerDSN(path string, o options) string {
	return path + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", o.busyTimeout.Milliseconds()),
		"_pragma=query_only(1)",
	}, "&")
}

func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		// Another process (server and CLI starting together) may have
		// applied the same migrations between our check and our write.
		if pending, perr := p.HasPending(ctx); perr == nil && !pending {
			return nil
		}
		return fmt.Errorf("sqlite: migrate: %w", mapErr(err))
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close stops the writer after the queued writes have run, and closes the
// database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.b.Close()
		if s.stopCheckpoints != nil {
			close(s.stopCheckpoints)
			<-s.checkpointsDone
		}
		s.closeErr = errors.Join(s.w.close(), s.getTok.Close(), s.closeDBs(), s.lk.close())
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var errs []error
	for _, db := range []*sql.DB{s.rdb, s.wdb, s.cdb} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// Ping reads the database through the read pool.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.Revision(ctx)
	return err
}

// Stats counts the writer's transactions and operations since Open; Ops
// divided by Batches is the average group-commit size.
type Stats = batch.Stats

// Stats returns the group-commit counters.
func (s *Store) Stats() Stats { return s.b.Stats() }

var errClosed = fmt.Errorf("sqlite: store closed: %w", oauth.ErrUnavailable)

// do runs op through the group-commit batcher.
func (s *Store) do(ctx context.Context, op batch.Op[*writer]) error {
	return s.run(ctx, op, s.b.Do)
}

// doAtomic is do for an op that is one SQL statement (see batch.DoAtomic).
func (s *Store) doAtomic(ctx context.Context, op batch.Op[*writer]) error {
	return s.run(ctx, op, s.b.DoAtomic)
}

func (s *Store) run(ctx context.Context, op batch.Op[*writer], do func(context.Context, batch.Op[*writer]) error) error {
	if s.closed.Load() {
		return errClosed
	}
	err := do(ctx, op)
	if errors.Is(err, batch.ErrClosed) {
		return errClosed
	}
	return mapErr(err)
}

// reader returns the read pool, or an error once the store is closed.
func (s *Store) reader() (*sql.DB, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	return s.rdb, nil
}

// mapErr translates driver errors into the oauth.Store error contract:
// constraint violations on a key become oauth.ErrAlreadyExists, and lock
// timeouts and I/O failures wrap oauth.ErrUnavailable. Other errors, and
// errors already mapped, pass through.
func mapErr(err error) error {
	if err == nil || codec.IsContractError(err) {
		return err
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		if msg := err.Error(); errors.Is(err, sql.ErrConnDone) ||
			strings.Contains(msg, "sql: database is closed") || strings.Contains(msg, "sql: statement is closed") {
			// Only reachable when a call races with Close.
			return fmt.Errorf("sqlite: %w: %w", oauth.ErrUnavailable, err)
		}
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return fmt.Errorf("sqlite: %w (%v)", oauth.ErrAlreadyExists, err)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOMEM,
		sqlite3.SQLITE_READONLY, sqlite3.SQLITE_INTERRUPT:
		return fmt.Errorf("sqlite: %w: %w", oauth.ErrUnavailable, err)
	}
	return err
}
