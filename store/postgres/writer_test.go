package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
)

// TestGroupCommit queues many different writes behind a transaction that
// waits for a row lock, so that they run as one batch, and checks each
// gets its own result: failures that write nothing (nonce reuse, inactive
// token) and a reuse that must commit its revocation do not disturb the
// batch; an ID conflict in a deferred insert fails the batch, which is
// then retried op by op, and only the conflicting call fails.
func TestGroupCommit(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	s := openStore(t, dsn, Options{})
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	now := time.Now()
	tok := func(id string, kind oauth.TokenKind, fam string, ttl time.Duration) *oauth.Token {
		return &oauth.Token{ID: id, Kind: kind, FamilyID: fam, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	}

	// block makes the writer wait for an outside transaction's row lock
	// on a refresh token it is rotating; unblock lets it go on.
	block := func(id string) (unblock func() error) {
		t.Helper()
		if err := s.CreateTokens(ctx, tok(id, oauth.KindRefresh, "", time.Hour)); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE`, id); err != nil {
			t.Fatal(err)
		}
		rotated := make(chan error, 1)
		go func() {
			rotated <- s.RotateRefreshToken(ctx, id, now, 0, tok(id+"-next", oauth.KindRefresh, "", time.Hour))
		}()
		time.Sleep(100 * time.Millisecond) // the writer is now waiting for the lock
		return func() error {
			tx.Commit(ctx)
			conn.Close(ctx)
			return <-rotated
		}
	}
	// queue runs calls concurrently and returns a func that waits for
	// their errors.
	queue := func(calls []func() error) (wait func() []error) {
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Go(func() { errs[i] = c() })
		}
		time.Sleep(300 * time.Millisecond) // all are queued behind the blocked batch
		return func() []error { wg.Wait(); return errs }
	}

	// Setup for phase 1: an inactive token, a rotated one (its reuse), a
	// family to revoke.
	fam := "fam-1"
	setup := []*oauth.Token{
		tok("expired", oauth.KindRefresh, "", -time.Minute),
		tok("used", oauth.KindRefresh, fam, time.Hour),
		tok("fam-access", oauth.KindAccess, fam, time.Hour),
		tok("other-fam", oauth.KindAccess, "fam-2", time.Hour),
		tok("to-revoke", oauth.KindAccess, "", time.Hour),
	}
	if err := s.CreateTokens(ctx, setup...); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRefreshToken(ctx, "used", now, 0); err != nil {
		t.Fatal(err)
	}

	before := s.Stats()
	unblock := block("blocker-1")
	const fresh = 40
	var calls []func() error
	for i := range fresh {
		calls = append(calls, func() error {
			return s.CreateTokens(ctx, tok(fmt.Sprintf("a%d", i), oauth.KindAccess, "", time.Hour),
				tok(fmt.Sprintf("r%d", i), oauth.KindRefresh, fmt.Sprintf("f%d", i), time.Hour))
		})
	}
	calls = append(calls,
		func() error { return s.UseNonce(ctx, "n", now.Add(time.Minute)) },
		func() error { return s.UseNonce(ctx, "n", now.Add(time.Minute)) },
		func() error {
			return s.RotateRefreshToken(ctx, "expired", now, 0, tok("x1", oauth.KindRefresh, "", time.Hour))
		},
		func() error {
			return s.RotateRefreshToken(ctx, "used", now, 0, tok("x2", oauth.KindRefresh, fam, time.Hour))
		},
		func() error { return s.RevokeToken(ctx, tok("to-revoke", oauth.KindAccess, "", time.Hour), now) },
		func() error { return s.RevokeFamily(ctx, "fam-2", now) },
	)
	wait := queue(calls)
	if err := unblock(); err != nil {
		t.Fatalf("blocked rotation: %v", err)
	}
	errs := wait()
	for i := range fresh {
		if errs[i] != nil {
			t.Fatalf("CreateTokens #%d: %v", i, errs[i])
		}
	}
	nonceErrs := errs[fresh : fresh+2]
	if (nonceErrs[0] == nil) == (nonceErrs[1] == nil) ||
		!errors.Is(errors.Join(nonceErrs...), oauth.ErrAlreadyExists) {
		t.Fatalf("UseNonce twice in one batch: %v, want one nil and one ErrAlreadyExists", nonceErrs)
	}
	if err := errs[fresh+2]; !errors.Is(err, oauth.ErrTokenInactive) {
		t.Fatalf("rotating an expired token: %v, want ErrTokenInactive", err)
	}
	if err := errs[fresh+3]; !errors.Is(err, oauth.ErrRefreshReused) {
		t.Fatalf("rotating a used token: %v, want ErrRefreshReused", err)
	}
	for _, e := range errs[fresh+4:] {
		if e != nil {
			t.Fatalf("revocation: %v", e)
		}
	}
	after := s.Stats()
	if after.Retries != before.Retries {
		t.Fatalf("a batch without conflicts was retried (%+v -> %+v)", before, after)
	}
	t.Logf("phase 1: %d ops in %d transactions", after.Ops-before.Ops, after.Batches-before.Batches)
	if after.Batches-before.Batches > 4 {
		t.Fatalf("%d calls took %d transactions; they should have been batched", len(calls), after.Batches-before.Batches)
	}
	for i := range fresh {
		get(t, s, fmt.Sprintf("a%d", i))
		get(t, s, fmt.Sprintf("r%d", i))
	}
	for _, id := range []string{"used", "fam-access", "to-revoke", "other-fam"} {
		if get(t, s, id).RevokedAt.IsZero() {
			t.Fatalf("%s not revoked", id)
		}
	}
	for _, id := range []string{"x1", "x2"} {
		if _, err := s.GetToken(ctx, id); !errors.Is(err, oauth.ErrNotFound) {
			t.Fatalf("replacement %s of a refused rotation: %v, want ErrNotFound", id, err)
		}
	}

	// Phase 2: one insert conflicts.
	before = s.Stats()
	unblock = block("blocker-2")
	calls = calls[:0]
	for i := range fresh {
		calls = append(calls, func() error { return s.CreateTokens(ctx, tok(fmt.Sprintf("b%d", i), oauth.KindAccess, "", time.Hour)) })
	}
	calls = append(calls, func() error {
		return s.CreateTokens(ctx, tok("fresh-1", oauth.KindAccess, "", time.Hour), tok("a7", oauth.KindAccess, "", time.Hour))
	})
	wait = queue(calls)
	if err := unblock(); err != nil {
		t.Fatalf("blocked rotation: %v", err)
	}
	errs = wait()
	for i := range fresh {
		if errs[i] != nil {
			t.Fatalf("CreateTokens #%d beside a conflicting one: %v", i, errs[i])
		}
		get(t, s, fmt.Sprintf("b%d", i))
	}
	if err := errs[fresh]; !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("CreateTokens with a taken ID: %v, want ErrAlreadyExists", err)
	}
	if _, err := s.GetToken(ctx, "fresh-1"); !errors.Is(err, oauth.ErrNotFound) {
		t.Fatalf("token of a failed CreateTokens: %v, want ErrNotFound", err)
	}
	if after := s.Stats(); after.Retries == before.Retries {
		t.Fatalf("the conflicting batch was not retried op by op (%+v -> %+v)", before, after)
	}
}

func get(t *testing.T, s *Store, id string) *oauth.Token {
	t.Helper()
	tk, err := s.GetToken(t.Context(), id)
	if err != nil {
		t.Fatalf("GetToken(%s): %v", id, err)
	}
	return tk
}
