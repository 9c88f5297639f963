package kek

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Store is an oauth.Store whose secret values are sealed under a keyring
// on the way in and opened on the way out: settings (Setting), signing
// keys' private keys (CreateSigningKey, ListSigningKeys), clients'
// recoverable secrets (CreateClient, CreateClients, GetClient,
// GetClientByPartnerID, ListClients, UpdateClient; see clients.go),
// accounts' TOTP secrets (see accounts.go) and idempotency records'
// responses (see idempotency.go). Every other method is the
// wrapped store's own. A value that is stored in clear, or
// does not open, is an error: it is never used as it is, since a clear
// value may have been written straight into the database by someone who
// cannot know the KEK.
//
// The other methods come from the embedded store: a method added to
// oauth.Store that carries a secret must be overridden here, or it is
// stored in clear.
type Store struct {
	oauth.Store
	ring *Keyring
}

var _ oauth.Store = (*Store)(nil)

// WrapStore returns st with its secrets encrypted under ring. Closing the
// result closes st.
func WrapStore(st oauth.Store, ring *Keyring) *Store {
	return &Store{Store: st, ring: ring}
}

// Keyring is the keyring values are sealed with.
func (s *Store) Keyring() *Keyring { return s.ring }

// Setting returns the named setting, decrypted; a value create makes is
// encrypted before it is stored. Errors: create's error, the store's, or
// an error wrapping ErrNotSealed, ErrUnknownKEK or ErrDecrypt that says
// what to do.
func (s *Store) Setting(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	ad := oauth.SettingSecret(name)
	stored, err := s.Store.Setting(ctx, name, func() ([]byte, error) {
		v, err := create()
		if err != nil {
			return nil, err
		}
		return s.ring.Seal(ad, v)
	})
	if err != nil {
		return nil, err
	}
	v, err := s.ring.Open(ad, stored)
	if err != nil {
		return nil, openError("setting "+name, err)
	}
	return v, nil
}

// CreateSigningKey stores k with its private key encrypted; k itself is
// not modified. Errors: the store's.
func (s *Store) CreateSigningKey(ctx context.Context, k *oauth.SigningKey, publishFor time.Duration) error {
	if k == nil {
		return s.Store.CreateSigningKey(ctx, k, publishFor)
	}
	sealed, err := s.ring.Seal(oauth.SigningKeySecret(k.ID), k.PrivateKeyPEM)
	if err != nil {
		return err
	}
	c := *k
	c.PrivateKeyPEM = sealed
	return s.Store.CreateSigningKey(ctx, &c, publishFor)
}

// ListSigningKeys returns the published keys with their private keys
// decrypted. Errors: the store's, or (if any key's private key is in
// clear or does not open) an error wrapping ErrNotSealed, ErrUnknownKEK or
// ErrDecrypt that names the key and says what to do; no key is returned
// then, so a server keeps the keys it had.
func (s *Store) ListSigningKeys(ctx context.Context, now time.Time) ([]*oauth.SigningKey, error) {
	keys, err := s.Store.ListSigningKeys(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		pem, err := s.ring.Open(oauth.SigningKeySecret(k.ID), k.PrivateKeyPEM)
		if err != nil {
			return nil, openError("signing key "+k.ID, err)
		}
		k.PrivateKeyPEM = pem
	}
	return keys, nil
}

func openError(what string, err error) error {
	switch {
	case errors.Is(err, ErrNotSealed):
		return fmt.Errorf("%s: %w; if this store was written before encryption at rest, "+
			"run \"tokengate kek rotate --seal-clear\" once; otherwise the value was written into the database directly", what, err)
	case errors.Is(err, ErrUnknownKEK):
		return fmt.Errorf("%s: %w; add the KEK it was encrypted under to secrets.old_kek_files", what, err)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

// RotateReport is what Rotate did.
type RotateReport struct {
	KEK       string   `json:"kek"`        // id of the current KEK, which now encrypts every value
	Values    int      `json:"values"`     // secret values in the store
	FromOld   int      `json:"from_old"`   // of which were encrypted under an older KEK
	Current   int      `json:"current"`    // were already under the current KEK (encrypted again, with a fresh nonce)
	Sealed    int      `json:"sealed"`     // were in clear and are now encrypted (with sealClear)
	LeftClear []string `json:"left_clear"` // values in clear left as they were (without sealClear; recoverable client secrets always)
}

// Rotate re-encrypts every stored secret under the current KEK, in one
// transaction (see oauth.Store.RewriteSecrets): values under an older KEK
// of the keyring are opened and sealed again. A value in clear is sealed
// only if sealClear is set: an operator upgrading a store written before
// encryption at rest sets it once; otherwise such values are left in clear
// (and still refused on reading), named in LeftClear, and Rotate returns
// the report with an error wrapping ErrNotSealed. A recoverable client
// secret in clear is never sealed, even with sealClear: such secrets were
// sealed from the start, so one in clear was written into the database
// directly. Errors: a value that
// does not open (ErrUnknownKEK, ErrDecrypt), which rewrites nothing; the
// store's.
func (s *Store) Rotate(ctx context.Context, sealClear bool) (RotateReport, error) {
	type outcome int
	const (
		fromOld outcome = iota
		current
		sealed
		leftClear
	)
	// Keyed by name: the store may call the rewrite more than once a value.
	seen := map[string]outcome{}
	n, err := s.Store.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		if !IsSealed(v) {
			// A recoverable client secret, a TOTP secret or a recorded
			// response never existed in clear: one that is was planted,
			// and sealing it would make it trusted.
			if !sealClear || strings.HasPrefix(name, clientSecretPrefix) || strings.HasPrefix(name, accountSecretPrefix) ||
				strings.HasPrefix(name, idempotencySecretPrefix) {
				seen[name] = leftClear
				return v, nil
			}
			seen[name] = sealed
			return s.ring.Seal(name, v)
		}
		plain, err := s.ring.Open(name, v)
		if err != nil {
			if rest, ok := strings.CutPrefix(name, clientSecretPrefix); ok {
				id := rest[:max(0, strings.LastIndexByte(rest, ':'))]
				return nil, clientOpenError(id, err)
			}
			return nil, openError(name, err)
		}
		if s.ring.IsCurrent(v) {
			seen[name] = current
		} else {
			seen[name] = fromOld
		}
		return s.ring.Seal(name, plain)
	})
	rep := RotateReport{KEK: s.ring.ID(), Values: n}
	if err != nil {
		return rep, err
	}
	for _, name := range slices.Sorted(maps.Keys(seen)) {
		switch seen[name] {
		case fromOld:
			rep.FromOld++
		case current:
			rep.Current++
		case sealed:
			rep.Sealed++
		case leftClear:
			if d := describe(name); !slices.Contains(rep.LeftClear, d) {
				rep.LeftClear = append(rep.LeftClear, d)
			}
		}
	}
	if len(rep.LeftClear) > 0 {
		return rep, fmt.Errorf("%d values are stored in clear (%v) and were left so: %w; "+
			"if this store was written before encryption at rest, run \"tokengate kek rotate --seal-clear\" "+
			"(recoverable client secrets are never sealed so: run \"tokengate client rotate-secret\" for those clients); "+
			"otherwise they were written into the database directly", len(rep.LeftClear), rep.LeftClear, ErrNotSealed)
	}
	return rep, nil
}
