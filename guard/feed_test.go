package guard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRevocationRefusedWithinOneSecond: a cached token, opaque or JWT, is
// refused by every subscribed guard within 1 s of the feed's event, for
// each kind of event; tokens the event does not name stay valid and cached.
func TestRevocationRefusedWithinOneSecond(t *testing.T) {
	kinds := []string{"token", "client", "user", "reset"}
	for _, format := range []Format{FormatOpaque, FormatJWT} {
		for _, kind := range kinds {
			t.Run(format.String()+"/"+kind, func(t *testing.T) {
				f := newFakeAS(t)
				clk := newClock()
				guards := []*Guard{newGuard(t, f, clk, Config{}), newGuard(t, f, clk, Config{})}
				clk.Advance(time.Minute)
				now := clk.Now()
				mint := func(client, user string) (tok, id string) {
					if format == FormatOpaque {
						return f.opaque(client, user, "payments", now, now.Add(15*time.Minute))
					}
					c := f.claims(client, user, "payments", now, 15*time.Minute)
					tok = f.jwt(f.keys[0], c)
					f.activeJWT(tok, c)
					return tok, c["jti"].(string)
				}
				victim, victimID := mint("merchant-1", "alice")
				bystander, _ := mint("merchant-2", "bob")
				for _, g := range guards {
					for range 10 {
						for _, tok := range []string{victim, bystander} {
							if _, err := g.Validate(context.Background(), tok); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
				introspections := f.introspections.Load()
				if format == FormatOpaque && introspections != 4 {
					t.Fatalf("introspections = %d, want one per token per guard", introspections)
				}
				if format == FormatJWT && introspections != 0 {
					t.Fatalf("introspections = %d, want none for JWTs", introspections)
				}

				want := ErrRevoked
				start := time.Now()
				switch kind {
				case "token":
					f.revokeToken(victimID)
				case "client":
					f.revokeClient("merchant-1", clk.Now().Add(time.Second))
				case "user":
					f.revokeUser("alice", clk.Now().Add(time.Second))
				case "reset":
					// The server lost track: the token was revoked in events
					// this guard missed, so only the server knows.
					f.setActive(victim, nil)
					f.publish("reset", `{"reason":"cursor expired","cursor":"c1"}`)
					want = ErrInactive
				}
				for i, g := range guards {
					eventually(t, time.Second, fmt.Sprintf("guard %d refuses", i), func() bool {
						_, err := g.Validate(context.Background(), victim)
						return errors.Is(err, want)
					})
					t.Logf("guard %d refused %s after the event was published", i, time.Since(start))
					if time.Since(start) > time.Second {
						t.Fatalf("refused %s after the event", time.Since(start))
					}
					if _, err := g.Validate(context.Background(), bystander); err != nil {
						t.Fatalf("bystander: %v", err)
					}
				}
				if kind != "reset" && format == FormatJWT && f.introspections.Load() != introspections {
					t.Errorf("a revocation caused introspections")
				}
			})
		}
	}
}

// TestCutoffSparesLaterTokens: "every token of the client issued before T"
// spares the tokens issued after T.
func TestCutoffSparesLaterTokens(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g := newGuard(t, f, clk, Config{})
	clk.Advance(time.Minute)
	before := f.jwt(f.keys[0], f.claims("m", "carol", "payments", clk.Now(), time.Hour))
	f.revokeUser("carol", clk.Now().Add(time.Second))
	f.revokeClient("m", clk.Now().Add(time.Second))
	clk.Advance(2 * time.Second)
	after := f.jwt(f.keys[0], f.claims("m", "carol", "payments", clk.Now(), time.Hour))
	eventually(t, time.Second, "cutoff applied", func() bool {
		_, err := g.Validate(context.Background(), before)
		return errors.Is(err, ErrRevoked)
	})
	if _, err := g.Validate(context.Background(), after); err != nil {
		t.Fatalf("token issued after the cutoffs: %v", err)
	}
}

func TestFeedDownFailsClosed(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	var mu sync.Mutex
	var states []FeedStatus
	g := newGuard(t, f, clk, Config{FeedDownLimit: 30 * time.Second, Hooks: Hooks{FeedState: func(s FeedStatus) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	}}})
	clk.Advance(time.Minute)
	now := clk.Now()
	opaque, _ := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	opaque2, opaque2ID := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	c := f.claims("m", "", "payments", now, time.Hour)
	jwt := f.jwt(f.keys[0], c)
	f.activeJWT(jwt, c)
	valid := func(tok string) {
		t.Helper()
		if _, err := g.Validate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []string{opaque, opaque2, jwt} {
		valid(tok)
	}
	base := f.introspections.Load() // 2: the opaque tokens

	// Down time counts from the last byte received (here a ping at now).
	f.pingAndWait(t, clk, g)
	f.dropFeed(true)
	eventually(t, 5*time.Second, "feed seen down", func() bool { return !g.Stats().FeedUp })
	// Down, within the limit: the cache is used.
	clk.Advance(29 * time.Second)
	for range 5 {
		valid(opaque)
		valid(jwt)
	}
	if n := f.introspections.Load() - base; n != 0 {
		t.Fatalf("%d introspections within the limit", n)
	}
	// Past the limit: every validation asks the server.
	clk.Advance(2 * time.Second)
	for range 3 {
		valid(opaque)
		valid(jwt)
	}
	if n := f.introspections.Load() - base; n != 6 {
		t.Fatalf("%d introspections past the limit, want 6 (one per validation)", n)
	}
	// ... and refuses what it cannot check.
	f.setIntrospectionDown(true)
	for _, tok := range []string{opaque, jwt} {
		if _, err := g.Validate(context.Background(), tok); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("server unreachable and feed down: %v, want ErrUnavailable", err)
		}
	}
	f.setIntrospectionDown(false)

	// A revocation while the guard is away reaches it when the feed is back,
	// from the cursor it had.
	f.revokeToken(opaque2ID)
	f.restoreFeed()
	eventually(t, 10*time.Second, "feed back up", func() bool { return g.Stats().FeedUp })
	if _, err := g.Validate(context.Background(), opaque2); !errors.Is(err, ErrRevoked) {
		t.Fatalf("token revoked while the feed was down: %v, want ErrRevoked", err)
	}
	f.feedMu.Lock()
	ids := slices.Clone(f.lastEventID)
	f.feedMu.Unlock()
	if last := ids[len(ids)-1]; last != "c0" {
		t.Errorf("resumed with Last-Event-ID %q, want c0 (the hello's cursor)", last)
	}
	// Cached results are used again.
	base = f.introspections.Load()
	valid(opaque)
	valid(jwt)
	if n := f.introspections.Load() - base; n != 0 {
		t.Errorf("%d introspections after the feed came back", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(states, FeedDown) || !slices.Contains(states, FeedFailClosed) || states[len(states)-1] != FeedUp {
		t.Errorf("feed states %v", states)
	}
}

// TestFeedResetAfterLongAbsence: a guard whose cursor expired gets a reset
// and drops everything it cached; tokens revoked in the events it missed
// are refused.
func TestFeedResetAfterLongAbsence(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	var resyncs []string
	var mu sync.Mutex
	g := newGuard(t, f, clk, Config{Hooks: Hooks{Resynced: func(r string) { mu.Lock(); resyncs = append(resyncs, r); mu.Unlock() }}})
	clk.Advance(time.Minute)
	now := clk.Now()
	opaque, opaqueID := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	c := f.claims("m", "", "payments", now, time.Hour)
	jwt := f.jwt(f.keys[0], c)
	for _, tok := range []string{opaque, jwt} {
		if _, err := g.Validate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	f.dropFeed(true)
	eventually(t, 5*time.Second, "feed seen down", func() bool { return !g.Stats().FeedUp })
	f.revokeToken(opaqueID)
	f.setActive(opaque, nil)
	f.publish("revoked", fmt.Sprintf(`{"type":"token","id":%q}`, c["jti"])) // the JWT, missed too
	f.expireCursors()
	f.restoreFeed()
	eventually(t, 10*time.Second, "feed back up", func() bool { return g.Stats().FeedUp })
	if _, err := g.Validate(context.Background(), opaque); !errors.Is(err, ErrInactive) {
		t.Errorf("opaque token revoked in missed events: %v", err)
	}
	if _, err := g.Validate(context.Background(), jwt); !errors.Is(err, ErrInactive) {
		t.Errorf("JWT revoked in missed events: %v (it must be introspected)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(resyncs, []string{"first connection", "reset"}) {
		t.Errorf("resyncs %v", resyncs)
	}
}

func TestFeedUnknownRevocationResyncs(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	var mu sync.Mutex
	var resyncs []string
	g := newGuard(t, f, clk, Config{Hooks: Hooks{Resynced: func(r string) { mu.Lock(); resyncs = append(resyncs, r); mu.Unlock() }}})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(resyncs) }
	clk.Advance(time.Minute)
	opaque, _ := f.opaque("m", "", "payments", clk.Now(), clk.Now().Add(time.Hour))
	for i, ev := range []string{`{"type":"family","family_id":"f1"}`, `{"type":"client","client_id":"m","before":"yesterday"}`,
		`{"type":"token"}`, `not json`} {
		if _, err := g.Validate(context.Background(), opaque); err != nil {
			t.Fatal(err)
		}
		if g.Stats().Entries != 1 {
			t.Fatal("not cached")
		}
		f.publish("keys", `{"whatever":1}`) // an unknown event: ignored
		f.publish("revoked", ev)
		eventually(t, time.Second, ev+": resync", func() bool { return count() == i+2 })
		if e := g.Stats().Entries; e != 0 {
			t.Fatalf("%s: %d entries after the resync", ev, e)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if resyncs[1] != "unknown event" {
		t.Errorf("resyncs %v", resyncs)
	}
}

func TestStartWithoutFeedFailsClosed(t *testing.T) {
	f := newFakeAS(t)
	f.dropFeed(true)
	clk := newClock()
	g, err := New(context.Background(), Config{Issuer: f.srv.URL, ClientID: testClient, ClientSecret: testSecret,
		HTTPClient: f.srv.Client(), Now: clk.Now, FeedStartTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	opaque, _ := f.opaque("m", "", "payments", clk.Now(), clk.Now().Add(time.Hour))
	for range 3 {
		if _, err := g.Validate(context.Background(), opaque); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.introspections.Load(); n != 3 {
		t.Fatalf("%d introspections before the feed ever connected, want 3", n)
	}
	f.restoreFeed()
	eventually(t, 10*time.Second, "feed up", func() bool { return g.Stats().FeedUp })
	g.Validate(context.Background(), opaque) // the first connection dropped the cache
	for range 3 {
		if _, err := g.Validate(context.Background(), opaque); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.introspections.Load(); n != 4 {
		t.Fatalf("%d introspections, want 4", n)
	}
}

func TestFeedRefusesBadCredentials(t *testing.T) {
	f := newFakeAS(t)
	states := make(chan FeedStatus, 10)
	g, err := New(context.Background(), Config{Issuer: f.srv.URL, ClientID: testClient, ClientSecret: "wrong",
		HTTPClient: f.srv.Client(), FeedStartTimeout: 200 * time.Millisecond,
		Hooks: Hooks{FeedState: func(s FeedStatus) { states <- s }}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if s := <-states; s != FeedUnauthorized {
		t.Errorf("feed state %v, want unauthorized", s)
	}
	opaque, _ := f.opaque("m", "", "payments", time.Now(), time.Now().Add(time.Hour))
	if _, err := g.Validate(context.Background(), opaque); !errors.Is(err, ErrUnavailable) {
		t.Errorf("introspection with bad credentials: %v, want ErrUnavailable", err)
	}
}

// TestCatchUpAfterHello: after a reconnection the guard is not up until
// the events it missed have arrived. The server's hello names where the
// stream starts, which for a resuming subscriber is its own cursor: it
// says nothing about the head. The first comment after the hello (the
// server pings right after the replay) marks the end of the catch-up.
func TestCatchUpAfterHello(t *testing.T) {
	g := &Guard{cfg: Config{Now: time.Now, Leeway: time.Second}, rev: newRevocations(100, time.Hour),
		cache: newCache(100, 1<<20, nil)}
	s := &subscriber{g: g, started: func() {}, cursor: "c3"}
	s.handle(sseEvent{name: "hello", id: "c3", hasID: true, data: `{"cursor":"c3","retention":"24h0m0s"}`})
	if g.feed.up.Load() {
		t.Fatal("up on a resuming subscriber's hello, before the missed events")
	}
	for _, id := range []string{"c4", "c5"} {
		s.handle(sseEvent{name: "revoked", id: id, hasID: true, data: `{"type":"token","id":"x` + id + `"}`})
		if g.feed.up.Load() || s.cursor != id {
			t.Fatalf("up %v, cursor %q after %s (the replay is not over)", g.feed.up.Load(), s.cursor, id)
		}
	}
	s.handle(sseEvent{comment: true})
	if !g.feed.up.Load() || s.cursor != "c5" {
		t.Fatalf("up %v, cursor %q after the ping that ends the replay", g.feed.up.Load(), s.cursor)
	}
	// A hello never moves a resuming subscriber's cursor, whatever it
	// names: if the stream broke during the catch-up, resuming from
	// anywhere else could skip events.
	g.feed.up.Store(false)
	s.caughtUp, s.hello = false, false
	s.handle(sseEvent{name: "hello", id: "c9", hasID: true, data: `{"cursor":"c9"}`})
	if s.cursor != "c5" || g.feed.up.Load() {
		t.Errorf("cursor %q, up %v after a hello naming another cursor", s.cursor, g.feed.up.Load())
	}
	// An expired cursor: hello (with it), then a reset: caught up.
	s.handle(sseEvent{name: "reset", id: "c20", hasID: true, data: `{"reason":"cursor expired","cursor":"c20"}`})
	if s.cursor != "c20" || !g.feed.up.Load() {
		t.Errorf("cursor %q, up %v after a reset", s.cursor, g.feed.up.Load())
	}
	// A first connection (no cursor) is up at its hello, and adopts its
	// cursor.
	g.feed.up.Store(false)
	fresh := &subscriber{g: g, started: func() {}}
	fresh.handle(sseEvent{name: "hello", id: "c7", hasID: true, data: `{"cursor":"c7"}`})
	if fresh.cursor != "c7" || !g.feed.up.Load() {
		t.Errorf("first connection: cursor %q, up %v", fresh.cursor, g.feed.up.Load())
	}
}

// TestResumeNotTrustedBeforeReplay: a guard back after an outage longer
// than FeedDownLimit uses no cached result between the server's hello and
// the end of the replay of what it missed, so a token revoked during the
// outage is never accepted from the cache.
func TestResumeNotTrustedBeforeReplay(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	hellos := make(chan struct{}, 10)
	g := newGuard(t, f, clk, Config{FeedDownLimit: 30 * time.Second, Hooks: Hooks{FeedEvent: func(kind string) {
		if kind == "hello" {
			hellos <- struct{}{}
		}
	}}})
	<-hellos
	clk.Advance(time.Minute)
	now := clk.Now()
	victim, victimID := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	if _, err := g.Validate(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	f.pingAndWait(t, clk, g)
	f.dropFeed(true)
	eventually(t, 5*time.Second, "feed seen down", func() bool { return !g.Stats().FeedUp })
	clk.Advance(time.Minute) // past the limit
	f.revokeToken(victimID)
	f.setActive(victim, nil)
	gate := make(chan struct{})
	f.feedMu.Lock()
	f.replayGate = gate
	f.feedMu.Unlock()
	f.restoreFeed()
	select {
	case <-hellos:
	case <-time.After(10 * time.Second):
		t.Fatal("no hello on reconnection")
	}
	if g.Stats().FeedUp {
		t.Fatal("up after the hello, before the replay")
	}
	if _, err := g.Validate(context.Background(), victim); !errors.Is(err, ErrInactive) {
		t.Fatalf("between hello and replay: %v, want ErrInactive (introspected, not cached)", err)
	}
	close(gate)
	eventually(t, 5*time.Second, "up after the replay", func() bool { return g.Stats().FeedUp })
	if _, err := g.Validate(context.Background(), victim); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after the replay: %v, want ErrRevoked", err)
	}
}

// TestFeedIdleTimeout: a stream that goes silent (no event, no ping) is
// dropped and the guard reconnects from its cursor.
func TestFeedIdleTimeout(t *testing.T) {
	f := newFakeAS(t)
	g := newGuard(t, f, nil, Config{FeedIdleTimeout: 300 * time.Millisecond})
	// Pings keep it: a second of pings every 100 ms, one connection.
	for range 10 {
		f.ping()
		time.Sleep(100 * time.Millisecond)
	}
	if n := f.feedConns.Load(); n != 1 {
		t.Fatalf("%d connections while the stream pinged", n)
	}
	eventually(t, 5*time.Second, "silent stream dropped and reconnected", func() bool { return f.feedConns.Load() >= 2 })
	eventually(t, 5*time.Second, "up again", func() bool { return g.Stats().FeedUp })
	f.feedMu.Lock()
	defer f.feedMu.Unlock()
	if f.lastEventID[1] != "c0" {
		t.Errorf("reconnected with Last-Event-ID %q, want c0", f.lastEventID[1])
	}
}

// TestFeedDefaultsNoticeSilence: the server pings every 15 s, so a stream
// silent for longer is dead (a partition that closes nothing). The default
// idle timeout must notice it after more than one ping interval, and no
// later than the default FeedDownLimit after the last byte: otherwise a
// silent stream would keep cached results in use past the limit.
func TestFeedDefaultsNoticeSilence(t *testing.T) {
	const serverPing = 15 * time.Second
	c := Config{Issuer: "https://auth.example.com", ClientID: "rs", ClientSecret: "s"}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.FeedIdleTimeout <= serverPing || c.FeedIdleTimeout > c.FeedDownLimit {
		t.Errorf("FeedIdleTimeout %v, FeedDownLimit %v: want %v < idle <= limit", c.FeedIdleTimeout, c.FeedDownLimit, serverPing)
	}
}

// TestInactiveAnswerDropsCachedResult: while the feed is down past its
// limit the guard introspects cached tokens; one the server now says is
// inactive loses its cached result, so it is not accepted again when the
// feed comes back before the revocation's event has reached it.
func TestInactiveAnswerDropsCachedResult(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g := newGuard(t, f, clk, Config{FeedDownLimit: 30 * time.Second})
	clk.Advance(time.Minute)
	now := clk.Now()
	opaque, _ := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	if _, err := g.Validate(context.Background(), opaque); err != nil {
		t.Fatal(err)
	}
	f.pingAndWait(t, clk, g)
	f.dropFeed(true)
	eventually(t, 5*time.Second, "feed seen down", func() bool { return !g.Stats().FeedUp })
	clk.Advance(31 * time.Second)
	f.setActive(opaque, nil) // revoked; the event is not in the feed yet
	if _, err := g.Validate(context.Background(), opaque); !errors.Is(err, ErrInactive) {
		t.Fatalf("feed down past the limit: %v, want ErrInactive", err)
	}
	f.restoreFeed()
	eventually(t, 10*time.Second, "feed back up", func() bool { return g.Stats().FeedUp })
	if _, err := g.Validate(context.Background(), opaque); !errors.Is(err, ErrInactive) {
		t.Fatalf("feed back, event not yet sent: %v, want ErrInactive (not the old cached result)", err)
	}
}
