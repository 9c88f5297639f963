// Package inflight tracks operations running on this process, per key, so
// that a caller can refuse to start one more: one password check per
// username or account at a time (Set), a share of the password checks per
// client (Counter). They hold only keys with something running, so they
// are bounded by whatever bounds the operations themselves. Both are safe
// for concurrent use.
package inflight

import "sync"

// Set is the set of keys with an operation running.
type Set struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// NewSet returns an empty Set.
func NewSet() *Set { return &Set{m: make(map[string]struct{})} }

// Acquire marks key running; false if it already was (the caller must not
// run, and must not Release).
func (s *Set) Acquire(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.m[key]; busy {
		return false
	}
	s.m[key] = struct{}{}
	return true
}

// Release marks key no longer running.
func (s *Set) Release(key string) {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// Counter counts operations running per key, up to a cap each.
type Counter struct {
	max int
	mu  sync.Mutex
	m   map[string]int
}

// NewCounter returns a Counter allowing max operations per key.
func NewCounter(max int) *Counter { return &Counter{max: max, m: make(map[string]int)} }

// Acquire counts one more operation for key; false if key is at the cap
// (the caller must not run, and must not Release).
func (c *Counter) Acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[key] >= c.max {
		return false
	}
	c.m[key]++
	return true
}

// Release counts one operation for key less.
func (c *Counter) Release(key string) {
	c.mu.Lock()
	if c.m[key]--; c.m[key] <= 0 {
		delete(c.m, key)
	}
	c.mu.Unlock()
}
