package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func session(id string, now time.Time) *oauth.Session {
	return &oauth.Session{
		ID: id, Account: "acct-" + id,
		CreatedAt:  now.Add(-time.Hour + 123*time.Microsecond),
		LastSeenAt: now.Add(-time.Minute),
		ExpiresAt:  now.Add(29 * time.Minute),
	}
}

func testSessions(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	requireAllSet(t, session("x", now))

	id := newID("sess")
	noErr(t, s.CreateSession(ctx, session(id, now)), "CreateSession")
	got, err := s.GetSession(ctx, id)
	noErr(t, err, "GetSession")
	checkEqual(t, "GetSession", session(id, now), got)
	isErr(t, s.CreateSession(ctx, session(id, now.Add(time.Hour))), oauth.ErrAlreadyExists, "CreateSession(same ID)")
	got, err = s.GetSession(ctx, id)
	noErr(t, err, "GetSession after a refused create")
	checkEqual(t, "session after a refused create", session(id, now), got)

	// Touch moves the last use and the end, nothing else.
	seen, end := now.Add(time.Second), now.Add(30*time.Minute+time.Second)
	noErr(t, s.TouchSession(ctx, id, seen, end), "TouchSession")
	want := session(id, now)
	want.LastSeenAt, want.ExpiresAt = seen, end
	got, err = s.GetSession(ctx, id)
	noErr(t, err, "GetSession after TouchSession")
	checkEqual(t, "touched session", want, got)

	// Another session is another row.
	other := newID("sess")
	noErr(t, s.CreateSession(ctx, session(other, now)), "CreateSession(other)")

	noErr(t, s.DeleteSession(ctx, id), "DeleteSession")
	_, err = s.GetSession(ctx, id)
	isErr(t, err, oauth.ErrNotFound, "GetSession after DeleteSession")
	isErr(t, s.TouchSession(ctx, id, seen, end), oauth.ErrNotFound, "TouchSession after DeleteSession")
	noErr(t, s.DeleteSession(ctx, id), "DeleteSession twice")
	got, err = s.GetSession(ctx, other)
	noErr(t, err, "GetSession(other) after deleting the first")
	checkEqual(t, "the other session", session(other, now), got)

	// IDs no row can have are simply not found.
	for _, bad := range []string{"", "nope", "nul\x00byte", "bad\xffutf8"} {
		_, err = s.GetSession(ctx, bad)
		isErr(t, err, oauth.ErrNotFound, "GetSession(%q)", bad)
		isErr(t, s.TouchSession(ctx, bad, seen, end), oauth.ErrNotFound, "TouchSession(%q)", bad)
		noErr(t, s.DeleteSession(ctx, bad), "DeleteSession(%q)", bad)
	}
}

// testSessionsExpire: DeleteExpired deletes the sessions that ended
// before its time, by their ExpiresAt (which TouchSession moves), within
// its limit, and keeps the others.
func testSessionsExpire(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	var ended, live []string
	for i := range 3 {
		ps := session(newID("ended"), now)
		ps.ExpiresAt = now.Add(-time.Duration(i+1) * time.Minute)
		noErr(t, s.CreateSession(ctx, ps), "CreateSession(ended)")
		ended = append(ended, ps.ID)
	}
	for range 2 {
		ps := session(newID("live"), now)
		noErr(t, s.CreateSession(ctx, ps), "CreateSession(live)")
		live = append(live, ps.ID)
	}
	// A session that had ended but was touched in time lives on.
	revived := session(newID("revived"), now)
	revived.ExpiresAt = now.Add(-time.Second)
	noErr(t, s.CreateSession(ctx, revived), "CreateSession(revived)")
	noErr(t, s.TouchSession(ctx, revived.ID, now, now.Add(time.Hour)), "TouchSession(revived)")
	live = append(live, revived.ID)

	n, err := s.DeleteExpired(ctx, now, 2)
	noErr(t, err, "DeleteExpired(limit 2)")
	if n != 2 {
		t.Fatalf("DeleteExpired(limit 2) = %d, want 2", n)
	}
	n, err = s.DeleteExpired(ctx, now, 100)
	noErr(t, err, "DeleteExpired(limit 100)")
	if n != 1 {
		t.Fatalf("second DeleteExpired = %d, want 1", n)
	}
	for _, id := range ended {
		_, err := s.GetSession(ctx, id)
		isErr(t, err, oauth.ErrNotFound, "ended session after DeleteExpired")
	}
	for _, id := range live {
		_, err := s.GetSession(ctx, id)
		noErr(t, err, "live session after DeleteExpired")
	}
}

// testSessionsConcurrent: creates, touches and deletes from many
// goroutines each land (the SQLite store batches them).
func testSessionsConcurrent(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		ids[i] = newID("conc")
		wg.Go(func() {
			if err := s.CreateSession(ctx, session(ids[i], now)); err != nil {
				errs <- err
				return
			}
			if err := s.TouchSession(ctx, ids[i], now.Add(time.Duration(i)*time.Second), now.Add(time.Hour)); err != nil {
				errs <- err
			}
			if i%2 == 0 {
				errs <- s.DeleteSession(ctx, ids[i])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, err, "concurrent session write")
	}
	for i, id := range ids {
		got, err := s.GetSession(ctx, id)
		if i%2 == 0 {
			isErr(t, err, oauth.ErrNotFound, "deleted session %d", i)
			continue
		}
		noErr(t, err, "session %d", i)
		if !sameTime(got.LastSeenAt, now.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("session %d: LastSeenAt %v, want %v", i, got.LastSeenAt, now.Add(time.Duration(i)*time.Second))
		}
	}
}
