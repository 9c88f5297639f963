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

// TestFeedHeldTransaction is the case a sequence alone gets wrong: a
// transaction takes its event's seq, then another takes a later seq and
// commits first, and a reader reads it. When the first commits, its event
// (with the lower seq) must still be delivered, exactly once, and nothing
// of a transaction still running may be delivered before it.
func TestFeedHeldTransaction(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	s := openStore(t, dsn, Options{})
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	mk := func(id string) *oauth.Token {
		return &oauth.Token{ID: id, Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	if err := s.CreateTokens(ctx, mk("held"), mk("early")); err != nil {
		t.Fatal(err)
	}
	start, err := s.RevocationCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// begin opens a transaction on a connection of its own and gives it
	// its transaction ID at once, as a revoking transaction that wrote
	// something first would have.
	begin := func() pgx.Tx {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	revokeIn := func(tx pgx.Tx, id string) {
		t.Helper()
		if _, err := tx.Exec(ctx, revokeIDSQL, now, id, now); err != nil {
			t.Fatal(err)
		}
	}
	early := begin() // the older transaction ID
	held := begin()
	revokeIn(held, "held") // takes the lower seq
	revokeIn(early, "early")
	var heldSeq, earlySeq int64
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM revocation_events WHERE subject = 'early'`).Scan(&earlySeq); err == nil {
		t.Fatal("an uncommitted event is visible")
	}
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM revocation_events WHERE subject = 'early'`).Scan(&earlySeq); err != nil {
		t.Fatal(err)
	}

	// The reader gets "early" (every transaction older than it has
	// ended; other tests' transactions on this cluster may delay that a
	// little, hence the loop).
	var got []oauth.RevocationEvent
	cursor := start
	deadline := time.Now().Add(10 * time.Second)
	for len(got) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the committed event of the older transaction was never delivered")
		}
		got, cursor, err = s.RevocationEvents(ctx, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0].ID != "early" {
		t.Fatalf("while the newer transaction runs: %v", ids(got))
	}
	// A revocation committed after "held" began is held back with it.
	if err := s.RevokeToken(ctx, mk("later"), now); err != nil {
		t.Fatal(err)
	}
	if more, next, err := s.RevocationEvents(ctx, cursor, 10); err != nil || len(more) != 0 || next != cursor {
		t.Fatalf("before the held transaction commits: %v, next %q, %v (want nothing)", ids(more), next, err)
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM revocation_events WHERE subject = 'held'`).Scan(&heldSeq); err != nil {
		t.Fatal(err)
	}
	if heldSeq >= earlySeq {
		t.Fatalf("the test did not set up the case: held's seq %d is not below early's %d", heldSeq, earlySeq)
	}
	var rest []oauth.RevocationEvent
	deadline = time.Now().Add(10 * time.Second)
	for len(rest) < 2 && time.Now().Before(deadline) {
		var page []oauth.RevocationEvent
		page, cursor, err = s.RevocationEvents(ctx, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, page...)
	}
	if !slices.Equal(ids(rest), []string{"held", "later"}) {
		t.Fatalf("after the held transaction committed: %v, want [held later]", ids(rest))
	}
	// Read from the start once more: each event once, in the same order.
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

// TestFeedTwoNodes: two nodes revoke concurrently while a reader on one
// of them follows the feed in small pages; it reads every revocation of
// both exactly once.
func TestFeedTwoNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	nodes := []*Store{openStore(t, dsn, Options{}), openStore(t, dsn, Options{})}
	for _, s := range nodes {
		defer s.Close()
	}
	ctx := t.Context()
	now := time.Now()
	start, err := nodes[1].RevocationCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 20, 10
	var (
		done, stop atomic.Bool
		read       []string
		readErr    error
		readerWG   sync.WaitGroup
	)
	readerWG.Go(func() {
		cursor := start
		for !stop.Load() {
			page, next, err := nodes[1].RevocationEvents(ctx, cursor, 7)
			if err != nil {
				readErr = err
				return
			}
			read = append(read, ids(page)...)
			cursor = next
			if done.Load() && len(read) >= writers*rounds {
				return
			}
			if len(page) < 7 {
				time.Sleep(2 * time.Millisecond) // a backoff
			}
		}
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := nodes[w%2]
			for r := range rounds {
				id := fmt.Sprintf("t-%d-%d", w, r)
				err := s.RevokeToken(ctx, &oauth.Token{ID: id, Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
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
		t.Fatalf("the reader read %d events of %d", len(read), writers*rounds)
	}
	if readErr != nil {
		t.Fatal(readErr)
	}
	var want []string
	for w := range writers {
		for r := range rounds {
			want = append(want, fmt.Sprintf("t-%d-%d", w, r))
		}
	}
	got := slices.Clone(read)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("read %d events (%d distinct expected); got %v", len(read), len(want), got)
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
