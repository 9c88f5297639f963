package storetest

import (
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// testRotateCutByNotBefore: a refresh token issued before its client's or
// its user's TokensNotBefore is not rotated (ErrTokenInactive, nothing
// written), whatever the caller believed: the check is in the store's
// transaction, so a refresh racing a revoke-all cannot outlive it. Tokens
// issued after the instant, and tokens of others, rotate as usual.
func testRotateCutByNotBefore(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	cl := fullClient(newID("c"), now)
	cl.TokensNotBefore = time.Time{}
	noErr(t, s.CreateClient(ctx, cl), "CreateClient")
	u := fullUser(newID("u"), now)
	u.TokensNotBefore = time.Time{}
	noErr(t, s.CreateUser(ctx, u), "CreateUser")

	refresh := func(subject string, issued time.Time) *oauth.Token {
		r := tok(oauth.KindRefresh, newID("fam"), issued, time.Hour)
		r.ClientID, r.Subject = cl.ID, subject
		noErr(t, s.CreateTokens(ctx, r), "CreateTokens")
		return r
	}
	rotate := func(old *oauth.Token, at time.Time) (error, *oauth.Token) {
		repl := tok(oauth.KindRefresh, old.FamilyID, at, time.Hour)
		repl.ClientID, repl.Subject = old.ClientID, old.Subject
		return s.RotateRefreshToken(ctx, old.ID, at, 0, repl), repl
	}

	clientOld := refresh(cl.ID, now)
	userOld := refresh(u.Username, now)
	other := tok(oauth.KindRefresh, newID("fam"), now, time.Hour) // another client: untouched
	noErr(t, s.CreateTokens(ctx, other), "CreateTokens(other)")

	cut := now.Add(time.Second)
	noErr(t, s.UpdateClient(ctx, cl.ID, func(c *oauth.Client) error { c.TokensNotBefore = cut; return nil }), "UpdateClient")
	clientNew := refresh(cl.ID, cut.Add(time.Microsecond))

	err, repl := rotate(clientOld, cut.Add(time.Minute))
	isErr(t, err, oauth.ErrTokenInactive, "rotating a token issued before its client's TokensNotBefore")
	requireNoToken(t, s, repl.ID, "replacement of a cut token")
	if got := getToken(t, s, clientOld.ID); !got.RotatedAt.IsZero() {
		t.Error("a cut token was marked rotated")
	}
	err, _ = rotate(clientNew, cut.Add(time.Minute))
	noErr(t, err, "rotating a token issued after the client's TokensNotBefore")
	err, _ = rotate(other, cut.Add(time.Minute))
	noErr(t, err, "rotating another client's token")

	// The user's instant cuts the user's tokens of this client too.
	noErr(t, s.UpdateClient(ctx, cl.ID, func(c *oauth.Client) error { c.TokensNotBefore = time.Time{}; return nil }), "UpdateClient")
	userNew := refresh(u.Username, cut.Add(time.Microsecond))
	noErr(t, s.UpdateUser(ctx, u.Username, func(x *oauth.User) error { x.TokensNotBefore = cut; return nil }), "UpdateUser")
	err, _ = rotate(userOld, cut.Add(time.Minute))
	isErr(t, err, oauth.ErrTokenInactive, "rotating a token issued before its user's TokensNotBefore")
	err, _ = rotate(userNew, cut.Add(time.Minute))
	noErr(t, err, "rotating a user's token issued after the instant")
}
