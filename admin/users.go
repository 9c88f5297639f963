package admin

import (
	"context"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// UserView is a resource owner of the password grant: never its password
// or the password's hash.
type UserView struct {
	Username string `json:"username"`
	Disabled bool   `json:"disabled"`
	// TokensNotBefore: tokens issued for the user before it are revoked.
	TokensNotBefore *time.Time `json:"tokens_not_before,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

// NewUserView returns the view of u.
func NewUserView(u *oauth.User) *UserView {
	v := &UserView{Username: u.Username, Disabled: u.Disabled, CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC()}
	if !u.TokensNotBefore.IsZero() {
		t := u.TokensNotBefore.UTC()
		v.TokensNotBefore = &t
	}
	return v
}

// CreateUser registers a resource owner for the password grant. Operators
// only. Errors: ErrUnauthenticated, ErrForbidden, *ValidationError
// (username, password), *ConflictError (the username is taken),
// ErrUnavailable.
func (s *Service) CreateUser(ctx context.Context, username, password string) (*UserView, error) {
	p, err := s.operator(ctx, "manage users")
	if err != nil {
		return nil, err
	}
	if err := ValidUsername(username); err != nil {
		return nil, err
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	h, err := s.passwords.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	now := s.now()
	u := &oauth.User{Username: username, PasswordHash: h, CreatedAt: now, UpdatedAt: now}
	v := NewUserView(u)
	ev := s.event(p, "user.create", ObjectUser, username, "", nil, v)
	if err := s.audited(ctx, func(ctx context.Context) error { return s.store.CreateUser(ctx, u) }, ev); err != nil {
		if err = storeErr("user "+username, err); ErrorCode(err) == CodeConflict {
			return nil, &ConflictError{Field: "username", Message: "user " + username + " already exists"}
		}
		return nil, err
	}
	return v, nil
}

// changeUser applies change to user username and records action.
func (s *Service) changeUser(ctx context.Context, p *principal, username, action string, change func(*oauth.User)) (*UserView, error) {
	var after *UserView
	ev := s.event(p, action, ObjectUser, username, "", nil, nil)
	err := s.audited(ctx, func(ctx context.Context) error {
		return s.store.UpdateUser(ctx, username, func(u *oauth.User) error {
			before := NewUserView(u)
			change(u)
			u.UpdatedAt = s.now()
			after = NewUserView(u)
			ev.Before, ev.After = jsonOf(before), jsonOf(after)
			return nil
		})
	}, ev)
	if err != nil {
		return nil, storeErr("user "+username, err)
	}
	return after, nil
}

// SetUserPassword replaces a user's password and revokes every token the
// user holds (TokensNotBefore): whoever knew the old password loses
// access. Operators only. Errors: ErrUnauthenticated, ErrForbidden,
// *ValidationError (password), ErrNotFound, ErrUnavailable.
func (s *Service) SetUserPassword(ctx context.Context, username, password string) (*UserView, error) {
	p, err := s.operator(ctx, "manage users")
	if err != nil {
		return nil, err
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	h, err := s.passwords.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	return s.changeUser(ctx, p, username, "user.set_password", func(u *oauth.User) {
		u.PasswordHash, u.TokensNotBefore = h, s.now()
	})
}

// SetUserDisabled disables or re-enables a user. Either change revokes
// every token the user holds (see SetClientDisabled). Operators only.
// Errors: ErrUnauthenticated, ErrForbidden, ErrNotFound, ErrUnavailable.
func (s *Service) SetUserDisabled(ctx context.Context, username string, disabled bool) (*UserView, error) {
	p, err := s.operator(ctx, "manage users")
	if err != nil {
		return nil, err
	}
	action := "user.enable"
	if disabled {
		action = "user.disable"
	}
	return s.changeUser(ctx, p, username, action, func(u *oauth.User) {
		if disabled != u.Disabled {
			u.TokensNotBefore = s.now()
		}
		u.Disabled = disabled
	})
}

// RevokeUserTokens revokes every token issued for the user until now, in
// one write (see RevokeClientTokens), and returns that instant. Operators
// only. Errors: ErrUnauthenticated, ErrForbidden, ErrNotFound,
// ErrUnavailable.
func (s *Service) RevokeUserTokens(ctx context.Context, username string) (time.Time, error) {
	p, err := s.operator(ctx, "manage users")
	if err != nil {
		return time.Time{}, err
	}
	var at time.Time
	_, err = s.changeUser(ctx, p, username, "user.revoke_tokens", func(u *oauth.User) {
		at = s.now()
		u.TokensNotBefore = at
	})
	return at, err
}

// GetUser returns a user. Operators only. Errors: ErrUnauthenticated,
// ErrForbidden, ErrNotFound, ErrUnavailable.
func (s *Service) GetUser(ctx context.Context, username string) (*UserView, error) {
	if _, err := s.operator(ctx, "manage users"); err != nil {
		return nil, err
	}
	u, err := s.store.GetUser(ctx, username)
	if err != nil {
		return nil, storeErr("user "+username, err)
	}
	return NewUserView(u), nil
}

// ListUsers returns every user, by username. Operators only. Errors:
// ErrUnauthenticated, ErrForbidden, ErrUnavailable.
func (s *Service) ListUsers(ctx context.Context) ([]*UserView, error) {
	if _, err := s.operator(ctx, "manage users"); err != nil {
		return nil, err
	}
	us, err := s.store.ListUsers(ctx)
	if err != nil {
		return nil, storeErr("users", err)
	}
	out := make([]*UserView, 0, len(us))
	for _, u := range us {
		out = append(out, NewUserView(u))
	}
	return out, nil
}
