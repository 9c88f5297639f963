package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/oauth"
)

// KeyView is a signing key without its private key.
type KeyView struct {
	KID   string `json:"kid"`
	Alg   string `json:"alg"`
	State string `json:"state"` // "current" or "retired"
	// CreatedAt is when it was made and published in the JWKS.
	CreatedAt time.Time `json:"created_at"`
	// SignsFrom is when a current key starts signing (its creation plus
	// the activation delay, so verifiers fetch it first); nil for a
	// retired key.
	SignsFrom *time.Time `json:"signs_from,omitempty"`
	// RetiredAt and PublishUntil: when a retired key stopped signing, and
	// until when it stays in the JWKS.
	RetiredAt    *time.Time `json:"retired_at,omitempty"`
	PublishUntil *time.Time `json:"publish_until,omitempty"`
}

func (s *Service) keyView(k *oauth.SigningKey) *KeyView {
	v := &KeyView{KID: k.ID, Alg: k.Alg, State: "current", CreatedAt: k.CreatedAt.UTC()}
	if k.Current() {
		t := k.CreatedAt.Add(s.activation).UTC()
		v.SignsFrom = &t
	} else {
		r, u := k.RetiredAt.UTC(), k.PublishUntil.UTC()
		v.State, v.RetiredAt, v.PublishUntil = "retired", &r, &u
	}
	return v
}

var errNoEngine = fmt.Errorf("%w: this service runs on the store alone, without the engine", ErrUnsupported)

// ListSigningKeys returns the published signing keys, current and
// retired, newest first. Operators only. Errors: ErrUnauthenticated,
// ErrForbidden, ErrUnavailable; a key that does not decrypt (an error
// naming it and saying what to do).
func (s *Service) ListSigningKeys(ctx context.Context) ([]*KeyView, error) {
	if _, err := s.operator(ctx, "manage signing keys"); err != nil {
		return nil, err
	}
	keys, err := s.store.ListSigningKeys(ctx, s.now())
	if err != nil {
		return nil, storeErr("signing keys", err)
	}
	out := make([]*KeyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, s.keyView(k))
	}
	return out, nil
}

// RotateSigningKey makes a new current signing key for alg ("": the
// server's default): published at once, signing from SignsFrom; the
// previous key signs until then and stays published until its tokens have
// expired. Its audit event is appended right after. Operators only. Errors: ErrUnauthenticated, ErrForbidden,
// *ValidationError (alg), ErrUnsupported (no engine), ErrUnavailable.
func (s *Service) RotateSigningKey(ctx context.Context, alg string) (*KeyView, error) {
	p, err := s.operator(ctx, "manage signing keys")
	if err != nil {
		return nil, err
	}
	if alg == "" {
		alg = s.defaultAlg
	}
	if !oauth.KnownAlg(alg) {
		return nil, invalid("alg", "unknown signing algorithm %q (want ES256, RS256 or EdDSA)", alg)
	}
	if s.engine == nil {
		return nil, errNoEngine
	}
	// The key's ID is known only once the engine made it, and the engine
	// stores it in one call: the event is appended right after.
	k, err := s.engine.RotateKey(ctx, alg)
	if err != nil {
		return nil, storeErr("signing key", err)
	}
	v := s.keyView(k)
	return v, s.appendLeft(ctx, s.event(p, "signing_key.rotate", ObjectKey, k.ID, "", nil, v))
}

// IntrospectToken answers RFC 7662 for a token value as an operator sees
// it (any client's token). Operators only. Errors: ErrUnauthenticated,
// ErrForbidden, ErrUnsupported (no engine), ErrUnavailable.
func (s *Service) IntrospectToken(ctx context.Context, value string) (*oauth.Introspection, error) {
	if _, err := s.operator(ctx, "introspect tokens"); err != nil {
		return nil, err
	}
	if s.engine == nil {
		return nil, errNoEngine
	}
	in, err := s.engine.Introspect(ctx, nil, value)
	return in, storeErr("token", err)
}

// RevokeToken revokes a token (a refresh token with its whole family).
// The audit event (action token.revoke, object the token's client) names
// the token's client, type and subject, never the token; it is appended
// right after the revocation, which goes through the token write path.
// Operators only. Errors: ErrUnauthenticated, ErrForbidden, ErrNotFound
// (not a token of this server: unknown, forged or expired),
// ErrUnsupported (no engine), ErrUnavailable.
func (s *Service) RevokeToken(ctx context.Context, value string) error {
	p, err := s.operator(ctx, "revoke tokens")
	if err != nil {
		return err
	}
	if s.engine == nil {
		return errNoEngine
	}
	in, err := s.engine.Introspect(ctx, nil, value)
	if err != nil {
		return storeErr("token", err)
	}
	found, err := s.engine.Revoke(ctx, nil, value)
	if err != nil {
		return storeErr("token", err)
	}
	if !found {
		return fmt.Errorf("not a token of this server (unknown, forged or expired): %w", ErrNotFound)
	}
	type tokenView struct {
		Active    bool   `json:"active_before"`
		TokenType string `json:"token_type,omitempty"`
		ClientID  string `json:"client_id,omitempty"`
		Subject   string `json:"sub,omitempty"`
		JTI       string `json:"jti,omitempty"`
	}
	tv := tokenView{Active: in.Active, TokenType: in.TokenType, ClientID: in.ClientID, Subject: in.Sub, JTI: in.Jti}
	var account string
	if in.ClientID != "" {
		if c, err := s.store.GetClient(ctx, in.ClientID); err == nil {
			account = c.OwnerAccount
		}
	}
	return s.appendLeft(ctx, s.event(p, "token.revoke", ObjectClient, in.ClientID, account, nil, tv))
}

// GCReport is what CollectGarbage did.
type GCReport struct {
	Deleted   int               `json:"deleted"`
	Remaining oauth.StoreCounts `json:"remaining"`
}

// CollectGarbage deletes expired tokens and nonces, signing keys no
// longer published and revocation events older than the feed retention
// now, in batches, and reports what remains (the servers do this
// periodically too). Its audit event is appended after. Operators only.
// Errors: ErrUnauthenticated, ErrForbidden, ErrUnavailable.
func (s *Service) CollectGarbage(ctx context.Context) (*GCReport, error) {
	p, err := s.operator(ctx, "collect garbage")
	if err != nil {
		return nil, err
	}
	n, err := oauth.DeleteAllExpired(ctx, s.store, s.gcBatch, s.now)
	if err != nil {
		return nil, storeErr("store", err)
	}
	left, err := s.store.Counts(ctx)
	if err != nil {
		return nil, storeErr("store", err)
	}
	r := &GCReport{Deleted: n, Remaining: left}
	return r, s.appendLeft(ctx, s.event(p, "store.gc", ObjectStore, "", "", nil, r))
}

// KEKRotator is the store's ability to re-encrypt its secrets (a
// *kek.Store).
type KEKRotator interface {
	Rotate(ctx context.Context, sealClear bool) (kek.RotateReport, error)
	Keyring() *kek.Keyring
}

// RotateKEK re-encrypts every stored secret value under the current KEK
// (see kek.Store.Rotate), in one transaction with its audit event. It
// returns the report even with an error when values were left in clear.
// Operators only. Errors: ErrUnauthenticated, ErrForbidden,
// ErrUnsupported (the store is not sealed under a KEK); kek.Store.Rotate's
// (wrapping kek.ErrNotSealed, kek.ErrUnknownKEK, kek.ErrDecrypt, and
// saying what to do); ErrUnavailable.
func (s *Service) RotateKEK(ctx context.Context, sealClear bool) (kek.RotateReport, error) {
	p, err := s.operator(ctx, "rotate the key-encryption key")
	if err != nil {
		return kek.RotateReport{}, err
	}
	r, ok := s.store.(KEKRotator)
	if !ok {
		return kek.RotateReport{}, fmt.Errorf("%w: the store is not sealed under a KEK", ErrUnsupported)
	}
	ev := s.event(p, "store.rotate_kek", ObjectStore, "", "", nil, nil)
	var rep kek.RotateReport
	err = s.audited(ctx, func(ctx context.Context) error {
		// The store appends the event in the rewrite's transaction: only
		// the KEK's ID is known before, and that is what is recorded.
		ev.After = jsonOf(map[string]any{"kek": r.Keyring().ID(), "seal_clear": sealClear})
		var err error
		rep, err = r.Rotate(ctx, sealClear)
		if err != nil && len(rep.LeftClear) > 0 {
			// Rotated, but values were left in clear: the report is the
			// result, the error its warning.
			return &leftClear{err}
		}
		return err
	}, ev)
	var lc *leftClear
	if errors.As(err, &lc) {
		if aerr := s.appendLeft(ctx, ev); aerr != nil {
			return rep, aerr
		}
		return rep, lc.err
	}
	return rep, storeErr("store", err)
}

type leftClear struct{ err error }

func (e *leftClear) Error() string { return e.err.Error() }
func (e *leftClear) Unwrap() error { return e.err }

// Backup writes a consistent copy of the store to a new file at path
// while the servers run (SQLite: VACUUM INTO). The copy's secrets stay
// sealed: restoring it needs the same KEK. Its audit event is appended
// after. Operators only. Errors: ErrUnauthenticated, ErrForbidden,
// *ValidationError (path empty), ErrUnsupported (PostgreSQL: the message
// points to pg_dump), the file exists or cannot be written,
// ErrUnavailable.
func (s *Service) Backup(ctx context.Context, path string) error {
	p, err := s.operator(ctx, "back up the store")
	if err != nil {
		return err
	}
	if strings.TrimSpace(path) == "" {
		return invalid("path", "a backup needs a file name")
	}
	if err := s.store.Backup(ctx, path); err != nil {
		return storeErr("backup", err)
	}
	return s.appendLeft(ctx, s.event(p, "store.backup", ObjectStore, "", "", nil, map[string]string{"path": path}))
}
