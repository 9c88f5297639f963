package limit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisRateLimiter(t *testing.T) {
	c := testRedis(t)
	runRateLimiterSuite(t, func(t *testing.T, rate float64, burst int, now func() time.Time) RateLimiter {
		return NewRedisRateLimiter(c, testPrefix(t, c), rate, burst, now)
	})
}

func TestRedisLockout(t *testing.T) {
	c := testRedis(t)
	runLockoutSuite(t, func(t *testing.T, p Policy, now func() time.Time) Lockout {
		return NewRedisLockout(c, testPrefix(t, c), p, now)
	})
}

// Two nodes on one Redis share one budget: together they allow the burst
// and the rate once, not twice.
func TestRedisRateLimitIsSharedByNodes(t *testing.T) {
	c1, c2 := testRedis(t), testRedis(t)
	prefix := testPrefix(t, c1)
	clk := newClock()
	nodes := []RateLimiter{
		NewRedisRateLimiter(c1, prefix, 10, 5, clk.Now),
		NewRedisRateLimiter(c2, prefix, 10, 5, clk.Now),
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, l := range nodes {
		for range 4 {
			wg.Go(func() {
				for range 10 {
					if d, err := l.Allow(context.Background(), "merchant"); err != nil {
						t.Error(err)
					} else if d.Allowed {
						ok.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if ok.Load() != 5 {
		t.Fatalf("two nodes allowed %d requests at once with a shared burst of 5", ok.Load())
	}
	// Over 10 simulated seconds at 10/s, the two nodes together get 100.
	allowed := 0
	for i := range 1000 {
		clk.Advance(10 * time.Millisecond)
		if allow(t, nodes[i%2], "merchant").Allowed {
			allowed++
		}
	}
	if allowed != 100 {
		t.Fatalf("two nodes allowed %d requests in 10s at a shared 10/s", allowed)
	}
	// The second node sees the wait the first one's requests caused.
	d := allow(t, nodes[1], "merchant")
	if d.Allowed || !within(d.RetryAfter, 100*time.Millisecond) {
		t.Fatalf("after the budget was spent: %+v, want refused for 100ms", d)
	}
}

func TestRedisLockoutIsSharedByNodes(t *testing.T) {
	c1, c2 := testRedis(t), testRedis(t)
	prefix := testPrefix(t, c1)
	clk := newClock()
	p := Policy{Threshold: 4, Base: time.Second, Max: time.Minute, Window: time.Hour}
	a, b := NewRedisLockout(c1, prefix, p, clk.Now), NewRedisLockout(c2, prefix, p, clk.Now)
	fail(t, a, "alice")
	fail(t, b, "alice")
	fail(t, a, "alice")
	if d := fail(t, b, "alice"); d.Allowed || !within(d.RetryAfter, time.Second) {
		t.Fatalf("the 4th failure, spread over two nodes: %+v, want locked for 1s", d)
	}
	if d := check(t, a, "alice"); d.Allowed {
		t.Fatal("the other node does not see the lock")
	}
	succeed(t, b, "alice")
	if d := check(t, a, "alice"); !d.Allowed {
		t.Fatal("a success on one node did not clear the lock on the other")
	}
}

// Keys expire when forgetting them changes nothing, so Redis holds only
// what is in use; long keys are stored under a fixed-size digest.
func TestRedisKeysExpireAndAreBounded(t *testing.T) {
	c := testRedis(t)
	ctx := context.Background()
	prefix := testPrefix(t, c)
	clk := newClock()
	rl := NewRedisRateLimiter(c, prefix+"rl:", 1, 5, clk.Now) // full again 5s after a burst
	lo := NewRedisLockout(c, prefix+"lock:", Policy{Threshold: 1, Base: time.Second, Max: 2 * time.Hour, Window: time.Minute}, clk.Now)
	long := strings.Repeat("k", 64<<10)
	for _, k := range []string{"short", long} {
		allow(t, rl, k)
		fail(t, lo, k)
	}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Fatalf("keys %q, want 4", keys)
	}
	for _, k := range keys {
		if len(k) > len(prefix)+len("lock:h:")+64 {
			t.Errorf("a Redis key of %d bytes", len(k))
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		max := time.Second + 2*time.Millisecond // one token's refill after one request
		if strings.HasPrefix(k, prefix+"lock:") {
			max = time.Minute + 2*time.Millisecond
		}
		if ttl <= 0 || ttl > max {
			t.Errorf("%s: TTL %v, want (0, %v]", k, ttl, max)
		}
	}
	// A lock longer than the window keeps its key until the lock ends.
	for range 14 {
		fail(t, lo, "many") // 1s·2^13 > 2h: capped at 2h
	}
	if ttl := c.PTTL(ctx, redisKey(prefix+"lock:", "many")).Val(); ttl < 2*time.Hour-time.Second || ttl > 2*time.Hour+2*time.Millisecond {
		t.Errorf("a 2h lock's key expires in %v", ttl)
	}
}

// A Redis that cannot be reached is an error, returned promptly; Fallback
// (tested in fallback_test.go) turns it into per-node answers.
func TestRedisErrorsAreReturned(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := NewRedisRateLimiter(c, RatePrefix, 1, 1, nil).Allow(ctx, "a"); err == nil {
		t.Error("Allow against a closed port: no error")
	}
	lo := NewRedisLockout(c, LockoutPrefix, DefaultPolicy, nil)
	if _, err := lo.Check(ctx, "a"); err == nil {
		t.Error("Check against a closed port: no error")
	}
	if _, err := lo.Fail(ctx, "a"); err == nil {
		t.Error("Fail against a closed port: no error")
	}
	if err := lo.Succeed(ctx, "a"); err == nil {
		t.Error("Succeed against a closed port: no error")
	}
}

// The scripts are loaded once and then called by digest (EVALSHA), and are
// reloaded transparently after SCRIPT FLUSH.
func TestRedisScriptsSurviveFlush(t *testing.T) {
	c := testRedis(t)
	clk := newClock()
	rl := NewRedisRateLimiter(c, testPrefix(t, c), 1, 2, clk.Now)
	allow(t, rl, "a")
	if err := c.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if d := allow(t, rl, "a"); !d.Allowed {
		t.Fatal("the second token of the burst was refused after SCRIPT FLUSH")
	}
	if d := allow(t, rl, "a"); d.Allowed {
		t.Fatal("a third token out of a burst of 2")
	}
}

func TestRedisZeroRateNeverCallsRedis(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	l := NewRedisRateLimiter(c, RatePrefix, 0, 0, nil)
	if d, err := l.Allow(context.Background(), "a"); err != nil || !d.Allowed {
		t.Fatalf("rate 0: %+v, %v", d, err)
	}
}
