// Package engine is tokengate's issuance engine: it authenticates clients,
// runs grant handlers, applies scope and lifetime policy, mints tokens,
// persists them and answers introspection and revocation. It speaks only
// the oauth domain types; wire formats live in dialects, persistence in
// stores.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/inflight"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/secret"
	"github.com/tokengate/tokengate/token"
)

// Config is the engine's policy.
type Config struct {
	Issuer           string
	Audience         []string // the JWT "aud"; defaults to the issuer
	DefaultAccessTTL time.Duration
	// MaxAccessTTL caps every access token's lifetime; a retired signing
	// key stays published this long, so every token it signed can still be
	// verified until it expires.
	MaxAccessTTL time.Duration
	// KeyActivationDelay: a rotated-in key signs only after this long (see
	// token.ActivationDelay); the key it replaces signs until then.
	KeyActivationDelay time.Duration
	RefreshTTL         time.Duration
	DefaultFormat      oauth.TokenFormat
	DefaultAlg         string
	// RefreshReuseGrace: a refresh token presented again by its client less
	// than this long after its rotation gets a new pair of the same family
	// instead of revoking it (a lost reply, concurrent duplicates); 0
	// disables the grace (RFC 9700 §4.14).
	RefreshReuseGrace time.Duration
	// PasswordHashConcurrency bounds concurrent argon2id computations, and
	// PasswordHashQueue how many more may wait for one; past that a password
	// grant is answered 503 at once (0: secret.NewPasswords's defaults).
	PasswordHashConcurrency int
	PasswordHashQueue       int
	// PasswordHashPerClient caps the password checks one client may have
	// running or waiting, so a client spraying many usernames cannot take
	// the whole queue from other clients' users (0: half of the slots and
	// the queue together).
	PasswordHashPerClient int
	// Authenticators are client authentication methods beyond the client
	// secret ones, which the engine always registers (e.g. SNAP signatures).
	Authenticators []oauth.ClientAuthenticator
	// RateLimiter limits each client's token requests (nil: unlimited);
	// Lockout throttles wrong passwords per username (nil: none).
	RateLimiter limit.RateLimiter
	Lockout     limit.Lockout
	// Events records security events (nil: none).
	Events secevent.Recorder
	// Pepper, when set, keys client-secret hashes instead of the pepper the
	// store generates on first start.
	Pepper []byte
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.DefaultAccessTTL <= 0 {
		c.DefaultAccessTTL = time.Hour
	}
	if c.MaxAccessTTL <= 0 {
		c.MaxAccessTTL = 24 * time.Hour
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.DefaultFormat == "" {
		c.DefaultFormat = oauth.FormatOpaque
	}
	if c.DefaultAlg == "" {
		c.DefaultAlg = oauth.AlgES256
	}
	if len(c.Audience) == 0 && c.Issuer != "" {
		c.Audience = []string{c.Issuer}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RateLimiter == nil {
		c.RateLimiter = unlimited{}
	}
	if c.Lockout == nil {
		c.Lockout = noLockout{}
	}
	if c.Events == nil {
		c.Events = secevent.Discard
	}
}

// Names of the server settings the engine keeps in the store.
const (
	settingPepper    = "client_secret_pepper"
	settingOpaqueKey = "opaque_token_key"
)

// Engine is safe for concurrent use.
type Engine struct {
	cfg       Config
	store     oauth.Store
	clients   *recordCache[*oauth.Client]
	partners  *recordCache[*oauth.Client] // the same records, by effective partner ID
	users     *recordCache[*oauth.User]
	secrets   *secret.Hasher
	passwords *secret.Passwords
	signingIn *inflight.Counter // usernames with a password check running on this node
	hashing   *inflight.Counter // password checks running or waiting, per client
	auth      map[string]oauth.ClientAuthenticator
	grants    map[string]grantHandler
	opaque    *token.Opaque
	keys      atomic.Pointer[token.KeySet]
	keyMu     sync.Mutex // serializes making a first key for an algorithm
	revision  atomic.Int64
}

// New builds an engine on store: it loads (creating on first start) the
// secret-hash pepper, the opaque-token key and a signing key for the default
// algorithm.
func New(ctx context.Context, store oauth.Store, cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if !oauth.KnownAlg(cfg.DefaultAlg) {
		return nil, fmt.Errorf("unknown signing algorithm %q", cfg.DefaultAlg)
	}
	pepper := cfg.Pepper
	if len(pepper) == 0 {
		var err error
		if pepper, err = store.Setting(ctx, settingPepper, random32); err != nil {
			return nil, fmt.Errorf("load pepper: %w", err)
		}
	}
	opaqueKey, err := store.Setting(ctx, settingOpaqueKey, random32)
	if err != nil {
		return nil, fmt.Errorf("load opaque token key: %w", err)
	}
	passwords := secret.NewPasswords(cfg.PasswordHashConcurrency, cfg.PasswordHashQueue)
	if cfg.PasswordHashPerClient <= 0 {
		cfg.PasswordHashPerClient = max(1, passwords.Capacity()/2)
	}
	e := &Engine{
		cfg:       cfg,
		store:     store,
		clients:   newRecordCache(clientSize),
		partners:  newRecordCache(clientSize),
		users:     newRecordCache(userSize),
		secrets:   secret.NewHasher(pepper),
		passwords: passwords,
		signingIn: inflight.NewCounter(1),
		hashing:   inflight.NewCounter(cfg.PasswordHashPerClient),
		opaque:    token.NewOpaque(opaqueKey),
	}
	e.registerAuthenticators(cfg.Authenticators)
	e.registerGrants()
	rev, err := store.Revision(ctx)
	if err != nil {
		return nil, fmt.Errorf("read revision: %w", err)
	}
	e.revision.Store(rev)
	if err := e.loadKeys(ctx); err != nil {
		return nil, err
	}
	if !e.keys.Load().Has(cfg.DefaultAlg) {
		if _, err := e.RotateKey(ctx, cfg.DefaultAlg); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func random32() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

// Secrets is the client-secret hasher, shared with the admin commands so
// the CLI and the server hash with the same pepper.
func (e *Engine) Secrets() *secret.Hasher { return e.secrets }

// Passwords is the password hasher with its concurrency limit.
func (e *Engine) Passwords() *secret.Passwords { return e.passwords }

// Store is the engine's store.
func (e *Engine) Store() oauth.Store { return e.store }

// Config returns the engine's effective configuration.
func (e *Engine) Config() Config { return e.cfg }

// CacheRefreshInterval is how often Run polls the store for changes made
// elsewhere (the admin CLI, other nodes). A change is seen within this
// interval plus one store round trip.
const CacheRefreshInterval = time.Second

// Run polls the store's revision and drops cached clients and reloads
// signing keys when it changes, until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(CacheRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
				e.cfg.Logger.Warn("cache refresh failed", "err", err)
			}
		}
	}
}

// Refresh checks the store's revision once and reloads what changed.
func (e *Engine) Refresh(ctx context.Context) error {
	rev, err := e.store.Revision(ctx)
	if err != nil {
		return err
	}
	if rev == e.revision.Load() {
		return nil
	}
	e.clients.invalidate()
	e.partners.invalidate()
	e.users.invalidate()
	if err := e.loadKeys(ctx); err != nil {
		return err
	}
	e.revision.Store(rev)
	return nil
}

func (e *Engine) loadKeys(ctx context.Context) error {
	stored, err := e.store.ListSigningKeys(ctx, e.cfg.Now())
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	ks, err := token.NewKeySet(stored, token.ActivationDelay(e.cfg.KeyActivationDelay))
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	e.keys.Store(ks)
	return nil
}

// RotateKey makes a new current signing key for alg. The previous one goes
// on signing for KeyActivationDelay and stays published until every token
// it signed has expired: MaxAccessTTL after that.
func (e *Engine) RotateKey(ctx context.Context, alg string) (*oauth.SigningKey, error) {
	if !oauth.KnownAlg(alg) {
		return nil, fmt.Errorf("unknown signing algorithm %q (want ES256, RS256 or EdDSA)", alg)
	}
	k, err := token.GenerateKey(alg, e.cfg.Now())
	if err != nil {
		return nil, err
	}
	if err := e.store.CreateSigningKey(ctx, k, e.cfg.KeyActivationDelay+e.cfg.MaxAccessTTL); err != nil {
		return nil, fmt.Errorf("store signing key: %w", err)
	}
	return k, e.loadKeys(ctx)
}

// JWKS is the JSON Web Key Set of the published signing keys.
func (e *Engine) JWKS() []byte { return e.keys.Load().JWKS() }

// Ready reports whether the store is reachable.
func (e *Engine) Ready(ctx context.Context) error { return e.store.Ping(ctx) }

// StoreError turns a store failure into the client-facing error: 503 when
// the store is unreachable or slow, 500 otherwise. The cause is logged, never
// sent. The server uses it for introspection and revocation errors too.
func (e *Engine) StoreError(ctx context.Context, op string, err error) *oauth.Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		e.cfg.Logger.Warn("store timeout", "op", op)
		return oauth.Timeout()
	case errors.Is(err, oauth.ErrUnavailable):
		e.cfg.Logger.Warn("store unavailable", "op", op, "err", err)
		return oauth.Unavailable()
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return oauth.Timeout()
	default:
		e.cfg.Logger.Error("store failure", "op", op, "err", err)
		return oauth.ServerError()
	}
}

// event records a security event; reason is a fixed phrase, never request
// data.
func (e *Engine) event(ctx context.Context, t secevent.Type, clientID, username, reason string) {
	e.cfg.Events.Record(ctx, secevent.Event{Type: t, ClientID: clientID, Username: username, Reason: reason})
}
