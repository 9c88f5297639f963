// Package limit holds the request limits: a token-bucket rate limit per
// client and a failure lockout with exponential backoff per username. Each
// has an in-process implementation (per node) and a Redis one (shared by
// every node, so N nodes do not allow N times the rate); Fallback answers
// from the in-process one while Redis fails, and Open builds the pair a
// configuration describes.
//
// Every decision carries the real wait (Decision.RetryAfter) for a
// Retry-After header. Time comes from an injected clock; the Redis
// implementations pass the node's clock into their scripts, so nodes sharing
// a Redis need synchronised clocks (NTP): a skew of s between nodes moves a
// bucket's refill and a lock's end by up to s as each node sees them.
package limit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"
	"unsafe"
)

// Decision is a limiter's answer. When Allowed is false, RetryAfter (> 0) is
// how long until the same request would be allowed, for Retry-After.
type Decision struct {
	Allowed    bool
	RetryAfter time.Duration
}

// RetryAfterSeconds is RetryAfter as a Retry-After header's delay-seconds
// (RFC 9110 §10.2.3): rounded up, so a client that waits that long is
// allowed, and at least 1 when refused; 0 when allowed.
func (d Decision) RetryAfterSeconds() int {
	if d.Allowed {
		return 0
	}
	return max(1, int((d.RetryAfter+time.Second-1)/time.Second))
}

var allowed = Decision{Allowed: true}

func denied(wait time.Duration) Decision {
	return Decision{RetryAfter: max(wait, time.Nanosecond)}
}

// RateLimiter is a token bucket per key (a client ID): rate tokens a second
// flow into a bucket of burst tokens, and each allowed request takes one.
// Implementations are safe for concurrent use.
type RateLimiter interface {
	// Allow takes a token from key's bucket if it has one. It returns an
	// error only when the limiter's shared store fails (in-process limiters
	// never fail); the Decision is then meaningless.
	Allow(ctx context.Context, key string) (Decision, error)
}

// Lockout throttles failures per key (a username). After Policy.Threshold
// consecutive failures the key is locked for Base·2^(n−Threshold), capped at
// Max, where n counts the failures; failures are forgotten Window after the
// last one (but never while a lock lasts), and Succeed forgets them at once.
// Implementations are safe for concurrent use; their errors come only from a
// shared store (in-process lockouts never fail).
type Lockout interface {
	// Check reports whether key is locked now, without side effects.
	Check(ctx context.Context, key string) (Decision, error)
	// Fail records a failure for key and returns the decision after it.
	Fail(ctx context.Context, key string) (Decision, error)
	// Succeed forgets key's failures.
	Succeed(ctx context.Context, key string) error
}

// Policy is a Lockout's backoff.
type Policy struct {
	Threshold int           // the failure that locks first (>= 1)
	Base      time.Duration // the first lock (>= 1ms)
	Max       time.Duration // the longest lock (>= Base, <= 30 days)
	Window    time.Duration // failures are forgotten this long after the last (> 0, <= 30 days)
}

// DefaultPolicy is five failures, then 1s, 2s, 4s ... up to 15 minutes;
// failures are forgotten after 15 minutes without one.
var DefaultPolicy = Policy{Threshold: 5, Base: time.Second, Max: 15 * time.Minute, Window: 15 * time.Minute}

// maxPolicy bounds Max and Window (and keeps instants from overflowing).
const maxPolicy = 30 * 24 * time.Hour

// Validate returns an error naming the first unusable field.
func (p Policy) Validate() error {
	switch {
	case p.Threshold < 1:
		return fmt.Errorf("limit: lockout threshold %d is not at least 1", p.Threshold)
	case p.Base < time.Millisecond:
		return fmt.Errorf("limit: lockout base %v is shorter than 1ms", p.Base)
	case p.Max < p.Base:
		return fmt.Errorf("limit: lockout max %v is shorter than base %v", p.Max, p.Base)
	case p.Window <= 0:
		return fmt.Errorf("limit: lockout window %v is not positive", p.Window)
	case p.Max > maxPolicy || p.Window > maxPolicy:
		return fmt.Errorf("limit: lockout max and window may not exceed %v", maxPolicy)
	}
	return nil
}

// lockFor is the lock after the n-th consecutive failure (0: none).
func (p Policy) lockFor(n int64) time.Duration {
	if n < int64(p.Threshold) {
		return 0
	}
	d := p.Base
	for k := n - int64(p.Threshold); k > 0 && d < p.Max; k-- {
		if d > p.Max/2 {
			return p.Max
		}
		d *= 2
	}
	return min(d, p.Max)
}

// MaxKeyLen is the longest key kept as it is; longer keys are replaced by
// their SHA-256, so a key's cost in memory and in Redis is bounded whatever
// a caller sends.
const MaxKeyLen = 256

// longKey is the digest standing for a key longer than MaxKeyLen. It reads
// the string's bytes in place: a copy of a 64 KiB key per request is garbage
// an attacker could make the server produce at will.
func longKey(key string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
}

func orNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// Unlimited allows every request.
type Unlimited struct{}

// Allow always allows; it never fails.
func (Unlimited) Allow(context.Context, string) (Decision, error) { return allowed, nil }
