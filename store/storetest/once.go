package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func testCreateTokensOnce(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	n := oauth.Nonce{Key: newID("once"), ExpiresAt: now.Add(time.Hour)}
	first := tok(oauth.KindAccess, "", now, time.Hour)
	noErr(t, s.CreateTokensOnce(ctx, n, first), "CreateTokensOnce")
	if _, err := s.GetToken(ctx, first.ID); err != nil {
		t.Fatalf("token of a fresh nonce not stored: %v", err)
	}

	// The same nonce again: refused, and its tokens are not stored.
	second := tok(oauth.KindAccess, "", now, time.Hour)
	if err := s.CreateTokensOnce(ctx, n, second); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("reused nonce: %v, want ErrAlreadyExists", err)
	}
	if _, err := s.GetToken(ctx, second.ID); !errors.Is(err, oauth.ErrNotFound) {
		t.Fatalf("a replay stored its token: %v", err)
	}
	// It is the same nonce UseNonce knows.
	if err := s.UseNonce(ctx, n.Key, now.Add(time.Hour)); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("UseNonce after CreateTokensOnce: %v", err)
	}

	// A taken token ID spends no nonce.
	fresh := oauth.Nonce{Key: newID("once"), ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateTokensOnce(ctx, fresh, first); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("taken token ID: %v", err)
	}
	noErr(t, s.CreateTokensOnce(ctx, fresh), "CreateTokensOnce after a failed attempt (the nonce must be unspent)")

	// No tokens (a stateless JWT): the nonce alone is used up.
	bare := oauth.Nonce{Key: newID("once"), ExpiresAt: now.Add(time.Hour)}
	noErr(t, s.CreateTokensOnce(ctx, bare), "CreateTokensOnce without tokens")
	if err := s.CreateTokensOnce(ctx, bare); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("bare nonce reused: %v", err)
	}
}

// testCreateTokensOnceRace: of many concurrent issuances on one nonce,
// exactly one succeeds, and only its token is stored.
func testCreateTokensOnceRace(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	n := oauth.Nonce{Key: newID("race"), ExpiresAt: now.Add(time.Hour)}
	const racers = 20
	toks := make([]*oauth.Token, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		toks[i] = tok(oauth.KindAccess, "", now, time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.CreateTokensOnce(ctx, n, toks[i])
		}()
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		_, getErr := s.GetToken(ctx, toks[i].ID)
		switch {
		case err == nil:
			wins++
			if getErr != nil {
				t.Errorf("winner's token missing: %v", getErr)
			}
		case errors.Is(err, oauth.ErrAlreadyExists):
			if !errors.Is(getErr, oauth.ErrNotFound) {
				t.Errorf("loser's token stored")
			}
		default:
			t.Errorf("racer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d racers won one nonce, want 1", wins)
	}
}
