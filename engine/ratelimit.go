package engine

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket per client: each client may make rate
// token requests a second on this node, in bursts of up to burst. It is
// checked after authentication, so a forged request naming a client cannot
// spend that client's budget.
type rateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory; past it, buckets idle long enough
// to be full again are dropped (forgetting them changes nothing).
const maxBuckets = 100_000

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(rate))
	}
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// allow reports whether the client may make one more request now. A nil
// limiter allows everything.
func (l *rateLimiter) allow(clientID string) bool {
	if l == nil {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[clientID]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.dropFull(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[clientID] = b
	}
	b.tokens = min(l.burst, b.tokens+max(0, now.Sub(b.last).Seconds())*l.rate) // a clock stepping back refills nothing
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *rateLimiter) dropFull(now time.Time) {
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for id, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, id)
		}
	}
}
