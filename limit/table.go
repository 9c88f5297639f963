package limit

import (
	"crypto/sha256"
	"hash/maphash"
	"strings"
	"sync"
	"unsafe"
)

// Bounds of an in-process limiter's memory.
const (
	// MaxEntries is how many keys an in-process limiter remembers.
	MaxEntries = 100_000
	// MaxBytes bounds an in-process limiter's estimated memory (keys,
	// entries and map slots).
	MaxBytes = 16 << 20
)

const shardCount = 16

// table is a bounded, sharded map from keys to per-key state V. Keys up to
// MaxKeyLen are stored as copies (a key never pins the buffer it was cut
// from), longer ones as their SHA-256 in a map of their own, so a short key
// can never collide with a digest. Past its bounds a shard first drops
// entries at rest (whose loss changes no answer), oldest first, then the
// oldest entry. "Oldest" is the least recently touched: each limiter
// decides which operations touch.
type table[V any] struct {
	seed   maphash.Seed
	shards []shard[V]
	// resting reports whether v, at now (unix ns), is the state a new entry
	// would have, so dropping it changes nothing.
	resting func(v *V, now int64) bool
}

type shard[V any] struct {
	mu       sync.Mutex
	short    map[string]*node[V]
	long     map[[sha256.Size]byte]*node[V]
	lru      node[V] // sentinel: lru.next is the oldest, lru.prev the newest
	n, bytes int
	maxN     int
	maxBytes int
	_        [64]byte // keep shards' locks on separate cache lines
}

type node[V any] struct {
	key        string // "" for a long key
	sum        [sha256.Size]byte
	isLong     bool
	prev, next *node[V]
	val        V
}

// evictScan bounds how many old entries one insertion inspects for rest,
// so an insertion at the bound costs O(1).
const evictScan = 32

func newTable[V any](maxEntries, maxBytes, shards int, resting func(*V, int64) bool) *table[V] {
	t := &table[V]{seed: maphash.MakeSeed(), shards: make([]shard[V], shards), resting: resting}
	for i := range t.shards {
		s := &t.shards[i]
		s.short = make(map[string]*node[V])
		s.long = make(map[[sha256.Size]byte]*node[V])
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.maxN = max(1, maxEntries/shards)
		s.maxBytes = max(1, maxBytes/shards)
	}
	return t
}

// entryCost estimates an entry's memory beyond its key bytes, on the high
// side: the node, and its map slot (key, pointer and control byte, ~25-41
// bytes) times two for the slack of a map sized in powers of two, plus the
// key's rounding up to an allocation size class.
func entryCost[V any]() int { return int(unsafe.Sizeof(node[V]{})) + 96 }

// lock returns key's shard, locked, and key's entry: nil when absent unless
// create is set, in which case a new zero entry is added (fresh reports it).
// The caller unlocks s.mu.
func (t *table[V]) lock(key string, now int64, create bool) (s *shard[V], n *node[V], fresh bool) {
	if len(key) <= MaxKeyLen {
		s = &t.shards[maphash.String(t.seed, key)%uint64(len(t.shards))]
		s.mu.Lock()
		if n = s.short[key]; n != nil || !create {
			return s, n, false
		}
		n = &node[V]{key: strings.Clone(key)}
		s.insert(n, now, t.resting)
		s.short[n.key] = n
		return s, n, true
	}
	sum := longKey(key)
	s = &t.shards[maphash.Bytes(t.seed, sum[:])%uint64(len(t.shards))]
	s.mu.Lock()
	if n = s.long[sum]; n != nil || !create {
		return s, n, false
	}
	n = &node[V]{sum: sum, isLong: true}
	s.insert(n, now, t.resting)
	s.long[sum] = n
	return s, n, true
}

func (s *shard[V]) cost(n *node[V]) int { return len(n.key) + entryCost[V]() }

func (s *shard[V]) insert(n *node[V], now int64, resting func(*V, int64) bool) {
	need := s.cost(n)
	if s.n+1 > s.maxN || s.bytes+need > s.maxBytes {
		scanned := 0
		for o := s.lru.next; o != &s.lru && scanned < evictScan; scanned++ {
			next := o.next
			if resting(&o.val, now) {
				s.remove(o)
			}
			o = next
		}
		for s.n > 0 && (s.n+1 > s.maxN || s.bytes+need > s.maxBytes) {
			s.remove(s.lru.next)
		}
	}
	s.n++
	s.bytes += need
	s.pushNewest(n)
}

// touch makes n the newest entry.
func (s *shard[V]) touch(n *node[V]) {
	if s.lru.prev == n {
		return
	}
	n.prev.next, n.next.prev = n.next, n.prev
	s.pushNewest(n)
}

func (s *shard[V]) pushNewest(n *node[V]) {
	n.prev, n.next = s.lru.prev, &s.lru
	s.lru.prev.next = n
	s.lru.prev = n
}

func (s *shard[V]) remove(n *node[V]) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
	if n.isLong {
		delete(s.long, n.sum)
	} else {
		delete(s.short, n.key)
	}
	s.n--
	s.bytes -= s.cost(n)
}

// stats returns the entries held and their estimated bytes.
func (t *table[V]) stats() (entries, bytes int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		entries += s.n
		bytes += s.bytes
		s.mu.Unlock()
	}
	return entries, bytes
}
