// Package guard validates tokengate access tokens inside a resource server:
// JWTs are verified locally against the issuer's JWKS, opaque tokens are
// introspected once, and both are cached and checked against tokengate's
// revocation feed, so a cached token is refused within a second of its
// revocation on any node of the authorization server.
//
// # Failure behaviour
//
// The guard fails closed. A token it cannot check is refused with
// ErrUnavailable (503 from the middleware), never accepted on a guess:
//
//   - The feed is the only way a cached result learns of a revocation. While
//     it is connected and caught up, cached results are used. When it has
//     been down (no byte received: events or the server's 15 s pings) for
//     longer than Config.FeedDownLimit, cached results are not used: every
//     opaque token is introspected again on every call, and every JWT, after
//     its local checks, is introspected too. When the feed is back (resumed
//     from the last cursor, so no revocation is missed), caching resumes. A
//     stream that stays silent for Config.FeedIdleTimeout is dropped and
//     counts as down from its last byte.
//   - If the authorization server cannot be reached for an introspection,
//     the token is refused with ErrUnavailable.
//   - A "reset" from the feed (the guard was away longer than the feed keeps
//     events), an unknown kind of revocation, or revocation state outgrowing
//     its bounds makes the guard forget every cached result and introspect
//     each JWT issued before that moment once, since a revocation may have
//     been missed.
//   - Until the feed has connected once, the guard behaves as if it were
//     down (New waits up to Config.FeedStartTimeout for it).
//
// A JWKS that cannot be refreshed keeps the keys last fetched. An unknown
// key ID triggers a refetch at most once per Config.JWKSMinRefresh; keys
// that disappear from the set stop being accepted, including in cached
// results.
package guard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/tokengate/tokengate/internal/tlspolicy"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
)

// Defaults of Config.
const (
	DefaultLeeway           = 5 * time.Second
	DefaultCacheTTL         = 5 * time.Minute
	DefaultMaxEntries       = 100_000
	DefaultMaxBytes         = 64 << 20
	DefaultMaxRevocations   = 100_000
	DefaultMaxTokenLifetime = 24 * time.Hour
	DefaultFeedDownLimit    = 30 * time.Second
	DefaultFeedIdleTimeout  = 20 * time.Second
	DefaultFeedStartTimeout = 5 * time.Second
	DefaultJWKSMinRefresh   = 10 * time.Second
	DefaultRequestTimeout   = 5 * time.Second
	DefaultRealm            = "tokengate"
)

// defaultIdleConns is how many idle connections to the authorization server
// the default HTTP client keeps.
const defaultIdleConns = 256

// maxTokenLen bounds a token Validate looks at (as package bearer does).
const maxTokenLen = 16 << 10

// Config configures a Guard. Issuer, ClientID and ClientSecret are
// required; every other field has a default.
type Config struct {
	// Issuer is tokengate's issuer URL (the "iss" of its tokens and the base
	// of its metadata). It must be https, or http on a loopback host, unless
	// AllowInsecureHTTP is set.
	Issuer string
	// ClientID and ClientSecret are the resource server's own client
	// credentials (client_secret_basic). The client needs the
	// resource-server permission (`tokengate client create --can-introspect`)
	// to introspect other clients' tokens and to read the revocation feed.
	ClientID     string
	ClientSecret string
	// Audience is the "aud" a JWT must carry (and an introspection answer,
	// if it names any). Default: Issuer, tokengate's default audience.
	Audience string
	// Algorithms is the JWT signature allow-list, a subset of ES256, RS256
	// and EdDSA (the default is all three). "none" and HS* are never accepted.
	Algorithms []string
	// Leeway is the clock skew tolerated for exp, nbf and iat. Default 5 s.
	Leeway time.Duration
	// CacheTTL bounds how long an opaque token's introspection result is
	// used (it is also never used past the token's expiry). Default 5 min.
	CacheTTL time.Duration
	// MaxEntries and MaxBytes bound the validation cache (JWT and opaque
	// results). Defaults 100,000 and 64 MiB.
	MaxEntries int
	MaxBytes   int64
	// MaxRevocations bounds the revocation state learned from the feed:
	// revoked token IDs plus client and user cutoffs, at most this many and
	// 128 bytes each on average. Past it the guard resynchronises (see the
	// package doc) rather than forget one. Default 100,000.
	MaxRevocations int
	// MaxTokenLifetime is the longest access token lifetime the server
	// issues (tokengate's tokens.max_access_ttl, 24 h by default). A
	// revocation is remembered this long; a JWT living longer is refused.
	MaxTokenLifetime time.Duration
	// FeedDownLimit is how long the feed may be down (counted from the
	// last byte received) before cached results stop being used. Default
	// 30 s.
	FeedDownLimit time.Duration
	// FeedIdleTimeout drops a feed stream that sends nothing. The server
	// pings every 15 s, so it must be longer than that. A stream that goes
	// silent without closing (a network partition) is only noticed after
	// it: cached results are then used up to the longer of FeedDownLimit
	// and FeedIdleTimeout after the last byte. Default 20 s.
	FeedIdleTimeout time.Duration
	// FeedStartTimeout is how long New waits for the feed's first event.
	// Default 5 s; the guard starts anyway (failing closed) after it.
	FeedStartTimeout time.Duration
	// JWKSMinRefresh is the shortest interval between two JWKS fetches
	// caused by unknown key IDs. Default 10 s.
	JWKSMinRefresh time.Duration
	// RequestTimeout bounds each metadata, JWKS and introspection request.
	// Default 5 s.
	RequestTimeout time.Duration
	// Realm is the WWW-Authenticate realm of the middleware's answers.
	// Default "tokengate".
	Realm string
	// HTTPClient makes every request to the authorization server; it must
	// not have a Timeout (the feed is a long-lived stream). Default: a
	// client of its own.
	HTTPClient *http.Client
	// AllowInsecureHTTP allows a plain-http Issuer on a non-loopback host
	// (the client secret then travels in clear).
	AllowInsecureHTTP bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives connection problems (never tokens or secrets).
	// Default: discard.
	Logger *slog.Logger
	// Hooks are optional metrics callbacks.
	Hooks Hooks
}

// Identity is what a valid access token says about the call. It is shared
// by every call presenting the same token and must not be modified.
type Identity struct {
	ClientID  string   // client_id
	Subject   string   // sub: the user for password-grant tokens, else the client
	Username  string   // the user, "" for a client's own token
	Scopes    []string // granted scopes
	TokenID   string   // the JWT's jti or the opaque token's storage ID (safe to log)
	Format    Format
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// HasScope reports whether the token grants scope s.
func (id *Identity) HasScope(s string) bool {
	for _, g := range id.Scopes {
		if g == s {
			return true
		}
	}
	return false
}

// Format is a token format.
type Format uint8

// Token formats.
const (
	FormatOpaque Format = iota
	FormatJWT
)

func (f Format) String() string {
	if f == FormatJWT {
		return "jwt"
	}
	return "opaque"
}

// ErrInvalidToken is wrapped by every error meaning "this token is not
// valid" (answer 401 invalid_token); ErrUnavailable by every error meaning
// "the token could not be checked now" (answer 503).
var (
	ErrInvalidToken = errors.New("guard: invalid access token")
	ErrUnavailable  = errors.New("guard: the access token cannot be checked now")
)

// The reasons a token is invalid. Each wraps ErrInvalidToken; the text after
// "guard: " is the middleware's error_description.
var (
	ErrMalformed       = invalid("the access token is malformed")
	ErrExpired         = invalid("The access token expired") // RFC 6750 §3's example text
	ErrNotYetValid     = invalid("the access token is not valid yet")
	ErrRevoked         = invalid("the access token was revoked")
	ErrInactive        = invalid("the access token is not active")
	ErrNotAccessToken  = invalid("the token is not an access token")
	ErrWrongType       = invalid("the access token's typ is not at+jwt")
	ErrWrongIssuer     = invalid("the access token was issued by another issuer")
	ErrWrongAudience   = invalid("the access token is not meant for this resource")
	ErrAlgorithm       = invalid("the access token's signature algorithm is not accepted")
	ErrUnknownKey      = invalid("the access token was signed with an unknown key")
	ErrBadSignature    = invalid("the access token's signature is invalid")
	ErrLifetimeTooLong = invalid("the access token lives longer than tokens can")
)

type invalidError struct{ desc string }

func invalid(desc string) error       { return &invalidError{desc} }
func (e *invalidError) Error() string { return "guard: " + e.desc }
func (e *invalidError) Unwrap() error { return ErrInvalidToken }

type unavailableError struct {
	msg   string
	cause error
}

func unavailable(msg string, cause error) error { return &unavailableError{msg, cause} }

func (e *unavailableError) Error() string {
	if e.cause == nil {
		return ErrUnavailable.Error() + ": " + e.msg
	}
	return ErrUnavailable.Error() + ": " + e.msg + ": " + e.cause.Error()
}

func (e *unavailableError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.cause}
}

// Guard validates access tokens. It is safe for concurrent use.
type Guard struct {
	cfg      Config
	algs     []jose.SignatureAlgorithm
	endpoint endpoints
	hooks    Hooks

	cache *cache
	rev   *revocations
	keys  *keyStore
	feed  feedState

	flightMu sync.Mutex
	flight   map[[32]byte]*call

	stop    context.CancelFunc
	done    chan struct{}
	closeMu sync.Once
}

type endpoints struct {
	jwks, introspect, feed string
}

// call is one in-flight miss that concurrent validations of the same token
// wait for instead of repeating it.
type call struct {
	done chan struct{}
	id   *Identity
	err  error
}

// New discovers the issuer's endpoints (RFC 8414 metadata), fetches its
// JWKS and subscribes to its revocation feed, waiting up to
// FeedStartTimeout for the feed's first event. ctx bounds the start only.
// It fails with an error wrapping ErrUnavailable if the metadata or the
// JWKS cannot be fetched, and with a plain error for an invalid Config.
// Close the Guard when done.
func New(ctx context.Context, cfg Config) (*Guard, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Guard{cfg: cfg, hooks: cfg.Hooks, flight: make(map[[32]byte]*call)}
	for _, a := range cfg.Algorithms {
		g.algs = append(g.algs, jose.SignatureAlgorithm(a))
	}
	g.cache = newCache(cfg.MaxEntries, cfg.MaxBytes, g.hooks.Evicted)
	g.rev = newRevocations(cfg.MaxRevocations, cfg.MaxTokenLifetime+cfg.Leeway)
	if err := g.discover(ctx); err != nil {
		return nil, err
	}
	g.keys = newKeyStore(g)
	if err := g.keys.fetch(ctx); err != nil {
		return nil, err
	}
	fctx, stop := context.WithCancel(context.Background())
	g.stop, g.done = stop, make(chan struct{})
	started := make(chan struct{})
	go g.runFeed(fctx, started)
	t := time.NewTimer(cfg.FeedStartTimeout)
	defer t.Stop()
	select {
	case <-started:
	case <-t.C:
		g.cfg.Logger.Warn("guard: the revocation feed did not connect in time; failing closed until it does")
	case <-ctx.Done():
	}
	return g, nil
}

// Close stops the feed subscription. Validate keeps working afterwards, as
// with a feed that is down.
func (g *Guard) Close() error {
	g.closeMu.Do(func() {
		g.stop()
		<-g.done
	})
	return nil
}

func (c *Config) setDefaults() error {
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("guard: Issuer must be an absolute http(s) URL without query or fragment")
	}
	if u.Scheme == "http" && !c.AllowInsecureHTTP && !tlspolicy.Loopback(u.Hostname()) {
		return errors.New("guard: Issuer must be https (or set AllowInsecureHTTP)")
	}
	if c.ClientID == "" || c.ClientSecret == "" {
		return errors.New("guard: ClientID and ClientSecret are required")
	}
	if c.Audience == "" {
		c.Audience = c.Issuer
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{string(jose.ES256), string(jose.RS256), string(jose.EdDSA)}
	}
	for _, a := range c.Algorithms {
		switch jose.SignatureAlgorithm(a) {
		case jose.ES256, jose.RS256, jose.EdDSA:
		default:
			return fmt.Errorf("guard: algorithm %q is not accepted (only ES256, RS256, EdDSA)", a)
		}
	}
	durations := []struct {
		p *time.Duration
		d time.Duration
	}{{&c.Leeway, DefaultLeeway}, {&c.CacheTTL, DefaultCacheTTL}, {&c.MaxTokenLifetime, DefaultMaxTokenLifetime},
		{&c.FeedDownLimit, DefaultFeedDownLimit}, {&c.FeedIdleTimeout, DefaultFeedIdleTimeout},
		{&c.FeedStartTimeout, DefaultFeedStartTimeout}, {&c.JWKSMinRefresh, DefaultJWKSMinRefresh},
		{&c.RequestTimeout, DefaultRequestTimeout}}
	for _, d := range durations {
		if *d.p < 0 {
			return errors.New("guard: durations must not be negative")
		}
		if *d.p == 0 {
			*d.p = d.d
		}
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxRevocations <= 0 {
		c.MaxRevocations = DefaultMaxRevocations
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			// Every request that misses the cache introspects, all at once
			// after a resynchronisation or while the feed is down past its
			// limit. Over HTTP/1.1 each needs a connection; with few kept
			// idle, every burst would dial most of them again.
			MaxIdleConnsPerHost: defaultIdleConns,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}}
	}
	if c.HTTPClient.Timeout != 0 {
		return errors.New("guard: HTTPClient must not have a Timeout (the feed is a long-lived stream)")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Issuer = strings.TrimSuffix(c.Issuer, "/")
	return nil
}

// Validate checks an access token (the value of "Authorization: Bearer")
// and returns its Identity. Errors wrap ErrInvalidToken (one of the Err*
// reasons above) or ErrUnavailable; they never contain the token.
//
// A JWT is verified locally (signature with an allowed algorithm and a key
// of the issuer's JWKS, typ at+jwt, iss, aud, exp/nbf/iat with Leeway, a
// lifetime within MaxTokenLifetime); an opaque token is introspected. Both
// results are cached (an opaque one for at most CacheTTL) and every use of
// a cached result is checked against the revocations the feed has sent.
// See the package doc for what happens while the feed is down.
func (g *Guard) Validate(ctx context.Context, token string) (*Identity, error) {
	if token == "" || len(token) > maxTokenLen {
		g.result(FormatOpaque, ResultInvalid)
		return nil, ErrMalformed
	}
	now := g.cfg.Now().UnixNano()
	// The key is a hash, so no cached token value is ever compared with
	// the presented one (which would leak it byte by byte through timing).
	// sha256 only reads its input, so the string's bytes are not copied.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	fresh := g.feedFresh(now)
	if fresh {
		if e := g.cache.get(&key); e != nil {
			if id, err, ok := g.useEntry(e, now); ok {
				g.lookup(e.format, true)
				if err != nil {
					g.result(e.format, ResultInvalid)
				} else {
					g.result(e.format, ResultValid)
				}
				return id, err
			}
		}
	}
	f := FormatOpaque
	if isJWT(token) {
		f = FormatJWT
	}
	g.lookup(f, false)
	id, err := g.miss(ctx, token, key, f)
	switch {
	case err == nil:
		g.result(f, ResultValid)
	case errors.Is(err, ErrUnavailable):
		g.result(f, ResultUnavailable)
	default:
		g.result(f, ResultInvalid)
	}
	return id, err
}

// useEntry decides a cached entry: ok false means it cannot be used (expired
// or made stale by a resynchronisation) and the token must be checked anew.
func (g *Guard) useEntry(e *entry, now int64) (*Identity, error, bool) {
	if now >= e.until {
		return nil, nil, false
	}
	if e.dead.Load() {
		return nil, ErrRevoked, true
	}
	if e.epoch.Load() != g.rev.epoch.Load() {
		switch g.rev.check(e) {
		case checkRevoked:
			e.dead.Store(true)
			return nil, ErrRevoked, true
		case checkStale:
			return nil, nil, false
		}
	}
	return e.ident, nil, true
}

// miss checks a token that has no usable cached result, once for all the
// concurrent callers presenting it. The check runs on its own, so that the
// caller that started it going away fails neither the others nor the
// caching of the result (RequestTimeout bounds it); each caller waits for
// it as long as its ctx lets it.
func (g *Guard) miss(ctx context.Context, token string, key [32]byte, f Format) (*Identity, error) {
	g.flightMu.Lock()
	c, ok := g.flight[key]
	if !ok {
		c = &call{done: make(chan struct{})}
		g.flight[key] = c
		go func() {
			c.id, c.err = g.check(context.WithoutCancel(ctx), token, &key, f)
			g.flightMu.Lock()
			delete(g.flight, key)
			g.flightMu.Unlock()
			close(c.done)
		}()
	}
	g.flightMu.Unlock()
	select {
	case <-c.done:
		return c.id, c.err
	case <-ctx.Done():
		return nil, unavailable("cancelled", ctx.Err())
	}
}

// check validates a token from scratch and caches a valid result. A
// resynchronisation while it ran makes it start over (its answer may
// predate a missed revocation).
func (g *Guard) check(ctx context.Context, token string, key *[32]byte, f Format) (*Identity, error) {
	for range 3 {
		born := g.rev.epoch.Load()
		var e *entry
		var err error
		if f == FormatJWT {
			e, err = g.checkJWT(ctx, token)
		} else {
			e, err = g.checkOpaque(ctx, token)
		}
		if err != nil {
			if errors.Is(err, ErrInvalidToken) {
				// The token was checked anew (its cached result expired,
				// or the feed is down past its limit) and is not valid:
				// its old result must not come back into use, e.g. when
				// the feed is back but has not yet sent the revocation
				// the server already knows of.
				g.cache.remove(key)
			}
			return nil, err
		}
		e.born = born
		e.epoch.Store(born)
		switch g.rev.check(e) {
		case checkRevoked:
			return nil, ErrRevoked
		case checkStale:
			continue
		}
		g.cache.put(key, e, g.cfg.Now().UnixNano())
		return e.ident, nil
	}
	return nil, unavailable("revocation state kept changing", nil)
}

func isJWT(token string) bool {
	return strings.Count(token, ".") == 2
}

// feedFresh reports whether cached results may be used at now: the feed is
// connected and caught up, or was less than FeedDownLimit ago. The first
// call that finds it stale reports FeedFailClosed.
func (g *Guard) feedFresh(now int64) bool {
	if g.feed.up.Load() {
		return true
	}
	if now-g.feed.lastUp.Load() <= int64(g.cfg.FeedDownLimit) {
		return true
	}
	if g.feed.failClosed.CompareAndSwap(false, true) {
		g.cfg.Logger.Warn("guard: the revocation feed is down longer than the limit; introspecting every token")
		g.feedStateHook(FeedFailClosed)
	}
	return false
}

// Stats is a snapshot of the guard's memory and feed.
type Stats struct {
	Entries      int   // cached validation results
	Bytes        int64 // their approximate size
	Revocations  int   // revoked IDs and cutoffs kept
	RevokedBytes int64 // their approximate size
	FeedUp       bool  // connected and caught up
}

// Stats returns the current Stats.
func (g *Guard) Stats() Stats {
	var s Stats
	s.Entries, s.Bytes = g.cache.stats()
	s.Revocations, s.RevokedBytes = g.rev.stats()
	s.FeedUp = g.feed.up.Load()
	return s
}
