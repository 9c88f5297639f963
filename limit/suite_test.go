package limit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The same behaviour is asked of every implementation: these suites run
// against the in-process and the Redis ones.

type newRateFunc func(t *testing.T, rate float64, burst int, now func() time.Time) RateLimiter

type newLockoutFunc func(t *testing.T, p Policy, now func() time.Time) Lockout

// within reports whether got is want, give or take the Redis
// implementations' microsecond (and the memory one's rounding) precision.
func within(got, want time.Duration) bool {
	d := got - want
	return d > -2*time.Microsecond && d < 2*time.Microsecond
}

func runRateLimiterSuite(t *testing.T, newRL newRateFunc) {
	t.Run("BurstThenRefill", func(t *testing.T) {
		clk := newClock()
		l := newRL(t, 10, 3, clk.Now)
		for i := range 3 {
			if d := allow(t, l, "a"); !d.Allowed {
				t.Fatalf("request %d of the burst refused: %+v", i+1, d)
			}
		}
		if d := allow(t, l, "a"); d.Allowed {
			t.Fatal("a request beyond the burst was allowed")
		}
		clk.Advance(100 * time.Millisecond) // one token at 10/s
		if !allow(t, l, "a").Allowed || allow(t, l, "a").Allowed {
			t.Fatal("the refill is not one token per 100ms")
		}
		clk.Advance(time.Hour)
		for range 3 {
			if !allow(t, l, "a").Allowed {
				t.Fatal("the bucket did not refill to the burst")
			}
		}
		if allow(t, l, "a").Allowed {
			t.Fatal("the bucket refilled beyond the burst")
		}
	})

	t.Run("RetryAfterIsTheRealWait", func(t *testing.T) {
		clk := newClock()
		l := newRL(t, 2, 1, clk.Now) // one token every 500ms
		allow(t, l, "a")
		d := allow(t, l, "a")
		if d.Allowed || !within(d.RetryAfter, 500*time.Millisecond) {
			t.Fatalf("right after the only token: %+v, want refused with RetryAfter 500ms", d)
		}
		clk.Advance(200 * time.Millisecond)
		if d := allow(t, l, "a"); d.Allowed || !within(d.RetryAfter, 300*time.Millisecond) {
			t.Fatalf("200ms later: %+v, want refused with RetryAfter 300ms", d)
		}
		clk.Advance(300*time.Millisecond - time.Millisecond)
		if d := allow(t, l, "a"); d.Allowed || !within(d.RetryAfter, time.Millisecond) {
			t.Fatalf("1ms before the token: %+v, want RetryAfter 1ms", d)
		}
		clk.Advance(time.Millisecond)
		if d := allow(t, l, "a"); !d.Allowed {
			t.Fatalf("after waiting RetryAfter: %+v, want allowed", d)
		}

		slow := newRL(t, 0.01, 1, clk.Now) // one token every 100s
		allow(t, slow, "a")
		if d := allow(t, slow, "a"); !within(d.RetryAfter, 100*time.Second) {
			t.Fatalf("at 0.01/s: RetryAfter %v, want 100s", d.RetryAfter)
		}
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		clk := newClock()
		l := newRL(t, 1, 1, clk.Now)
		long := strings.Repeat("x", MaxKeyLen+100)
		keys := []string{"a", "b", "", strings.Repeat("k", MaxKeyLen), long + "1", long + "2"}
		for _, k := range keys {
			if !allow(t, l, k).Allowed {
				t.Fatalf("key %.20q…(%d bytes) was limited by other keys", k, len(k))
			}
		}
		for _, k := range keys {
			if allow(t, l, k).Allowed {
				t.Fatalf("key %.20q…(%d bytes) got a second token", k, len(k))
			}
		}
	})

	t.Run("ClockSteppingBackDoesNotLockOut", func(t *testing.T) {
		clk := newClock()
		l := newRL(t, 10, 2, clk.Now)
		allow(t, l, "a")
		allow(t, l, "a")
		clk.Advance(-time.Hour)
		d := allow(t, l, "a")
		if d.Allowed || !within(d.RetryAfter, 100*time.Millisecond) {
			t.Fatalf("after the clock stepped back an hour: %+v, want an empty bucket (RetryAfter 100ms), not an hour's wait", d)
		}
	})

	t.Run("ConcurrentRequestsShareOneBudget", func(t *testing.T) {
		clk := newClock() // frozen: no refill
		l := newRL(t, 1, 25, clk.Now)
		var ok atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 20 {
					d, err := l.Allow(context.Background(), "a")
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						ok.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if ok.Load() != 25 {
			t.Fatalf("160 concurrent requests against a burst of 25: %d allowed", ok.Load())
		}
	})
}

func runLockoutSuite(t *testing.T, newLO newLockoutFunc) {
	p := Policy{Threshold: 3, Base: time.Second, Max: 10 * time.Second, Window: time.Minute}

	t.Run("ExponentialBackoff", func(t *testing.T) {
		clk := newClock()
		l := newLO(t, p, clk.Now)
		for i := range 2 {
			if d := fail(t, l, "alice"); !d.Allowed {
				t.Fatalf("failure %d locked: %+v", i+1, d)
			}
			if d := check(t, l, "alice"); !d.Allowed {
				t.Fatalf("check after failure %d locked: %+v", i+1, d)
			}
		}
		// Failure n (n >= 3) locks for 1s·2^(n−3), capped at 10s.
		for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
			if d := fail(t, l, "alice"); d.Allowed || !within(d.RetryAfter, want) {
				t.Fatalf("Fail: %+v, want locked for %v", d, want)
			}
			if d := check(t, l, "alice"); d.Allowed || !within(d.RetryAfter, want) {
				t.Fatalf("Check: %+v, want locked for %v", d, want)
			}
			clk.Advance(want / 2)
			if d := check(t, l, "alice"); d.Allowed || !within(d.RetryAfter, want-want/2) {
				t.Fatalf("Check halfway: %+v, want locked for %v more", d, want-want/2)
			}
			clk.Advance(want - want/2)
			if d := check(t, l, "alice"); !d.Allowed {
				t.Fatalf("Check when the %v lock is over: %+v", want, d)
			}
		}
		if d := check(t, l, "bob"); !d.Allowed {
			t.Fatalf("another key is locked: %+v", d)
		}
	})

	t.Run("FailuresAreForgottenAfterTheWindow", func(t *testing.T) {
		clk := newClock()
		l := newLO(t, p, clk.Now)
		fail(t, l, "alice")
		fail(t, l, "alice")
		clk.Advance(p.Window - time.Second)
		if d := fail(t, l, "alice"); d.Allowed {
			t.Fatal("the third failure within the window did not lock")
		}
		clk.Advance(time.Second) // the lock is over; the window runs from the last failure
		if d := fail(t, l, "alice"); d.Allowed {
			t.Fatal("a failure one second after the last one was not counted")
		}
		clk.Advance(2*time.Second + p.Window)
		for i := range 2 {
			if d := fail(t, l, "alice"); !d.Allowed {
				t.Fatalf("failure %d after a quiet window locked: %+v (old failures not forgotten)", i+1, d)
			}
		}
	})

	t.Run("ALockOutlastsTheWindow", func(t *testing.T) {
		clk := newClock()
		long := Policy{Threshold: 2, Base: 10 * time.Minute, Max: 10 * time.Minute, Window: time.Minute}
		l := newLO(t, long, clk.Now)
		fail(t, l, "alice")
		fail(t, l, "alice")
		clk.Advance(5 * time.Minute)
		if d := check(t, l, "alice"); d.Allowed || !within(d.RetryAfter, 5*time.Minute) {
			t.Fatalf("5 minutes into a 10-minute lock with a 1-minute window: %+v", d)
		}
		// A failure during the lock (a request in flight when it began)
		// still counts: the failures are not forgotten while locked.
		if d := fail(t, l, "alice"); d.Allowed || !within(d.RetryAfter, 10*time.Minute) {
			t.Fatalf("a failure 5 minutes into the lock: %+v, want locked for 10m", d)
		}
	})

	t.Run("SucceedForgets", func(t *testing.T) {
		clk := newClock()
		l := newLO(t, p, clk.Now)
		for range 3 {
			fail(t, l, "alice")
		}
		succeed(t, l, "alice")
		if d := check(t, l, "alice"); !d.Allowed {
			t.Fatalf("locked after Succeed: %+v", d)
		}
		if d := fail(t, l, "alice"); !d.Allowed {
			t.Fatalf("the first failure after Succeed locked: %+v", d)
		}
		succeed(t, l, "nobody") // no entry: no error
	})

	t.Run("CheckHasNoSideEffect", func(t *testing.T) {
		clk := newClock()
		l := newLO(t, p, clk.Now)
		for range 10 {
			check(t, l, "alice")
		}
		fail(t, l, "alice")
		for range 10 {
			check(t, l, "alice")
		}
		if d := fail(t, l, "alice"); !d.Allowed {
			t.Fatal("checks counted as failures")
		}
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		clk := newClock()
		l := newLO(t, Policy{Threshold: 1, Base: time.Second, Max: time.Second, Window: time.Minute}, clk.Now)
		long := strings.Repeat("u", MaxKeyLen+1)
		if d := fail(t, l, long+"1"); d.Allowed {
			t.Fatal("threshold 1 did not lock")
		}
		for _, k := range []string{long + "2", long, "u", ""} {
			if d := check(t, l, k); !d.Allowed {
				t.Fatalf("key %.20q…(%d bytes) locked by another key's failure", k, len(k))
			}
		}
		if d := check(t, l, long+"1"); d.Allowed {
			t.Fatal("a long key's lock was not found again")
		}
	})

	t.Run("ConcurrentFailuresAllCount", func(t *testing.T) {
		clk := newClock()
		l := newLO(t, Policy{Threshold: 50, Base: time.Second, Max: time.Hour, Window: time.Hour}, clk.Now)
		var wg sync.WaitGroup
		for range 7 {
			wg.Go(func() {
				for range 7 {
					if _, err := l.Fail(context.Background(), "alice"); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if d := check(t, l, "alice"); !d.Allowed {
			t.Fatalf("49 failures locked at threshold 50: %+v", d)
		}
		if d := fail(t, l, "alice"); d.Allowed || !within(d.RetryAfter, time.Second) {
			t.Fatalf("the 50th failure: %+v, want locked for 1s", d)
		}
	})
}
