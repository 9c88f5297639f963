package guard

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

// revocations is what the feed has said: revoked token IDs (storage IDs
// and jtis) and "every token of client/user X issued before T" cutoffs.
// Each is kept only while a token it names could still be valid (its issue
// time plus the longest token lifetime), and the whole is bounded: when
// pruning cannot make room, the guard resynchronises instead of forgetting
// a revocation.
type revocations struct {
	// epoch changes with every change of the state, after it; an entry
	// checked at the current epoch needs no new check.
	epoch atomic.Uint64

	mu          sync.RWMutex
	ids         map[[32]byte]int64 // SHA-256 of the ID -> forget at (UnixNano)
	clients     map[string]cutoff
	users       map[string]cutoff
	bytes       int64
	resyncAt    int64  // JWTs issued before must be introspected once
	resyncEpoch uint64 // results checked before it may predate a missed revocation
	nextPrune   int64

	max      int
	maxBytes int64
	keep     int64 // how long a token can be valid: max lifetime + leeway
}

type cutoff struct {
	before, forget int64 // UnixNano
}

const (
	idBytes     = 32 + 8 + 40 // key, value, map slot
	cutoffBytes = 16 + 16 + 40
	// maxNameLen: longer client IDs and usernames are keyed by their hash.
	maxNameLen = 256
	// avgRecordBytes sets the byte bound: max records of this size on
	// average (a token ID takes idBytes, a cutoff cutoffBytes + its name).
	avgRecordBytes = 128
	pruneInterval  = int64(time.Minute)
)

type checkResult uint8

const (
	checkOK checkResult = iota
	checkRevoked
	checkStale // predates a resynchronisation: check the token anew
)

func newRevocations(max int, keep time.Duration) *revocations {
	return &revocations{ids: make(map[[32]byte]int64), clients: make(map[string]cutoff), users: make(map[string]cutoff),
		max: max, maxBytes: int64(max) * avgRecordBytes, keep: int64(keep)}
}

// check decides e against the state and, when it passes, records the epoch
// it passed at.
func (r *revocations) check(e *entry) checkResult {
	ep := r.epoch.Load()
	r.mu.RLock()
	res := r.checkLocked(e)
	r.mu.RUnlock()
	if res == checkOK {
		e.epoch.Store(ep)
	}
	return res
}

func (r *revocations) checkLocked(e *entry) checkResult {
	if e.born < r.resyncEpoch || (e.format == FormatJWT && !e.introspected && e.issued < r.resyncAt) {
		return checkStale
	}
	if len(r.ids) > 0 {
		if _, ok := r.ids[e.idKey]; ok {
			return checkRevoked
		}
	}
	if len(r.clients) > 0 {
		if c, ok := r.clients[nameKey(e.ident.ClientID)]; ok && e.issued < c.before {
			return checkRevoked
		}
	}
	if e.user && len(r.users) > 0 {
		if c, ok := r.users[nameKey(e.ident.Username)]; ok && e.issued < c.before {
			return checkRevoked
		}
	}
	return checkOK
}

// revokedID reports whether the token ID whose hash is key was revoked.
func (r *revocations) revokedID(key *[32]byte) bool {
	r.mu.RLock()
	_, ok := r.ids[*key]
	r.mu.RUnlock()
	return ok
}

// mustIntrospect reports whether a JWT issued at issued needs the server's
// word (it predates a resynchronisation).
func (r *revocations) mustIntrospect(issued int64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return issued < r.resyncAt
}

// revokeID records a revoked token ID at now. It returns false when the
// state is full (the caller resynchronises).
func (r *revocations) revokeID(id string, now int64) bool {
	forget := now + r.keep
	if at, ok := idTime(id); ok && at+r.keep < forget {
		forget = at + r.keep
	}
	if forget <= now {
		return true // the token has expired anyway
	}
	key := sha256.Sum256([]byte(id))
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ids[key]; !ok {
		if !r.room(now, idBytes) {
			return false
		}
		r.bytes += idBytes
	}
	r.ids[key] = forget
	r.epoch.Add(1)
	return true
}

// revokeBefore records a client's (user false) or user's cutoff. It returns
// false when the state is full.
func (r *revocations) revokeBefore(user bool, name string, before, now int64) bool {
	forget := before + r.keep
	if forget <= now {
		return true
	}
	m := r.clients
	if user {
		m = r.users
	}
	k := nameKey(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := m[k]
	if ok && old.before >= before {
		return true
	}
	if !ok {
		size := int64(cutoffBytes + len(k))
		if !r.room(now, size) {
			return false
		}
		r.bytes += size
	}
	m[k] = cutoff{before: before, forget: forget}
	r.epoch.Add(1)
	return true
}

// room makes room for one more record of size bytes, pruning what is no
// longer needed. r.mu is held.
func (r *revocations) room(now, size int64) bool {
	full := func() bool {
		return len(r.ids)+len(r.clients)+len(r.users) >= r.max || r.bytes+size > r.maxBytes
	}
	if full() || now >= r.nextPrune {
		r.prune(now)
	}
	return !full()
}

func (r *revocations) prune(now int64) {
	r.nextPrune = now + pruneInterval
	for k, forget := range r.ids {
		if forget <= now {
			delete(r.ids, k)
			r.bytes -= idBytes
		}
	}
	for _, m := range []map[string]cutoff{r.clients, r.users} {
		for k, c := range m {
			if c.forget <= now {
				delete(m, k)
				r.bytes -= int64(cutoffBytes + len(k))
			}
		}
	}
}

// resync forgets everything: results checked before now are stale, and
// JWTs issued before at must be introspected once.
func (r *revocations) resync(at int64) {
	r.mu.Lock()
	r.ids = make(map[[32]byte]int64)
	r.clients = make(map[string]cutoff)
	r.users = make(map[string]cutoff)
	r.bytes = 0
	r.resyncAt = max(r.resyncAt, at)
	r.resyncEpoch = r.epoch.Add(1)
	r.mu.Unlock()
}

func (r *revocations) stats() (records int, bytes int64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.ids) + len(r.clients) + len(r.users), r.bytes
}

func nameKey(name string) string {
	if len(name) <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "\x00" + hex.EncodeToString(sum[:])
}

// idTime is the issue time tokengate puts at the start of its storage IDs
// and jtis: UNIX milliseconds in 12 hex digits.
func idTime(id string) (int64, bool) {
	if len(id) <= 12 {
		return 0, false
	}
	var ms int64
	for i := range 12 {
		c := id[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		default:
			return 0, false
		}
		ms = ms<<4 | int64(v)
	}
	return ms * int64(time.Millisecond), true
}
