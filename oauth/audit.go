package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
	"time"
)

// AuditEvent is one entry of the audit trail: who did what to which
// object, when and from where, with the object's non-secret fields before
// and after. Events form a hash chain: each carries the hash of the one
// before it (PrevHash) and its own (Hash, the SHA-256 of its canonical
// encoding, which includes PrevHash), so changing, removing or reordering
// an event breaks the chain from there on.
type AuditEvent struct {
	// Seq numbers events from 1 without gaps, in the order they were
	// appended; set by the store.
	Seq  int64
	Time time.Time // kept to the microsecond
	// Who: ActorKind is "cli", "api" or "portal"; ActorID identifies the
	// actor within its kind (user@host, a client ID, an account ID);
	// ActorName is for people (an email, a client's name).
	ActorKind, ActorID, ActorName string
	Remote                        string // the actor's network address; "" for the CLI
	Action                        string // e.g. "client.create"
	ObjectType, ObjectID          string // e.g. "client", its ID
	// Account is the merchant account the object belongs to ("" for
	// none), so a merchant can be shown the events of its own objects.
	Account string
	// Before and After are JSON documents of the object's non-secret
	// fields; nil when there is none (nothing before a create, nothing
	// after a delete). They never hold a secret, a hash of one, a sealed
	// value or a private key.
	Before, After []byte
	// PrevHash is the previous event's Hash (nil for the first event);
	// Hash is this event's. Both set by the store.
	PrevHash, Hash []byte
}

// auditDomain starts the canonical encoding of every event: a version,
// so a later encoding cannot be confused with this one.
const auditDomain = "tokengate audit event v1"

// Canonical returns the encoding Hash is computed over: every field but
// Hash, each as its decimal length, ':', its bytes and ',' (a netstring),
// in a fixed order. Two different events never share an encoding. Time
// is encoded as UNIX microseconds, the stores' precision.
func (e *AuditEvent) Canonical() []byte {
	fields := [][]byte{
		[]byte(auditDomain),
		strconv.AppendInt(nil, e.Seq, 10),
		strconv.AppendInt(nil, e.Time.UnixMicro(), 10),
		[]byte(e.ActorKind), []byte(e.ActorID), []byte(e.ActorName), []byte(e.Remote),
		[]byte(e.Action), []byte(e.ObjectType), []byte(e.ObjectID), []byte(e.Account),
		e.Before, e.After, e.PrevHash,
	}
	n := 0
	for _, f := range fields {
		n += len(f) + 8
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
		b = append(b, ',')
	}
	return b
}

// ComputeHash returns the SHA-256 of the event's canonical encoding.
func (e *AuditEvent) ComputeHash() []byte {
	h := sha256.Sum256(e.Canonical())
	return h[:]
}

// Link makes e the event after the one whose Seq and Hash are prevSeq and
// prevHash (0 and nil for the first event): it sets Seq and PrevHash,
// rounds Time to the microsecond (in UTC) as the stores keep it, and sets
// Hash. Stores call it while they hold the chain's head.
func (e *AuditEvent) Link(prevSeq int64, prevHash []byte) {
	e.Seq = prevSeq + 1
	e.PrevHash = nil
	if len(prevHash) > 0 {
		e.PrevHash = append([]byte(nil), prevHash...)
	}
	e.Time = time.UnixMicro(e.Time.UnixMicro()).UTC()
	e.Hash = e.ComputeHash()
}

// HashValid reports whether e.Hash is the hash of e's content.
func (e *AuditEvent) HashValid() bool {
	return subtle.ConstantTimeCompare(e.Hash, e.ComputeHash()) == 1
}

// AuditQuery selects audit events. Zero fields select everything.
type AuditQuery struct {
	After  int64     // only events with Seq > After
	Before int64     // only events with Seq < Before (0: no bound)
	Since  time.Time // only events at or after Since
	Until  time.Time // only events before Until
	// ObjectType and ObjectID select the events of one object (ObjectID
	// needs ObjectType).
	ObjectType, ObjectID string
	Account              string // only events of objects of this account
	Desc                 bool   // newest first (default: oldest first)
	Limit                int    // at most this many; <= 0: DefaultAuditLimit
}

// DefaultAuditLimit is how many events AuditEvents returns when the query
// sets no limit, and MaxAuditLimit the most it ever returns at once.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// EffectiveLimit is the number of events q asks for, bounded.
func (q AuditQuery) EffectiveLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultAuditLimit
	case q.Limit > MaxAuditLimit:
		return MaxAuditLimit
	}
	return q.Limit
}

type auditKey struct{}

// WithAudit returns a context under which a write of an admin object
// (CreateClient, CreateClients, UpdateClient, DeleteClient,
// CreateUser, UpdateUser, CreateAccount, UpdateAccount, CreateSigningKey,
// RewriteSecrets) appends events to the audit trail in the same
// transaction as the change, after its update callback has run (so the
// callback may still fill in an event's After). On success each event's
// Seq, PrevHash and Hash are set; if the write fails, no event is
// appended. A store that cannot do so leaves Seq zero, and the caller
// appends the events itself with AppendAudit. Other methods ignore them.
// Give the context to one write only: every such write made with it
// appends the events.
func WithAudit(ctx context.Context, events ...*AuditEvent) context.Context {
	return context.WithValue(ctx, auditKey{}, events)
}

// AuditFrom returns the events WithAudit put in ctx, or nil.
func AuditFrom(ctx context.Context) []*AuditEvent {
	evs, _ := ctx.Value(auditKey{}).([]*AuditEvent)
	return evs
}
