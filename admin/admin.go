// Package admin implements the operator's commands on clients and users:
// validation, secret generation and hashing, rotation with a grace period.
// The CLI is a thin layer over it.
package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// Admin is safe for concurrent use.
type Admin struct {
	store     oauth.Store
	secrets   *secret.Hasher
	passwords *secret.Passwords
	now       func() time.Time
}

// New returns an Admin. secrets must hash with the same pepper as the server.
func New(store oauth.Store, secrets *secret.Hasher, passwords *secret.Passwords, now func() time.Time) *Admin {
	if now == nil {
		now = time.Now
	}
	return &Admin{store: store, secrets: secrets, passwords: passwords, now: now}
}

// ClientSpec is what an operator says about a client.
type ClientSpec struct {
	Name                         string
	Grants                       []string
	Scopes                       []string
	DefaultScopes                []string
	AccessTTL                    time.Duration
	TokenFormat                  oauth.TokenFormat
	SigningAlg                   string
	RefreshWithClientCredentials bool
	PublicKeyPEM                 string
	// AuthMethods are the client authentication methods the client may
	// use; empty: snap_signature for a client with a public key, else
	// client_secret_basic and client_secret_post.
	AuthMethods []string
	// Endpoints restricts the client to these token endpoint paths; empty:
	// every endpoint.
	Endpoints []string
	// CanIntrospect lets the client introspect other clients' tokens.
	CanIntrospect bool
	// SNAPServiceSignature is how the client signs SNAP service calls
	// (oauth.SNAPSignatureSymmetric, ...Asymmetric, ...Both; "" for none).
	// A symmetric client's secret is kept recoverable.
	SNAPServiceSignature string
	// PartnerID is the client's SNAP X-PARTNER-ID; "": its client ID.
	PartnerID string
}

// NewClientID returns a fresh client ID: 128 random bits in hex (no
// characters that need escaping in a URL, a header or a shell).
func NewClientID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Validate checks a client's settings for consistency.
func Validate(c *oauth.Client) error {
	if strings.TrimSpace(c.Name) == "" {
		return errors.New("a client needs a --name")
	}
	if len(c.Grants) == 0 {
		return errors.New("a client needs at least one --grant")
	}
	for _, g := range c.Grants {
		if !oauth.KnownGrant(g) {
			return fmt.Errorf("unknown grant %q (want client_credentials, password or refresh_token)", g)
		}
	}
	for _, s := range append(slices.Clone(c.Scopes), c.DefaultScopes...) {
		if !validScopeToken(s) {
			return fmt.Errorf("invalid scope %q (RFC 6749 §3.3: printable ASCII without space, '\"' or '\\\\')", s)
		}
	}
	for _, s := range c.DefaultScopes {
		if !slices.Contains(c.Scopes, s) {
			return fmt.Errorf("default scope %q is not among the client's scopes", s)
		}
	}
	if c.AccessTTL < 0 {
		return errors.New("access TTL must not be negative")
	}
	if c.AccessTTL > 0 && c.AccessTTL < time.Second {
		return errors.New("access TTL must be at least 1s")
	}
	if !c.TokenFormat.Valid() {
		return fmt.Errorf("unknown token format %q (want opaque or jwt)", c.TokenFormat)
	}
	if c.SigningAlg != "" && !oauth.KnownAlg(c.SigningAlg) {
		return fmt.Errorf("unknown signing algorithm %q (want ES256, RS256 or EdDSA)", c.SigningAlg)
	}
	for _, m := range c.AuthMethods {
		if !slices.Contains(AuthMethods, m) {
			return fmt.Errorf("unknown client authentication method %q (want %s)", m, strings.Join(AuthMethods, ", "))
		}
	}
	if c.AllowsAuthMethod(oauth.AuthSNAPSignature) && c.PublicKeyPEM == "" {
		return errors.New("auth method snap_signature needs a SNAP public key")
	}
	for _, p := range c.Endpoints {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t?#") {
			return fmt.Errorf("endpoint %q is not a path (it starts with / and has no spaces, '?' or '#')", p)
		}
	}
	if !oauth.KnownSNAPSignature(c.SNAPServiceSignature) {
		return fmt.Errorf("snap_service_signature %q is unknown (want symmetric, asymmetric, both or none)", c.SNAPServiceSignature)
	}
	if c.SNAPAsymmetric() && c.PublicKeyPEM == "" {
		return fmt.Errorf("snap_service_signature %s needs a SNAP public key (snap_public_key) to verify the signatures with", c.SNAPServiceSignature)
	}
	if c.PartnerID != "" && !oauth.ValidPartnerID(c.PartnerID) {
		return fmt.Errorf("partner_id must be 1 to %d printable ASCII characters without spaces", oauth.MaxPartnerIDLen)
	}
	return nil
}

// NoteSecretNotRecoverable is what an operator is told about a client
// registered for symmetric SNAP service signatures whose current secret is
// not recoverable (see NeedsRecoverableSecret).
const NoteSecretNotRecoverable = "the secret of this client is not recoverable; " +
	"run client rotate-secret to give it one the SNAP signatures can use"

// NeedsRecoverableSecret reports whether c is registered for symmetric
// SNAP service signatures but its current secret is kept only as a hash
// (a client that was registered before, or switched to symmetric since):
// its service calls cannot be verified until its next RotateSecret.
func NeedsRecoverableSecret(c *oauth.Client) bool {
	return c.SNAPSymmetric() && !c.HasRecoverableSecret()
}

// partnerTaken explains ErrAlreadyExists from a write of a client whose
// effective partner ID is partnerID.
func partnerTaken(partnerID string, err error) error {
	return fmt.Errorf("partner_id %s is already the partner ID or the client ID of another client: %w", partnerID, err)
}

// AuthMethods are the client authentication methods a client can be
// registered for.
var AuthMethods = []string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthSNAPSignature}

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

// CreateClient registers a client and returns it with its secret, which is
// shown this once and never stored.
func (a *Admin) CreateClient(ctx context.Context, spec ClientSpec) (*oauth.Client, string, error) {
	sec, err := secret.NewClientSecret()
	if err != nil {
		return nil, "", err
	}
	now := a.now()
	c := &oauth.Client{
		ID:                           NewClientID(),
		Name:                         spec.Name,
		Secrets:                      []oauth.SecretHash{a.newSecret(sec, spec.SNAPServiceSignature)},
		Grants:                       dedupe(spec.Grants),
		Scopes:                       dedupe(spec.Scopes),
		DefaultScopes:                dedupe(spec.DefaultScopes),
		AccessTTL:                    spec.AccessTTL,
		TokenFormat:                  spec.TokenFormat,
		SigningAlg:                   spec.SigningAlg,
		RefreshWithClientCredentials: spec.RefreshWithClientCredentials,
		PublicKeyPEM:                 spec.PublicKeyPEM,
		AuthMethods:                  dedupe(spec.AuthMethods),
		Endpoints:                    dedupe(spec.Endpoints),
		CanIntrospect:                spec.CanIntrospect,
		SNAPServiceSignature:         spec.SNAPServiceSignature,
		PartnerID:                    spec.PartnerID,
		CreatedAt:                    now,
		UpdatedAt:                    now,
	}
	// Stored explicitly, so a later change (a SNAP key added) does not
	// silently change how the client authenticates.
	c.AuthMethods = slices.Clone(c.EffectiveAuthMethods())
	if err := Validate(c); err != nil {
		return nil, "", err
	}
	if err := a.store.CreateClient(ctx, c); err != nil {
		if errors.Is(err, oauth.ErrAlreadyExists) && c.PartnerID != "" {
			return nil, "", partnerTaken(c.PartnerID, err)
		}
		return nil, "", err
	}
	return c, sec, nil
}

// newSecret is the stored form of a new secret sec: its hash, and for a
// client with symmetric SNAP service signatures the secret itself, which
// the store seals (kek.Store).
func (a *Admin) newSecret(sec, snapServiceSignature string) oauth.SecretHash {
	h := oauth.SecretHash{Hash: a.secrets.Hash(sec)}
	if (&oauth.Client{SNAPServiceSignature: snapServiceSignature}).SNAPSymmetric() {
		h.Plain = []byte(sec)
	}
	return h
}

// UpdateClient applies change to a client and validates the result; an
// invalid result is not stored. A client that is not (or no longer)
// registered for symmetric SNAP service signatures keeps no recoverable
// secret: the result's are dropped. A client switched to symmetric gets a
// recoverable secret only at its next RotateSecret (NeedsRecoverableSecret).
// Errors: oauth.ErrNotFound, a validation error, change's, and an error
// wrapping oauth.ErrAlreadyExists when the partner ID is taken.
func (a *Admin) UpdateClient(ctx context.Context, id string, change func(*oauth.Client) error) error {
	var partnerID string
	err := a.store.UpdateClient(ctx, id, func(c *oauth.Client) error {
		if err := change(c); err != nil {
			return err
		}
		c.Grants, c.Scopes, c.DefaultScopes = dedupe(c.Grants), dedupe(c.Scopes), dedupe(c.DefaultScopes)
		c.AuthMethods, c.Endpoints = dedupe(c.AuthMethods), dedupe(c.Endpoints)
		if err := Validate(c); err != nil {
			return err
		}
		if !c.SNAPSymmetric() {
			for i := range c.Secrets {
				c.Secrets[i].Plain, c.Secrets[i].Sealed = nil, nil
			}
		}
		partnerID = c.EffectivePartnerID()
		c.UpdatedAt = a.now()
		return nil
	})
	if errors.Is(err, oauth.ErrAlreadyExists) {
		return partnerTaken(partnerID, err)
	}
	return err
}

// SetClientDisabled disables or re-enables a client. Either change
// revokes every token the client holds (TokensNotBefore): disabling, so the
// tokens stay dead; enabling, so that tokens a node issued in the second
// or two before it saw the disable do not come back to life either.
func (a *Admin) SetClientDisabled(ctx context.Context, id string, disabled bool) error {
	return a.UpdateClient(ctx, id, func(c *oauth.Client) error {
		if disabled != c.Disabled {
			c.TokensNotBefore = a.now()
		}
		c.Disabled = disabled
		return nil
	})
}

// RevokeClientTokens revokes every token, access and refresh, opaque and
// JWT, issued to the client until now, in one write: tokens issued before
// the client's TokensNotBefore are inactive on every node once it has seen
// the change. It returns that instant. Errors: oauth.ErrNotFound.
func (a *Admin) RevokeClientTokens(ctx context.Context, id string) (time.Time, error) {
	var at time.Time
	err := a.UpdateClient(ctx, id, func(c *oauth.Client) error {
		at = a.now()
		c.TokensNotBefore = at
		return nil
	})
	return at, err
}

// SetSNAPKey registers the public key that verifies the client's SNAP
// signatures (pemText as snap.NormalizePublicKey returns it) and lets the
// client authenticate with snap_signature. Errors: oauth.ErrNotFound.
func (a *Admin) SetSNAPKey(ctx context.Context, id, pemText string) error {
	return a.UpdateClient(ctx, id, func(c *oauth.Client) error {
		c.PublicKeyPEM = pemText
		if len(c.AuthMethods) > 0 && !slices.Contains(c.AuthMethods, oauth.AuthSNAPSignature) {
			c.AuthMethods = append(c.AuthMethods, oauth.AuthSNAPSignature)
		}
		return nil
	})
}

// RotateSecret gives a client a new secret. For grace, the previous secret
// keeps working; with grace 0 it stops at once. Secrets from earlier
// rotations are dropped. For a client with symmetric SNAP service
// signatures the new secret is recoverable, and so is the previous one
// during the grace if it was.
func (a *Admin) RotateSecret(ctx context.Context, id string, grace time.Duration) (string, error) {
	if grace < 0 {
		return "", errors.New("grace must not be negative")
	}
	sec, err := secret.NewClientSecret()
	if err != nil {
		return "", err
	}
	now := a.now()
	err = a.UpdateClient(ctx, id, func(c *oauth.Client) error {
		next := []oauth.SecretHash{a.newSecret(sec, c.SNAPServiceSignature)}
		if grace > 0 {
			for _, old := range c.Secrets {
				if old.ExpiresAt.IsZero() {
					old.ExpiresAt = now.Add(grace) // its recoverable copy, if any, goes along
					next = append(next, old)
				}
			}
		}
		c.Secrets = next
		return nil
	})
	if err != nil {
		return "", err
	}
	return sec, nil
}

// ValidUsername reports whether name is acceptable as a username: 1–255
// printable characters, no leading or trailing space.
func ValidUsername(name string) error {
	if name == "" || len(name) > 255 || strings.TrimSpace(name) != name {
		return errors.New("a username is 1 to 255 characters with no leading or trailing space")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errors.New("a username must not contain control characters")
		}
	}
	return nil
}

// MinPasswordLength is the shortest password accepted (NIST SP 800-63B).
const MinPasswordLength = 8

func checkPassword(pw string) error {
	if len(pw) < MinPasswordLength {
		return fmt.Errorf("a password needs at least %d characters", MinPasswordLength)
	}
	if len(pw) > 1024 {
		return errors.New("a password is at most 1024 bytes")
	}
	return nil
}

// CreateUser registers a resource owner for the password grant.
func (a *Admin) CreateUser(ctx context.Context, username, password string) error {
	if err := ValidUsername(username); err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	h, err := a.passwords.Hash(ctx, password)
	if err != nil {
		return err
	}
	now := a.now()
	return a.store.CreateUser(ctx, &oauth.User{Username: username, PasswordHash: h, CreatedAt: now, UpdatedAt: now})
}

// SetPassword replaces a user's password and revokes every token the user
// holds (TokensNotBefore): whoever knew the old password loses access.
func (a *Admin) SetPassword(ctx context.Context, username, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	h, err := a.passwords.Hash(ctx, password)
	if err != nil {
		return err
	}
	return a.store.UpdateUser(ctx, username, func(u *oauth.User) error {
		now := a.now()
		u.PasswordHash, u.UpdatedAt, u.TokensNotBefore = h, now, now
		return nil
	})
}

// SetUserDisabled disables or re-enables a user. Either change revokes
// every token the user holds (see SetClientDisabled).
func (a *Admin) SetUserDisabled(ctx context.Context, username string, disabled bool) error {
	return a.store.UpdateUser(ctx, username, func(u *oauth.User) error {
		now := a.now()
		if disabled != u.Disabled {
			u.TokensNotBefore = now
		}
		u.Disabled, u.UpdatedAt = disabled, now
		return nil
	})
}

// RevokeUserTokens revokes every token issued for the user until now, in
// one write (see RevokeClientTokens). Errors: oauth.ErrNotFound.
func (a *Admin) RevokeUserTokens(ctx context.Context, username string) (time.Time, error) {
	var at time.Time
	err := a.store.UpdateUser(ctx, username, func(u *oauth.User) error {
		at = a.now()
		u.TokensNotBefore, u.UpdatedAt = at, at
		return nil
	})
	return at, err
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
