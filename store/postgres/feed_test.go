package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
)

// begin opens a transaction on a connection of its own and gives it its
// transaction ID at once, as a transaction that wrote something would
// have.
func begin(t *testing.T, dsn string) pgx.Tx {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestFeedNotHeldByOtherTransactions (issue 11, review 3, point 3): a
// transaction left open elsewhere on the cluster — another application's,
// in another database, or a revocation of this store still running —
// holds back no committed revocation. The event of a revocation that has
// returned is in the very next read. (Ordering the feed by the snapshot's
// xmin horizon held every event back until every older transaction on the
// cluster had ended.)
func TestFeedNotHeldByOtherTransactions(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	s := openStore(t, dsn, Options{})
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	mk := func(id string) *oauth.Token {
		return &oauth.Token{ID: id, Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	if err := s.CreateTokens(ctx, mk("victim"), mk("slow"), mk("third")); err != nil {
		t.Fatal(err)
	}
	start, err := s.RevocationCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Another application's batch job, in the cluster's maintenance
	// database: any write gives it a transaction ID.
	foreign := begin(t, pgtest.WithParam(t, pgtest.DSN(t), "dbname", "postgres"))
	var db string
	if err := foreign.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil || db != "postgres" {
		t.Fatalf("the foreign transaction runs in %q (%v), want the database postgres", db, err)
	}
	if _, err := foreign.Exec(ctx, `CREATE TEMP TABLE nightly_batch (x int)`); err != nil {
		t.Fatal(err)
	}
	// A revocation of this store, on another node, not committed yet.
	slow := begin(t, dsn)
	if _, err := slow.Exec(ctx, revokeIDSQL, now, "slow", now); err != nil {
		t.Fatal(err)
	}

	// Neither blocks a revocation, nor holds back its event.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.RevokeToken(rctx, mk("victim"), now); err != nil {
		t.Fatalf("RevokeToken while other transactions are open: %v", err)
	}
	got, cursor, err := s.RevocationEvents(ctx, start, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), []string{"victim"}) {
		t.Fatalf("right after RevokeToken returned, with other transactions open: %v, want [victim]", ids(got))
	}
	if c, err := s.RevocationCursor(ctx); err != nil || c != cursor {
		t.Fatalf("RevocationCursor = %q, %v; want the victim's event %q", c, err, cursor)
	}

	// The open revocation commits after it: its event comes after.
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, mk("third"), now); err != nil {
		t.Fatal(err)
	}
	rest, _, err := s.RevocationEvents(ctx, cursor, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(rest), []string{"slow", "third"}) {
		t.Fatalf("after the slow revocation committed: %v, want [slow third]", ids(rest))
	}
	// Every reader sees one order: commit order.
	all, _, err := s.RevocationEvents(ctx, start, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(all), []string{"victim", "slow", "third"}) {
		t.Fatalf("from the start: %v", ids(all))
	}
	if err := foreign.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFeedCommitOrder is the case a sequence handed out at INSERT gets
// wrong: a transaction inserts its event first, another inserts later and
// commits first, and a reader reads that one. When the first commits, its
// event must still be delivered, exactly once, after the one already read;
// an aborted revocation leaves nothing (and no gap a reader could wait on).
func TestFeedCommitOrder(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	s := openStore(t, dsn, Options{})
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	mk := func(id string) *oauth.Token {
		return &oauth.Token{ID: id, Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	if err := s.CreateTokens(ctx, mk("held"), mk("early"), mk("aborted")); err != nil {
		t.Fatal(err)
	}
	start, err := s.RevocationCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revokeIn := func(tx pgx.Tx, id string) {
		t.Helper()
		if _, err := tx.Exec(ctx, revokeIDSQL, now, id, now); err != nil {
			t.Fatal(err)
		}
	}
	held, early, aborted := begin(t, dsn), begin(t, dsn), begin(t, dsn)
	revokeIn(held, "held") // inserts first
	revokeIn(aborted, "aborted")
	revokeIn(early, "early")
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, cursor, err := s.RevocationEvents(ctx, start, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), []string{"early"}) {
		t.Fatalf("while the other transactions run: %v, want [early]", ids(got))
	}
	if err := aborted.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, mk("later"), now); err != nil {
		t.Fatal(err)
	}
	rest, _, err := s.RevocationEvents(ctx, cursor, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(rest), []string{"held", "later"}) {
		t.Fatalf("after the held transaction committed: %v, want [held later]", ids(rest))
	}
	all, _, err := s.RevocationEvents(ctx, start, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(all), []string{"early", "held", "later"}) {
		t.Fatalf("from the start: %v", ids(all))
	}
}

func ids(events []oauth.RevocationEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

// TestFeedTwoNodes: two nodes revoke concurrently, tokens one by one and
// families of several tokens (several events in one transaction), while a
// reader on each node follows the feed in small pages: each reads every
// revocation of both nodes exactly once, and both read them in the same
// order, which is also the order of a later read from the start.
func TestFeedTwoNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	nodes := []*Store{openStore(t, dsn, Options{}), openStore(t, dsn, Options{})}
	for _, s := range nodes {
		defer s.Close()
	}
	ctx := t.Context()
	now := time.Now()
	const writers, rounds, familySize = 20, 10, 3
	var want []string
	var family []*oauth.Token
	for w := range writers {
		for r := range rounds {
			if r%2 == 0 {
				want = append(want, fmt.Sprintf("t-%d-%d", w, r))
				continue
			}
			for i := range familySize {
				id := fmt.Sprintf("f-%d-%d-%d", w, r, i)
				want = append(want, id)
				family = append(family, &oauth.Token{ID: id, Kind: oauth.KindRefresh, FamilyID: fmt.Sprintf("fam-%d-%d", w, r),
					IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
			}
		}
	}
	if err := nodes[0].CreateTokens(ctx, family...); err != nil {
		t.Fatal(err)
	}
	start, err := nodes[1].RevocationCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var (
		done, stop atomic.Bool
		read       [2][]string
		readErr    [2]error
		readerWG   sync.WaitGroup
	)
	for i, s := range nodes {
		readerWG.Go(func() {
			cursor := start
			for !stop.Load() {
				page, next, err := s.RevocationEvents(ctx, cursor, 7)
				if err != nil {
					readErr[i] = err
					return
				}
				read[i] = append(read[i], ids(page)...)
				cursor = next
				if done.Load() && len(read[i]) >= len(want) {
					return
				}
				if len(page) < 7 {
					time.Sleep(2 * time.Millisecond) // a backoff
				}
			}
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := nodes[w%2]
			for r := range rounds {
				var err error
				if r%2 == 0 {
					id := fmt.Sprintf("t-%d-%d", w, r)
					err = s.RevokeToken(ctx, &oauth.Token{ID: id, Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
				} else {
					err = s.RevokeFamily(ctx, fmt.Sprintf("fam-%d-%d", w, r), now)
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	done.Store(true)
	waited := make(chan struct{})
	go func() { readerWG.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		stop.Store(true)
		<-waited
		t.Fatalf("the readers read %d and %d events of %d", len(read[0]), len(read[1]), len(want))
	}
	for i := range nodes {
		if readErr[i] != nil {
			t.Fatal(readErr[i])
		}
		got := slices.Clone(read[i])
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("reader %d read %d events (%d distinct expected); got %v", i, len(read[i]), len(want), got)
		}
	}
	if !slices.Equal(read[0], read[1]) {
		t.Fatal("the readers of the two nodes read the events in different orders")
	}
	var all []string
	for cursor := start; ; {
		page, next, err := nodes[0].RevocationEvents(ctx, cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all, cursor = append(all, ids(page)...), next
	}
	if !slices.Equal(all, read[0]) {
		t.Fatal("a read from the start after the writes gives another order than the readers read")
	}
}

// TestIdleInTransactionTimeout: sessions get an
// idle_in_transaction_session_timeout (a node cut off mid-transaction
// must not hold the revocation feed back for long), unless the DSN sets
// one.
func TestIdleInTransactionTimeout(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	show := func(s *Store) string {
		t.Helper()
		var v string
		if err := s.pool.QueryRow(t.Context(), `SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	s := openStore(t, dsn, Options{Timeout: 2 * time.Second})
	defer s.Close()
	if v := show(s); v != "9s" {
		t.Errorf("idle_in_transaction_session_timeout = %q, want 9s (2 × 2s + 5s)", v)
	}
	own := openStore(t, dsn+"&idle_in_transaction_session_timeout=60000", Options{})
	defer own.Close()
	if v := show(own); v != "1min" {
		t.Errorf("with the DSN's setting: %q, want 1min", v)
	}
}
