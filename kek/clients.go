package kek

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tokengate/tokengate/oauth"
)

// Recoverable client secrets (oauth.SecretHash.Plain, kept for SNAP's
// symmetric service signatures) are sealed into SecretHash.Sealed on every
// write, bound to the client and the secret's hash
// (oauth.ClientSecretSecret), and opened into Plain on every read. What is
// stored is Plain sealed, or nothing: a Sealed value given without Plain is
// dropped, so no caller can store a sealed value of its own making.
//
// The one exception is a stored value that does not open (planted in the
// database, or under a KEK no longer configured): UpdateClient passes it
// through untouched when the update leaves it in place, so that a client
// whose secret is broken can still be disabled, and heals when the update
// drops it (client rotate-secret without grace). Reads of such a client
// fail, so it authenticates nowhere meanwhile.

// clientSecretPrefix starts the name of every client secret
// (oauth.ClientSecretSecret).
const clientSecretPrefix = "client_secret:"

// CreateClient stores c with its recoverable secrets sealed; c itself is
// not modified. Errors: the store's.
func (s *Store) CreateClient(ctx context.Context, c *oauth.Client) error {
	sc, err := s.sealedClient(c)
	if err != nil {
		return err
	}
	return s.Store.CreateClient(ctx, sc)
}

// CreateClients stores cs with their recoverable secrets sealed, as
// CreateClient does; cs are not modified. Errors: the store's.
func (s *Store) CreateClients(ctx context.Context, cs ...*oauth.Client) error {
	out := make([]*oauth.Client, len(cs))
	for i, c := range cs {
		sc, err := s.sealedClient(c)
		if err != nil {
			return err
		}
		out[i] = sc
	}
	return s.Store.CreateClients(ctx, out...)
}

// sealedClient is a copy of c with its recoverable secrets sealed (nil
// for nil, which the store refuses).
func (s *Store) sealedClient(c *oauth.Client) (*oauth.Client, error) {
	if c == nil {
		return nil, nil
	}
	sealed, err := s.sealSecrets(c.ID, c.Secrets, nil)
	if err != nil {
		return nil, err
	}
	cp := *c
	cp.Secrets = sealed
	return &cp, nil
}

// GetClient returns the client with its recoverable secrets opened into
// Plain. Errors: the store's (oauth.ErrNotFound), or, when a sealed secret
// does not open, an error wrapping ErrNotSealed, ErrUnknownKEK or
// ErrDecrypt that names the client and says what to do.
func (s *Store) GetClient(ctx context.Context, id string) (*oauth.Client, error) {
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.openSecrets(c); err != nil {
		return nil, err
	}
	return c, nil
}

// GetClientByPartnerID is GetClient by effective partner ID, with the
// same errors.
func (s *Store) GetClientByPartnerID(ctx context.Context, partnerID string) (*oauth.Client, error) {
	c, err := s.Store.GetClientByPartnerID(ctx, partnerID)
	if err != nil {
		return nil, err
	}
	if _, err := s.openSecrets(c); err != nil {
		return nil, err
	}
	return c, nil
}

// ListClients returns every client with its recoverable secrets opened.
// Errors: the store's, or (if any sealed secret does not open) the error
// GetClient would give for that client; no client is returned then.
func (s *Store) ListClients(ctx context.Context) ([]*oauth.Client, error) {
	cs, err := s.Store.ListClients(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if _, err := s.openSecrets(c); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// UpdateClient gives update the client with its recoverable secrets opened
// and stores the result with them sealed again (under the current KEK,
// with fresh nonces). A stored secret that does not open reaches update
// with Plain nil; if update leaves it in place it is stored as it was.
// Errors: the store's, or update's.
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*oauth.Client) error) error {
	return s.Store.UpdateClient(ctx, id, func(c *oauth.Client) error {
		broken, _ := s.openSecrets(c)
		if err := update(c); err != nil {
			return err
		}
		sealed, err := s.sealSecrets(c.ID, c.Secrets, broken)
		if err != nil {
			return err
		}
		c.Secrets = sealed
		return nil
	})
}

// openSecrets opens c's sealed secrets into Plain. It returns the sealed
// secrets that did not open (their Plain left nil) and an error for the
// first of them.
func (s *Store) openSecrets(c *oauth.Client) (broken []oauth.SecretHash, err error) {
	for i := range c.Secrets {
		sh := &c.Secrets[i]
		sh.Plain = nil
		if len(sh.Sealed) == 0 {
			continue
		}
		p, oerr := s.ring.Open(oauth.ClientSecretSecret(c.ID, sh.Hash), sh.Sealed)
		if oerr != nil {
			broken = append(broken, *sh)
			if err == nil {
				err = clientOpenError(c.ID, oerr)
			}
			continue
		}
		sh.Plain = p
	}
	return broken, err
}

// sealSecrets returns a copy of in with each Plain sealed into Sealed and
// Plain cleared. A secret without Plain keeps its Sealed only when it is
// one of broken (a stored value that did not open, passed through).
func (s *Store) sealSecrets(clientID string, in []oauth.SecretHash, broken []oauth.SecretHash) ([]oauth.SecretHash, error) {
	if in == nil {
		return nil, nil
	}
	out := make([]oauth.SecretHash, len(in))
	for i, sh := range in {
		out[i] = oauth.SecretHash{Hash: sh.Hash, ExpiresAt: sh.ExpiresAt}
		switch {
		case len(sh.Plain) > 0:
			v, err := s.ring.Seal(oauth.ClientSecretSecret(clientID, sh.Hash), sh.Plain)
			if err != nil {
				return nil, err
			}
			out[i].Sealed = v
		case len(sh.Sealed) > 0 && isBroken(broken, sh):
			out[i].Sealed = sh.Sealed
		}
	}
	return out, nil
}

func isBroken(broken []oauth.SecretHash, sh oauth.SecretHash) bool {
	for _, b := range broken {
		if string(b.Hash) == string(sh.Hash) && string(b.Sealed) == string(sh.Sealed) {
			return true
		}
	}
	return false
}

// clientOpenError says what to do about a client secret that does not
// open. It names the client, never the value or its hash.
func clientOpenError(clientID string, err error) error {
	what := "client " + clientID + ": recoverable secret"
	switch {
	case errors.Is(err, ErrUnknownKEK):
		return fmt.Errorf("%s: %w; add the KEK it was encrypted under to secrets.old_kek_files", what, err)
	default:
		// Recoverable secrets never existed in clear: a value that is not
		// sealed, or does not authenticate, was written into the database
		// directly.
		return fmt.Errorf("%s: %w; it was written into the database directly: "+
			"run \"tokengate client rotate-secret %s\" to replace it", what, err, clientID)
	}
}

// describe names a stored value for a report or an error: a client
// secret's name carries the secret's hash, which is left out.
func describe(name string) string {
	if rest, ok := strings.CutPrefix(name, clientSecretPrefix); ok {
		if i := strings.LastIndexByte(rest, ':'); i >= 0 {
			rest = rest[:i]
		}
		return "client " + rest + " recoverable secret"
	}
	return name
}
