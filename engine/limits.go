package engine

import (
	"context"
	"sync"

	"github.com/tokengate/tokengate/limit"
)

// unlimited is the RateLimiter when none is configured.
type unlimited struct{}

func (unlimited) Allow(context.Context, string) (limit.Decision, error) {
	return limit.Decision{Allowed: true}, nil
}

// noLockout is the Lockout when none is configured.
type noLockout struct{}

func (noLockout) Check(context.Context, string) (limit.Decision, error) {
	return limit.Decision{Allowed: true}, nil
}
func (noLockout) Fail(context.Context, string) (limit.Decision, error) {
	return limit.Decision{Allowed: true}, nil
}
func (noLockout) Succeed(context.Context, string) error { return nil }

// inFlight is the set of keys with an operation running on this node. It
// holds at most one entry per running operation, so it is bounded by
// whatever bounds those (the password queue).
type inFlight struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func newInFlight() *inFlight { return &inFlight{m: make(map[string]struct{})} }

// acquire marks key running; false if it already was.
func (f *inFlight) acquire(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.m[key]; busy {
		return false
	}
	f.m[key] = struct{}{}
	return true
}

func (f *inFlight) release(key string) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
}

// counter counts operations in flight per key, up to a cap each. Like
// inFlight, it holds only keys with something running.
type counter struct {
	max int
	mu  sync.Mutex
	m   map[string]int
}

func newCounter(max int) *counter { return &counter{max: max, m: make(map[string]int)} }

// acquire counts one more operation for key; false if key is at the cap.
func (c *counter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[key] >= c.max {
		return false
	}
	c.m[key]++
	return true
}

func (c *counter) release(key string) {
	c.mu.Lock()
	if c.m[key]--; c.m[key] <= 0 {
		delete(c.m, key)
	}
	c.mu.Unlock()
}
