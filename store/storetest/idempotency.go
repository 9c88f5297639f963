package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func pendingRecord(key, claim string, fingerprint string, at time.Time) *oauth.IdempotencyRecord {
	return &oauth.IdempotencyRecord{Key: key, Fingerprint: []byte(fingerprint), Claim: claim, CreatedAt: at, ExpiresAt: at.Add(time.Minute)}
}

// testIdempotency: a claim stores a pending record once; a second claim
// of the key gets the record instead; only the claim holding a pending
// record completes or releases it; a completed record comes back with its
// status and response until it expires, and an expired one is replaced.
func testIdempotency(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	got, err := s.ClaimIdempotency(ctx, pendingRecord("k1", "claim-a", "fp-1", t0))
	noErr(t, err, "ClaimIdempotency(k1)")
	if got != nil {
		t.Fatalf("first ClaimIdempotency(k1) = %+v, want nil (stored)", got)
	}
	got, err = s.ClaimIdempotency(ctx, pendingRecord("k1", "claim-b", "fp-2", t0.Add(time.Second)))
	noErr(t, err, "ClaimIdempotency(k1) again")
	if got == nil || got.Key != "k1" || got.Claim != "claim-a" || got.Status != 0 || string(got.Fingerprint) != "fp-1" ||
		len(got.Response) != 0 || !sameTime(got.CreatedAt, t0) || !sameTime(got.ExpiresAt, t0.Add(time.Minute)) {
		t.Fatalf("second ClaimIdempotency(k1) = %+v, want the pending record of claim-a", got)
	}
	// Another key is another record.
	got, err = s.ClaimIdempotency(ctx, pendingRecord("k2", "claim-c", "fp-1", t0))
	noErr(t, err, "ClaimIdempotency(k2)")
	if got != nil {
		t.Fatalf("ClaimIdempotency(k2) = %+v, want nil", got)
	}

	isErr(t, s.CompleteIdempotency(ctx, "k1", "claim-b", 201, []byte("x"), t0.Add(time.Hour)), oauth.ErrNotFound,
		"CompleteIdempotency with another claim")
	isErr(t, s.CompleteIdempotency(ctx, "nope", "claim-a", 201, []byte("x"), t0.Add(time.Hour)), oauth.ErrNotFound,
		"CompleteIdempotency of an unknown key")
	resp := []byte("{\"client_secret\":\"s\"}\x00\xff")
	noErr(t, s.CompleteIdempotency(ctx, "k1", "claim-a", 201, resp, t0.Add(24*time.Hour)), "CompleteIdempotency(k1)")
	isErr(t, s.CompleteIdempotency(ctx, "k1", "claim-a", 500, []byte("y"), t0.Add(time.Hour)), oauth.ErrNotFound,
		"CompleteIdempotency of a completed record")
	// A release names a pending record: a completed one stays.
	noErr(t, s.ReleaseIdempotency(ctx, "k1", "claim-a"), "ReleaseIdempotency of a completed record")
	got, err = s.ClaimIdempotency(ctx, pendingRecord("k1", "claim-d", "fp-1", t0.Add(time.Hour)))
	noErr(t, err, "ClaimIdempotency(k1) after completion")
	if got == nil || got.Status != 201 || !bytes.Equal(got.Response, resp) || got.Claim != "claim-a" ||
		string(got.Fingerprint) != "fp-1" || !sameTime(got.ExpiresAt, t0.Add(24*time.Hour)) {
		t.Fatalf("ClaimIdempotency(k1) after completion = %+v, want status 201 and the response", got)
	}

	// Release: only by its claim; then the key is free.
	noErr(t, s.ReleaseIdempotency(ctx, "k2", "claim-x"), "ReleaseIdempotency with another claim")
	if got, err = s.ClaimIdempotency(ctx, pendingRecord("k2", "claim-e", "fp-1", t0)); err != nil || got == nil || got.Claim != "claim-c" {
		t.Fatalf("ClaimIdempotency(k2) after a release by another claim = %+v, %v: want claim-c's record", got, err)
	}
	noErr(t, s.ReleaseIdempotency(ctx, "k2", "claim-c"), "ReleaseIdempotency(k2)")
	noErr(t, s.ReleaseIdempotency(ctx, "k2", "claim-c"), "ReleaseIdempotency(k2) again")
	if got, err = s.ClaimIdempotency(ctx, pendingRecord("k2", "claim-f", "fp-3", t0)); err != nil || got != nil {
		t.Fatalf("ClaimIdempotency(k2) after its release = %+v, %v: want nil", got, err)
	}

	// Expiry is judged by the claim's CreatedAt: at ExpiresAt, the record
	// is replaced, pending (k2) or completed (k1).
	if got, err = s.ClaimIdempotency(ctx, pendingRecord("k2", "claim-g", "fp-4", t0.Add(time.Minute-time.Millisecond))); err != nil || got == nil {
		t.Fatalf("ClaimIdempotency(k2) just before expiry = %+v, %v: want the record", got, err)
	}
	if got, err = s.ClaimIdempotency(ctx, pendingRecord("k2", "claim-g", "fp-4", t0.Add(time.Minute))); err != nil || got != nil {
		t.Fatalf("ClaimIdempotency(k2) at expiry = %+v, %v: want nil (replaced)", got, err)
	}
	isErr(t, s.CompleteIdempotency(ctx, "k2", "claim-f", 200, nil, t0.Add(time.Hour)), oauth.ErrNotFound,
		"CompleteIdempotency by the claim that was replaced")
	if got, err = s.ClaimIdempotency(ctx, pendingRecord("k1", "claim-h", "fp-5", t0.Add(25*time.Hour))); err != nil || got != nil {
		t.Fatalf("ClaimIdempotency(k1) after its expiry = %+v, %v: want nil (replaced)", got, err)
	}
	got, err = s.ClaimIdempotency(ctx, pendingRecord("k1", "claim-i", "fp-6", t0.Add(25*time.Hour)))
	noErr(t, err, "ClaimIdempotency(k1) after replacement")
	if got == nil || got.Claim != "claim-h" || string(got.Fingerprint) != "fp-5" || got.Status != 0 || len(got.Response) != 0 {
		t.Fatalf("the replacement of k1 = %+v, want claim-h's pending record without the old response", got)
	}
}

// testIdempotencyConcurrent: of concurrent claims of one key exactly one
// stores its record, and every other gets that record.
func testIdempotencyConcurrent(t *testing.T, s oauth.Store, _ *clock) {
	ctx := ctxTimeout(t)
	t0 := baseTime()
	const n = 16
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   []string
		others = map[string]int{}
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claim := fmt.Sprintf("claim-%d", i)
			got, err := s.ClaimIdempotency(ctx, pendingRecord("race", claim, "fp", t0))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("ClaimIdempotency(%s): %v", claim, err)
			case got == nil:
				wins = append(wins, claim)
			default:
				others[got.Claim]++
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Fatalf("%d claims won: %v", len(wins), wins)
	}
	if others[wins[0]] != n-1 || len(others) != 1 {
		t.Fatalf("the losing claims saw %v, want the winner %s's record %d times", others, wins[0], n-1)
	}
}

// testIdempotencyExpired: DeleteExpired deletes records that expired,
// pending or completed, and keeps the others.
func testIdempotencyExpired(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	for _, k := range []string{"old-pending", "old-done", "live"} {
		got, err := s.ClaimIdempotency(ctx, pendingRecord(k, "c", "fp", t0))
		if err != nil || got != nil {
			t.Fatalf("ClaimIdempotency(%s) = %+v, %v", k, got, err)
		}
	}
	noErr(t, s.CompleteIdempotency(ctx, "old-done", "c", 200, []byte("r"), t0.Add(time.Minute)), "CompleteIdempotency(old-done)")
	noErr(t, s.CompleteIdempotency(ctx, "live", "c", 200, []byte("r"), t0.Add(time.Hour)), "CompleteIdempotency(live)")
	n, err := s.DeleteExpired(ctx, t0.Add(2*time.Minute), 100)
	noErr(t, err, "DeleteExpired")
	if n != 2 {
		t.Errorf("DeleteExpired = %d, want 2", n)
	}
	// A claim dated before the deleted records' expiry finds them gone.
	for k, want := range map[string]bool{"old-pending": false, "old-done": false, "live": true} {
		got, err := s.ClaimIdempotency(ctx, pendingRecord(k, "d", "fp", t0))
		noErr(t, err, "ClaimIdempotency(%s)", k)
		if (got != nil) != want {
			t.Errorf("ClaimIdempotency(%s) after DeleteExpired = %+v, want a record: %t", k, got, want)
		}
	}
}

// testIdempotencyRewrite: a completed record's response is a secret value
// RewriteSecrets rewrites in place, under IdempotencySecret(key); a
// pending record has none.
func testIdempotencyRewrite(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	for _, k := range []string{"done", "pending"} {
		if got, err := s.ClaimIdempotency(ctx, pendingRecord(k, "c", "fp", t0)); err != nil || got != nil {
			t.Fatalf("ClaimIdempotency(%s) = %+v, %v", k, got, err)
		}
	}
	noErr(t, s.CompleteIdempotency(ctx, "done", "c", 201, []byte("resp"), t0.Add(time.Hour)), "CompleteIdempotency")
	checkEqual(t, "secret values", map[string][]byte{oauth.IdempotencySecret("done"): []byte("resp")}, secretValues(t, s))
	_, err := s.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) { return append([]byte("new:"), v...), nil })
	noErr(t, err, "RewriteSecrets")
	got, err := s.ClaimIdempotency(ctx, pendingRecord("done", "d", "fp", t0))
	noErr(t, err, "ClaimIdempotency(done)")
	if got == nil || string(got.Response) != "new:resp" || got.Status != 201 {
		t.Fatalf("the record after RewriteSecrets = %+v, want the rewritten response", got)
	}
}
