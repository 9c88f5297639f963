package limit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokengate/tokengate/internal/pgtest"
)

// flaky is a primary RateLimiter that fails while err is set, and otherwise
// answers "refused, retry in 7s" so its answers stand out.
type flaky struct {
	mu    sync.Mutex
	err   error
	calls int
}

var fromPrimary = Decision{RetryAfter: 7 * time.Second}

func (f *flaky) Allow(ctx context.Context, _ string) (Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return Decision{}, f.err
	}
	return fromPrimary, ctx.Err()
}

func (f *flaky) set(err error) { f.mu.Lock(); f.err = err; f.mu.Unlock() }

func (f *flaky) count() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

func TestFallbackLogsOnceAndRetriesOncePerInterval(t *testing.T) {
	clk := newClock()
	log, logs := newLogger()
	f := NewFallback(log, FallbackOptions{Now: clk.Now, Retry: time.Second})
	primary := &flaky{}
	l := f.RateLimiter(primary, NewMemoryRateLimiter(1, 3, clk.Now))

	if d := allow(t, l, "a"); d != fromPrimary {
		t.Fatalf("with the primary up: %+v, want the primary's answer", d)
	}
	primary.set(errors.New("dial tcp 10.0.0.1:6379: connect: connection refused"))
	var ok int
	for range 1000 {
		if allow(t, l, "a").Allowed {
			ok++
		}
	}
	if ok != 3 {
		t.Fatalf("with the primary down, the fallback (burst 3) allowed %d of 1000", ok)
	}
	if primary.count() != 2 {
		t.Fatalf("the primary was called %d times for 1001 requests before any retry was due, want 2", primary.count())
	}
	if f.Available() {
		t.Fatal("Available() while the primary fails")
	}
	clk.Advance(time.Second)
	for range 100 {
		allow(t, l, "a")
	}
	if primary.count() != 3 {
		t.Fatalf("one retry interval later: %d calls to the primary, want 3 (one retry)", primary.count())
	}
	primary.set(nil)
	clk.Advance(999 * time.Millisecond)
	if allow(t, l, "a") == fromPrimary {
		t.Fatal("the primary was asked before the retry interval passed")
	}
	clk.Advance(time.Millisecond)
	if d := allow(t, l, "a"); d != fromPrimary {
		t.Fatalf("after the primary recovered and the retry was due: %+v", d)
	}
	if !f.Available() {
		t.Fatal("not Available() after a successful retry")
	}
	for range 10 {
		if d := allow(t, l, "a"); d != fromPrimary {
			t.Fatalf("back to the primary: %+v", d)
		}
	}

	lines := logs.lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "shared limits unavailable, falling back to per-node limits") ||
		!strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[1], "shared limits available again") {
		t.Fatalf("log lines:\n%s\nwant one for the outage and one for the recovery", strings.Join(lines, "\n"))
	}
}

// A caller that gives up says nothing about the primary.
func TestFallbackIgnoresTheCallersCancellation(t *testing.T) {
	log, logs := newLogger()
	f := NewFallback(log, FallbackOptions{Now: newClock().Now})
	l := f.RateLimiter(&flaky{}, NewMemoryRateLimiter(1, 1, nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Allow(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !f.Available() || len(logs.lines()) != 0 {
		t.Fatalf("a cancelled request marked the primary down: available %v, log %q", f.Available(), logs.lines())
	}
}

// A Redis at a closed port: every request is still answered, by the
// in-process limits, and the log has one line.
func TestFallbackFromUnreachableRedis(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
	defer c.Close()
	clk := newClock()
	log, logs := newLogger()
	f := NewFallback(log, FallbackOptions{Now: clk.Now})
	p := Policy{Threshold: 3, Base: time.Second, Max: time.Minute, Window: time.Minute}
	rl := f.RateLimiter(NewRedisRateLimiter(c, RatePrefix, 1, 3, clk.Now), NewMemoryRateLimiter(1, 3, clk.Now))
	lo := f.Lockout(NewRedisLockout(c, LockoutPrefix, p, clk.Now), NewMemoryLockout(p, clk.Now))

	start := time.Now()
	ok := 0
	for i := range 1000 {
		if allow(t, rl, "merchant").Allowed {
			ok++
		}
		clk.Advance(time.Millisecond) // a retry every 1000 requests
		if i < 3 {
			fail(t, lo, "alice")
		}
		check(t, lo, "bob")
	}
	if ok != 3 {
		t.Fatalf("the fallback (burst 3, 1/s) allowed %d requests in one simulated second", ok)
	}
	if d := check(t, lo, "alice"); d.Allowed || d.RetryAfter > time.Second {
		t.Fatalf("three failures recorded by the fallback lockout: %+v, want locked", d)
	}
	succeed(t, lo, "alice")
	if d := check(t, lo, "alice"); !d.Allowed {
		t.Fatal("Succeed did not reach the fallback")
	}
	t.Logf("2000 requests against a dead Redis took %v", time.Since(start))
	if lines := logs.lines(); len(lines) != 1 || !strings.Contains(lines[0], "shared limits unavailable, falling back to per-node limits") {
		t.Fatalf("log lines:\n%s\nwant exactly one", strings.Join(lines, "\n"))
	}
}

// A Redis that accepts connections and never answers costs one timeout,
// not one per request.
func TestFallbackFromHungRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
	defer c.Close()
	clk := newClock()
	log, logs := newLogger()
	f := NewFallback(log, FallbackOptions{Now: clk.Now, Timeout: 50 * time.Millisecond})
	rl := f.RateLimiter(NewRedisRateLimiter(c, RatePrefix, 1, 3, clk.Now), NewMemoryRateLimiter(1, 3, clk.Now))

	start := time.Now()
	allow(t, rl, "merchant")
	first := time.Since(start)
	if first < 50*time.Millisecond || first > 2*time.Second {
		t.Errorf("the first request took %v, want about the 50ms timeout", first)
	}
	start = time.Now()
	for range 200 {
		allow(t, rl, "merchant")
	}
	if rest := time.Since(start); rest > time.Second {
		t.Errorf("200 requests after the timeout took %v: each waited for the hung Redis", rest)
	}
	if n := len(logs.lines()); n != 1 {
		t.Errorf("%d log lines, want 1", n)
	}
}

// Redis going away and coming back, through a proxy: the node falls back,
// then shares the limit again.
func TestFallbackRedisDownAndBack(t *testing.T) {
	target := testRedis(t).Options().Addr
	proxy := pgtest.StartProxy(t, target)
	opt, _ := redis.ParseURL(redisURL(t))
	opt.Addr = proxy.Addr()
	opt.MaxRetries, opt.DialerRetries, opt.ContextTimeoutEnabled = -1, 1, true
	viaProxy := redis.NewClient(opt)
	defer viaProxy.Close()
	direct := testRedis(t)
	prefix := testPrefix(t, direct)

	clk := newClock()
	log, logs := newLogger()
	f := NewFallback(log, FallbackOptions{Now: clk.Now})
	node := f.RateLimiter(NewRedisRateLimiter(viaProxy, prefix, 1, 2, clk.Now), NewMemoryRateLimiter(1, 2, clk.Now))
	other := NewRedisRateLimiter(direct, prefix, 1, 2, clk.Now) // another node, still reaching Redis

	allow(t, node, "a")
	proxy.Cut()
	allow(t, node, "a") // fails over: the fallback's bucket is fresh
	if f.Available() {
		t.Fatal("still Available() with Redis cut off")
	}
	proxy.Restore()
	clk.Advance(time.Second) // refills one token everywhere; the retry is due
	if !allow(t, node, "a").Allowed || !f.Available() {
		t.Fatal("the node did not go back to Redis")
	}
	// Shared again: Redis had 1 token left after the first request, 2 after
	// the refill; the node took one, the other node takes the last.
	if !allow(t, other, "a").Allowed || allow(t, other, "a").Allowed || allow(t, node, "a").Allowed {
		t.Fatal("after the recovery the two nodes do not share one bucket")
	}
	lines := logs.lines()
	if len(lines) != 2 || !strings.Contains(lines[1], "available again") {
		t.Fatalf("log lines:\n%s", strings.Join(lines, "\n"))
	}
}
