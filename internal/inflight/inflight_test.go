package inflight

import (
	"sync"
	"testing"
)

func TestCounterOfOne(t *testing.T) {
	s := NewCounter(1)
	if !s.Acquire("a") || s.Acquire("a") || !s.Acquire("b") {
		t.Fatal("a key is acquired once at a time, others independently")
	}
	s.Release("a")
	if !s.Acquire("a") {
		t.Fatal("a released key is free again")
	}
	s.Release("a")
	s.Release("b")
	if len(s.m) != 0 {
		t.Fatalf("released keys are kept: %v", s.m)
	}
}

func TestCounterOfOneConcurrent(t *testing.T) {
	s := NewCounter(1)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running int
	)
	for range 50 {
		wg.Go(func() {
			for range 100 {
				if !s.Acquire("k") {
					continue
				}
				mu.Lock()
				running++
				if running > 1 {
					t.Error("two holders of one key")
				}
				running--
				mu.Unlock()
				s.Release("k")
			}
		})
	}
	wg.Wait()
}

func TestCounter(t *testing.T) {
	c := NewCounter(2)
	if !c.Acquire("a") || !c.Acquire("a") || c.Acquire("a") || !c.Acquire("b") {
		t.Fatal("a key is acquired at most twice at a time, others independently")
	}
	c.Release("a")
	if !c.Acquire("a") {
		t.Fatal("a released count is free again")
	}
	c.Release("a")
	c.Release("a")
	c.Release("b")
	if len(c.m) != 0 {
		t.Fatalf("keys with nothing running are kept: %v", c.m)
	}
}
