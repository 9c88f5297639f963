package storetest

import (
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// fullToken returns a token with every field set.
func fullToken(now time.Time) *oauth.Token {
	return &oauth.Token{
		ID:        newID("full"),
		Kind:      oauth.KindRefresh,
		Format:    oauth.FormatOpaque,
		ClientID:  "merchant-1",
		Subject:   "bob",
		Scopes:    []string{"payments:write", "payments:read", "openid"}, // order is kept
		FamilyID:  newID("fam"),
		IssuedAt:  now,
		ExpiresAt: now.Add(30*24*time.Hour + 999*time.Microsecond),
		RevokedAt: now.Add(time.Second),
		RotatedAt: now.Add(2 * time.Second),
	}
}

// tok returns an active token of kind in family (may be "") issued at now,
// expiring ttl later.
func tok(kind oauth.TokenKind, family string, now time.Time, ttl time.Duration) *oauth.Token {
	return &oauth.Token{
		ID:        newID(string(kind)),
		Kind:      kind,
		Format:    oauth.FormatOpaque,
		ClientID:  "merchant-1",
		Subject:   "merchant-1",
		Scopes:    []string{"payments:read"},
		FamilyID:  family,
		IssuedAt:  now,
		ExpiresAt: now.Add(ttl),
	}
}

func testCreateTokens(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	full := fullToken(now)
	requireAllSet(t, full)
	want := *full
	want.Scopes = append([]string(nil), full.Scopes...)
	noErr(t, s.CreateTokens(ctx, full), "CreateTokens(full)")
	full.Scopes[0] = "changed after create"
	checkEqual(t, "GetToken(full)", &want, getToken(t, s, want.ID))

	// Zero values round-trip as zero.
	minimal := &oauth.Token{ID: newID("min"), Kind: oauth.KindAccess, ExpiresAt: now.Add(time.Minute)}
	noErr(t, s.CreateTokens(ctx, minimal), "CreateTokens(minimal)")
	checkEqual(t, "GetToken(minimal)", minimal, getToken(t, s, minimal.ID))

	// Several tokens in one call, as an issuance with a refresh token does.
	fam := newID("fam")
	a, r := tok(oauth.KindAccess, fam, now, time.Minute), tok(oauth.KindRefresh, fam, now, time.Hour)
	r.Format = ""
	noErr(t, s.CreateTokens(ctx, a, r), "CreateTokens(access, refresh)")
	checkEqual(t, "GetToken(access)", a, getToken(t, s, a.ID))
	checkEqual(t, "GetToken(refresh)", r, getToken(t, s, r.ID))

	noErr(t, s.CreateTokens(ctx), "CreateTokens()")

	_, err := s.GetToken(ctx, "no-such-token")
	isErr(t, err, oauth.ErrNotFound, "GetToken(unknown)")
}

func testCreateTokensAllOrNone(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	existing := tok(oauth.KindAccess, "", now, time.Hour)
	noErr(t, s.CreateTokens(ctx, existing), "CreateTokens(existing)")

	// A taken ID fails the whole call: the new tokens before and after it
	// are not stored, and the existing record is untouched.
	before, after := tok(oauth.KindAccess, "", now, time.Hour), tok(oauth.KindRefresh, "", now, time.Hour)
	clash := tok(oauth.KindRefresh, "other-family", now, 2*time.Hour)
	clash.ID = existing.ID
	isErr(t, s.CreateTokens(ctx, before, clash, after), oauth.ErrAlreadyExists, "CreateTokens with a taken ID")
	requireNoToken(t, s, before.ID, "after a failed CreateTokens")
	requireNoToken(t, s, after.ID, "after a failed CreateTokens")
	checkEqual(t, "existing token after a clashing create", existing, getToken(t, s, existing.ID))

	// The same ID twice within one call.
	dup := tok(oauth.KindAccess, "", now, time.Hour)
	dup2 := *dup
	isErr(t, s.CreateTokens(ctx, dup, &dup2), oauth.ErrAlreadyExists, "CreateTokens with one ID twice")
	requireNoToken(t, s, dup.ID, "after CreateTokens with one ID twice")

	// The failed calls left the store usable and the IDs free.
	noErr(t, s.CreateTokens(ctx, before, after), "CreateTokens after failures")
	getToken(t, s, before.ID)
	getToken(t, s, after.ID)
}

func testRotate(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	fam := newID("fam")
	r1 := tok(oauth.KindRefresh, fam, now.Add(-time.Hour), 24*time.Hour)
	a1 := tok(oauth.KindAccess, fam, now.Add(-time.Hour), time.Hour+time.Minute)
	noErr(t, s.CreateTokens(ctx, r1, a1), "CreateTokens")

	r2 := tok(oauth.KindRefresh, fam, now, 24*time.Hour)
	a2 := tok(oauth.KindAccess, fam, now, time.Hour)
	noErr(t, s.RotateRefreshToken(ctx, r1.ID, now, 0, r2, a2), "RotateRefreshToken")

	old := getToken(t, s, r1.ID)
	if !sameTime(old.RotatedAt, now) {
		t.Fatalf("rotated token RotatedAt = %v, want %v", old.RotatedAt, now)
	}
	if !old.RevokedAt.IsZero() {
		t.Fatalf("rotation revoked the old token (RevokedAt = %v); it should only mark it rotated", old.RevokedAt)
	}
	want := *r1
	want.RotatedAt = now
	checkEqual(t, "rotated token", &want, old)
	checkEqual(t, "replacement refresh token", r2, getToken(t, s, r2.ID))
	checkEqual(t, "replacement access token", a2, getToken(t, s, a2.ID))
	requireNotRevoked(t, s, a1.ID)

	// The replacement rotates in turn; rotating needs no replacements.
	noErr(t, s.RotateRefreshToken(ctx, r2.ID, now.Add(time.Minute), 0), "RotateRefreshToken(r2) without replacements")

	lost := tok(oauth.KindRefresh, fam, now, time.Hour)
	isErr(t, s.RotateRefreshToken(ctx, "no-such-token", now, 0, lost), oauth.ErrNotFound, "RotateRefreshToken(unknown)")
	requireNoToken(t, s, lost.ID, "replacement of an unknown token")
}

func testRotateInactive(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()

	expired := tok(oauth.KindRefresh, newID("fam"), now.Add(-2*time.Hour), time.Hour)
	atExpiry := tok(oauth.KindRefresh, newID("fam"), now.Add(-time.Hour), time.Hour) // ExpiresAt == now: inactive
	revoked := tok(oauth.KindRefresh, newID("fam"), now.Add(-time.Hour), 24*time.Hour)
	noErr(t, s.CreateTokens(ctx, expired, atExpiry, revoked), "CreateTokens")
	noErr(t, s.RevokeToken(ctx, revoked, now.Add(-time.Minute)), "RevokeToken")

	for _, c := range []struct {
		name string
		tok  *oauth.Token
	}{{"expired", expired}, {"expiring now", atExpiry}, {"revoked", revoked}} {
		repl := tok(oauth.KindRefresh, c.tok.FamilyID, now, time.Hour)
		before := getToken(t, s, c.tok.ID)
		isErr(t, s.RotateRefreshToken(ctx, c.tok.ID, now, 0, repl), oauth.ErrTokenInactive, "RotateRefreshToken(%s)", c.name)
		requireNoToken(t, s, repl.ID, "replacement of an "+c.name+" token")
		checkEqual(t, c.name+" token after a refused rotation", before, getToken(t, s, c.tok.ID))
	}
}

func testRotateReuse(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	fam := newID("fam")
	r1 := tok(oauth.KindRefresh, fam, now.Add(-time.Hour), 24*time.Hour)
	a1 := tok(oauth.KindAccess, fam, now.Add(-time.Hour), 2*time.Hour)
	other := tok(oauth.KindRefresh, newID("fam"), now, time.Hour)
	loner := tok(oauth.KindAccess, "", now, time.Hour)
	noErr(t, s.CreateTokens(ctx, r1, a1, other, loner), "CreateTokens")

	r2 := tok(oauth.KindRefresh, fam, now, 24*time.Hour)
	a2 := tok(oauth.KindAccess, fam, now, time.Hour)
	noErr(t, s.RotateRefreshToken(ctx, r1.ID, now, 0, r2, a2), "first RotateRefreshToken")

	later := now.Add(time.Minute)
	r3 := tok(oauth.KindRefresh, fam, later, 24*time.Hour)
	isErr(t, s.RotateRefreshToken(ctx, r1.ID, later, 0, r3), oauth.ErrRefreshReused, "second RotateRefreshToken of the same token")
	requireNoToken(t, s, r3.ID, "replacement offered with a reused token")

	// The whole family is revoked, durably, at the time of the reuse.
	for _, id := range []string{r1.ID, a1.ID, r2.ID, a2.ID} {
		requireRevoked(t, s, id, later)
	}
	requireNotRevoked(t, s, other.ID)
	requireNotRevoked(t, s, loner.ID)

	// The replacement is now revoked: it is inactive, not reused.
	isErr(t, s.RotateRefreshToken(ctx, r2.ID, later.Add(time.Second), 0), oauth.ErrTokenInactive, "RotateRefreshToken(replacement) after the family was revoked")
	// Reuse stays reuse.
	isErr(t, s.RotateRefreshToken(ctx, r1.ID, later.Add(time.Second), 0), oauth.ErrRefreshReused, "third RotateRefreshToken of the same token")
}

func testRotateReuseWithoutFamily(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	r1 := tok(oauth.KindRefresh, "", now, time.Hour)
	bystander := tok(oauth.KindAccess, "", now, time.Hour)
	noErr(t, s.CreateTokens(ctx, r1, bystander), "CreateTokens")
	noErr(t, s.RotateRefreshToken(ctx, r1.ID, now, 0), "RotateRefreshToken")
	isErr(t, s.RotateRefreshToken(ctx, r1.ID, now.Add(time.Second), 0), oauth.ErrRefreshReused, "reuse")
	requireRevoked(t, s, r1.ID, now.Add(time.Second))
	requireNotRevoked(t, s, bystander.ID) // "no family" is not a family
}

func testRotateReplacementConflict(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	fam := newID("fam")
	r1 := tok(oauth.KindRefresh, fam, now, time.Hour)
	taken := tok(oauth.KindAccess, "", now, time.Hour)
	noErr(t, s.CreateTokens(ctx, r1, taken), "CreateTokens")

	fresh := tok(oauth.KindAccess, fam, now, time.Hour)
	clash := tok(oauth.KindRefresh, fam, now, time.Hour)
	clash.ID = taken.ID
	if err := s.RotateRefreshToken(ctx, r1.ID, now, 0, fresh, clash); err == nil {
		t.Fatal("RotateRefreshToken with a replacement whose ID is taken succeeded")
	}
	// Atomic: the old token is not marked rotated and nothing was stored.
	checkEqual(t, "old token after a failed rotation", r1, getToken(t, s, r1.ID))
	checkEqual(t, "token whose ID was offered again", taken, getToken(t, s, taken.ID))
	requireNoToken(t, s, fresh.ID, "after a failed rotation")
	noErr(t, s.RotateRefreshToken(ctx, r1.ID, now, 0, fresh), "RotateRefreshToken after a failed attempt")
}

func testRevokeToken(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	stored := tok(oauth.KindAccess, newID("fam"), now, time.Hour)
	sibling := tok(oauth.KindRefresh, stored.FamilyID, now, time.Hour)
	noErr(t, s.CreateTokens(ctx, stored, sibling), "CreateTokens")

	noErr(t, s.RevokeToken(ctx, stored, now), "RevokeToken(stored)")
	want := *stored
	want.RevokedAt = now
	checkEqual(t, "revoked token", &want, getToken(t, s, stored.ID))
	requireNotRevoked(t, s, sibling.ID) // one token, not its family

	noErr(t, s.RevokeToken(ctx, stored, now.Add(time.Minute)), "RevokeToken(stored) again")
	requireRevoked(t, s, stored.ID, time.Time{})

	// A stateless JWT the store has never seen is recorded as revoked.
	jwt := fullToken(now)
	jwt.Format, jwt.Kind, jwt.RevokedAt, jwt.RotatedAt = oauth.FormatJWT, oauth.KindAccess, time.Time{}, time.Time{}
	noErr(t, s.RevokeToken(ctx, jwt, now), "RevokeToken(unknown JWT)")
	want = *jwt
	want.RevokedAt = now
	checkEqual(t, "revoked JWT record", &want, getToken(t, s, jwt.ID))
	noErr(t, s.RevokeToken(ctx, jwt, now.Add(time.Minute)), "RevokeToken(unknown JWT) again")
	requireRevoked(t, s, jwt.ID, time.Time{})
}

func testRevokeFamily(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	fam, other := newID("fam"), newID("fam")
	inFam := []*oauth.Token{
		tok(oauth.KindRefresh, fam, now, time.Hour),
		tok(oauth.KindAccess, fam, now, time.Hour),
		tok(oauth.KindAccess, fam, now.Add(-2*time.Hour), time.Hour), // expired: revoked all the same
	}
	outside := []*oauth.Token{tok(oauth.KindRefresh, other, now, time.Hour), tok(oauth.KindAccess, "", now, time.Hour)}
	noErr(t, s.CreateTokens(ctx, append(inFam, outside...)...), "CreateTokens")

	noErr(t, s.RevokeFamily(ctx, fam, now), "RevokeFamily")
	for _, tk := range inFam {
		requireRevoked(t, s, tk.ID, now)
	}
	for _, tk := range outside {
		requireNotRevoked(t, s, tk.ID)
	}
	noErr(t, s.RevokeFamily(ctx, fam, now.Add(time.Minute)), "RevokeFamily again")
	for _, tk := range inFam {
		requireRevoked(t, s, tk.ID, time.Time{})
	}
	noErr(t, s.RevokeFamily(ctx, "no-such-family", now), "RevokeFamily(unknown)")
	noErr(t, s.RevokeFamily(ctx, "", now), `RevokeFamily("")`)
	for _, tk := range outside {
		requireNotRevoked(t, s, tk.ID)
	}
}

func testUseNonce(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now() // UseNonce judges expiry by the store's clock
	noErr(t, s.UseNonce(ctx, "sig-1", now.Add(time.Minute)), "UseNonce(sig-1)")
	isErr(t, s.UseNonce(ctx, "sig-1", now.Add(time.Minute)), oauth.ErrAlreadyExists, "UseNonce(sig-1) again")
	isErr(t, s.UseNonce(ctx, "sig-1", now.Add(time.Hour)), oauth.ErrAlreadyExists, "UseNonce(sig-1) with a later expiry")
	noErr(t, s.UseNonce(ctx, "sig-2", now.Add(time.Minute)), "UseNonce(sig-2)") // keys are independent
	noErr(t, s.UseNonce(ctx, "SIG-1", now.Add(time.Minute)), "UseNonce(SIG-1)") // and case-sensitive

	// An expired record does not block the key.
	noErr(t, s.UseNonce(ctx, "old", now.Add(-time.Second)), "UseNonce(old) already expired")
	noErr(t, s.UseNonce(ctx, "old", now.Add(time.Minute)), "UseNonce(old) after it expired")
	isErr(t, s.UseNonce(ctx, "old", now.Add(time.Minute)), oauth.ErrAlreadyExists, "UseNonce(old) while recorded again")
}

// testNonceExpiry: a nonce expires when the store's clock reaches its
// expiry — the injected clock, not the wall clock.
func testNonceExpiry(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	t0 := clk.Now()
	exp := t0.Add(time.Minute)
	noErr(t, s.UseNonce(ctx, "sig", exp), "UseNonce(sig)")
	clk.Set(exp.Add(-time.Millisecond))
	isErr(t, s.UseNonce(ctx, "sig", exp.Add(time.Minute)), oauth.ErrAlreadyExists, "UseNonce(sig) just before it expires")
	clk.Set(exp)
	noErr(t, s.UseNonce(ctx, "sig", exp.Add(time.Minute)), "UseNonce(sig) once the store's clock reaches its expiry")
	isErr(t, s.UseNonce(ctx, "sig", exp.Add(time.Minute)), oauth.ErrAlreadyExists, "UseNonce(sig) recorded again")

	// CreateTokensOnce judges by the same clock.
	n := oauth.Nonce{Key: newID("once"), ExpiresAt: clk.Now().Add(time.Minute)}
	first, replay := tok(oauth.KindAccess, "", clk.Now(), time.Hour), tok(oauth.KindAccess, "", clk.Now(), time.Hour)
	noErr(t, s.CreateTokensOnce(ctx, n, first), "CreateTokensOnce")
	isErr(t, s.CreateTokensOnce(ctx, n, replay), oauth.ErrAlreadyExists, "CreateTokensOnce replayed")
	clk.Set(n.ExpiresAt)
	noErr(t, s.CreateTokensOnce(ctx, oauth.Nonce{Key: n.Key, ExpiresAt: n.ExpiresAt.Add(time.Minute)}, replay),
		"CreateTokensOnce once the store's clock reaches the nonce's expiry")
	getToken(t, s, replay.ID)

	// A store whose clock lags the wall clock still holds a nonce the
	// wall clock would call expired.
	wall := time.Now()
	clk.Set(wall.Add(-24 * time.Hour))
	noErr(t, s.UseNonce(ctx, "lagging", wall.Add(-time.Hour)), "UseNonce(lagging)")
	isErr(t, s.UseNonce(ctx, "lagging", wall.Add(-time.Hour)), oauth.ErrAlreadyExists,
		"UseNonce(lagging) again: unexpired by the store's clock, expired by the wall clock")
}
