package limit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// FallbackOptions tune a Fallback; zero fields take the defaults.
type FallbackOptions struct {
	// Timeout bounds each call to the primary (default 50ms), so a Redis
	// that hangs costs a request at most this much.
	Timeout time.Duration
	// Retry is how often the primary is tried again while it fails (default
	// 1s); in between, requests go straight to the fallback.
	Retry time.Duration
	Now   func() time.Time
}

// Fallback is the health of one shared store (a Redis) as seen by the
// limiters that use it. Limiters wrapped by the same Fallback share one
// state and so one log line: while the store fails, every call is answered
// by the in-process fallback, one "unavailable" line is logged at the first
// failure and one "available again" line when a retry succeeds; nothing is
// logged per request. Safe for concurrent use.
type Fallback struct {
	log     *slog.Logger
	timeout time.Duration
	retry   time.Duration
	now     func() time.Time

	down    atomic.Bool // read without the lock on every call
	mu      sync.Mutex
	probing bool      // one call is trying the primary while down
	retryAt time.Time // when down: the next call at or after it probes
}

// NewFallback returns a Fallback that logs to logger (nil: slog.Default()).
func NewFallback(logger *slog.Logger, o FallbackOptions) *Fallback {
	if logger == nil {
		logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	return &Fallback{log: logger, timeout: o.Timeout, retry: o.Retry, now: orNow(o.Now)}
}

// Available reports whether the primary is in use (it has not failed since
// it last answered).
func (f *Fallback) Available() bool { return !f.down.Load() }

// begin reports whether this call should ask the primary, and whether it is
// the one probe allowed while the primary is down.
func (f *Fallback) begin() (usePrimary, probe bool) {
	if !f.down.Load() {
		return true, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.down.Load() {
		return true, false
	}
	if f.probing || f.now().Before(f.retryAt) {
		return false, false
	}
	f.probing = true
	return true, true
}

func (f *Fallback) succeeded(probe bool) {
	// Only a probe may bring the primary back: a call begun before it went
	// down that happens to succeed late would make the state (and the log)
	// flap.
	if !probe {
		return
	}
	f.mu.Lock()
	f.probing = false
	f.down.Store(false)
	f.mu.Unlock()
	f.log.Info("shared limits available again")
}

func (f *Fallback) failed(probe bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if probe {
		f.probing = false
		f.retryAt = f.now().Add(f.retry)
		return
	}
	if f.down.Load() {
		return
	}
	f.down.Store(true)
	f.retryAt = f.now().Add(f.retry)
	f.log.Warn("shared limits unavailable, falling back to per-node limits", "error", err.Error())
}

// abandoned ends a call whose caller gave up: that says nothing about the
// primary.
func (f *Fallback) abandoned(probe bool) {
	if probe {
		f.mu.Lock()
		f.probing = false
		f.mu.Unlock()
	}
}

// call asks primary, under the timeout, unless it is known to be down, and
// answers from fallback when it is not asked or fails.
func call[T any](ctx context.Context, f *Fallback, primary func(context.Context) (T, error), fallback func() (T, error)) (T, error) {
	use, probe := f.begin()
	if !use {
		return fallback()
	}
	pctx, cancel := context.WithTimeout(ctx, f.timeout)
	v, err := primary(pctx)
	cancel()
	switch {
	case err == nil:
		f.succeeded(probe)
		return v, nil
	case ctx.Err() != nil:
		f.abandoned(probe)
	default:
		f.failed(probe, err)
	}
	return fallback()
}

// RateLimiter returns a RateLimiter that asks primary and, while primary
// fails, fallback. Its errors are fallback's.
func (f *Fallback) RateLimiter(primary, fallback RateLimiter) RateLimiter {
	if _, ok := primary.(Unlimited); ok {
		return primary
	}
	return &fallbackRateLimiter{f: f, primary: primary, fallback: fallback}
}

type fallbackRateLimiter struct {
	f                 *Fallback
	primary, fallback RateLimiter
}

func (l *fallbackRateLimiter) Allow(ctx context.Context, key string) (Decision, error) {
	return call(ctx, l.f,
		func(ctx context.Context) (Decision, error) { return l.primary.Allow(ctx, key) },
		func() (Decision, error) { return l.fallback.Allow(ctx, key) })
}

// Lockout returns a Lockout that asks primary and, while primary fails,
// fallback. Succeed clears the key in both, so failures the fallback
// recorded during one outage do not resurface in the next. Its errors are
// fallback's.
func (f *Fallback) Lockout(primary, fallback Lockout) Lockout {
	return &fallbackLockout{f: f, primary: primary, fallback: fallback}
}

type fallbackLockout struct {
	f                 *Fallback
	primary, fallback Lockout
}

func (l *fallbackLockout) Check(ctx context.Context, key string) (Decision, error) {
	return call(ctx, l.f,
		func(ctx context.Context) (Decision, error) { return l.primary.Check(ctx, key) },
		func() (Decision, error) { return l.fallback.Check(ctx, key) })
}

func (l *fallbackLockout) Fail(ctx context.Context, key string) (Decision, error) {
	return call(ctx, l.f,
		func(ctx context.Context) (Decision, error) { return l.primary.Fail(ctx, key) },
		func() (Decision, error) { return l.fallback.Fail(ctx, key) })
}

func (l *fallbackLockout) Succeed(ctx context.Context, key string) error {
	err := l.fallback.Succeed(ctx, key)
	if err != nil {
		return err
	}
	_, err = call(ctx, l.f,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, l.primary.Succeed(ctx, key) },
		func() (struct{}, error) { return struct{}{}, nil })
	return err
}
