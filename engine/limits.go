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
