// Package admin is tokengate's admin service: the one way operators and
// merchants change clients, users, signing keys, tokens and portal
// accounts. The CLI, the admin HTTP API and the merchant portal are thin
// skins over it: they authenticate the caller, put an Actor in the
// context (WithActor), call a method, and render its result or its error.
//
// What the service guarantees, whatever the skin:
//
//   - Validation. Inputs are checked here, and an unusable one is a
//     *ValidationError naming the field as the admin API and the import
//     format spell it ("scopes", "access_ttl"), never a CLI flag.
//   - Errors as values. Every method documents its errors: ErrNotFound,
//     ErrConflict (*ConflictError), ErrInvalid (*ValidationError),
//     ErrForbidden, ErrUnauthenticated, ErrBadCredentials,
//     ErrTOTPRequired, ErrLocked (*LockedError), ErrUnavailable,
//     ErrUnsupported. ErrorCode maps any error to one code, so a skin maps
//     codes to its statuses in one place; anything else is internal.
//   - Authorization. An operator may do everything. A merchant (a portal
//     account with role merchant) sees and touches only the clients it
//     owns (Client.OwnerAccount) — another merchant's client is
//     ErrNotFound to it — and creates or changes clients only within its
//     account's limits. Users, signing keys, tokens, GC, import, export,
//     backup, the KEK and other accounts are for operators.
//   - Audit. Every change is recorded in the audit trail (who, what,
//     which object, when, from where, the object's non-secret fields
//     before and after) in the same store transaction as the change;
//     token revocations and garbage collection, which go through other
//     write paths, are recorded right after them. No secret, hash of one,
//     sealed value, password hash, private key or token is ever recorded,
//     returned by a view, or put in an error.
//   - Secrets are shown once: CreateClient and RotateSecret return the new
//     client secret, EnrollTOTP the new TOTP secret; nothing can read them
//     back.
//
// Views (ClientView, UserView, AccountView, KeyView, AuditEventView) are
// plain structs with JSON tags meant to be encoded as they are.
//
// A Service is safe for concurrent use.
package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/internal/inflight"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// Engine is what the service needs of the issuance engine
// (*engine.Engine): operators' token introspection and revocation, and
// signing-key rotation (which the engine must perform, to start signing
// with the new key).
type Engine interface {
	Introspect(ctx context.Context, caller *oauth.Client, value string) (*oauth.Introspection, error)
	Revoke(ctx context.Context, caller *oauth.Client, value string) (found bool, err error)
	RotateKey(ctx context.Context, alg string) (*oauth.SigningKey, error)
}

// Deps are what a Service is built from.
type Deps struct {
	// Store is the store, with its secret values sealed (a *kek.Store).
	Store oauth.Store
	// Secrets hashes client secrets, with the server's pepper (the
	// engine's Secrets()).
	Secrets *secret.Hasher
	// Passwords hashes user and account passwords, and checks those of
	// portal sign-ins and password changes: a pool of its own, never the
	// engine's (Passwords()), so that sign-ins, which anyone can send,
	// cannot take the token endpoint's argon2id slots and starve the
	// password grant. nil: NewPasswords().
	Passwords *secret.Passwords
	// Engine is the issuance engine; nil for a service on the store alone
	// (key rotation, token introspection and revocation then fail with
	// ErrUnsupported).
	Engine Engine
	// Lockout throttles failed sign-ins per account (VerifyLogin); nil: an
	// in-process lockout with limit.DefaultPolicy.
	Lockout limit.Lockout
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// DefaultAlg is the signing algorithm RotateSigningKey rotates when
	// given none; KeyActivationDelay is how long after its creation a new
	// key starts signing (both the engine's configuration).
	DefaultAlg         string
	KeyActivationDelay time.Duration
	// GCBatch is how many rows CollectGarbage deletes per store call;
	// default 1000.
	GCBatch int
	// Issuer names the service in TOTP authenticator apps; default
	// "tokengate".
	Issuer string
}

// Service is the admin service.
type Service struct {
	store      oauth.Store
	secrets    *secret.Hasher
	passwords  *secret.Passwords
	engine     Engine
	lockout    limit.Lockout
	signingIn  *inflight.Counter // email keys with a sign-in running on this node
	now        func() time.Time
	defaultAlg string
	activation time.Duration
	gcBatch    int
	issuer     string
}

// PasswordConcurrency and PasswordQueue size the service's own password
// hasher (NewPasswords): one argon2id computation at a time (a sign-in
// costs tens of milliseconds; a portal needs no more), and a few callers
// waiting for it; beyond them a sign-in is answered ErrUnavailable at
// once.
const (
	PasswordConcurrency = 1
	PasswordQueue       = 4
)

// NewPasswords returns a password hasher for a Service (Deps.Passwords):
// PasswordConcurrency computations at once, PasswordQueue waiting.
func NewPasswords() *secret.Passwords { return secret.NewPasswords(PasswordConcurrency, PasswordQueue) }

// New returns a service on d. Store is required; Secrets too for client
// secrets (without it, creating and rotating them fail with
// ErrUnsupported).
func New(d Deps) *Service {
	if d.Passwords == nil {
		d.Passwords = NewPasswords()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Lockout == nil {
		d.Lockout = limit.NewMemoryLockout(limit.DefaultPolicy, d.Now)
	}
	if d.GCBatch <= 0 {
		d.GCBatch = 1000
	}
	if d.Issuer == "" {
		d.Issuer = "tokengate"
	}
	if d.DefaultAlg == "" {
		d.DefaultAlg = oauth.AlgES256
	}
	return &Service{
		store: d.Store, secrets: d.Secrets, passwords: d.Passwords, engine: d.Engine, lockout: d.Lockout, signingIn: inflight.NewCounter(1),
		now: d.Now, defaultAlg: d.DefaultAlg, activation: d.KeyActivationDelay, gcBatch: d.GCBatch, issuer: d.Issuer,
	}
}

// newID returns a fresh object ID: 128 random bits in hex (no characters
// that need escaping in a URL, a header or a shell).
func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// NewClientID returns a fresh client ID.
func NewClientID() string { return newID() }

// Object types of audit events.
const (
	ObjectClient  = "client"
	ObjectUser    = "user"
	ObjectAccount = "account"
	ObjectKey     = "signing_key"
	ObjectToken   = "token"
	ObjectStore   = "store"
)

// event is the audit event of an action of p on an object; before and
// after are views (nil for none), encoded as JSON.
func (s *Service) event(p *principal, action, objType, objID, account string, before, after any) *oauth.AuditEvent {
	return &oauth.AuditEvent{
		Time:      s.now(),
		ActorKind: p.actor.Kind, ActorID: p.actor.ID, ActorName: p.actor.Name, Remote: p.actor.Remote,
		Action: action, ObjectType: objType, ObjectID: objID, Account: account,
		Before: jsonOf(before), After: jsonOf(after),
	}
}

// jsonOf encodes a view for an audit event; nil (or a nil pointer) is no
// document.
func jsonOf(v any) []byte {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return nil
	}
	return b
}

// audited runs write with ctx carrying evs (oauth.WithAudit), so that the
// store appends them in the write's own transaction; the events a store
// did not append (a write path that takes none) are appended right after.
// Errors: write's; or, when the change was made but its events could not
// be recorded, an error saying so.
func (s *Service) audited(ctx context.Context, write func(ctx context.Context) error, evs ...*oauth.AuditEvent) error {
	if err := write(oauth.WithAudit(ctx, evs...)); err != nil {
		return err
	}
	return s.appendLeft(ctx, evs...)
}

// appendLeft appends those of evs the store has not appended yet.
func (s *Service) appendLeft(ctx context.Context, evs ...*oauth.AuditEvent) error {
	var left []*oauth.AuditEvent
	for _, e := range evs {
		if e.Seq == 0 {
			left = append(left, e)
		}
	}
	if len(left) == 0 {
		return nil
	}
	if err := s.store.AppendAudit(ctx, left...); err != nil {
		return fmt.Errorf("the change was made but its audit event was not recorded: %w", storeErr("audit trail", err))
	}
	return nil
}
