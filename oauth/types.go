package oauth

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Grant types (RFC 6749 §4.4, §4.3, §6).
const (
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantRefreshToken      = "refresh_token"
)

// KnownGrant reports whether g is a grant type tokengate implements.
func KnownGrant(g string) bool {
	return g == GrantClientCredentials || g == GrantPassword || g == GrantRefreshToken
}

// ValidCredentialText reports whether s may be a client ID, secret or
// username as a request presents it: RFC 6749 Appendix A's
// *UNICODECHARNOCRLF (no control character but HTAB, no U+FFFE or U+FFFF)
// in valid UTF-8. Every dialect refuses anything else before a lookup (a
// NUL byte, for one, cannot even be a key in PostgreSQL).
func ValidCredentialText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
		// U+FFFE and U+FFFF are EF BF BE and EF BF BF.
		if c == 0xef && i+2 < len(s) && s[i+1] == 0xbf && s[i+2] >= 0xbe {
			return false
		}
	}
	return true
}

// Bounds every dialect applies to presented client credentials before any
// lookup: a longer value is refused with the dialect's own error, so it
// costs no store read and never reaches a cache.
const (
	MaxClientIDLen     = 256  // bytes of a client_id (X-CLIENT-KEY in SNAP)
	MaxClientSecretLen = 1024 // bytes of a client_secret
)

// TokenFormat is how an access token is represented on the wire.
type TokenFormat string

const (
	FormatOpaque TokenFormat = "opaque"
	FormatJWT    TokenFormat = "jwt"
)

// Valid reports whether f is a known format; the empty format means
// "the server's default" and is valid too.
func (f TokenFormat) Valid() bool { return f == "" || f == FormatOpaque || f == FormatJWT }

// JWT signing algorithms tokengate offers.
const (
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
	AlgEdDSA = "EdDSA"
)

// KnownAlg reports whether alg is a signing algorithm tokengate offers.
func KnownAlg(alg string) bool { return alg == AlgES256 || alg == AlgRS256 || alg == AlgEdDSA }

// SecretHash is one keyed hash of a client secret. A client has one current
// hash and, during a rotation's grace period, the previous one with an expiry.
//
// A client whose SNAP service calls are signed with HMAC-SHA512 keyed with
// its secret (SNAPSymmetric) also keeps the secret itself, recoverable:
// Plain in memory, Sealed (encrypted under the key-encryption key, see
// package kek) in the store. Stores keep Sealed as opaque bytes and never
// see Plain; the kek.Store decorator seals Plain on every write and opens
// Sealed on every read.
type SecretHash struct {
	Hash      []byte    `json:"hash"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: never expires
	// Sealed is the secret as stored, encrypted and bound to the client and
	// Hash (ClientSecretSecret); nil when the secret is not recoverable.
	Sealed []byte `json:"sealed,omitempty"`
	// Plain is the secret itself, in memory only (never stored, logged or
	// encoded); nil when the secret is not recoverable.
	Plain []byte `json:"-"`
}

// Format prints s without the secret, its sealed form or its hash,
// whatever the verb, so that no %v of a client can put a secret in a log
// or an error.
func (s SecretHash) Format(f fmt.State, _ rune) {
	exp := "never"
	if !s.ExpiresAt.IsZero() {
		exp = s.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(f, "{expires:%s recoverable:%t}", exp, s.Recoverable())
}

// Recoverable reports whether the secret itself is kept, not only its hash.
func (s *SecretHash) Recoverable() bool { return len(s.Plain) > 0 || len(s.Sealed) > 0 }

// SNAP service signature variants a client can be registered for
// (Client.SNAPServiceSignature).
const (
	SNAPSignatureNone       = ""
	SNAPSignatureSymmetric  = "symmetric"  // HMAC-SHA512 keyed with the client secret
	SNAPSignatureAsymmetric = "asymmetric" // SHA256withRSA, verified with PublicKeyPEM
	SNAPSignatureBoth       = "both"
)

// KnownSNAPSignature reports whether v is a SNAP service signature variant
// ("" for none).
func KnownSNAPSignature(v string) bool {
	switch v {
	case SNAPSignatureNone, SNAPSignatureSymmetric, SNAPSignatureAsymmetric, SNAPSignatureBoth:
		return true
	}
	return false
}

// MaxPartnerIDLen is the longest SNAP X-PARTNER-ID (Client.PartnerID).
const MaxPartnerIDLen = 36

// ValidPartnerID reports whether s may be a partner ID: 1 to
// MaxPartnerIDLen printable ASCII characters without spaces.
func ValidPartnerID(s string) bool {
	return s != "" && len(s) <= MaxPartnerIDLen && VisibleASCII(s)
}

// VisibleASCII reports whether every byte of s is a visible ASCII
// character (0x21 to 0x7E: no space, no control character, no UTF-8): what
// SNAP's IDs and header values, and revocation cursors, are made of.
func VisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Client is a registered OAuth client (a merchant or partner integration).
type Client struct {
	ID            string
	Name          string
	Secrets       []SecretHash // keyed hashes, never the secret itself
	Grants        []string
	Scopes        []string      // scopes the client may be granted
	DefaultScopes []string      // granted when a request names none
	AccessTTL     time.Duration // 0: endpoint or server default
	TokenFormat   TokenFormat   // "": server default
	SigningAlg    string        // "": server default; for JWT access tokens
	// RefreshWithClientCredentials issues a refresh token for the
	// client_credentials grant too (RFC 6749 §4.4.3 says SHOULD NOT by default).
	RefreshWithClientCredentials bool
	// PublicKeyPEM is a public key the client signs requests with (for
	// example SNAP BI's X-SIGNATURE). Empty when none is registered.
	PublicKeyPEM string
	// AuthMethods are the client authentication methods the client may use
	// (AuthSecretBasic, AuthSecretPost, AuthSNAPSignature). Empty means the
	// defaults: see EffectiveAuthMethods.
	AuthMethods []string
	// Endpoints are the token endpoint paths the client may use; empty
	// means every configured endpoint where one of its methods works.
	Endpoints []string
	// CanIntrospect lets the client introspect tokens issued to other
	// clients (a resource server). Without it, introspecting a foreign
	// token answers inactive.
	CanIntrospect bool
	// SNAPServiceSignature is how the client signs SNAP service calls:
	// SNAPSignatureNone, SNAPSignatureSymmetric, SNAPSignatureAsymmetric or
	// SNAPSignatureBoth. A symmetric client's secrets are recoverable.
	SNAPServiceSignature string
	// PartnerID is the client's SNAP X-PARTNER-ID; "" means the client ID
	// (see EffectivePartnerID). Effective partner IDs are unique among
	// clients: the stores refuse a duplicate with ErrAlreadyExists.
	PartnerID string
	// TokensNotBefore: every token of this client issued before it is
	// revoked (an incident's "revoke everything", and a disable). Zero: none.
	TokensNotBefore time.Time
	// OwnerAccount is the ID of the merchant account that owns the client
	// (see Account); "" for none (an operator's client).
	OwnerAccount string
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// AllowsGrant reports whether the client is registered for grant type g.
func (c *Client) AllowsGrant(g string) bool { return slices.Contains(c.Grants, g) }

// EffectiveAuthMethods is AuthMethods, or when that is empty the default:
// a client with a SNAP public key signs (snap_signature only), any other
// uses its secret (client_secret_basic and client_secret_post).
func (c *Client) EffectiveAuthMethods() []string {
	switch {
	case len(c.AuthMethods) > 0:
		return c.AuthMethods
	case c.PublicKeyPEM != "":
		return []string{AuthSNAPSignature}
	default:
		return []string{AuthSecretBasic, AuthSecretPost}
	}
}

// AllowsAuthMethod reports whether the client may authenticate with m.
func (c *Client) AllowsAuthMethod(m string) bool { return slices.Contains(c.EffectiveAuthMethods(), m) }

// AllowsEndpoint reports whether the client may use the token endpoint at path.
func (c *Client) AllowsEndpoint(path string) bool {
	return len(c.Endpoints) == 0 || slices.Contains(c.Endpoints, path)
}

// EffectivePartnerID is the client's SNAP X-PARTNER-ID: PartnerID, or the
// client ID when that is empty.
func (c *Client) EffectivePartnerID() string {
	if c.PartnerID != "" {
		return c.PartnerID
	}
	return c.ID
}

// SNAPSymmetric reports whether the client may sign SNAP service calls
// with HMAC-SHA512 keyed with its secret (symmetric or both).
func (c *Client) SNAPSymmetric() bool {
	return c.SNAPServiceSignature == SNAPSignatureSymmetric || c.SNAPServiceSignature == SNAPSignatureBoth
}

// SNAPAsymmetric reports whether the client may sign SNAP service calls
// with its RSA key (asymmetric or both).
func (c *Client) SNAPAsymmetric() bool {
	return c.SNAPServiceSignature == SNAPSignatureAsymmetric || c.SNAPServiceSignature == SNAPSignatureBoth
}

// ServiceSecrets returns the plaintext secrets a symmetric SNAP service
// signature may be keyed with at now: those of the client's secrets that
// are recoverable (Plain) and not expired, the current one first. Empty
// for a client that is not SNAPSymmetric, or whose secret is not
// recoverable. The slices are the client's own: do not modify them.
func (c *Client) ServiceSecrets(now time.Time) [][]byte {
	if !c.SNAPSymmetric() {
		return nil
	}
	var out [][]byte
	for i := range c.Secrets {
		if s := &c.Secrets[i]; len(s.Plain) > 0 && s.ExpiresAt.IsZero() {
			out = append(out, s.Plain)
		}
	}
	for i := range c.Secrets {
		if s := &c.Secrets[i]; len(s.Plain) > 0 && !s.ExpiresAt.IsZero() && now.Before(s.ExpiresAt) {
			out = append(out, s.Plain)
		}
	}
	return out
}

// HasRecoverableSecret reports whether the client's current secret (the
// one that never expires) is recoverable.
func (c *Client) HasRecoverableSecret() bool {
	for i := range c.Secrets {
		if c.Secrets[i].ExpiresAt.IsZero() && c.Secrets[i].Recoverable() {
			return true
		}
	}
	return false
}

// RevokedBefore reports whether a token of this client issued at issuedAt
// is revoked by TokensNotBefore.
func (c *Client) RevokedBefore(issuedAt time.Time) bool {
	return !c.TokensNotBefore.IsZero() && issuedAt.Before(c.TokensNotBefore)
}

// User is a resource owner for the password grant.
type User struct {
	Username     string
	PasswordHash string // argon2id, PHC string format
	Disabled     bool
	// TokensNotBefore: every token of this user issued before it is revoked
	// (revoke-all, a disable, a password change). Zero: none.
	TokensNotBefore time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// RevokedBefore reports whether a token of this user issued at issuedAt is
// revoked by TokensNotBefore.
func (u *User) RevokedBefore(issuedAt time.Time) bool {
	return !u.TokensNotBefore.IsZero() && issuedAt.Before(u.TokensNotBefore)
}

// TokenKind tells access tokens from refresh tokens.
type TokenKind string

const (
	KindAccess  TokenKind = "access"
	KindRefresh TokenKind = "refresh"
)

// Token is the stored record of an issued token. The token value itself is
// never stored: ID is a hash of an opaque token's value, or a JWT's jti.
type Token struct {
	ID       string
	Kind     TokenKind
	Format   TokenFormat
	ClientID string
	Subject  string // the user for the password grant, else the client ID
	Scopes   []string
	// FamilyID groups a refresh token with every token derived from it by
	// rotation, and the access tokens issued alongside; "" for none.
	FamilyID  string
	IssuedAt  time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero: not revoked
	RotatedAt time.Time // refresh tokens: when it was exchanged; zero if never
}

// Active reports whether the token is usable at time now.
func (t *Token) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && now.Before(t.ExpiresAt)
}

// SigningKey is a JWT signing key. Exactly one key per algorithm is current
// (RetiredAt zero); a retired key is still published in the JWKS until
// PublishUntil so tokens it signed can be verified until they expire.
type SigningKey struct {
	ID            string // the JWK "kid"
	Alg           string
	PrivateKeyPEM []byte // PKCS#8
	CreatedAt     time.Time
	RetiredAt     time.Time
	PublishUntil  time.Time // zero while current
}

// Current reports whether k signs new tokens.
func (k *SigningKey) Current() bool { return k.RetiredAt.IsZero() }
