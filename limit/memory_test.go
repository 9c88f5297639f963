package limit

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestMemoryRateLimiter(t *testing.T) {
	runRateLimiterSuite(t, func(_ *testing.T, rate float64, burst int, now func() time.Time) RateLimiter {
		return NewMemoryRateLimiter(rate, burst, now)
	})
}

func TestMemoryLockout(t *testing.T) {
	runLockoutSuite(t, func(_ *testing.T, p Policy, now func() time.Time) Lockout {
		return NewMemoryLockout(p, now)
	})
}

func TestZeroRateIsUnlimited(t *testing.T) {
	l := NewMemoryRateLimiter(0, 0, newClock().Now)
	if _, ok := l.(Unlimited); !ok {
		t.Fatalf("rate 0 gave %T, want Unlimited", l)
	}
	for range 1000 {
		if !allow(t, l, "a").Allowed {
			t.Fatal("Unlimited refused a request")
		}
	}
}

func TestDefaultBurstIsOneSecondsWorth(t *testing.T) {
	for rate, want := range map[float64]int{10: 10, 0.5: 1, 2.7: 2} {
		l := NewMemoryRateLimiter(rate, 0, newClock().Now)
		n := 0
		for allow(t, l, "a").Allowed {
			n++
		}
		if n != want {
			t.Errorf("rate %v, burst 0: %d allowed at once, want %d", rate, n, want)
		}
	}
}

// At the bound, entries at rest (full buckets) go first, then the least
// recently used.
func TestRateLimiterEvictsRestingThenOldest(t *testing.T) {
	clk := newClock()
	l := newMemoryRateLimiter(1, 1, clk.Now, 4, 1<<20, 1).(*memoryRateLimiter)
	for _, k := range []string{"a", "b", "c", "d"} {
		allow(t, l, k) // each bucket now empty for 1s
	}
	clk.Advance(2 * time.Second) // all four are full again
	allow(t, l, "c")
	allow(t, l, "d") // c and d empty again; a and b at rest
	allow(t, l, "e") // evicts a and b
	if n, _ := l.t.stats(); n != 3 {
		t.Fatalf("%d entries, want 3 (c, d, e)", n)
	}
	allow(t, l, "f") // 4 entries, no eviction
	allow(t, l, "g") // none at rest: evicts the oldest, c
	if !allow(t, l, "c").Allowed {
		t.Fatal("c was not evicted (its bucket is still empty)")
	}
	// Inserting c again evicted d, the oldest now; e, f and g are kept.
	for _, k := range []string{"e", "f", "g"} {
		if allow(t, l, k).Allowed {
			t.Fatalf("%s was evicted though older entries were there", k)
		}
	}
}

func TestLockoutEvictsExpiredThenLeastRecentlyFailed(t *testing.T) {
	clk := newClock()
	p := Policy{Threshold: 1, Base: time.Minute, Max: time.Minute, Window: time.Minute}
	l := newMemoryLockout(p, clk.Now, 3, 1<<20, 1)
	fail(t, l, "old")
	clk.Advance(2 * time.Minute) // old expired
	fail(t, l, "a")
	fail(t, l, "b")
	fail(t, l, "c") // evicts old, not a
	if check(t, l, "a").Allowed {
		t.Fatal("a live lock was evicted while an expired entry was there")
	}
	clk.Advance(time.Second)
	fail(t, l, "a") // a is now the most recently failed
	fail(t, l, "d") // evicts b
	if !check(t, l, "b").Allowed {
		t.Fatal("b, the least recently failed, was kept")
	}
	for _, k := range []string{"a", "c", "d"} {
		if check(t, l, k).Allowed {
			t.Fatalf("%s was evicted", k)
		}
	}
}

// A flood of distinct keys, some 64 KiB long, leaves the limiter within its
// bounds in entries and in bytes, by its own accounting and by the heap's.
func TestMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	clk := newClock()
	rl := NewMemoryRateLimiter(1, 1, clk.Now).(*memoryRateLimiter)
	lo := NewMemoryLockout(DefaultPolicy, clk.Now).(*memoryLockout)
	before := heapInUse()

	big := []byte(strings.Repeat("x", 64<<10))
	ctx := context.Background()
	for i := range 1_000_000 {
		var key string
		if i%100 == 0 {
			copy(big, fmt.Sprint(i))
			key = string(big)
		} else {
			key = fmt.Sprintf("client-%d-%032d", i, i)
		}
		rl.Allow(ctx, key)
		lo.Fail(ctx, key)
		if i%1000 == 0 {
			clk.Advance(time.Millisecond)
		}
	}
	for name, tb := range map[string]interface{ stats() (int, int) }{"rate limiter": rl.t, "lockout": lo.t} {
		n, b := tb.stats()
		t.Logf("%s: %d entries, %d bytes by its accounting", name, n, b)
		if n > MaxEntries || b > MaxBytes {
			t.Errorf("%s holds %d entries in %d bytes, bound %d entries in %d bytes", name, n, b, MaxEntries, MaxBytes)
		}
		if n < MaxEntries/2 {
			t.Errorf("%s holds only %d entries: evicting far more than the bound asks", name, n)
		}
	}
	grew := heapInUse() - before
	t.Logf("heap grew by %d MiB", grew>>20)
	if grew > 2*MaxBytes {
		t.Errorf("heap grew by %d MiB for two limiters bounded at %d MiB each", grew>>20, MaxBytes>>20)
	}
	runtime.KeepAlive(rl)
	runtime.KeepAlive(lo)
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// A key cut from a large buffer (as a client_id is from a request body) is
// copied, so the limiter does not keep the buffer alive.
func TestKeyDoesNotPinItsBuffer(t *testing.T) {
	rl := NewMemoryRateLimiter(1, 1, newClock().Now)
	lo := NewMemoryLockout(DefaultPolicy, newClock().Now)
	freed := make(chan struct{}, 1)
	func() {
		body := new([1 << 20]byte)
		copy(body[:], "client-id-in-a-large-body")
		runtime.AddCleanup(body, func(chan struct{}) { freed <- struct{}{} }, freed)
		key := unsafe.String(&body[0], 25)
		allow(t, rl, key)
		fail(t, lo, key)
	}()
	for range 10 {
		runtime.GC()
		select {
		case <-freed:
			runtime.KeepAlive(rl)
			runtime.KeepAlive(lo)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the request buffer a key was cut from is still alive")
}

func TestAllowDoesNotAllocate(t *testing.T) {
	clk := newClock()
	l := NewMemoryRateLimiter(1e9, 1<<30, clk.Now)
	lo := NewMemoryLockout(DefaultPolicy, clk.Now)
	ctx := context.Background()
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("client-%d", i)
		l.Allow(ctx, keys[i])
		lo.Fail(ctx, keys[i])
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() { l.Allow(ctx, keys[i%64]); i++ }); a != 0 {
		t.Errorf("Allow on a known short key: %v allocations", a)
	}
	if a := testing.AllocsPerRun(1000, func() { lo.Check(ctx, keys[i%64]); lo.Check(ctx, "unknown"); i++ }); a != 0 {
		t.Errorf("Check on a short key: %v allocations", a)
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	l := NewMemoryRateLimiter(1e9, 1<<30, nil)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("client-%04d", i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(ctx, keys[i&1023])
			i++
		}
	})
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[Decision]int{
		allowed:                 0,
		denied(time.Nanosecond): 1,
		denied(time.Second):     1,
		denied(time.Second + 1): 2,
		denied(14*time.Minute + 59*time.Second + time.Millisecond): 900,
	} {
		if got := d.RetryAfterSeconds(); got != want {
			t.Errorf("%+v: %d, want %d", d, got, want)
		}
	}
}
