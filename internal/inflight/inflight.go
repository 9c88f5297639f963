// Package inflight tracks operations running on this process, per key, so
// that a caller can refuse to start one more: one password check per
// username or account at a time (a Counter of 1), a share of the password
// checks per client. A Counter holds only keys with something running, so
// it is bounded by whatever bounds the operations themselves. It is safe
// for concurrent use.
package inflight

import "sync"

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
