package engine

import (
	"sync"

	"github.com/tokengate/tokengate/oauth"
)

// recordCache keeps clients or users read from the store between revision
// changes, so most requests need no store read for them. It holds only
// records the store returned, keyed by the record's own ID (never a string
// from a request, which would pin the request's buffer). It is bounded in
// entries and in approximate bytes; past a bound it starts over, which only
// costs store reads.
//
// Ordering: Refresh reads the store's revision before it invalidates, and a
// load records the generation before it reads the store; a load that
// overlaps an invalidation is therefore not cached.
type recordCache[T any] struct {
	size func(T) int

	mu    sync.RWMutex
	gen   uint64
	m     map[string]T
	bytes int
}

// Bounds of each cache. A client record is typically under 1 KiB (a few
// hundred bytes more with a SNAP public key).
const (
	maxCachedRecords     = 100_000
	maxCachedRecordBytes = 64 << 20
)

func newRecordCache[T any](size func(T) int) *recordCache[T] {
	return &recordCache[T]{size: size, m: make(map[string]T)}
}

func (c *recordCache[T]) invalidate() {
	c.mu.Lock()
	c.gen++
	c.m = make(map[string]T)
	c.bytes = 0
	c.mu.Unlock()
}

// get returns the cached record and the generation to pass to put.
func (c *recordCache[T]) get(id string) (rec T, gen uint64, ok bool) {
	c.mu.RLock()
	rec, ok = c.m[id]
	gen = c.gen
	c.mu.RUnlock()
	return rec, gen, ok
}

// put caches rec under id (the record's own ID) unless the cache was
// invalidated since gen.
func (c *recordCache[T]) put(gen uint64, id string, rec T) {
	n := c.size(rec) + len(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if old, ok := c.m[id]; ok {
		c.bytes -= c.size(old) + len(id)
	}
	if len(c.m) >= maxCachedRecords || c.bytes+n > maxCachedRecordBytes {
		c.m = make(map[string]T)
		c.bytes = 0
	}
	c.m[id] = rec
	c.bytes += n
}

// len reports the number of cached records and their approximate bytes.
func (c *recordCache[T]) len() (entries, bytes int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m), c.bytes
}

// recordOverhead approximates a record's fixed cost: the struct, map entry
// and slice headers.
const recordOverhead = 256

func clientSize(c *oauth.Client) int {
	n := recordOverhead + len(c.Name) + len(c.PublicKeyPEM) + len(c.SigningAlg) + len(c.TokenFormat)
	for _, l := range [][]string{c.Grants, c.Scopes, c.DefaultScopes, c.AuthMethods, c.Endpoints} {
		for _, s := range l {
			n += len(s) + 16
		}
	}
	n += len(c.SNAPServiceSignature) + len(c.PartnerID)
	for _, s := range c.Secrets {
		n += len(s.Hash) + len(s.Sealed) + len(s.Plain) + 48
	}
	return n
}

func userSize(u *oauth.User) int { return recordOverhead + len(u.PasswordHash) }
