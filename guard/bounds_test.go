package guard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/token"
)

func TestMemoryBounded(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	var events atomic.Int32
	var fullResyncs atomic.Int32
	const maxEntries, maxBytes, maxRevocations = 64, 24 << 10, 32
	g := newGuard(t, f, clk, Config{MaxEntries: maxEntries, MaxBytes: maxBytes, MaxRevocations: maxRevocations,
		Hooks: Hooks{FeedEvent: func(string) { events.Add(1) }, Resynced: func(r string) {
			if r == "revocations full" {
				fullResyncs.Add(1)
			}
		}}})
	clk.Advance(time.Minute)
	now := clk.Now()
	long := strings.Repeat("scope-with-a-long-name ", 20) // ~460 bytes an entry more
	check := func(when string) {
		t.Helper()
		s := g.Stats()
		if s.Entries > maxEntries || s.Bytes > maxBytes || s.Entries == 0 {
			t.Fatalf("%s: %d entries, %d bytes; bounds %d, %d", when, s.Entries, s.Bytes, maxEntries, maxBytes)
		}
		if s.Revocations > maxRevocations || s.RevokedBytes > maxRevocations*avgRecordBytes {
			t.Fatalf("%s: %d revocations, %d bytes", when, s.Revocations, s.RevokedBytes)
		}
	}
	for i := range 300 {
		tok, _ := f.opaque(fmt.Sprintf("m%d", i), "", "payments", now, now.Add(time.Hour))
		if _, err := g.Validate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	check("300 opaque tokens")
	for i := range 300 {
		if _, err := g.Validate(context.Background(), f.jwt(f.keys[0], f.claims(fmt.Sprintf("m%d", i), "u", long, now, time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	check("300 JWTs with long scopes")
	if s := g.Stats(); s.Bytes < maxBytes/2 {
		t.Errorf("the byte bound, not the entry bound, should bind with long scopes: %+v", s)
	}

	// A cached JWT revoked in a flood of revocations that overflows the
	// state: the guard resynchronises rather than forget, so the token is
	// refused (the server says inactive).
	vc := f.claims("victim", "", "payments", now, time.Hour)
	victim := f.jwt(f.keys[0], vc)
	if _, err := g.Validate(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	f.revokeToken(vc["jti"].(string))
	for i := range 200 {
		f.revokeToken(token.NewJTI(now) + fmt.Sprint(i))
		if i%50 == 0 {
			f.revokeClient(fmt.Sprintf("m%d", i), now)
			f.revokeUser(fmt.Sprintf("u%d", i), now)
		}
	}
	eventually(t, 5*time.Second, "events applied", func() bool { return events.Load() == 1+1+200+8 }) // hello, victim, flood, cutoffs
	if fullResyncs.Load() == 0 {
		t.Fatal("no resync although the revocations overflowed")
	}
	for range 2 {
		if _, err := g.Validate(context.Background(), victim); !errors.Is(err, ErrInactive) && !errors.Is(err, ErrRevoked) {
			t.Fatalf("revoked JWT after the overflow: %v", err)
		}
	}
	s := g.Stats()
	if s.Revocations > maxRevocations || s.RevokedBytes > maxRevocations*avgRecordBytes {
		t.Fatalf("%d revocations, %d bytes", s.Revocations, s.RevokedBytes)
	}
}

func TestRevocationsKeptOnlyWhileUseful(t *testing.T) {
	now := time.Now().UnixNano()
	r := newRevocations(10, time.Hour)
	old := token.NewJTI(time.Unix(0, now).Add(-2 * time.Hour))
	r.revokeID(old, now)
	r.revokeBefore(false, "c", now-int64(2*time.Hour), now)
	if n, _ := r.stats(); n != 0 {
		t.Fatalf("%d records for tokens that expired already", n)
	}
	recent := token.NewJTI(time.Unix(0, now).Add(-30 * time.Minute))
	r.revokeID(recent, now)
	r.revokeID("no-time-in-it", now)
	r.revokeBefore(true, "u", now, now)
	r.revokeBefore(true, "u", now-1, now) // an older cutoff changes nothing
	if n, _ := r.stats(); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
	// 31 minutes on: the recent token has expired, the others not.
	r.prune(now + int64(31*time.Minute))
	if n, _ := r.stats(); n != 2 {
		t.Fatalf("%d records after 31 min, want 2", n)
	}
	r.prune(now + int64(61*time.Minute))
	if n, b := r.stats(); n != 0 || b != 0 {
		t.Fatalf("%d records (%d bytes) after an hour, want none", n, b)
	}
	// Full: refused, so the caller resynchronises.
	for i := range 10 {
		if !r.revokeID(fmt.Sprint("id", i), now) {
			t.Fatalf("record %d refused", i)
		}
	}
	if r.revokeID("one-more", now) {
		t.Fatal("an 11th record accepted by a state of 10")
	}
	// Long names are kept by hash, bounded.
	r.resync(now)
	r.revokeBefore(false, strings.Repeat("x", 10000), now, now)
	if _, b := r.stats(); b > cutoffBytes+maxNameLen {
		t.Fatalf("a long name takes %d bytes", b)
	}
	e := &entry{ident: &Identity{ClientID: strings.Repeat("x", 10000)}, issued: now - 1, born: r.epoch.Load()}
	if r.check(e) != checkRevoked {
		t.Fatal("a cutoff of a long client ID not applied")
	}
}

func TestCacheEviction(t *testing.T) {
	c := newCache(4, 1<<20, nil)
	now := int64(1000)
	key := func(i int) *[32]byte { var k [32]byte; k[31] = byte(i); return &k }
	mk := func(until int64) *entry { return &entry{until: until, size: 100} }
	c.put(key(1), mk(now-1), now) // expired
	c.put(key(2), mk(now+50), now)
	c.put(key(3), mk(now+100), now)
	c.put(key(4), mk(now+100), now)
	c.put(key(5), mk(now+100), now)
	if c.get(key(1)) != nil {
		t.Error("an expired entry survived while a valid one was evicted")
	}
	c.put(key(6), mk(now+100), now)
	if c.get(key(2)) != nil {
		t.Error("the entry expiring first survived")
	}
	if n, b := c.stats(); n != 4 || b != 400 {
		t.Errorf("%d entries, %d bytes", n, b)
	}
	c.put(key(7), &entry{until: now + 100, size: 2 << 20}, now)
	if c.get(key(7)) != nil {
		t.Error("an entry over the byte budget cached")
	}
	c.put(key(3), mk(now+200), now) // replacing counts once
	if n, b := c.stats(); n != 4 || b != 400 {
		t.Errorf("after a replace: %d entries, %d bytes", n, b)
	}
}

// TestConcurrentValidation runs validations, revocations and clock moves
// at once (for -race), and checks that one new token costs one
// introspection however many calls present it at once.
func TestConcurrentValidation(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g := newGuard(t, f, clk, Config{MaxEntries: 40})
	clk.Advance(time.Minute)
	now := clk.Now()

	gate := make(chan struct{})
	f.mu.Lock()
	f.introGate = gate
	f.mu.Unlock()
	fresh, _ := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 20 {
		wg.Go(func() {
			if _, err := g.Validate(context.Background(), fresh); err != nil {
				failed.Add(1)
			}
		})
	}
	eventually(t, 5*time.Second, "introspection started", func() bool { return f.introspections.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // let the other callers queue behind it
	f.mu.Lock()
	f.introGate = nil
	f.mu.Unlock()
	close(gate)
	wg.Wait()
	if failed.Load() != 0 || f.introspections.Load() != 1 {
		t.Fatalf("%d failures, %d introspections for 20 concurrent calls", failed.Load(), f.introspections.Load())
	}

	// A caller that gives up gets ErrUnavailable; the check goes on and
	// its result is cached for the next caller.
	gate = make(chan struct{})
	f.mu.Lock()
	f.introGate = gate
	f.mu.Unlock()
	slow, _ := f.opaque("m", "", "payments", now, now.Add(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for f.introspections.Load() != 2 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := g.Validate(ctx, slow); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	f.mu.Lock()
	f.introGate = nil
	f.mu.Unlock()
	close(gate)
	eventually(t, 5*time.Second, "abandoned check cached", func() bool { return g.Stats().Entries == 2 })
	if _, err := g.Validate(context.Background(), slow); err != nil || f.introspections.Load() != 2 {
		t.Fatalf("after the abandoned check: %v, %d introspections", err, f.introspections.Load())
	}

	var toks, ids []string
	for i := range 60 {
		if i%2 == 0 {
			tok, id := f.opaque(fmt.Sprint("m", i), "", "payments", now, now.Add(time.Hour))
			toks, ids = append(toks, tok), append(ids, id)
		} else {
			c := f.claims(fmt.Sprint("m", i), "u", "payments", now, time.Hour)
			toks, ids = append(toks, f.jwt(f.keys[0], c)), append(ids, c["jti"].(string))
		}
	}
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				g.Validate(context.Background(), toks[i%len(toks)])
				g.Stats()
			}
		})
	}
	for i := range 10 {
		f.revokeToken(ids[i])
		clk.Advance(time.Millisecond)
	}
	f.revokeClient("m20", now.Add(time.Second))
	f.revokeUser("u", now.Add(time.Second)) // every JWT above
	eventually(t, 2*time.Second, "revocations applied", func() bool {
		for i, tok := range toks {
			_, err := g.Validate(context.Background(), tok)
			refused := i < 10 || i == 20 || i%2 == 1
			if refused != errors.Is(err, ErrRevoked) {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
}

// TestIntrospectionsReuseConnections: with the default HTTP client, bursts
// of concurrent introspections (every request of a busy server misses the
// cache after a resynchronisation, at start, or while the feed is down
// past its limit) reuse their connections to the authorization server
// instead of dialling most of them again for every burst.
func TestIntrospectionsReuseConnections(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g, err := New(context.Background(), Config{Issuer: f.srv.URL, ClientID: testClient, ClientSecret: testSecret, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	clk.Advance(time.Minute)
	now := clk.Now()
	const burst, rounds = 64, 3
	for round := range rounds {
		gate := make(chan struct{})
		f.mu.Lock()
		f.introGate = gate
		f.mu.Unlock()
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range burst {
			tok, _ := f.opaque("m", "", "payments", now, now.Add(time.Hour))
			wg.Go(func() {
				if _, err := g.Validate(context.Background(), tok); err != nil {
					failed.Add(1)
				}
			})
		}
		// Every introspection of the burst in flight at once: each needs
		// a connection of its own.
		eventually(t, 10*time.Second, "the burst's introspections started", func() bool {
			return f.introspections.Load() == int32(burst*(round+1))
		})
		f.mu.Lock()
		f.introGate = nil
		f.mu.Unlock()
		close(gate)
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("round %d: %d validations failed", round, failed.Load())
		}
	}
	conns := 0
	f.introConns.Range(func(any, any) bool { conns++; return true })
	// The first burst opens its connections; the later ones find them idle
	// (a few more may be dialled while one is being put back).
	if conns > burst+burst/4 {
		t.Errorf("%d bursts of %d concurrent introspections used %d connections, want about %d", rounds, burst, conns, burst)
	}
	t.Logf("%d bursts of %d concurrent introspections: %d connections", rounds, burst, conns)
}
