package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Conformance of the revocation feed: Store.RevocationEvents and
// Store.RevocationCursor, the events the revocations write, and their
// retention in DeleteExpired.

// ev is an event without its cursor and times, for comparisons.
type ev struct {
	typ oauth.RevocationType
	id  string
}

func (e ev) String() string { return string(e.typ) + ":" + e.id }

func evs(events []oauth.RevocationEvent) []ev {
	out := make([]ev, 0, len(events))
	for _, e := range events {
		out = append(out, ev{e.Type, e.ID})
	}
	return out
}

func tokenEvs(ids ...string) []ev {
	out := make([]ev, 0, len(ids))
	for _, id := range ids {
		out = append(out, ev{oauth.RevokedToken, id})
	}
	return out
}

// readFeed reads every event after cursor, limit at a time, checking that
// each page's next cursor is its last event's, and returns them with the
// cursor to read from next.
func readFeed(t *testing.T, s oauth.Store, cursor string, limit int) ([]oauth.RevocationEvent, string) {
	t.Helper()
	var all []oauth.RevocationEvent
	for {
		page, next, err := s.RevocationEvents(t.Context(), cursor, limit)
		noErr(t, err, "RevocationEvents(%q, %d)", cursor, limit)
		if len(page) > limit {
			t.Fatalf("RevocationEvents(limit %d) returned %d events", limit, len(page))
		}
		if len(page) > 0 && next != page[len(page)-1].Cursor {
			t.Fatalf("RevocationEvents: next cursor %q is not the last event's %q", next, page[len(page)-1].Cursor)
		}
		if len(page) == 0 && next != cursor {
			t.Fatalf("RevocationEvents(%q) with no event moved the cursor to %q", cursor, next)
		}
		all = append(all, page...)
		cursor = next
		if len(page) < limit {
			return all, cursor
		}
	}
}

// sameEvents fails the test unless got are want, in order.
func sameEvents(t *testing.T, what string, want, got []ev) {
	t.Helper()
	if !slices.Equal(want, got) {
		t.Fatalf("%s: events\n  %v\nwant\n  %v", what, got, want)
	}
}

// sameSet fails the test unless got holds want's events, in any order.
func sameSet(t *testing.T, what string, want, got []ev) {
	t.Helper()
	w, g := slices.Clone(want), slices.Clone(got)
	less := func(a, b ev) int { return strings.Compare(a.String(), b.String()) }
	slices.SortFunc(w, less)
	slices.SortFunc(g, less)
	sameEvents(t, what, w, g)
}

func feedCursor(t *testing.T, s oauth.Store) string {
	t.Helper()
	c, err := s.RevocationCursor(t.Context())
	noErr(t, err, "RevocationCursor")
	if c == "" || len(c) > 64 {
		t.Fatalf("RevocationCursor = %q: want 1 to 64 characters", c)
	}
	for _, r := range c {
		if r < 0x21 || r > 0x7e {
			t.Fatalf("RevocationCursor = %q: want printable ASCII", c)
		}
	}
	return c
}

// testFeedEvents: each kind of revocation writes its events, in the order
// the revocations commit, and only when something was revoked; each
// event's cursor resumes just after it.
func testFeedEvents(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	start := feedCursor(t, s)
	if got, next := readFeed(t, s, start, 10); len(got) != 0 || next != start {
		t.Fatalf("a new store's feed: %v, next %q", evs(got), next)
	}

	// RevokeToken: one event; none when already revoked; a JWT never
	// stored gets one too.
	access := tok(oauth.KindAccess, "", now, time.Hour)
	noErr(t, s.CreateTokens(ctx, access), "CreateTokens")
	noErr(t, s.RevokeToken(ctx, access, now), "RevokeToken")
	noErr(t, s.RevokeToken(ctx, access, now.Add(time.Second)), "RevokeToken again")
	jwt := tok(oauth.KindAccess, "", now, time.Hour)
	jwt.Format = oauth.FormatJWT
	noErr(t, s.RevokeToken(ctx, jwt, now), "RevokeToken(unstored JWT)")

	// RevokeFamily: one event per token it revokes, none for one already
	// revoked or of another family; "" revokes nothing.
	fam := newID("fam")
	famAccess, famRefresh, famRevoked := tok(oauth.KindAccess, fam, now, time.Hour), tok(oauth.KindRefresh, fam, now, time.Hour),
		tok(oauth.KindAccess, fam, now, time.Hour)
	other := tok(oauth.KindRefresh, newID("fam"), now, time.Hour)
	noErr(t, s.CreateTokens(ctx, famAccess, famRefresh, famRevoked, other), "CreateTokens(family)")
	noErr(t, s.RevokeToken(ctx, famRevoked, now), "RevokeToken(family member)")
	noErr(t, s.RevokeFamily(ctx, fam, now), "RevokeFamily")
	noErr(t, s.RevokeFamily(ctx, fam, now), "RevokeFamily again")
	noErr(t, s.RevokeFamily(ctx, "", now), `RevokeFamily("")`)

	got, next := readFeed(t, s, start, 100)
	if len(got) != 5 {
		t.Fatalf("after the token revocations: %d events, want 5: %v", len(got), evs(got))
	}
	sameEvents(t, "after the token revocations", tokenEvs(access.ID, jwt.ID, famRevoked.ID), evs(got[:3]))
	sameSet(t, "RevokeFamily's events", tokenEvs(famAccess.ID, famRefresh.ID), evs(got[3:]))
	for _, e := range got {
		if !e.Before.IsZero() {
			t.Errorf("token event %v has Before %v", e.ID, e.Before)
		}
		if !sameTime(e.At, now) {
			t.Errorf("token event %v: At = %v, want the store's clock %v", e.ID, e.At, now)
		}
	}
	// Each event's cursor resumes after it.
	for i, e := range got {
		rest, _ := readFeed(t, s, e.Cursor, 100)
		sameEvents(t, fmt.Sprintf("read from event %d's cursor", i), evs(got[i+1:]), evs(rest))
	}

	// Clients and users: an event when TokensNotBefore changes to a
	// non-zero instant, with that instant; none for other changes, for
	// clearing it, or for an update that fails.
	cl := fullClient(newID("c"), now)
	cl.TokensNotBefore = time.Time{}
	noErr(t, s.CreateClient(ctx, cl), "CreateClient")
	u := fullUser(newID("u"), now)
	u.TokensNotBefore = time.Time{}
	noErr(t, s.CreateUser(ctx, u), "CreateUser")
	cut1, cut2 := now.Add(time.Second), now.Add(2*time.Second)
	setClient := func(tnb time.Time, name string) {
		t.Helper()
		noErr(t, s.UpdateClient(ctx, cl.ID, func(c *oauth.Client) error { c.TokensNotBefore, c.Name = tnb, name; return nil }), "UpdateClient")
	}
	setClient(cut1, "a")
	setClient(cut1, "b") // same instant: no event
	setClient(time.Time{}, "c")
	setClient(cut2, "d")
	refused := errors.New("refused")
	isErr(t, s.UpdateClient(ctx, cl.ID, func(c *oauth.Client) error { c.TokensNotBefore = now.Add(time.Hour); return refused }),
		refused, "UpdateClient whose update fails")
	noErr(t, s.UpdateUser(ctx, u.Username, func(x *oauth.User) error { x.TokensNotBefore = cut1; return nil }), "UpdateUser")
	noErr(t, s.UpdateUser(ctx, u.Username, func(x *oauth.User) error { x.Disabled = !x.Disabled; return nil }), "UpdateUser(no cut)")
	clk.Set(now.Add(3 * time.Second))
	noErr(t, s.DeleteClient(ctx, cl.ID), "DeleteClient")
	isErr(t, s.DeleteClient(ctx, cl.ID), oauth.ErrNotFound, "DeleteClient again")

	more, _ := readFeed(t, s, next, 100)
	sameEvents(t, "after the client and user changes", []ev{
		{oauth.RevokedClient, cl.ID}, {oauth.RevokedClient, cl.ID}, {oauth.RevokedUser, u.Username}, {oauth.RevokedClient, cl.ID},
	}, evs(more))
	for i, want := range []time.Time{cut1, cut2, cut1, now.Add(3 * time.Second)} {
		if !sameTime(more[i].Before, want) {
			t.Errorf("event %d (%v): Before = %v, want %v", i, evs(more[i:i+1]), more[i].Before, want)
		}
	}
	if c := feedCursor(t, s); c != more[len(more)-1].Cursor {
		t.Errorf("RevocationCursor = %q, want the last event's %q", c, more[len(more)-1].Cursor)
	}
}

// testFeedRotateReuse: the reuse path of RotateRefreshToken writes an event
// for each token it revokes, although the call fails; its failures that
// revoke nothing write none.
func testFeedRotateReuse(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	start := feedCursor(t, s)
	fam := newID("fam")
	old := tok(oauth.KindRefresh, fam, now, time.Hour)
	access := tok(oauth.KindAccess, fam, now, time.Hour)
	noErr(t, s.CreateTokens(ctx, old, access), "CreateTokens")
	repl, replAccess := tok(oauth.KindRefresh, fam, now, time.Hour), tok(oauth.KindAccess, fam, now, time.Hour)
	noErr(t, s.RotateRefreshToken(ctx, old.ID, now, 0, repl, replAccess), "RotateRefreshToken")
	if got, _ := readFeed(t, s, start, 10); len(got) != 0 {
		t.Fatalf("a rotation wrote events: %v", evs(got))
	}
	// An expired token is refused with nothing written.
	expired := tok(oauth.KindRefresh, newID("fam"), now.Add(-2*time.Hour), time.Hour)
	noErr(t, s.CreateTokens(ctx, expired), "CreateTokens(expired)")
	isErr(t, s.RotateRefreshToken(ctx, expired.ID, now, 0, tok(oauth.KindRefresh, expired.FamilyID, now, time.Hour)),
		oauth.ErrTokenInactive, "rotating an expired token")

	isErr(t, s.RotateRefreshToken(ctx, old.ID, now.Add(time.Minute), 0, tok(oauth.KindRefresh, fam, now, time.Hour)),
		oauth.ErrRefreshReused, "reusing the rotated token")
	got, _ := readFeed(t, s, start, 10)
	sameSet(t, "reuse", tokenEvs(old.ID, access.ID, repl.ID, replAccess.ID), evs(got))
	// The family is revoked now: a second reuse revokes nothing new.
	isErr(t, s.RotateRefreshToken(ctx, old.ID, now.Add(2*time.Minute), 0, tok(oauth.KindRefresh, fam, now, time.Hour)),
		oauth.ErrRefreshReused, "reusing it again")
	again, _ := readFeed(t, s, start, 10)
	sameEvents(t, "after a second reuse", evs(got), evs(again))
}

// testFeedCursors: unknown cursors are refused with ErrCursorExpired;
// paging with a small limit returns every event once, in order.
func testFeedCursors(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	start := feedCursor(t, s)
	var want []ev
	for range 7 {
		tk := tok(oauth.KindAccess, "", now, time.Hour)
		noErr(t, s.RevokeToken(ctx, tk, now), "RevokeToken")
		want = append(want, ev{oauth.RevokedToken, tk.ID})
	}
	for _, limit := range []int{1, 2, 3, 7, 8} {
		got, _ := readFeed(t, s, start, limit)
		sameEvents(t, fmt.Sprintf("paging by %d", limit), want, evs(got))
	}
	got, _ := readFeed(t, s, start, 100)
	last := got[len(got)-1].Cursor
	for _, bad := range []string{"", "x", " " + start, start + " ", start + "0", "0" + last, last + ".1", "-1", "1e3",
		strings.Repeat("9", 65), "\x00", "18446744073709551616.1",
		"999999", "999999999.1"} { // canonical, but never given out
		_, _, err := s.RevocationEvents(ctx, bad, 10)
		isErr(t, err, oauth.ErrCursorExpired, "RevocationEvents(%q)", bad)
	}
	if _, _, err := s.RevocationEvents(ctx, start, 0); err != nil {
		t.Fatalf("RevocationEvents(limit 0): %v", err)
	}
}

// testFeedRetention: DeleteExpired deletes events recorded before its
// time minus the retention (the default, 24h), oldest first, within its
// limit; a cursor before a deleted event is expired, a reader that had
// read them all is not, and RevocationCursor still gives a cursor from
// which later events are read.
func testFeedRetention(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	t0 := clk.Now()
	start := feedCursor(t, s)
	revoke := func() string {
		t.Helper()
		tk := tok(oauth.KindAccess, "", clk.Now(), 100*time.Hour) // the tokens outlive the test
		noErr(t, s.RevokeToken(ctx, tk, clk.Now()), "RevokeToken")
		return tk.ID
	}
	old := []string{revoke(), revoke(), revoke()}
	got, afterOld := readFeed(t, s, start, 10)
	sameEvents(t, "old events", tokenEvs(old...), evs(got))
	if len(got) != len(old) {
		t.FailNow() // the cursors below are got's
	}
	clk.Set(t0.Add(time.Hour))
	recent := revoke()

	// Not yet: 24h after the first event exactly.
	n, err := s.DeleteExpired(ctx, t0.Add(24*time.Hour), 100)
	noErr(t, err, "DeleteExpired at the retention")
	if n != 0 {
		t.Fatalf("DeleteExpired at the retention deleted %d", n)
	}
	after := t0.Add(24*time.Hour + time.Minute)
	n, err = s.DeleteExpired(ctx, after, 2)
	noErr(t, err, "DeleteExpired(limit 2)")
	if n != 2 {
		t.Fatalf("DeleteExpired(limit 2) = %d, want 2", n)
	}
	_, _, err = s.RevocationEvents(ctx, start, 10)
	isErr(t, err, oauth.ErrCursorExpired, "reading from before deleted events")
	_, _, err = s.RevocationEvents(ctx, got[0].Cursor, 10)
	isErr(t, err, oauth.ErrCursorExpired, "reading from a deleted event followed by another deleted one")
	// A reader at the last deleted event missed nothing.
	rest, _ := readFeed(t, s, got[1].Cursor, 10)
	sameEvents(t, "from the last deleted event", tokenEvs(old[2], recent), evs(rest))

	n, err = s.DeleteExpired(ctx, after, 100)
	noErr(t, err, "DeleteExpired")
	if n != 1 {
		t.Fatalf("second DeleteExpired = %d, want 1 (the recent event is kept)", n)
	}
	rest, _ = readFeed(t, s, afterOld, 10)
	sameEvents(t, "from the end of the deleted events", tokenEvs(recent), evs(rest))

	// Everything deleted: the cursors of the last event and of
	// RevocationCursor still work.
	clk.Set(t0.Add(2 * time.Hour))
	n, err = s.DeleteExpired(ctx, t0.Add(30*time.Hour), 100)
	noErr(t, err, "DeleteExpired(all)")
	if n != 1 {
		t.Fatalf("DeleteExpired(all) = %d, want 1", n)
	}
	last := rest[0].Cursor
	if c := feedCursor(t, s); c != last {
		t.Fatalf("RevocationCursor with every event deleted = %q, want the last event's %q", c, last)
	}
	if got, next := readFeed(t, s, last, 10); len(got) != 0 || next != last {
		t.Fatalf("reading from the last deleted event: %v, next %q", evs(got), next)
	}
	_, _, err = s.RevocationEvents(ctx, afterOld, 10)
	isErr(t, err, oauth.ErrCursorExpired, "reading from before the last deleted event")
	later := revoke()
	got, _ = readFeed(t, s, last, 10)
	sameEvents(t, "a revocation after every event was deleted", tokenEvs(later), evs(got))
}

// testFeedRollback: an operation that fails and is rolled back leaves no
// event, even when it shares a group-commit transaction with others that
// succeed.
func testFeedRollback(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	now := clk.Now()
	start := feedCursor(t, s)
	cl := fullClient(newID("c"), now)
	cl.TokensNotBefore = time.Time{}
	noErr(t, s.CreateClient(ctx, cl), "CreateClient")
	refused := errors.New("refused")
	var (
		mu   sync.Mutex
		want []ev
	)
	run(20, func(i int) {
		if i%2 == 0 {
			err := s.UpdateClient(ctx, cl.ID, func(c *oauth.Client) error {
				c.TokensNotBefore = now.Add(time.Duration(i) * time.Second)
				return refused
			})
			if !errors.Is(err, refused) {
				t.Errorf("UpdateClient: %v", err)
			}
			return
		}
		tk := tok(oauth.KindAccess, "", now, time.Hour)
		if err := s.RevokeToken(ctx, tk, now); err != nil {
			t.Errorf("RevokeToken: %v", err)
			return
		}
		mu.Lock()
		want = append(want, ev{oauth.RevokedToken, tk.ID})
		mu.Unlock()
	})
	got, _ := readFeed(t, s, start, 100)
	sameSet(t, "after failed and successful operations", want, evs(got))
}

// testFeedConcurrent: 20 goroutines revoke (tokens, families, clients,
// users) while a reader pages through the feed with a small limit, always
// from the cursor it was given; once the writers are done and it has read
// to the end, it has read exactly what committed, each event once.
func testFeedConcurrent(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	now := clk.Now()
	const writers, rounds = 20, 10
	start := feedCursor(t, s)

	clients := make([]*oauth.Client, writers)
	users := make([]*oauth.User, writers)
	for i := range writers {
		clients[i] = fullClient(newID("c"), now)
		clients[i].TokensNotBefore = time.Time{}
		noErr(t, s.CreateClient(ctx, clients[i]), "CreateClient")
		users[i] = fullUser(newID("u"), now)
		users[i].TokensNotBefore = time.Time{}
		noErr(t, s.CreateUser(ctx, users[i]), "CreateUser")
	}

	var (
		done      atomic.Bool
		read      []ev
		seen      = map[string]int{}
		readerErr error
		readerWG  sync.WaitGroup
	)
	readerWG.Go(func() {
		cursor := start
		for {
			finished := done.Load() // read once more after the writers are done
			page, next, err := s.RevocationEvents(ctx, cursor, 5)
			if err != nil {
				readerErr = err
				return
			}
			for _, e := range page {
				read = append(read, ev{e.Type, e.ID})
				seen[e.Cursor]++
			}
			cursor = next
			if finished && len(page) < 5 {
				return
			}
			if len(page) == 0 {
				time.Sleep(time.Millisecond) // a backoff, not a wait for anything
			}
		}
	})

	wrote := make([][]ev, writers)
	run(writers, func(w int) {
		for r := range rounds {
			switch r % 4 {
			case 0, 1:
				tk := tok(oauth.KindAccess, "", now, time.Hour)
				if err := s.RevokeToken(ctx, tk, now); err != nil {
					t.Errorf("RevokeToken: %v", err)
					return
				}
				wrote[w] = append(wrote[w], ev{oauth.RevokedToken, tk.ID})
			case 2:
				fam := newID("fam")
				a, b := tok(oauth.KindAccess, fam, now, time.Hour), tok(oauth.KindRefresh, fam, now, time.Hour)
				if err := s.CreateTokens(ctx, a, b); err != nil {
					t.Errorf("CreateTokens: %v", err)
					return
				}
				if err := s.RevokeFamily(ctx, fam, now); err != nil {
					t.Errorf("RevokeFamily: %v", err)
					return
				}
				wrote[w] = append(wrote[w], tokenEvs(a.ID, b.ID)...)
			case 3:
				at := now.Add(time.Duration(r+1) * time.Second)
				if r%8 == 3 {
					err := s.UpdateClient(ctx, clients[w].ID, func(c *oauth.Client) error { c.TokensNotBefore = at; return nil })
					if err != nil {
						t.Errorf("UpdateClient: %v", err)
						return
					}
					wrote[w] = append(wrote[w], ev{oauth.RevokedClient, clients[w].ID})
				} else {
					err := s.UpdateUser(ctx, users[w].Username, func(u *oauth.User) error { u.TokensNotBefore = at; return nil })
					if err != nil {
						t.Errorf("UpdateUser: %v", err)
						return
					}
					wrote[w] = append(wrote[w], ev{oauth.RevokedUser, users[w].Username})
				}
			}
		}
	})
	done.Store(true)
	readerWG.Wait()
	noErr(t, readerErr, "the reader's RevocationEvents")
	for c, n := range seen {
		if n > 1 {
			t.Errorf("event at cursor %q read %d times", c, n)
		}
	}
	var all []ev
	for _, w := range wrote {
		all = append(all, w...)
	}
	sameSet(t, "read concurrently", all, read)
	// Every writer's own events are in the order it wrote them.
	for w, mine := range wrote {
		var order []ev
		for _, e := range read {
			if slices.Contains(mine, e) {
				order = append(order, e)
			}
		}
		// A family's two events may come in either order.
		for i := 0; i+1 < len(order); i++ {
			if j := slices.Index(mine, order[i]); j > slices.Index(mine, order[i+1]) && !sameFamily(mine, j) {
				t.Errorf("writer %d: %v read before %v, written after it", w, order[i], order[i+1])
			}
		}
	}
	// A second reader from the start reads the same, in the same order.
	again, _ := readFeed(t, s, start, 7)
	sameEvents(t, "a second reader", read, evs(again))
}

// sameFamily reports whether mine[j] is the second event of a family
// revocation (whose two events are written by one statement).
func sameFamily(mine []ev, j int) bool {
	return j > 0 && mine[j].typ == oauth.RevokedToken && mine[j-1].typ == oauth.RevokedToken &&
		strings.HasPrefix(mine[j].id, string(oauth.KindRefresh)) && strings.HasPrefix(mine[j-1].id, string(oauth.KindAccess))
}
