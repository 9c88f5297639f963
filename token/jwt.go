package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/oauth"
)

// jwtType is the "typ" header of RFC 9068 access tokens.
const jwtType = "at+jwt"

// maxJWTLen bounds what Verify will parse; tokengate's tokens are far
// shorter, and the bound keeps garbage from costing more than a parse.
const maxJWTLen = 8 << 10

// allowedAlgs is Verify's algorithm allow-list. Anything else, "none" and
// HS* in particular, fails at parse time.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// Errors of Sign and Verify. Every Verify error wraps ErrInvalidToken, so
// callers that only need "active or not" test for that one.
var (
	ErrNoKey         = errors.New("token: no current signing key for algorithm")
	ErrInvalidToken  = errors.New("token: invalid token")
	ErrMalformed     = fmt.Errorf("%w: malformed", ErrInvalidToken)
	ErrWrongType     = fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
	ErrUnknownKey    = fmt.Errorf("%w: unknown key", ErrInvalidToken)
	ErrBadSignature  = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	ErrTokenExpired  = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrWrongIssuer   = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	errNoExpiry      = errors.New("token: claims have no expiry")
	errMissingClaims = errors.New("token: nil claims")
)

// Claims are the claims of an RFC 9068 access token.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub
	Audience  []string  // aud (serialized as a string if one, an array if several)
	ClientID  string    // client_id
	Scope     string    // scope (space-delimited)
	ID        string    // jti
	IssuedAt  time.Time // iat
	ExpiresAt time.Time // exp
}

// KeySet holds parsed signing keys. The server builds one from the stored
// keys and swaps it atomically when keys change; a KeySet never changes
// after NewKeySet and is safe for concurrent use. A nil *KeySet has no keys.
type KeySet struct {
	byKID   map[string]*parsedKey
	current map[string]*parsedKey   // by alg
	byAlg   map[string][]*parsedKey // newest first, current and retired
	delay   time.Duration
	jwks    []byte
}

// KeySetOption adjusts NewKeySet.
type KeySetOption func(*KeySet)

// ActivationDelay makes a new current key sign only once it has been
// published for d (until then the key it replaced goes on signing), so that
// resource servers holding a cached JWKS already know it. The first key of
// an algorithm signs at once: there is nothing else to sign with.
func ActivationDelay(d time.Duration) KeySetOption {
	return func(ks *KeySet) { ks.delay = d }
}

// NewKeySet parses keys. It fails on a key it cannot parse, a key whose
// type does not match its Alg, or a duplicate ID. Should several keys of
// one algorithm be current, the newest signs.
func NewKeySet(keys []*oauth.SigningKey, opts ...KeySetOption) (*KeySet, error) {
	ks := &KeySet{byKID: make(map[string]*parsedKey, len(keys)), current: make(map[string]*parsedKey),
		byAlg: make(map[string][]*parsedKey)}
	for _, o := range opts {
		o(ks)
	}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		pk, err := parseKey(k)
		if err != nil {
			return nil, err
		}
		if _, dup := ks.byKID[pk.id]; dup {
			return nil, fmt.Errorf("token: duplicate signing key ID %q", pk.id)
		}
		ks.byKID[pk.id] = pk
		if cur := ks.current[pk.alg]; pk.current && (cur == nil || pk.created.After(cur.created)) {
			ks.current[pk.alg] = pk
		}
		ks.byAlg[pk.alg] = append(ks.byAlg[pk.alg], pk)
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pk.pub, KeyID: pk.id, Algorithm: pk.alg, Use: "sig"})
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("token: marshal JWKS: %w", err)
	}
	ks.jwks = jwks
	for _, l := range ks.byAlg {
		slices.SortFunc(l, func(a, b *parsedKey) int { return b.created.Compare(a.created) })
	}
	return ks, nil
}

// signer is the key that signs for alg at now: the current key once it is
// ActivationDelay old, else the key it replaced (the newest older one, still
// published), else — for the first key of alg — the current key.
func (ks *KeySet) signer(alg string, now time.Time) *parsedKey {
	cur := ks.current[alg]
	if cur == nil || ks.delay <= 0 || now.Sub(cur.created) >= ks.delay {
		return cur
	}
	for _, k := range ks.byAlg[alg] {
		if k.created.Before(cur.created) {
			return k
		}
	}
	return cur
}

// Has reports whether a current key exists for alg.
func (ks *KeySet) Has(alg string) bool {
	return ks != nil && ks.current[alg] != nil
}

// JWKS returns the RFC 7517 JSON Web Key Set of all keys' public halves
// (kid, alg, use "sig"), current and retired, as JSON. The caller may keep
// and modify the returned slice.
func (ks *KeySet) JWKS() []byte {
	if ks == nil {
		return []byte(`{"keys":[]}`)
	}
	return slices.Clone(ks.jwks)
}

// Sign signs c with the current key of alg (see ActivationDelay for when a
// new one takes over) as a compact JWS with the header
// {"alg", "kid", "typ": "at+jwt"}. It fails with ErrNoKey if alg has no
// current key, and if c has no ExpiresAt (an access token must expire).
func (ks *KeySet) Sign(alg string, c *Claims) (string, error) {
	if c == nil {
		return "", errMissingClaims
	}
	if c.ExpiresAt.IsZero() {
		return "", errNoExpiry
	}
	var k *parsedKey
	if ks != nil {
		now := c.IssuedAt
		if now.IsZero() {
			now = time.Now()
		}
		k = ks.signer(alg, now)
	}
	if k == nil {
		return "", fmt.Errorf("%w %q", ErrNoKey, alg)
	}
	var scratch [512]byte
	payload := appendClaims(scratch[:0], c)
	enc := base64.RawURLEncoding
	sigLen := 64
	if k.rsa != nil {
		sigLen = k.rsa.Size()
	}
	out := make([]byte, 0, len(k.header)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(sigLen))
	out = append(out, k.header...)
	out = enc.AppendEncode(out, payload)
	sig, err := k.sign(out)
	if err != nil {
		return "", fmt.Errorf("token: sign with key %q: %w", k.id, err)
	}
	out = append(out, '.')
	out = enc.AppendEncode(out, sig)
	return string(out), nil
}

// Verify parses a compact JWS access token and returns its claims. It
// accepts only ES256, RS256 and EdDSA (never "none" or HS*), requires typ
// "at+jwt" or "application/at+jwt" (case-insensitive), finds the key by kid
// among current and retired keys and checks that the key is of the token's
// alg, verifies the signature, requires exp to be after now and iss to equal
// issuer (an empty issuer skips that check: for the server itself, whose
// own key signed the token whatever issuer it was configured with then).
// Errors wrap ErrInvalidToken and never contain the token.
func (ks *KeySet) Verify(token string, issuer string, now time.Time) (*Claims, error) {
	if len(token) > maxJWTLen {
		return nil, ErrMalformed
	}
	// go-jose's errors quote header fields; they are replaced with ours.
	jws, err := jose.ParseSignedCompact(token, allowedAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, ErrMalformed
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isATJWT(typ) {
		return nil, ErrWrongType
	}
	var k *parsedKey
	if ks != nil {
		k = ks.byKID[h.KeyID]
	}
	// A key is bound to one alg: a token naming another is not its own.
	if k == nil || k.alg != h.Algorithm {
		return nil, ErrUnknownKey
	}
	payload, err := jws.Verify(k.pub)
	if err != nil {
		return nil, ErrBadSignature
	}
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil || w.Exp == nil {
		return nil, ErrMalformed
	}
	c := &Claims{
		Issuer:    w.Iss,
		Subject:   w.Sub,
		Audience:  []string(w.Aud),
		ClientID:  w.ClientID,
		Scope:     w.Scope,
		ID:        w.Jti,
		ExpiresAt: time.Time(*w.Exp),
	}
	if w.Iat != nil {
		c.IssuedAt = time.Time(*w.Iat)
	}
	if !now.Before(c.ExpiresAt) {
		return nil, ErrTokenExpired
	}
	if issuer != "" && c.Issuer != issuer {
		return nil, ErrWrongIssuer
	}
	return c, nil
}

// isATJWT reports whether typ names an RFC 9068 access token; media type
// names are case-insensitive and "application/" may be left out (RFC 7515
// §4.1.9).
func isATJWT(typ string) bool {
	return strings.EqualFold(typ, jwtType) || strings.EqualFold(typ, "application/"+jwtType)
}
