package guard

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"
)

// entry is a cached valid result. Fields other than epoch and dead never
// change after the entry is cached.
type entry struct {
	ident        *Identity
	format       Format
	introspected bool     // the server said active (not only a local check)
	user         bool     // the subject is a user: user cutoffs apply
	until        int64    // UnixNano: not used from then on
	issued       int64    // UnixNano (millisecond precision when known): for cutoffs
	idKey        [32]byte // SHA-256 of the jti or storage ID
	kid          string   // the key that verified a JWT
	born         uint64   // revocation epoch before the check that made it
	size         int64
	epoch        atomic.Uint64 // revocation epoch it was last checked at
	dead         atomic.Bool   // found revoked
}

// entryOverhead approximates an entry's memory besides its strings: the
// entry, its Identity, the map slot and the allocators' rounding.
const entryOverhead = int64(unsafe.Sizeof(entry{})+unsafe.Sizeof(Identity{})) + 64

func (e *entry) computeSize() {
	n := entryOverhead + int64(len(e.ident.ClientID)+len(e.ident.Subject)+len(e.ident.Username)+len(e.ident.TokenID))
	n += int64(cap(e.ident.Scopes)) * int64(unsafe.Sizeof(""))
	for _, s := range e.ident.Scopes {
		n += int64(len(s))
	}
	if e.ident.Username != "" && e.ident.Username == e.ident.Subject {
		n -= int64(len(e.ident.Username)) // the same string
	}
	e.size = n
}

// cache is the validation cache: sharded maps from the SHA-256 of a token
// to its entry, bounded in entries and bytes. Lookups take a shard's read
// lock only; eviction samples a few entries (map iteration starts at a
// random place) and drops expired ones, else the one expiring first.
type cache struct {
	shards     []shard
	mask       uint64
	maxEntries int   // per shard
	maxBytes   int64 // per shard
	evicted    func(int)
}

type shard struct {
	mu    sync.RWMutex
	m     map[[32]byte]*entry
	bytes int64
	_     [32]byte // keep shards' locks off one cache line
}

const evictSample = 8

func newCache(maxEntries int, maxBytes int64, evicted func(int)) *cache {
	n := 1
	for n < 16 && maxEntries/(n*2) >= 1024 {
		n *= 2
	}
	c := &cache{shards: make([]shard, n), mask: uint64(n - 1), maxEntries: maxEntries / n,
		maxBytes: maxBytes / int64(n), evicted: evicted}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*entry)
	}
	return c
}

func (c *cache) shard(key *[32]byte) *shard {
	return &c.shards[binary.LittleEndian.Uint64(key[:8])&c.mask]
}

func (c *cache) get(key *[32]byte) *entry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[*key]
	s.mu.RUnlock()
	return e
}

// put caches e under key at now, evicting entries to stay within bounds. An
// entry larger than a shard's byte budget is not cached.
func (c *cache) put(key *[32]byte, e *entry, now int64) {
	if e.size > c.maxBytes {
		return
	}
	s := c.shard(key)
	evicted := 0
	s.mu.Lock()
	if old, ok := s.m[*key]; ok {
		s.bytes -= old.size
		delete(s.m, *key)
	}
	for len(s.m) > 0 && (len(s.m) >= c.maxEntries || s.bytes+e.size > c.maxBytes) {
		evicted += s.evictSome(now)
	}
	s.m[*key] = e
	s.bytes += e.size
	s.mu.Unlock()
	if evicted > 0 && c.evicted != nil {
		c.evicted(evicted)
	}
}

// evictSome drops, among a few entries, the ones expired at now, or else
// the one that expires first. It drops at least one.
func (s *shard) evictSome(now int64) int {
	var victim [32]byte
	var victimUntil int64
	n, seen := 0, 0
	for k, e := range s.m {
		if e.until <= now {
			s.bytes -= e.size
			delete(s.m, k)
			n++
		} else if seen == 0 || e.until < victimUntil {
			victim, victimUntil = k, e.until
		}
		seen++
		if seen >= evictSample {
			break
		}
	}
	if n == 0 {
		s.bytes -= s.m[victim].size
		delete(s.m, victim)
		n = 1
	}
	return n
}

// remove drops the entry under key, if any.
func (c *cache) remove(key *[32]byte) {
	s := c.shard(key)
	s.mu.Lock()
	if e, ok := s.m[*key]; ok {
		s.bytes -= e.size
		delete(s.m, *key)
	}
	s.mu.Unlock()
}

// clear drops every entry.
func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.m = make(map[[32]byte]*entry)
		s.bytes = 0
		s.mu.Unlock()
	}
}

// drop removes the entries for which f is true.
func (c *cache) drop(f func(*entry) bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if f(e) {
				s.bytes -= e.size
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

func (c *cache) stats() (entries int, bytes int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.m)
		bytes += s.bytes
		s.mu.RUnlock()
	}
	return entries, bytes
}
