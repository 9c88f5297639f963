package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// testConcurrentTokenTraffic: 50 goroutines issue, rotate and revoke at
// once, touching shared tokens too; every write must land, and a failing
// write must not fail its neighbours.
func testConcurrentTokenTraffic(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	now := baseTime()
	const workers, rounds = 50, 4

	shared := make([]*oauth.Token, workers)
	for i := range shared {
		shared[i] = tok(oauth.KindAccess, "", now, time.Hour)
	}
	noErr(t, s.CreateTokens(ctx, shared...), "CreateTokens(shared)")

	type chain struct {
		fam                  string
		refresh, replacement *oauth.Token
		access, newAccess    *oauth.Token
		familyRevoked        bool
		clashed              *oauth.Token // offered with a taken ID, must not exist
	}
	chains := make([][]chain, workers)
	errs := make([][]error, workers)
	run(workers, func(w int) {
		fail := func(format string, args ...any) {
			errs[w] = append(errs[w], fmt.Errorf(format, args...))
		}
		for r := range rounds {
			c := chain{fam: newID("fam")}
			c.refresh = tok(oauth.KindRefresh, c.fam, now, time.Hour)
			c.access = tok(oauth.KindAccess, c.fam, now, time.Minute)
			if err := s.CreateTokens(ctx, c.access, c.refresh); err != nil {
				fail("CreateTokens: %v", err)
				return
			}
			c.replacement = tok(oauth.KindRefresh, c.fam, now, time.Hour)
			c.newAccess = tok(oauth.KindAccess, c.fam, now, time.Minute)
			if err := s.RotateRefreshToken(ctx, c.refresh.ID, now, 0, c.replacement, c.newAccess); err != nil {
				fail("RotateRefreshToken: %v", err)
			}
			if err := s.RevokeToken(ctx, c.access, now); err != nil {
				fail("RevokeToken: %v", err)
			}
			// Shared tokens: each is revoked by two workers.
			if err := s.RevokeToken(ctx, shared[(w+r)%workers], now); err != nil {
				fail("RevokeToken(shared): %v", err)
			}
			// A clashing create fails alone.
			c.clashed = tok(oauth.KindAccess, "", now, time.Hour)
			if err := s.CreateTokens(ctx, c.clashed, shared[w]); !errors.Is(err, oauth.ErrAlreadyExists) {
				fail("CreateTokens with a taken ID: %v, want ErrAlreadyExists", err)
			}
			if r%2 == 1 {
				if err := s.RevokeFamily(ctx, c.fam, now); err != nil {
					fail("RevokeFamily: %v", err)
				}
				c.familyRevoked = true
			}
			chains[w] = append(chains[w], c)
		}
	})
	for w := range workers {
		for _, err := range errs[w] {
			t.Errorf("worker %d: %v", w, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	for w := range workers {
		for _, c := range chains[w] {
			if old := getToken(t, s, c.refresh.ID); old.RotatedAt.IsZero() {
				t.Fatalf("rotation of %s lost", c.refresh.ID)
			}
			requireRevoked(t, s, c.access.ID, now)
			requireNoToken(t, s, c.clashed.ID, "offered in a failed CreateTokens")
			for _, tk := range []*oauth.Token{c.replacement, c.newAccess} {
				if c.familyRevoked {
					requireRevoked(t, s, tk.ID, now)
				} else {
					requireNotRevoked(t, s, tk.ID)
				}
			}
		}
	}
	for _, tk := range shared {
		requireRevoked(t, s, tk.ID, now)
	}
}

// testConcurrentRotationRace: a refresh token presented by 20 goroutines
// at once is redeemed exactly once; the others are reuse, which revokes
// the family including the winner's replacement.
func testConcurrentRotationRace(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	now := baseTime()
	fam := newID("fam")
	r1 := tok(oauth.KindRefresh, fam, now, time.Hour)
	noErr(t, s.CreateTokens(ctx, r1), "CreateTokens")

	const n = 20
	repl := make([]*oauth.Token, n)
	errs := make([]error, n)
	for i := range repl {
		repl[i] = tok(oauth.KindRefresh, fam, now, time.Hour)
	}
	run(n, func(i int) {
		errs[i] = s.RotateRefreshToken(ctx, r1.ID, now, 0, repl[i])
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("RotateRefreshToken succeeded for goroutines %d and %d; exactly one may", winner, i)
			}
			winner = i
		case errors.Is(err, oauth.ErrRefreshReused):
		default:
			t.Fatalf("RotateRefreshToken #%d = %v, want nil or ErrRefreshReused", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no RotateRefreshToken succeeded")
	}
	requireRevoked(t, s, r1.ID, now)
	requireRevoked(t, s, repl[winner].ID, now)
	for i, tk := range repl {
		if i != winner {
			requireNoToken(t, s, tk.ID, "replacement offered by a losing rotation")
		}
	}
}

// testConcurrentNonceRace: a nonce used by 20 goroutines at once is
// accepted exactly once.
func testConcurrentNonceRace(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	const n = 20
	errs := make([]error, n)
	exp := clk.Now().Add(time.Minute)
	run(n, func(i int) { errs[i] = s.UseNonce(ctx, "race", exp) })
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, oauth.ErrAlreadyExists):
			t.Fatalf("UseNonce #%d = %v, want nil or ErrAlreadyExists", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent UseNonce calls succeeded, want exactly 1", ok, n)
	}
}

// testConcurrentRotationGrace: a refresh token presented by 12 goroutines
// at once with a grace window (a client's duplicate requests) is rotated
// once, and every caller gets its own valid replacements: nothing is
// revoked.
func testConcurrentRotationGrace(t *testing.T, s oauth.Store, _ *clock) {
	ctx := ctxTimeout(t)
	now := baseTime()
	fam := newID("fam")
	r1 := tok(oauth.KindRefresh, fam, now.Add(-time.Hour), 24*time.Hour)
	a1 := tok(oauth.KindAccess, fam, now.Add(-time.Hour), 2*time.Hour)
	noErr(t, s.CreateTokens(ctx, r1, a1), "CreateTokens")

	const n = 12
	repl := make([][2]*oauth.Token, n)
	at := make([]time.Time, n)
	errs := make([]error, n)
	for i := range n {
		at[i] = now.Add(time.Duration(i) * 10 * time.Millisecond) // each request's own clock reading, apart by more than sameTime's tolerance
		repl[i] = [2]*oauth.Token{tok(oauth.KindRefresh, fam, at[i], 24*time.Hour), tok(oauth.KindAccess, fam, at[i], time.Hour)}
	}
	run(n, func(i int) {
		errs[i] = s.RotateRefreshToken(ctx, r1.ID, at[i], grace, repl[i][0], repl[i][1])
	})
	for i, err := range errs {
		noErr(t, err, "concurrent RotateRefreshToken #%d within the grace window", i)
	}

	old := getToken(t, s, r1.ID)
	if !old.RevokedAt.IsZero() {
		t.Fatalf("the rotated token was revoked at %v: duplicates within the grace window counted as reuse", old.RevokedAt)
	}
	rotations := 0
	for _, a := range at {
		if sameTime(old.RotatedAt, a) {
			rotations++
		}
	}
	if rotations != 1 {
		t.Fatalf("RotatedAt = %v, want the time of exactly one of the calls (%v ... %v)", old.RotatedAt, at[0], at[n-1])
	}
	requireActive(t, s, a1.ID)
	for i := range n {
		checkEqual(t, "replacement refresh token", repl[i][0], getToken(t, s, repl[i][0].ID))
		checkEqual(t, "replacement access token", repl[i][1], getToken(t, s, repl[i][1].ID))
	}

	// The window runs from that one rotation: at its end, reuse revokes
	// the family, every caller's replacements included.
	reuse := old.RotatedAt.Add(grace)
	isErr(t, s.RotateRefreshToken(ctx, r1.ID, reuse, grace), oauth.ErrRefreshReused, "RotateRefreshToken at the end of the window")
	for i := range n {
		requireRevoked(t, s, repl[i][0].ID, reuse)
		requireRevoked(t, s, repl[i][1].ID, reuse)
	}
}
