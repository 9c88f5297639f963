package kek

import (
	"context"

	"github.com/tokengate/tokengate/oauth"
)

// Accounts' TOTP secrets (oauth.Account.TOTPSecret) are sealed on every
// write, bound to the account (oauth.AccountTOTPSecret), and opened on
// every read. A stored value that is in clear or does not open is an
// error: such an account cannot sign in, be listed or be updated until
// the KEK it was sealed under is configured (secrets.old_kek_files).

// accountSecretPrefix starts the name of every account's TOTP secret.
const accountSecretPrefix = "account_totp:"

// CreateAccount stores a with its TOTP secret sealed; a itself is not
// modified. Errors: the store's.
func (s *Store) CreateAccount(ctx context.Context, a *oauth.Account) error {
	if a == nil {
		return s.Store.CreateAccount(ctx, a)
	}
	cp := *a
	if err := s.sealAccount(&cp); err != nil {
		return err
	}
	return s.Store.CreateAccount(ctx, &cp)
}

// GetAccount returns the account with its TOTP secret opened. Errors: the
// store's (oauth.ErrNotFound), or an error wrapping ErrNotSealed,
// ErrUnknownKEK or ErrDecrypt that names the account.
func (s *Store) GetAccount(ctx context.Context, id string) (*oauth.Account, error) {
	a, err := s.Store.GetAccount(ctx, id)
	if err != nil {
		return nil, err
	}
	return a, s.openAccount(a)
}

// GetAccountByEmail is GetAccount by email, with the same errors.
func (s *Store) GetAccountByEmail(ctx context.Context, email string) (*oauth.Account, error) {
	a, err := s.Store.GetAccountByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	return a, s.openAccount(a)
}

// ListAccounts returns every account with its TOTP secret opened. Errors:
// the store's, or (if any does not open) GetAccount's for that account;
// no account is returned then.
func (s *Store) ListAccounts(ctx context.Context) ([]*oauth.Account, error) {
	as, err := s.Store.ListAccounts(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		if err := s.openAccount(a); err != nil {
			return nil, err
		}
	}
	return as, nil
}

// UpdateAccount gives update the account with its TOTP secret opened and
// stores the result with it sealed again. Errors: the store's, update's,
// or GetAccount's when the stored secret does not open (nothing is
// written then).
func (s *Store) UpdateAccount(ctx context.Context, id string, update func(*oauth.Account) error) error {
	return s.Store.UpdateAccount(ctx, id, func(a *oauth.Account) error {
		if err := s.openAccount(a); err != nil {
			return err
		}
		if err := update(a); err != nil {
			return err
		}
		return s.sealAccount(a)
	})
}

func (s *Store) sealAccount(a *oauth.Account) error {
	if len(a.TOTPSecret) == 0 {
		a.TOTPSecret = nil
		return nil
	}
	v, err := s.ring.Seal(oauth.AccountTOTPSecret(a.ID), a.TOTPSecret)
	if err != nil {
		return err
	}
	a.TOTPSecret = v
	return nil
}

func (s *Store) openAccount(a *oauth.Account) error {
	if len(a.TOTPSecret) == 0 {
		return nil
	}
	p, err := s.ring.Open(oauth.AccountTOTPSecret(a.ID), a.TOTPSecret)
	if err != nil {
		a.TOTPSecret = nil
		return openError("account "+a.ID+": TOTP secret", err)
	}
	a.TOTPSecret = p
	return nil
}
