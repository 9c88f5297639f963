package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// grace is the reuse grace window of these tests.
const grace = 5 * time.Second

// rotatedFamily stores a refresh token r1 with an access token a1 in a new
// family, rotates r1 at now with grace into r2 and a2, and returns the
// four tokens.
func rotatedFamily(t *testing.T, s oauth.Store, now time.Time, ttl time.Duration) (r1, a1, r2, a2 *oauth.Token) {
	t.Helper()
	fam := newID("fam")
	r1 = tok(oauth.KindRefresh, fam, now.Add(-time.Hour), time.Hour+ttl)
	a1 = tok(oauth.KindAccess, fam, now.Add(-time.Hour), 2*time.Hour)
	noErr(t, s.CreateTokens(t.Context(), r1, a1), "CreateTokens")
	r2 = tok(oauth.KindRefresh, fam, now, 24*time.Hour)
	a2 = tok(oauth.KindAccess, fam, now, time.Hour)
	noErr(t, s.RotateRefreshToken(t.Context(), r1.ID, now, grace, r2, a2), "first RotateRefreshToken")
	return r1, a1, r2, a2
}

func requireActive(t *testing.T, s oauth.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		tk := getToken(t, s, id)
		if !tk.RevokedAt.IsZero() || !tk.RotatedAt.IsZero() {
			t.Fatalf("token %s: RevokedAt %v, RotatedAt %v; want it active (neither)", id, tk.RevokedAt, tk.RotatedAt)
		}
	}
}

// testRotateGrace: the rotated token presented again within the grace
// window (a retry after a lost reply) gets a second valid pair of the
// same family; nothing is revoked and RotatedAt keeps the first rotation.
func testRotateGrace(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	r1, a1, r2, a2 := rotatedFamily(t, s, now, 24*time.Hour)

	retry := now.Add(grace - time.Microsecond) // the last instant of the window
	r3, a3 := tok(oauth.KindRefresh, r1.FamilyID, retry, 24*time.Hour), tok(oauth.KindAccess, r1.FamilyID, retry, time.Hour)
	noErr(t, s.RotateRefreshToken(ctx, r1.ID, retry, grace, r3, a3), "RotateRefreshToken within the grace window")

	want := *r1
	want.RotatedAt = now
	checkEqual(t, "old token after a retry within grace (RotatedAt is the first rotation's)", &want, getToken(t, s, r1.ID))
	checkEqual(t, "second replacement refresh token", r3, getToken(t, s, r3.ID))
	checkEqual(t, "second replacement access token", a3, getToken(t, s, a3.ID))
	requireActive(t, s, a1.ID, r2.ID, a2.ID, r3.ID, a3.ID)

	// A replacement whose ID is taken fails the retry and writes nothing.
	fresh, clash := tok(oauth.KindAccess, r1.FamilyID, retry, time.Hour), tok(oauth.KindRefresh, r1.FamilyID, retry, time.Hour)
	clash.ID = r2.ID
	if err := s.RotateRefreshToken(ctx, r1.ID, retry, grace, fresh, clash); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("retry within grace with a taken replacement ID = %v, want ErrAlreadyExists", err)
	}
	requireNoToken(t, s, fresh.ID, "offered with a taken ID within grace")
	checkEqual(t, "replacement whose ID was offered again", r2, getToken(t, s, r2.ID))

	// Both replacement refresh tokens are live: each rotates in turn.
	later := now.Add(time.Minute)
	noErr(t, s.RotateRefreshToken(ctx, r2.ID, later, 0), "RotateRefreshToken(first replacement)")
	noErr(t, s.RotateRefreshToken(ctx, r3.ID, later, 0), "RotateRefreshToken(second replacement)")
	requireNotRevoked(t, s, r1.ID)
}

// testRotateGraceOver: presented again at or after the end of the window,
// the rotated token is reuse: the whole family, every replacement
// included, is revoked.
func testRotateGraceOver(t *testing.T, s oauth.Store, _ *clock) {
	for _, c := range []struct {
		name  string
		after time.Duration
	}{{"at the end of the window", grace}, {"long after", grace + time.Hour}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			now := baseTime()
			r1, a1, r2, a2 := rotatedFamily(t, s, now, 24*time.Hour)
			retry := now.Add(grace / 2)
			r3 := tok(oauth.KindRefresh, r1.FamilyID, retry, 24*time.Hour)
			noErr(t, s.RotateRefreshToken(ctx, r1.ID, retry, grace, r3), "RotateRefreshToken within the grace window")
			bystander := tok(oauth.KindRefresh, newID("fam"), now, time.Hour)
			noErr(t, s.CreateTokens(ctx, bystander), "CreateTokens(bystander)")

			reuse := now.Add(c.after)
			r4 := tok(oauth.KindRefresh, r1.FamilyID, reuse, 24*time.Hour)
			isErr(t, s.RotateRefreshToken(ctx, r1.ID, reuse, grace, r4), oauth.ErrRefreshReused, "RotateRefreshToken %s", c.name)
			requireNoToken(t, s, r4.ID, "replacement offered with a reused token")
			for _, id := range []string{r1.ID, a1.ID, r2.ID, a2.ID, r3.ID} {
				requireRevoked(t, s, id, reuse)
			}
			requireNotRevoked(t, s, bystander.ID)
		})
	}
}

// testRotateGraceZero: grace 0 is reuse detection as without a window,
// even for a retry at the very instant of the rotation.
func testRotateGraceZero(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	fam := newID("fam")
	r1 := tok(oauth.KindRefresh, fam, now.Add(-time.Hour), 24*time.Hour)
	noErr(t, s.CreateTokens(ctx, r1), "CreateTokens")
	r2 := tok(oauth.KindRefresh, fam, now, 24*time.Hour)
	noErr(t, s.RotateRefreshToken(ctx, r1.ID, now, 0, r2), "RotateRefreshToken")
	r3 := tok(oauth.KindRefresh, fam, now, 24*time.Hour)
	isErr(t, s.RotateRefreshToken(ctx, r1.ID, now, 0, r3), oauth.ErrRefreshReused, "second RotateRefreshToken at the same instant with grace 0")
	requireNoToken(t, s, r3.ID, "replacement offered with a reused token")
	requireRevoked(t, s, r1.ID, now)
	requireRevoked(t, s, r2.ID, now)
}

// testRotateGraceInactive: within the window, a rotated token that has
// since been revoked or has expired is inactive: refused, nothing written,
// and its family left as it was.
func testRotateGraceInactive(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()

	revoked, _, revokedRepl, _ := rotatedFamily(t, s, now, 24*time.Hour)
	noErr(t, s.RevokeToken(ctx, revoked, now.Add(time.Second)), "RevokeToken")
	expiring, _, expiringRepl, _ := rotatedFamily(t, s, now, 2*time.Second) // expires at now+2s

	for _, c := range []struct {
		name      string
		old, repl *oauth.Token
		retry     time.Time
	}{
		{"revoked", revoked, revokedRepl, now.Add(2 * time.Second)},
		{"expired", expiring, expiringRepl, now.Add(2 * time.Second)}, // ExpiresAt == retry: inactive
	} {
		before := getToken(t, s, c.old.ID)
		offered := tok(oauth.KindRefresh, c.old.FamilyID, c.retry, time.Hour)
		isErr(t, s.RotateRefreshToken(ctx, c.old.ID, c.retry, grace, offered), oauth.ErrTokenInactive,
			"RotateRefreshToken(%s) within the grace window", c.name)
		requireNoToken(t, s, offered.ID, "replacement of a "+c.name+" token")
		checkEqual(t, c.name+" token after a refused retry", before, getToken(t, s, c.old.ID))
		requireActive(t, s, c.repl.ID)
	}
}
