package storetest

import (
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func testCounts(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	got, err := s.Counts(ctx)
	noErr(t, err, "Counts")
	if got != (oauth.StoreCounts{}) {
		t.Fatalf("empty store counts %+v", got)
	}
	now := clk.Now()
	noErr(t, s.CreateTokens(ctx,
		tok(oauth.KindAccess, "", now.Add(-2*time.Hour), time.Hour),
		tok(oauth.KindAccess, "", now, time.Hour),
		tok(oauth.KindRefresh, newID("fam"), now, time.Hour)), "CreateTokens")
	noErr(t, s.UseNonce(ctx, "counted", now.Add(time.Hour)), "UseNonce")
	got, err = s.Counts(ctx)
	noErr(t, err, "Counts")
	if got != (oauth.StoreCounts{Tokens: 3, Nonces: 1}) {
		t.Fatalf("counts %+v, want 3 tokens and 1 nonce (expired rows count too)", got)
	}
	if _, err := s.DeleteExpired(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Counts(ctx)
	if got.Tokens != 2 {
		t.Fatalf("after DeleteExpired: %+v, want 2 tokens", got)
	}
}
