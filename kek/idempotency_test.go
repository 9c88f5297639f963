package kek

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func TestIdempotencyResponseSealedAtRest(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	key := mustKey(t)
	st := WrapStore(inner, mustRing(t, key))
	now := time.Now()
	claim := func(k, c string) (*oauth.IdempotencyRecord, error) {
		return st.ClaimIdempotency(ctx, &oauth.IdempotencyRecord{Key: k, Fingerprint: []byte("fp"), Claim: c,
			Response: []byte("a pending record has no response"), CreatedAt: now, ExpiresAt: now.Add(time.Minute)})
	}
	for _, k := range []string{"k1", "k2"} {
		if got, err := claim(k, "c"); err != nil || got != nil {
			t.Fatalf("claim %s: %+v, %v", k, got, err)
		}
	}
	if raw := rawColumn(t, inner, `SELECT key, response FROM idempotency`); len(raw["k1"]) != 0 {
		t.Fatalf("a pending record stored a response: %q", raw["k1"])
	}
	resp := []byte(`{"client_secret":"the new secret, shown once"}`)
	if err := st.CompleteIdempotency(ctx, "k1", "c", 201, resp, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.CompleteIdempotency(ctx, "k2", "c", 201, resp, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw := rawColumn(t, inner, `SELECT key, response FROM idempotency`)
	if bytes.Contains(raw["k1"], []byte("shown once")) || !IsSealed(raw["k1"]) {
		t.Fatalf("the stored response is not sealed: %q", raw["k1"])
	}
	got, err := claim("k1", "d")
	if err != nil || got == nil || got.Status != 201 || !bytes.Equal(got.Response, resp) {
		t.Fatalf("claim after completion: %+v, %v", got, err)
	}

	// Rotated under a new KEK, it still opens with the new one only.
	newKey := mustKey(t)
	if rep, err := WrapStore(inner, mustRing(t, newKey, key)).Rotate(ctx, false); err != nil || rep.FromOld != 2 {
		t.Fatalf("Rotate: %+v, %v", rep, err)
	}
	st = WrapStore(inner, mustRing(t, newKey))
	if got, err := claim("k1", "d"); err != nil || got == nil || !bytes.Equal(got.Response, resp) {
		t.Fatalf("claim after the KEK rotation: %+v, %v", got, err)
	}

	// Moved to another key's row, it does not open; planted in clear, it
	// is refused, and never sealed by a rotation.
	execRaw(t, inner, `UPDATE idempotency SET response = (SELECT response FROM idempotency WHERE key = 'k1') WHERE key = 'k2'`)
	if _, err := claim("k2", "d"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("a response moved to another record: %v", err)
	}
	execRaw(t, inner, `UPDATE idempotency SET response = ? WHERE key = 'k2'`, resp)
	if _, err := claim("k2", "d"); !errors.Is(err, ErrNotSealed) || strings.Contains(err.Error(), "shown once") {
		t.Fatalf("a response planted in clear: %v", err)
	}
	if rep, err := st.Rotate(ctx, true); !errors.Is(err, ErrNotSealed) || len(rep.LeftClear) != 1 {
		t.Fatalf("Rotate --seal-clear with a planted response: %+v, %v", rep, err)
	}
	if raw := rawColumn(t, inner, `SELECT key, response FROM idempotency`); !bytes.Equal(raw["k2"], resp) {
		t.Fatal("Rotate sealed a planted response")
	}
}
