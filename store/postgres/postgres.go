// Package postgres is tokengate's multi-node store: PostgreSQL through
// pgx (pgxpool). Several tokengate processes may share one database (and
// one schema, chosen with the DSN's search_path); what must happen exactly
// once — rotating a refresh token, using a nonce — is decided by the
// database, not by a process.
//
// Token writes (CreateTokens, RotateRefreshToken, RevokeToken, RevokeFamily,
// UseNonce) go through a group-commit batcher (store/internal/batch):
// concurrent writes share one transaction and one WAL flush, and their
// statements are pipelined on one connection, so a batch of token
// issuances costs one round trip and one commit (see writer.go). A write
// returns nil only after its transaction has committed. Client, user,
// signing-key and setting writes are rare and run in their own
// transactions.
//
// Failures: when the database cannot be reached (connection refused or
// reset, connect or query timeout, server shutting down, standby after a
// failover), calls fail within Options.Timeout with an error wrapping
// oauth.ErrUnavailable, and the pool reconnects by itself once the
// database is back.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/batch"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// Defaults for Options and the connection.
const (
	DefaultMaxConns       = 16
	DefaultTimeout        = 5 * time.Second
	DefaultMaxBatch       = 256
	DefaultConnectTimeout = 2 * time.Second // when the DSN sets no connect_timeout
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// MaxConns is the most connections the pool opens; default 16, or the
	// DSN's pool_max_conns if it has one.
	MaxConns int
	// Timeout bounds the database work of one call (and of one group-commit
	// transaction) when ctx has no earlier deadline, so a database that
	// stops answering fails calls with oauth.ErrUnavailable instead of
	// hanging them; default 5s.
	Timeout time.Duration
	// MaxBatch is the most token writes committed in one transaction;
	// default 256.
	MaxBatch int
	// Now is the clock nonce expiry is judged by (UseNonce,
	// CreateTokensOnce). Give the clock the server checks request
	// timestamps with: a node then never finds a nonce expired while it
	// would still accept the request that carries it, however far its
	// clock is from the others'. nil: the database's clock
	// (clock_timestamp()). Connection back-off uses real time regardless.
	// Revocation events are dated by it too.
	Now func() time.Time
	// FeedRetention is how long revocation events are kept before
	// DeleteExpired deletes them; default oauth.DefaultFeedRetention.
	FeedRetention time.Duration
}

// Store is the PostgreSQL implementation of oauth.Store. It is safe for
// concurrent use, and several Stores (in several processes) may share a
// database.
type Store struct {
	pool      *pgxpool.Pool
	b         *batch.Batcher[*wtx]
	timeout   time.Duration
	now       func() time.Time // nil: the database's clock
	retention time.Duration    // of revocation events

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ oauth.Store = (*Store)(nil)

// Open connects to the database dsn names (a libpq URL or keyword/value
// string; pool_* parameters are read by pgxpool, others such as
// search_path are sent to the server), applies pending migrations and
// starts the group-commit writer. Several processes may Open the same
// database at once: migrations take an advisory lock.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := poolConfig(dsn, opts)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, cfg.ConnConfig); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", mapErr(err))
	}
	s := &Store{pool: pool, timeout: cmpOr(opts.Timeout, DefaultTimeout), now: opts.Now,
		retention: cmpOr(opts.FeedRetention, oauth.DefaultFeedRetention)}
	s.b = batch.New[*wtx](&writer{pool: pool}, batch.Options{
		MaxBatch:  cmpOr(opts.MaxBatch, DefaultMaxBatch),
		TxTimeout: s.timeout,
	})
	return s, nil
}

// Migrate applies pending migrations to the database dsn names without
// starting a store. Open migrates too; this is for an explicit "migrate"
// command.
func Migrate(ctx context.Context, dsn string) error {
	cfg, err := poolConfig(dsn, Options{})
	if err != nil {
		return err
	}
	return migrate(ctx, cfg.ConnConfig)
}

func poolConfig(dsn string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The error text quotes the DSN, which may hold a password: keep
		// only the reason.
		if inner := errors.Unwrap(err); inner != nil {
			return nil, fmt.Errorf("postgres: invalid DSN: %v", inner)
		}
		return nil, errors.New("postgres: invalid DSN")
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = int32(opts.MaxConns)
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = idleInTransactionTimeout(cmpOr(opts.Timeout, DefaultTimeout))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	// pgxpool pings a connection that sat idle for a second before handing
	// it out (so one that died while the database was away is replaced);
	// the ping must not hang on a dead network path either.
	cfg.PingTimeout = cfg.ConnConfig.ConnectTimeout
	return cfg, nil
}

// idleInTransactionTimeout is the idle_in_transaction_session_timeout the
// pool's sessions get when the DSN sets none: a session whose node stopped
// talking in the middle of a transaction is ended by the server, so its
// transaction does not hold its row locks (a refresh token another node is
// rotating, a client being updated) for long.
func idleInTransactionTimeout(storeTimeout time.Duration) string {
	return strconv.FormatInt((2*storeTimeout + 5*time.Second).Milliseconds(), 10)
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Close stops the writer after the queued writes have run, and closes the
// pool. It waits at most Options.Timeout for connections to close: a
// connection cut off by a network partition finishes closing in the
// background (pgx gives it up to 15s). It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.b.Close()
		done := make(chan struct{})
		go func() {
			s.pool.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(s.timeout):
		}
	})
	return nil
}

// Ping checks that the database answers. Errors: oauth.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		if err = mapErr(err); errors.Is(err, oauth.ErrUnavailable) {
			return err
		}
		return fmt.Errorf("postgres: ping: %w: %w", oauth.ErrUnavailable, err)
	}
	return nil
}

// Stats counts the writer's transactions and operations since Open; Ops
// divided by Batches is the average group-commit size.
type Stats = batch.Stats

// Stats returns the group-commit counters.
func (s *Store) Stats() Stats { return s.b.Stats() }

var errClosed = fmt.Errorf("postgres: store closed: %w", oauth.ErrUnavailable)

// callCtx bounds a call's database work by the store's timeout unless ctx
// already ends sooner.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= s.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// reader returns the pool for reads, or an error once the store is closed.
func (s *Store) reader() (*pgxpool.Pool, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	return s.pool, nil
}

// do runs op through the group-commit batcher. The caller waits at most
// the store's timeout, however many attempts the batcher makes.
func (s *Store) do(ctx context.Context, op batch.Op[*wtx]) error {
	if s.closed.Load() {
		return errClosed
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	err := s.b.Do(ctx, op)
	if errors.Is(err, batch.ErrClosed) {
		return errClosed
	}
	return mapErr(err)
}

// mapErr translates driver errors into the oauth.Store error contract:
// unique violations become oauth.ErrAlreadyExists, and errors meaning the
// database cannot be reached or cannot serve (see unavailable) wrap
// oauth.ErrUnavailable. Other errors, and errors already mapped, pass
// through unchanged, so an UpdateClient callback's error stays comparable.
//
// Error texts never carry token IDs or secrets: PgError's text is its
// message (no DETAIL, which would quote key values).
func mapErr(err error) error {
	if err == nil || codec.IsContractError(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return fmt.Errorf("postgres: %w (%s)", oauth.ErrAlreadyExists, pe.ConstraintName)
	}
	if unavailable(err) {
		return fmt.Errorf("postgres: %w: %w", oauth.ErrUnavailable, err)
	}
	return err
}

// unavailable reports whether err means the database could not be reached
// or cannot serve now, as opposed to a bug or a refused statement.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection_exception
			return true
		case strings.HasPrefix(pe.Code, "53"): // insufficient_resources (too many connections, disk full)
			return true
		}
		switch pe.Code {
		case "57P01", "57P02", "57P03", // admin_shutdown, crash_shutdown, cannot_connect_now
			"57014", // query_canceled (statement_timeout)
			"55P03", // lock_not_available (lock_timeout)
			"25006", // read_only_sql_transaction: a standby, e.g. mid-failover
			"25P03": // idle_in_transaction_session_timeout
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up; not the database's fault
	}
	var (
		ne net.Error
		ce *pgconn.ConnectError
	)
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "closed pool") // pgxpool (puddle) after Close
}
