package guard

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/token"
)

const (
	maxJWKSBytes   = 1 << 20
	defaultJWKSAge = 5 * time.Minute
	maxJWKSAge     = 24 * time.Hour
	minRSABits     = 2048
)

// keyStore holds the issuer's JWKS: fetched at start, refetched in the
// background once its Cache-Control max-age has passed (checked when a JWT
// is verified), and at once, rate-limited, for an unknown key ID.
type keyStore struct {
	g          *Guard
	set        atomic.Pointer[keySet]
	mu         sync.Mutex // one fetch at a time
	lastFetch  int64      // UnixNano of the last fetch attempt, under mu
	refreshing atomic.Bool
}

type keySet struct {
	keys    map[string]*pubKey // by kid
	expires int64              // UnixNano: refetch after
}

type pubKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key any // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
}

func newKeyStore(g *Guard) *keyStore {
	ks := &keyStore{g: g}
	ks.set.Store(&keySet{})
	return ks
}

// fetch fetches the JWKS now. Errors wrap ErrUnavailable.
func (ks *keyStore) fetch(ctx context.Context) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.fetchLocked(ctx)
}

func (ks *keyStore) fetchLocked(ctx context.Context) error {
	g := ks.g
	ks.lastFetch = g.cfg.Now().UnixNano()
	set, err := ks.download(ctx)
	if h := g.hooks.JWKSFetched; h != nil {
		h(err)
	}
	if err != nil {
		g.cfg.Logger.Warn("guard: JWKS fetch failed; keeping the keys fetched before", "err", err)
		return err
	}
	old := ks.set.Swap(set)
	var removed map[string]bool
	for kid := range old.keys {
		if set.keys[kid] == nil {
			if removed == nil {
				removed = make(map[string]bool)
			}
			removed[kid] = true
		}
	}
	if removed != nil {
		// A key taken out of the set (retired for good, or leaked) stops
		// vouching for the tokens it signed, cached or not.
		g.cache.drop(func(e *entry) bool { return e.format == FormatJWT && removed[e.kid] })
	}
	return nil
}

func (ks *keyStore) download(ctx context.Context) (*keySet, error) {
	g := ks.g
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.endpoint.jwks, nil)
	if err != nil {
		return nil, unavailable("JWKS request", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, unavailable("JWKS fetch", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, unavailable("JWKS fetch answered "+resp.Status, nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, unavailable("JWKS read", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, unavailable("JWKS larger than 1 MiB", nil)
	}
	keys, err := parseJWKS(body, g.algs)
	if err != nil {
		return nil, unavailable("JWKS", err)
	}
	age := maxAge(resp.Header.Get("Cache-Control"))
	age = min(max(age, g.cfg.JWKSMinRefresh), maxJWKSAge)
	return &keySet{keys: keys, expires: g.cfg.Now().Add(age).UnixNano()}, nil
}

// parseJWKS returns the usable signature keys of a JWK Set: public keys
// with a kid, use "sig" (or none), of an allowed algorithm (the JWK's alg,
// or the one its key type implies). Other keys are skipped; a set that is
// not JSON is an error.
func parseJWKS(body []byte, allowed []jose.SignatureAlgorithm) (map[string]*pubKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set")
	}
	keys := make(map[string]*pubKey, len(set.Keys))
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub := k.Public()
		alg, ok := algOf(pub.Key)
		if !ok || (k.Algorithm != "" && k.Algorithm != string(alg)) || !slices.Contains(allowed, alg) {
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			continue
		}
		keys[k.KeyID] = &pubKey{kid: k.KeyID, alg: alg, key: pub.Key}
	}
	return keys, nil
}

// algOf is the one JWS algorithm tokengate uses with a key of this type.
func algOf(key any) (jose.SignatureAlgorithm, bool) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return jose.ES256, k.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return jose.RS256, k.N.BitLen() >= minRSABits
	case ed25519.PublicKey:
		return jose.EdDSA, len(k) == ed25519.PublicKeySize
	}
	return "", false
}

// maxAge reads max-age from a Cache-Control header; no-store, no-cache and
// a missing header give 0 and a default respectively.
func maxAge(cc string) time.Duration {
	if cc == "" {
		return defaultJWKSAge
	}
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "no-store" || d == "no-cache" {
			return 0
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				return time.Duration(min(n, int64(maxJWKSAge/time.Second))) * time.Second
			}
		}
	}
	return defaultJWKSAge
}

// key returns the key kid names. An unknown kid refetches the JWKS unless
// it was fetched less than JWKSMinRefresh ago; it is ErrUnknownKey, or
// ErrUnavailable if that fetch failed.
func (ks *keyStore) key(ctx context.Context, kid string) (*pubKey, error) {
	now := ks.g.cfg.Now().UnixNano()
	set := ks.set.Load()
	if k := set.keys[kid]; k != nil {
		if now >= set.expires {
			ks.refreshInBackground()
		}
		return k, nil
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if k := ks.set.Load().keys[kid]; k != nil {
		return k, nil // fetched while this call waited
	}
	if now-ks.lastFetch < int64(ks.g.cfg.JWKSMinRefresh) {
		return nil, ErrUnknownKey
	}
	if err := ks.fetchLocked(ctx); err != nil {
		return nil, err
	}
	if k := ks.set.Load().keys[kid]; k != nil {
		return k, nil
	}
	return nil, ErrUnknownKey
}

func (ks *keyStore) refreshInBackground() {
	if !ks.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer ks.refreshing.Store(false)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.g.cfg.Now().UnixNano() < ks.set.Load().expires {
			return
		}
		ks.fetchLocked(context.Background())
	}()
}

// checkJWT verifies a JWT and returns its entry, not yet cached: the
// signature (an allowed algorithm, the key its kid names, bound to that
// algorithm), typ at+jwt, iss, aud, exp, nbf and iat with leeway, a
// lifetime within MaxTokenLifetime, and the claims an RFC 9068 token must
// have. A JWT whose jti the feed revoked is refused at once; one issued
// before a resynchronisation, or any while the feed is down past its
// limit, must also be active by introspection.
func (g *Guard) checkJWT(ctx context.Context, tok string) (*entry, error) {
	jws, err := jose.ParseSignedCompact(tok, g.algs)
	if err != nil {
		if g.headerAlgRefused(tok) {
			return nil, ErrAlgorithm
		}
		return nil, ErrMalformed
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrMalformed
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return nil, ErrWrongType
	}
	k, err := g.keys.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	// A key is bound to one algorithm: a token naming another is not its own.
	if string(k.alg) != h.Algorithm {
		return nil, ErrUnknownKey
	}
	payload, err := jws.Verify(k.key)
	if err != nil {
		return nil, ErrBadSignature
	}
	c, err := parseClaims(payload)
	if err != nil || c.Exp == nil || c.Iat == nil || c.Jti == "" || c.ClientID == "" || c.Sub == "" {
		return nil, ErrMalformed
	}
	now := g.cfg.Now().UnixNano()
	leeway := int64(g.cfg.Leeway)
	exp, iat := int64(*c.Exp), int64(*c.Iat)
	switch {
	case c.Iss != g.cfg.Issuer:
		return nil, ErrWrongIssuer
	case !c.Aud.contains(g.cfg.Audience):
		return nil, ErrWrongAudience
	case now >= exp+leeway:
		return nil, ErrExpired
	case c.Nbf != nil && now+leeway < int64(*c.Nbf), now+leeway < iat:
		return nil, ErrNotYetValid
	case exp-iat > int64(g.cfg.MaxTokenLifetime):
		return nil, ErrLifetimeTooLong
	}
	issued := iat
	if at, ok := token.JTITime(c.Jti, time.Unix(0, iat)); ok {
		issued = at.UnixNano()
	}
	e := &entry{format: FormatJWT, kid: k.kid, issued: issued, until: exp + leeway,
		idKey: sha256.Sum256([]byte(c.Jti)), user: c.Sub != c.ClientID}
	e.ident = &Identity{ClientID: c.ClientID, Subject: c.Sub, Scopes: strings.Fields(c.Scope), TokenID: c.Jti,
		Format: FormatJWT, IssuedAt: time.Unix(0, issued), ExpiresAt: time.Unix(0, exp)}
	if e.user {
		e.ident.Username = c.Sub
	}
	if g.rev.revokedID(&e.idKey) {
		return nil, ErrRevoked
	}
	if !g.feedFresh(now) || g.rev.mustIntrospect(issued) {
		in, err := g.introspect(ctx, tok)
		if err != nil {
			return nil, err
		}
		if err := g.checkActive(in, now); err != nil {
			return nil, err
		}
		e.introspected = true
	}
	e.computeSize()
	return e, nil
}

// headerAlgRefused reports whether a JWT that did not parse names an
// algorithm outside the allow-list (for a precise error only).
func (g *Guard) headerAlgRefused(tok string) bool {
	head, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &h) != nil {
		return false
	}
	return !slices.Contains(g.algs, jose.SignatureAlgorithm(h.Alg))
}
