// Package limit holds tokengate's rate limits and lockouts.
package limit

import (
	"context"
	"time"
)

// Decision is a limiter's answer; RetryAfter is the real wait (> 0 when !Allowed), for Retry-After.
type Decision struct {
	Allowed    bool
	RetryAfter time.Duration
}

// RateLimiter is a token bucket per key (a client ID): rate per second, burst.
type RateLimiter interface {
	Allow(ctx context.Context, key string) (Decision, error)
}

// Lockout throttles failures per key (a username) with exponential backoff.
type Lockout interface {
	Check(ctx context.Context, key string) (Decision, error)
	Fail(ctx context.Context, key string) (Decision, error)
	Succeed(ctx context.Context, key string) error
}
