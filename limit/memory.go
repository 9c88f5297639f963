package limit

import (
	"context"
	"math"
	"time"
)

// NewMemoryRateLimiter returns an in-process RateLimiter: rate tokens a
// second per key, in bursts of up to burst (burst < 1: one second's worth,
// at least 1). A rate <= 0 returns Unlimited. It remembers at most
// MaxEntries keys in about MaxBytes; forgetting a key whose bucket is full
// changes nothing, so under that bound only keys busier than the others'
// refill are forgotten early. now nil means time.Now.
func NewMemoryRateLimiter(rate float64, burst int, now func() time.Time) RateLimiter {
	return newMemoryRateLimiter(rate, burst, now, MaxEntries, MaxBytes, shardCount)
}

func newMemoryRateLimiter(rate float64, burst int, now func() time.Time, maxEntries, maxBytes, shards int) RateLimiter {
	if rate <= 0 {
		return Unlimited{}
	}
	g := newGCRA(rate, burst, time.Nanosecond)
	return &memoryRateLimiter{gcra: g, now: orNow(now), t: newTable(maxEntries, maxBytes, shards, func(tat *int64, now int64) bool { return *tat <= now })}
}

// gcra is the token bucket as the generic cell rate algorithm: the state is
// one instant, the theoretical arrival time (TAT) of the next request at the
// sustained rate, in some unit of time. A request at now is allowed when
// max(TAT, now) + interval − now <= tolerance, and then moves the TAT on by
// interval; the bucket is full when TAT <= now. The wait when denied is
// exactly how far the new TAT overshoots the tolerance.
type gcra struct {
	interval  int64 // one token's refill time
	tolerance int64 // burst·interval: how far the TAT may run ahead of now
}

func newGCRA(rate float64, burst int, unit time.Duration) gcra {
	if burst < 1 {
		burst = max(1, int(math.Min(rate, math.MaxInt32)))
	}
	// A week bounds both, far beyond any sane bucket, so now+tolerance cannot
	// overflow.
	week := int64(7 * 24 * time.Hour / unit)
	interval := min(week, max(1, int64(math.Round(float64(time.Second/unit)/rate))))
	tolerance := week
	if int64(burst) <= week/interval {
		tolerance = int64(burst) * interval
	}
	return gcra{interval: interval, tolerance: tolerance}
}

// take returns the new TAT and the wait (0: allowed, tat unchanged otherwise).
func (g gcra) take(tat, now int64) (int64, int64) {
	// A clock stepping back must not deny anyone for the length of the step:
	// at worst the bucket is empty.
	tat = min(max(tat, now), now+g.tolerance)
	next := tat + g.interval
	if over := next - now - g.tolerance; over > 0 {
		return tat, over
	}
	return next, 0
}

type memoryRateLimiter struct {
	gcra
	now func() time.Time
	t   *table[int64] // TAT in unix nanoseconds
}

// Allow never fails.
func (l *memoryRateLimiter) Allow(_ context.Context, key string) (Decision, error) {
	now := l.now().UnixNano()
	s, n, _ := l.t.lock(key, now, true)
	tat, wait := l.take(n.val, now)
	n.val = tat
	if wait > 0 {
		s.mu.Unlock()
		return denied(time.Duration(wait)), nil
	}
	s.touch(n)
	s.mu.Unlock()
	return allowed, nil
}

// NewMemoryLockout returns an in-process Lockout with policy p (which must
// be valid: see Policy.Validate; an invalid one panics). It remembers at
// most MaxEntries keys in about MaxBytes: past that it forgets keys whose
// failures have expired first, then the keys whose last failure is oldest.
// now nil means time.Now.
func NewMemoryLockout(p Policy, now func() time.Time) Lockout {
	return newMemoryLockout(p, now, MaxEntries, MaxBytes, shardCount)
}

func newMemoryLockout(p Policy, now func() time.Time, maxEntries, maxBytes, shards int) *memoryLockout {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return &memoryLockout{p: p, now: orNow(now), t: newTable(maxEntries, maxBytes, shards, func(st *failures, now int64) bool {
		return st.forgotten(now, int64(p.Window))
	})}
}

// failures is one key's lockout state, in unix nanoseconds.
type failures struct {
	n     int64 // consecutive failures
	last  int64 // the last failure
	until int64 // locked until
}

// forgotten reports whether the failures have expired: Window after the last
// one, but never before the lock ends.
func (f *failures) forgotten(now, window int64) bool {
	return now >= max(f.last+window, f.until)
}

type memoryLockout struct {
	p   Policy
	now func() time.Time
	t   *table[failures]
}

// Check never fails.
func (l *memoryLockout) Check(_ context.Context, key string) (Decision, error) {
	now := l.now().UnixNano()
	s, n, _ := l.t.lock(key, now, false)
	d := allowed
	if n != nil && n.val.until > now {
		d = denied(time.Duration(n.val.until - now))
	}
	s.mu.Unlock()
	return d, nil
}

// Fail never fails.
func (l *memoryLockout) Fail(_ context.Context, key string) (Decision, error) {
	now := l.now().UnixNano()
	s, n, _ := l.t.lock(key, now, true)
	f := &n.val
	if f.forgotten(now, int64(l.p.Window)) {
		*f = failures{}
	}
	f.n++
	f.last = now
	if lock := l.p.lockFor(f.n); lock > 0 {
		f.until = max(f.until, now+int64(lock))
	}
	d := allowed
	if f.until > now {
		d = denied(time.Duration(f.until - now))
	}
	// Oldest-first eviction then means "least recently failed".
	s.touch(n)
	s.mu.Unlock()
	return d, nil
}

// Succeed never fails.
func (l *memoryLockout) Succeed(_ context.Context, key string) error {
	now := l.now().UnixNano()
	s, n, _ := l.t.lock(key, now, false)
	if n != nil {
		s.remove(n)
	}
	s.mu.Unlock()
	return nil
}
