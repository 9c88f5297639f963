package admin

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// AuditEventView is an audit event as the service shows it.
type AuditEventView struct {
	Seq    int64       `json:"seq"`
	Time   time.Time   `json:"time"`
	Actor  AuditActor  `json:"actor"`
	Action string      `json:"action"` // e.g. "client.create"
	Object AuditObject `json:"object"`
	// Account is the merchant account the object belongs to ("" none).
	Account string `json:"account,omitempty"`
	// Before and After are the object's non-secret fields (its view)
	// before and after the action; absent when there is none.
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// Hash is the event's SHA-256 (hex); PrevHash the previous event's.
	Hash     string `json:"hash"`
	PrevHash string `json:"prev_hash,omitempty"`
}

// AuditActor is who acted (see Actor).
type AuditActor struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	Remote string `json:"remote,omitempty"`
}

// AuditObject is what was acted on.
type AuditObject struct {
	Type string `json:"type"` // ObjectClient, ObjectUser, ...
	ID   string `json:"id,omitempty"`
}

// NewAuditEventView returns the view of e.
func NewAuditEventView(e *oauth.AuditEvent) *AuditEventView {
	return &AuditEventView{
		Seq: e.Seq, Time: e.Time.UTC(),
		Actor:  AuditActor{Kind: e.ActorKind, ID: e.ActorID, Name: e.ActorName, Remote: e.Remote},
		Action: e.Action, Object: AuditObject{Type: e.ObjectType, ID: e.ObjectID}, Account: e.Account,
		Before: rawJSON(e.Before), After: rawJSON(e.After),
		Hash: hex.EncodeToString(e.Hash), PrevHash: hex.EncodeToString(e.PrevHash),
	}
}

// rawJSON is b as a JSON value: itself when it is valid JSON, else (a
// tampered row) a JSON string of it, so that a view always encodes.
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// AuditQuery selects audit events for ListAudit. Zero fields select
// every event the actor may see.
type AuditQuery struct {
	Since time.Time // at or after
	Until time.Time // before
	// ClientID keeps the events of one client.
	ClientID string
	// AccountID keeps the events of the objects of one account (its
	// clients, itself). A merchant always sees only its own account's.
	AccountID string
	// ObjectType and ObjectID keep the events of one kind of object, or
	// of one object (ClientID is ObjectType "client" and this ID).
	ObjectType, ObjectID string
	// Desc lists newest first. After (ascending) or Before (descending)
	// is the cursor: an AuditPage's Next.
	Desc          bool
	After, Before int64
	// Limit is the page size; <= 0: 100; at most 1000.
	Limit int
}

// AuditPage is a page of ListAudit; Next is the cursor of the next page
// (After, or Before when descending), 0 when this is the last.
type AuditPage struct {
	Events []*AuditEventView `json:"events"`
	Next   int64             `json:"next,omitempty"`
}

// ListAudit returns the audit events q selects, a page at a time. A
// merchant sees the events of its own account's objects only. Errors:
// ErrUnauthenticated, *ValidationError (object_id without object_type;
// client_id with another object_type), ErrUnavailable.
func (s *Service) ListAudit(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	sq := oauth.AuditQuery{
		After: q.After, Before: q.Before, Since: q.Since, Until: q.Until, Account: q.AccountID,
		ObjectType: q.ObjectType, ObjectID: q.ObjectID, Desc: q.Desc, Limit: q.Limit,
	}
	if q.ClientID != "" {
		if q.ObjectType != "" && q.ObjectType != ObjectClient || q.ObjectID != "" && q.ObjectID != q.ClientID {
			return nil, invalid("client_id", "selects a client's events: do not give another object too")
		}
		sq.ObjectType, sq.ObjectID = ObjectClient, q.ClientID
	}
	if sq.ObjectID != "" && sq.ObjectType == "" {
		return nil, invalid("object_id", "needs object_type")
	}
	if !p.operator() {
		if sq.Account != "" && sq.Account != p.accountID() {
			return &AuditPage{Events: []*AuditEventView{}}, nil
		}
		sq.Account = p.accountID()
	}
	evs, err := s.store.AuditEvents(ctx, sq)
	if err != nil {
		return nil, storeErr("audit trail", err)
	}
	page := &AuditPage{Events: make([]*AuditEventView, 0, len(evs))}
	for _, e := range evs {
		page.Events = append(page.Events, NewAuditEventView(e))
	}
	if len(evs) > 0 && len(evs) == sq.EffectiveLimit() {
		page.Next = evs[len(evs)-1].Seq
	}
	return page, nil
}

// AuditVerification is what VerifyAudit found.
type AuditVerification struct {
	OK     bool  `json:"ok"`
	Events int64 `json:"events"` // events read
	// HeadSeq and HeadHash are the chain's head as the store records it.
	// Keep HeadHash somewhere the store's writers cannot reach: a later
	// verification that still finds this hash at this Seq shows nothing
	// up to it was rewritten, even by someone who recomputed the chain.
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// BrokenAt is the Seq of the first event that does not verify (0 when
	// OK), and Problem what is wrong with it.
	BrokenAt int64  `json:"broken_at,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

// VerifyAudit recomputes the audit trail's hash chain from the first
// event and reports the first broken link: an event missing or out of
// place, one whose content does not match its hash (it was changed), one
// that does not carry the previous event's hash (an event before it was
// changed or removed), or a chain that does not end at the head the store
// recorded (events removed from the end). A broken chain is a result
// (OK false), not an error. Operators only. Errors: ErrUnauthenticated,
// ErrForbidden, ErrUnavailable.
func (s *Service) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	if _, err := s.operator(ctx, "verify the audit trail"); err != nil {
		return nil, err
	}
	headSeq, headHash, err := s.store.AuditHead(ctx)
	if err != nil {
		return nil, storeErr("audit trail", err)
	}
	v := &AuditVerification{HeadSeq: headSeq, HeadHash: hex.EncodeToString(headHash)}
	broken := func(seq int64, format string, args ...any) (*AuditVerification, error) {
		v.BrokenAt, v.Problem = seq, fmt.Sprintf(format, args...)
		return v, nil
	}
	var (
		prev []byte
		last int64
	)
	// Events appended after the head was read are not checked.
	for last < headSeq {
		evs, err := s.store.AuditEvents(ctx, oauth.AuditQuery{After: last, Before: headSeq + 1, Limit: oauth.MaxAuditLimit})
		if err != nil {
			return nil, storeErr("audit trail", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			v.Events++
			switch {
			case e.Seq != last+1:
				return broken(last+1, "event %d is missing (the next one is %d): events were removed", last+1, e.Seq)
			case !e.HashValid():
				return broken(e.Seq, "event %d does not match its hash: it was changed", e.Seq)
			case !bytes.Equal(e.PrevHash, prev):
				return broken(e.Seq, "event %d does not carry the hash of event %d: event %d was changed or replaced", e.Seq, last, last)
			}
			prev, last = e.Hash, e.Seq
		}
	}
	switch {
	case last != headSeq:
		return broken(last+1, "the chain ends at event %d but the head records %d: events were removed from the end", last, headSeq)
	case !bytes.Equal(prev, headHash):
		return broken(last, "event %d is not the head the store recorded: the end of the chain was rewritten", last)
	}
	v.OK = true
	return v, nil
}
