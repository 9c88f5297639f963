package sqlite_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
	"github.com/tokengate/tokengate/store/storetest"
)

func open(t testing.TB, dir string, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T, now func() time.Time) oauth.Store {
		return open(t, t.TempDir(), sqlite.WithClock(now))
	})
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s := open(t, dir)
	defer s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, sqlite.FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", path, got, want)
		}
	}
	// WAL mode is a property of the file, visible to any connection.
	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
}

// TestConcurrentOpen: server and CLI starting together on a new directory
// both migrate it.
func TestConcurrentOpen(t *testing.T) {
	dir := t.TempDir()
	const n = 4
	stores := make([]*sqlite.Store, n)
	errs := make([]error, n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			stores[i], errs[i] = sqlite.Open(context.Background(), dir)
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		defer stores[i].Close()
	}
	if stores[0].Path() != filepath.Join(dir, sqlite.FileName) {
		t.Errorf("Path = %q", stores[0].Path())
	}
	ctx := context.Background()
	for i, s := range stores {
		if err := s.CreateUser(ctx, &oauth.User{Username: fmt.Sprint(i)}); err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
	users, err := stores[0].ListUsers(ctx)
	if err != nil || len(users) != n {
		t.Fatalf("ListUsers = %d users, %v; want %d", len(users), err, n)
	}
}

// TestReopen: what was committed survives Close and Open, and Open on an
// already migrated database works.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now()
	tok := &oauth.Token{ID: "t1", Kind: oauth.KindRefresh, ClientID: "c", FamilyID: "f", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateClient(ctx, &oauth.Client{ID: "c", Name: "merchant"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTokens(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, tok, now); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "n", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.GetToken(ctx, "t1"); !errors.Is(err, oauth.ErrUnavailable) {
		t.Errorf("GetToken after Close = %v, want ErrUnavailable", err)
	}
	if err := s.CreateTokens(ctx, &oauth.Token{ID: "t2"}); !errors.Is(err, oauth.ErrUnavailable) {
		t.Errorf("CreateTokens after Close = %v, want ErrUnavailable", err)
	}

	if err := sqlite.Migrate(ctx, dir); err != nil {
		t.Fatalf("Migrate on a migrated database: %v", err)
	}
	s = open(t, dir)
	defer s.Close()
	c, err := s.GetClient(ctx, "c")
	if err != nil || c.Name != "merchant" {
		t.Fatalf("GetClient after reopen = %+v, %v", c, err)
	}
	got, err := s.GetToken(ctx, "t1")
	if err != nil {
		t.Fatalf("GetToken after reopen: %v", err)
	}
	if got.RevokedAt.IsZero() {
		t.Error("revocation lost across Close/Open")
	}
	if err := s.UseNonce(ctx, "n", now.Add(time.Hour)); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Errorf("UseNonce after reopen = %v, want ErrAlreadyExists", err)
	}
	if r, err := s.Revision(ctx); err != nil || r != rev {
		t.Errorf("Revision after reopen = %d, %v; want %d", r, err, rev)
	}
}

// TestTwoStoresShareDirectory: the server and the admin CLI open the same
// directory; each sees the other's writes, and their writes interleave
// without loss.
func TestTwoStoresShareDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	server, cli := open(t, dir), open(t, dir)
	defer server.Close()
	defer cli.Close()

	rev, err := server.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.CreateClient(ctx, &oauth.Client{ID: "m1", Scopes: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.GetClient(ctx, "m1"); err != nil {
		t.Fatalf("server does not see the CLI's client: %v", err)
	}
	if r, err := server.Revision(ctx); err != nil || r == rev {
		t.Fatalf("server's Revision = %d, %v after the CLI's change; want a change from %d", r, err, rev)
	}
	now := time.Now()
	if err := server.CreateTokens(ctx, &oauth.Token{ID: "t", Kind: oauth.KindAccess, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := cli.RevokeToken(ctx, &oauth.Token{ID: "t"}, now); err != nil {
		t.Fatal(err)
	}
	if got, err := server.GetToken(ctx, "t"); err != nil || got.RevokedAt.IsZero() {
		t.Fatalf("server does not see the CLI's revocation: %+v, %v", got, err)
	}

	// Both write at once: client updates from both and tokens from both.
	const n = 100
	errc := make(chan error, 4*n)
	for i := range n {
		for j, s := range []*sqlite.Store{server, cli} {
			go func() {
				errc <- s.CreateTokens(ctx, &oauth.Token{ID: fmt.Sprintf("p%d-%d", j, i), Kind: oauth.KindAccess, ExpiresAt: now.Add(time.Hour)})
			}()
			go func() {
				errc <- s.UpdateClient(ctx, "m1", func(c *oauth.Client) error {
					c.Scopes = append(c.Scopes, fmt.Sprintf("s%d-%d", j, i))
					return nil
				})
			}()
		}
	}
	for range 4 * n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		for j, s := range []*sqlite.Store{cli, server} {
			if _, err := s.GetToken(ctx, fmt.Sprintf("p%d-%d", j, i)); err != nil {
				t.Fatalf("token p%d-%d: %v", j, i, err)
			}
		}
	}
	c, err := cli.GetClient(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Scopes) != 1+2*n {
		t.Fatalf("client has %d scopes after %d updates from two stores, want %d", len(c.Scopes), 2*n, 1+2*n)
	}
}

// TestSeparateProcess runs a writer in a child process (the admin CLI's
// situation: separate process, separate file locks) while this process
// writes too.
func TestSeparateProcess(t *testing.T) {
	if dir := os.Getenv("TOKENGATE_SQLITE_CHILD_DIR"); dir != "" {
		childWrites(t, dir)
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	if err := s.CreateClient(ctx, &oauth.Client{ID: "shared"}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestSeparateProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TOKENGATE_SQLITE_CHILD_DIR="+dir)
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = cmd.CombinedOutput()
		done <- err
	}()
	// The parent keeps its writer saturated, as a busy server does; the
	// child must still get its turns within busy_timeout.
	var mine atomic.Int64
	now := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.CreateTokens(ctx, &oauth.Token{ID: fmt.Sprintf("parent-%d-%d", g, i), ExpiresAt: now.Add(time.Hour)}); err != nil {
					t.Errorf("parent CreateTokens: %v", err)
					return
				}
				mine.Add(1)
			}
		}()
	}
	err := <-done
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	for i := range 200 {
		if _, err := s.GetToken(ctx, fmt.Sprintf("child-%d", i)); err != nil {
			t.Fatalf("child's token %d: %v", i, err)
		}
	}
	c, err := s.GetClient(ctx, "shared")
	if err != nil || c.Name != "renamed by child" {
		t.Fatalf("client after the child's update = %+v, %v", c, err)
	}
	if mine.Load() == 0 {
		t.Error("parent wrote nothing while the child ran")
	}
}

func childWrites(t *testing.T, dir string) {
	ctx := context.Background()
	// Far below the default, so that starvation shows as a failure: with
	// turns taken fairly, a wait is about one parent transaction.
	s := open(t, dir, sqlite.WithBusyTimeout(2*time.Second))
	defer s.Close()
	now := time.Now()
	errc := make(chan error, 200)
	for i := range 200 {
		go func() {
			errc <- s.CreateTokens(ctx, &oauth.Token{ID: fmt.Sprintf("child-%d", i), ExpiresAt: now.Add(time.Hour)})
		}()
	}
	for range 200 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdateClient(ctx, "shared", func(c *oauth.Client) error { c.Name = "renamed by child"; return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestLockedDatabaseIsUnavailable: a write that cannot get the database
// lock within busy_timeout fails with ErrUnavailable, and the store
// recovers when the lock is released.
func TestLockedDatabaseIsUnavailable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, sqlite.WithBusyTimeout(50*time.Millisecond))
	defer s.Close()

	locker, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	tok := &oauth.Token{ID: "t", ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.CreateTokens(ctx, tok); !errors.Is(err, oauth.ErrUnavailable) {
		t.Fatalf("CreateTokens while another process holds the write lock = %v, want ErrUnavailable", err)
	}
	// Readers are not blocked by a writer (WAL).
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping while locked: %v", err)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTokens(ctx, tok); err != nil {
		t.Fatalf("CreateTokens after the lock was released: %v", err)
	}
}

// TestGroupCommit: concurrent writers share transactions.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const n = 400
	errc := make(chan error, n)
	now := time.Now()
	for i := range n {
		go func() {
			errc <- s.CreateTokens(ctx, &oauth.Token{ID: fmt.Sprint(i), ExpiresAt: now.Add(time.Hour)})
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Ops != n || st.Batches >= n/2 {
		t.Errorf("Stats = %+v: %d concurrent writes took %d transactions; want batching (< %d)", st, n, st.Batches, n/2)
	}
}

// TestUseNonceNeedsNoSavepoint: UseNonce is one statement, so concurrent
// calls share transactions without a savepoint each (two statements more
// per call, on the path of every SNAP service call), and a used key is a
// clean refusal that fails no batch.
func TestUseNonceNeedsNoSavepoint(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const keys = 200
	exp := time.Now().Add(time.Hour)
	errc := make(chan error, 2*keys)
	for i := range 2 * keys {
		go func() { errc <- s.UseNonce(ctx, fmt.Sprint("k", i%keys), exp) }()
	}
	var ok, used int
	for range 2 * keys {
		switch err := <-errc; {
		case err == nil:
			ok++
		case errors.Is(err, oauth.ErrAlreadyExists):
			used++
		default:
			t.Fatal(err)
		}
	}
	if ok != keys || used != keys {
		t.Errorf("%d recorded, %d refused as used; want %d each", ok, used, keys)
	}
	st := s.Stats()
	if st.Batches >= 2*keys/2 {
		t.Fatalf("Stats = %+v: no batching, nothing shown", st)
	}
	if st.Savepoints != 0 || st.Retries != 0 {
		t.Errorf("Stats = %+v: want no savepoint and no retry", st)
	}
}

// BenchmarkCreateTokensParallel measures durable token issuance: each op
// stores one access token, from 64 goroutines per CPU at once.
//
// id=hash uses random IDs, as a hash of an opaque token's value is: each
// insert lands on a random B-tree page, so a commit writes about one page
// per token. id=ordered uses IDs that increase with time (a time-prefixed
// jti or token ID): inserts append, and a commit writes a few pages.
func BenchmarkCreateTokensParallel(b *testing.B) {
	b.Run("id=hash", func(b *testing.B) {
		benchCreateTokens(b, func(int64) string {
			var buf [32]byte
			rand.Read(buf[:])
			h := sha256.Sum256(buf[:])
			return base64.RawURLEncoding.EncodeToString(h[:])
		})
	})
	b.Run("id=ordered", func(b *testing.B) {
		benchCreateTokens(b, func(seq int64) string { return fmt.Sprintf("%016x%027d", time.Now().UnixNano(), seq) })
	})
}

// BenchmarkUseNonceParallel measures durable one-time values (a SNAP
// service call's X-EXTERNAL-ID) from 64 goroutines per CPU.
func BenchmarkUseNonceParallel(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	storetest.BenchUseNonce(b, s, 64)
}

func benchCreateTokens(b *testing.B, newID func(seq int64) string) {
	s := open(b, b.TempDir())
	defer s.Close()
	storetest.BenchCreateTokens(b, s, 64, newID) // 64: a busy server's worth of concurrent requests
}

// TestBackgroundCheckpoint: commits never checkpoint (that stalled
// issuance); the background checkpointer copies the WAL into the database.
func TestBackgroundCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	now := time.Now()
	for i := range 50 {
		var batch []*oauth.Token
		for j := range 100 {
			batch = append(batch, &oauth.Token{ID: fmt.Sprintf("%06d-%03d", i, j), Kind: oauth.KindAccess, Format: oauth.FormatOpaque,
				ClientID: "c", Subject: "c", Scopes: []string{"a"}, IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
		}
		if err := s.CreateTokens(t.Context(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for size() < before+256<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (was %d): the WAL is not being checkpointed", size(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWALStaysBoundedUnderSustainedWrites: background PASSIVE checkpoints
// never catch up with a writer that keeps committing, so they never let
// the WAL start over; only the writer's own checkpoint, once the WAL
// passes sqlite.WALRewindSize, rewinds it (at the next background tick,
// 500 ms apart). Without that the WAL keeps every frame written since the
// start, until wal_autocheckpoint near 160 MB.
//
// Tokens are committed at a steady 1000 a second, as a busy server's
// requests arrive, not flat out, until the writer has committed 6144
// transactions: each appends at least one 4 KB page to the WAL (about 10
// KB, measured), so without the rewind the WAL ends above 24 MB (measured:
// about 60 MB), and with it peaks at the rewind size plus what the writer
// appends between two ticks (measured: 4-8 MB). The bound, 4 times the
// rewind size, sits between the two.
func TestWALStaysBoundedUnderSustainedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("sustained load for seconds")
	}
	const (
		perSecond = 1000
		commits   = 6144
		maxTime   = 12 * time.Second
		writers   = 32
		bound     = 4 * sqlite.WALRewindSize
	)
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(t.Context(), maxTime)
	defer cancel()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for ctx.Err() == nil && s.Stats().Batches < commits {
				// Token seq is due at start + seq/perSecond.
				seq := next.Add(1)
				time.Sleep(time.Until(start.Add(time.Duration(seq) * time.Second / perSecond)))
				now := time.Now()
				tok := &oauth.Token{ID: fmt.Sprintf("%016x-%08d", now.UnixNano(), seq), Kind: oauth.KindAccess, Format: oauth.FormatOpaque,
					ClientID: "c", Subject: "c", Scopes: []string{"payments"}, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
				if err := s.CreateTokens(ctx, tok); err != nil && ctx.Err() == nil {
					t.Errorf("CreateTokens: %v", err)
					return
				}
			}
		})
	}
	// The WAL file grows to its peak and stays there (it is truncated
	// only past journal_size_limit, 64 MB): its size at the end is the
	// most it held.
	wg.Wait()
	fi, err := os.Stat(filepath.Join(dir, sqlite.FileName+"-wal"))
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("%d tokens in %d transactions in %v, WAL %.1f MB", st.Ops, st.Batches, time.Since(start).Round(time.Millisecond), float64(fi.Size())/(1<<20))
	if fi.Size() > bound {
		t.Fatalf("WAL grew to %.1f MB under sustained writes (bound %d MB): it is not being rewound",
			float64(fi.Size())/(1<<20), bound>>20)
	}
	if st.Batches < commits {
		t.Skipf("only %d transactions in %v (want %d): too few to tell a rewound WAL from one that is not", st.Batches, maxTime, commits)
	}
}
