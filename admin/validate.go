package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/oauth"
)

// Duration is a time.Duration in JSON: written as Go's duration text
// ("15m0s"), read from such text ("15m", "1h30m") or from a number of
// seconds.
type Duration time.Duration

// MarshalJSON writes d as Go's duration text.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration text or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like \"15m\"", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs json.Number
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("want a duration like \"15m\" or a number of seconds")
	}
	f, err := strconv.ParseFloat(string(secs), 64)
	if err != nil || f < -1e9 || f > 1e9 {
		return fmt.Errorf("%s is not a usable number of seconds", secs)
	}
	*d = Duration(time.Duration(f * float64(time.Second)))
	return nil
}

// AuthMethods are the client authentication methods a client can be
// registered for.
var AuthMethods = []string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthSNAPSignature}

// Validate checks a client's settings for consistency. Errors: a
// *ValidationError naming the first unusable field.
func Validate(c *oauth.Client) error {
	if strings.TrimSpace(c.Name) == "" {
		return invalid("name", "a client needs a name")
	}
	if len(c.Name) > 200 || !oauth.ValidCredentialText(c.Name) {
		return invalid("name", "a name is at most 200 bytes of text without control characters")
	}
	if len(c.Grants) == 0 {
		return invalid("grants", "a client needs at least one grant")
	}
	for _, g := range c.Grants {
		if !oauth.KnownGrant(g) {
			return invalid("grants", "unknown grant %q (want client_credentials, password or refresh_token)", g)
		}
	}
	if c.RefreshWithClientCredentials && !c.AllowsGrant(oauth.GrantRefreshToken) {
		return invalid("refresh_with_client_credentials", "needs the refresh_token grant")
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return invalid("scopes", "invalid scope %q (RFC 6749 §3.3: printable ASCII without space, '\"' or '\\\\')", s)
		}
	}
	for _, s := range c.DefaultScopes {
		if !validScopeToken(s) {
			return invalid("default_scopes", "invalid scope %q (RFC 6749 §3.3: printable ASCII without space, '\"' or '\\\\')", s)
		}
		if !slices.Contains(c.Scopes, s) {
			return invalid("default_scopes", "default scope %q is not among the client's scopes", s)
		}
	}
	if c.AccessTTL < 0 {
		return invalid("access_ttl", "must not be negative")
	}
	if c.AccessTTL > 0 && c.AccessTTL < time.Second {
		return invalid("access_ttl", "must be at least 1s")
	}
	if !c.TokenFormat.Valid() {
		return invalid("token_format", "unknown token format %q (want opaque or jwt)", c.TokenFormat)
	}
	if c.SigningAlg != "" && !oauth.KnownAlg(c.SigningAlg) {
		return invalid("signing_alg", "unknown signing algorithm %q (want ES256, RS256 or EdDSA)", c.SigningAlg)
	}
	for _, m := range c.AuthMethods {
		if !slices.Contains(AuthMethods, m) {
			return invalid("auth_methods", "unknown client authentication method %q (want %s)", m, strings.Join(AuthMethods, ", "))
		}
	}
	if c.AllowsAuthMethod(oauth.AuthSNAPSignature) && c.PublicKeyPEM == "" {
		return invalid("auth_methods", "snap_signature needs a SNAP public key (snap_public_key)")
	}
	for _, p := range c.Endpoints {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t?#") || !oauth.ValidCredentialText(p) {
			return invalid("endpoints", "%q is not a path (it starts with / and has no spaces, '?' or '#')", p)
		}
	}
	if !oauth.KnownSNAPSignature(c.SNAPServiceSignature) {
		return invalid("snap_service_signature", "%q is unknown (want symmetric, asymmetric, both or none)", c.SNAPServiceSignature)
	}
	if c.SNAPAsymmetric() && c.PublicKeyPEM == "" {
		return invalid("snap_service_signature", "%s needs a SNAP public key (snap_public_key) to verify the signatures with", c.SNAPServiceSignature)
	}
	if c.PartnerID != "" && !oauth.ValidPartnerID(c.PartnerID) {
		return invalid("partner_id", "must be 1 to %d printable ASCII characters without spaces", oauth.MaxPartnerIDLen)
	}
	return nil
}

func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// validClientID checks a client ID given by an operator (an import):
// what a request may present as one.
func validClientID(id string) error {
	if id == "" || len(id) > oauth.MaxClientIDLen || !oauth.ValidCredentialText(id) ||
		strings.TrimSpace(id) != id || strings.ContainsAny(id, ":\t") {
		return invalid("client_id", "must be 1 to %d characters of text without ':', tabs, control characters or surrounding space", oauth.MaxClientIDLen)
	}
	// A path segment of "." or ".." is removed by URL clients and
	// proxies, so /admin/v1/clients/{id} could never name such a client.
	if id == "." || id == ".." {
		return invalid("client_id", "must not be %q", id)
	}
	return nil
}

// snapSignatureValue maps the API's "none" to the stored "".
func snapSignatureValue(v string) string {
	if v == "none" {
		return oauth.SNAPSignatureNone
	}
	return v
}

// NormalizeSNAPKey checks a SNAP public key (PEM: PUBLIC KEY, RSA PUBLIC
// KEY or CERTIFICATE; RSA of at least 2048 bits) and returns it as the
// canonical PUBLIC KEY PEM stored, with its fingerprint (see
// SNAPKeyFingerprint). Errors: a *ValidationError for field
// snap_public_key.
func NormalizeSNAPKey(pemBytes []byte) (pemText, fingerprint string, err error) {
	pemText, err = snap.NormalizePublicKey(pemBytes)
	if err != nil {
		return "", "", invalid("snap_public_key", "%s", strings.TrimPrefix(err.Error(), "snap: "))
	}
	return pemText, SNAPKeyFingerprint(pemText), nil
}

// SNAPKeyFingerprint is the SHA-256 of a PEM public key's DER
// SubjectPublicKeyInfo, in lowercase hex: what
// `openssl pkey -pubin -in key.pem -outform DER | openssl dgst -sha256`
// prints. "" when pemText holds no PEM block.
func SNAPKeyFingerprint(pemText string) string {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return ""
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:])
}

// ValidUsername reports whether name is acceptable as a username: 1–255
// printable characters, no leading or trailing space. Errors: a
// *ValidationError for field username.
func ValidUsername(name string) error {
	if name == "" || len(name) > 255 || strings.TrimSpace(name) != name {
		return invalid("username", "a username is 1 to 255 characters with no leading or trailing space")
	}
	if !oauth.ValidCredentialText(name) || strings.ContainsRune(name, '\t') {
		return invalid("username", "a username must not contain control characters")
	}
	return nil
}

// MinPasswordLength is the shortest password accepted (NIST SP 800-63B),
// MaxPasswordLength the longest.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 1024
)

func checkPassword(pw string) error {
	if len(pw) < MinPasswordLength {
		return invalid("password", "a password needs at least %d characters", MinPasswordLength)
	}
	if len(pw) > MaxPasswordLength {
		return invalid("password", "a password is at most %d bytes", MaxPasswordLength)
	}
	return nil
}

// checkEmail returns the email trimmed, or a *ValidationError: one
// address (no display name), at most 254 bytes.
func checkEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 || addr.Name != "" {
		return "", invalid("email", "%q is not an email address like merchant@example.com", email)
	}
	return email, nil
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
