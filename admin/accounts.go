package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokengate/tokengate/internal/totp"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// AccountLimits is what a merchant account may create by itself: the
// grants and scopes its clients may have, how many clients it may own
// (0: none), and whether it may register SNAP keys.
type AccountLimits = oauth.AccountLimits

// AccountSpec is a new portal account.
type AccountSpec struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	// Role is RoleOperator or RoleMerchant; "": RoleMerchant.
	Role   string        `json:"role"`
	Limits AccountLimits `json:"limits"`
	// TOTPRequired: the account must enroll a second factor before it can
	// do anything (see LoginResult).
	TOTPRequired bool `json:"totp_required"`
}

// AccountPatch changes an account: nil fields stay as they are.
type AccountPatch struct {
	Email        *string        `json:"email,omitempty"`
	Role         *string        `json:"role,omitempty"`
	Limits       *AccountLimits `json:"limits,omitempty"`
	TOTPRequired *bool          `json:"totp_required,omitempty"`
}

// AccountView is a portal account: never its password hash or TOTP
// secret.
type AccountView struct {
	ID           string        `json:"id"`
	Email        string        `json:"email"`
	Role         string        `json:"role"`
	Disabled     bool          `json:"disabled"`
	TOTPEnabled  bool          `json:"totp_enabled"`
	TOTPRequired bool          `json:"totp_required"`
	Limits       AccountLimits `json:"limits"`
	// SessionsNotBefore: a portal session started before it is over (a
	// password change, a disable, a second factor reset); nil for none.
	// The portal checks its sessions against it.
	SessionsNotBefore *time.Time `json:"sessions_not_before,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

// NewAccountView returns the view of a.
func NewAccountView(a *oauth.Account) *AccountView {
	v := &AccountView{
		ID: a.ID, Email: a.Email, Role: a.Role, Disabled: a.Disabled, TOTPEnabled: a.TOTPEnabled,
		TOTPRequired: a.TOTPRequired, Limits: a.Limits, CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC(),
	}
	v.Limits.Grants, v.Limits.Scopes = nonNil(slices.Clone(a.Limits.Grants)), nonNil(slices.Clone(a.Limits.Scopes))
	if !a.SessionsNotBefore.IsZero() {
		t := a.SessionsNotBefore.UTC()
		v.SessionsNotBefore = &t
	}
	return v
}

// OperatorScope is the scope that makes a client an operator of the admin
// API. It is never among a merchant's limits: a merchant holding it could
// give itself operator access.
const OperatorScope = "tokengate:admin"

// MaxClientsLimit bounds AccountLimits.MaxClients.
const MaxClientsLimit = 100000

func checkLimitsSpec(l *AccountLimits) error {
	l.Grants, l.Scopes = dedupe(l.Grants), dedupe(l.Scopes)
	for _, g := range l.Grants {
		if !oauth.KnownGrant(g) {
			return invalid("limits.grants", "unknown grant %q (want client_credentials, password or refresh_token)", g)
		}
	}
	for _, sc := range l.Scopes {
		if !validScopeToken(sc) {
			return invalid("limits.scopes", "invalid scope %q", sc)
		}
		if sc == OperatorScope {
			return invalid("limits.scopes", "%s is the admin API's operator scope: a merchant's clients may not hold it", sc)
		}
	}
	if l.MaxClients < 0 || l.MaxClients > MaxClientsLimit {
		return invalid("limits.max_clients", "must be between 0 and %d", MaxClientsLimit)
	}
	return nil
}

func checkRole(r string) error {
	if !oauth.KnownRole(r) {
		return invalid("role", "%q is not a role (want operator or merchant)", r)
	}
	return nil
}

func accountErr(id string, err error) error {
	if errors.Is(err, oauth.ErrAlreadyExists) {
		return &ConflictError{Field: "email", Message: "another account has this email"}
	}
	return storeErr("account "+id, err)
}

// CreateAccount creates a portal account (the first operator is
// bootstrapped by the CLI, whose actor is an operator). Operators only.
// Errors: ErrUnauthenticated, ErrForbidden, *ValidationError (email,
// password, role, limits.*), *ConflictError (email taken, in any case),
// ErrUnavailable.
func (s *Service) CreateAccount(ctx context.Context, spec AccountSpec) (*AccountView, error) {
	p, err := s.operator(ctx, "create accounts")
	if err != nil {
		return nil, err
	}
	email, err := checkEmail(spec.Email)
	if err != nil {
		return nil, err
	}
	if err := checkPassword(spec.Password); err != nil {
		return nil, err
	}
	if spec.Role == "" {
		spec.Role = RoleMerchant
	}
	if err := checkRole(spec.Role); err != nil {
		return nil, err
	}
	if err := checkLimitsSpec(&spec.Limits); err != nil {
		return nil, err
	}
	h, err := s.passwords.Hash(ctx, spec.Password)
	if err != nil {
		return nil, passwordErr(err)
	}
	now := s.now()
	a := &oauth.Account{
		ID: newID(), Email: email, PasswordHash: h, Role: spec.Role, Limits: spec.Limits,
		TOTPRequired: spec.TOTPRequired, CreatedAt: now, UpdatedAt: now,
	}
	v := NewAccountView(a)
	ev := s.event(p, "account.create", ObjectAccount, a.ID, a.ID, nil, v)
	if err := s.audited(ctx, func(ctx context.Context) error { return s.store.CreateAccount(ctx, a) }, ev); err != nil {
		return nil, accountErr(a.ID, err)
	}
	return v, nil
}

// passwordErr translates a password hasher's error: every slot busy is
// ErrUnavailable.
func passwordErr(err error) error {
	if errors.Is(err, secret.ErrBusy) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// selfOrOperator resolves ctx's actor and requires an operator or the
// account id itself.
func (s *Service) selfOrOperator(ctx context.Context, id string) (*principal, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	if !p.operator() && p.accountID() != id {
		return nil, fmt.Errorf("account %s: %w", id, ErrNotFound)
	}
	return p, nil
}

// GetAccount returns an account: any to an operator, its own to a
// merchant. Errors: ErrUnauthenticated, ErrNotFound (missing, or another
// merchant's), ErrUnavailable.
func (s *Service) GetAccount(ctx context.Context, id string) (*AccountView, error) {
	if _, err := s.selfOrOperator(ctx, id); err != nil {
		return nil, err
	}
	a, err := s.store.GetAccount(ctx, id)
	if err != nil {
		return nil, accountErr(id, err)
	}
	return NewAccountView(a), nil
}

// ListAccounts returns every account, by ID. Operators only. Errors:
// ErrUnauthenticated, ErrForbidden, ErrUnavailable.
func (s *Service) ListAccounts(ctx context.Context) ([]*AccountView, error) {
	if _, err := s.operator(ctx, "list accounts"); err != nil {
		return nil, err
	}
	as, err := s.store.ListAccounts(ctx)
	if err != nil {
		return nil, storeErr("accounts", err)
	}
	out := make([]*AccountView, 0, len(as))
	for _, a := range as {
		out = append(out, NewAccountView(a))
	}
	return out, nil
}

// changeAccount applies change to account id and records action; change
// may refuse with an error.
func (s *Service) changeAccount(ctx context.Context, p *principal, id, action string, change func(*oauth.Account) error) (*AccountView, error) {
	var after *AccountView
	ev := s.event(p, action, ObjectAccount, id, id, nil, nil)
	err := s.audited(ctx, func(ctx context.Context) error {
		return s.store.UpdateAccount(ctx, id, func(a *oauth.Account) error {
			before := NewAccountView(a)
			if err := change(a); err != nil {
				return err
			}
			a.UpdatedAt = s.now()
			after = NewAccountView(a)
			ev.Before, ev.After = jsonOf(before), jsonOf(after)
			return nil
		})
	}, ev)
	if err != nil {
		return nil, accountErr(id, err)
	}
	return after, nil
}

// UpdateAccount applies patch to an account (nil fields stay as they
// are). An operator cannot change its own role. Operators only. Errors:
// ErrUnauthenticated, ErrForbidden, *ValidationError (email, role,
// limits.*), *ConflictError (email taken), ErrNotFound, ErrUnavailable.
func (s *Service) UpdateAccount(ctx context.Context, id string, patch AccountPatch) (*AccountView, error) {
	p, err := s.operator(ctx, "change accounts")
	if err != nil {
		return nil, err
	}
	var email string
	if patch.Email != nil {
		if email, err = checkEmail(*patch.Email); err != nil {
			return nil, err
		}
	}
	if patch.Role != nil {
		if err := checkRole(*patch.Role); err != nil {
			return nil, err
		}
		if id == p.accountID() && *patch.Role != p.role {
			return nil, fmt.Errorf("%w: an operator cannot change its own role", ErrForbidden)
		}
	}
	var limits AccountLimits
	if patch.Limits != nil {
		limits = *patch.Limits
		limits.Grants, limits.Scopes = slices.Clone(limits.Grants), slices.Clone(limits.Scopes)
		if err := checkLimitsSpec(&limits); err != nil {
			return nil, err
		}
	}
	return s.changeAccount(ctx, p, id, "account.update", func(a *oauth.Account) error {
		if patch.Email != nil {
			a.Email = email
		}
		if patch.Role != nil {
			a.Role = *patch.Role
		}
		if patch.Limits != nil {
			a.Limits = limits
		}
		if patch.TOTPRequired != nil {
			a.TOTPRequired = *patch.TOTPRequired
		}
		return nil
	})
}

// SetAccountDisabled disables or re-enables an account. A disabled
// account cannot sign in, and its sessions end (SessionsNotBefore); the
// service refuses its actor at once. An operator cannot disable itself.
// Operators only. Errors: ErrUnauthenticated, ErrForbidden, ErrNotFound,
// ErrUnavailable.
func (s *Service) SetAccountDisabled(ctx context.Context, id string, disabled bool) (*AccountView, error) {
	p, err := s.operator(ctx, "disable accounts")
	if err != nil {
		return nil, err
	}
	if disabled && id == p.accountID() {
		return nil, fmt.Errorf("%w: an operator cannot disable its own account", ErrForbidden)
	}
	action := "account.enable"
	if disabled {
		action = "account.disable"
	}
	return s.changeAccount(ctx, p, id, action, func(a *oauth.Account) error {
		if disabled && !a.Disabled {
			a.SessionsNotBefore = s.now()
		}
		a.Disabled = disabled
		return nil
	})
}

// SetAccountPassword replaces an account's password and ends its
// sessions (SessionsNotBefore; a portal changing its own user's password
// starts a new session after). An operator may set any account's, a
// merchant its own. Errors: ErrUnauthenticated, ErrNotFound,
// *ValidationError (password), ErrUnavailable.
func (s *Service) SetAccountPassword(ctx context.Context, id, password string) (*AccountView, error) {
	p, err := s.selfOrOperator(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	h, err := s.passwords.Hash(ctx, password)
	if err != nil {
		return nil, passwordErr(err)
	}
	return s.changeAccount(ctx, p, id, "account.set_password", func(a *oauth.Account) error {
		a.PasswordHash, a.SessionsNotBefore = h, s.now()
		return nil
	})
}

// TOTPEnrollment is a new TOTP secret, shown this once: Secret (base32)
// to type into an authenticator app, URI (otpauth://) to show as a QR
// code.
type TOTPEnrollment struct {
	Secret string `json:"secret"`
	URI    string `json:"uri"`
}

// EnrollTOTP gives the acting account a new TOTP secret (RFC 6238:
// SHA-1, 30 s, 6 digits), to be confirmed with a code (ConfirmTOTP)
// before signing in asks for codes. Only the account itself may enroll,
// and only while no second factor is enabled (an operator resets a lost
// one: ResetTOTP). Errors: ErrUnauthenticated, ErrNotFound (not the
// actor's account), *ConflictError (a second factor is enabled already),
// ErrUnavailable.
func (s *Service) EnrollTOTP(ctx context.Context, id string) (*TOTPEnrollment, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	if p.accountID() != id {
		return nil, fmt.Errorf("account %s: %w (only an account itself enrolls its second factor)", id, ErrNotFound)
	}
	sec, err := totp.NewSecret()
	if err != nil {
		return nil, err
	}
	var email string
	_, err = s.changeAccount(ctx, p, id, "account.enroll_totp", func(a *oauth.Account) error {
		if a.TOTPEnabled {
			return &ConflictError{Field: "totp", Message: "a second factor is enabled already; an operator can reset it"}
		}
		a.TOTPSecret, a.TOTPLastStep, email = sec, 0, a.Email
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &TOTPEnrollment{Secret: totp.EncodeSecret(sec), URI: totp.URI(s.issuer, email, sec)}, nil
}

// ConfirmTOTP enables the acting account's enrolled TOTP secret when code
// is its current code; from then on VerifyLogin asks for codes. It ends
// every session of the account (SessionsNotBefore: now), the confirming
// one too, so that whoever signed in with the password alone is signed
// out; the caller starts the confirming browser a new session at the
// returned SessionsNotBefore. Errors:
// ErrUnauthenticated, ErrNotFound (not the actor's account),
// *ValidationError (totp_code wrong, or nothing enrolled),
// ErrUnavailable.
func (s *Service) ConfirmTOTP(ctx context.Context, id, code string) (*AccountView, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	if p.accountID() != id {
		return nil, fmt.Errorf("account %s: %w (only an account itself confirms its second factor)", id, ErrNotFound)
	}
	return s.changeAccount(ctx, p, id, "account.confirm_totp", func(a *oauth.Account) error {
		if len(a.TOTPSecret) == 0 || a.TOTPEnabled {
			return invalid("totp_code", "no second factor is waiting for confirmation")
		}
		step, ok := totp.Verify(a.TOTPSecret, code, s.now(), a.TOTPLastStep)
		if !ok {
			return invalid("totp_code", "the code is not the current one of the enrolled secret")
		}
		a.TOTPEnabled, a.TOTPLastStep = true, step
		// Every session begun without the second factor ends, the
		// confirming one too: a portal starts its caller a new one at
		// this cut-off, as after a password change.
		a.SessionsNotBefore = s.now()
		return nil
	})
}

// ResetTOTP removes an account's second factor (a lost device) and ends
// its sessions; the account enrolls again. Operators only. Errors:
// ErrUnauthenticated, ErrForbidden, ErrNotFound, ErrUnavailable.
func (s *Service) ResetTOTP(ctx context.Context, id string) (*AccountView, error) {
	p, err := s.operator(ctx, "reset second factors")
	if err != nil {
		return nil, err
	}
	return s.changeAccount(ctx, p, id, "account.reset_totp", func(a *oauth.Account) error {
		a.TOTPSecret, a.TOTPEnabled, a.TOTPLastStep, a.SessionsNotBefore = nil, false, 0, s.now()
		return nil
	})
}

// LoginResult is a successful VerifyLogin.
type LoginResult struct {
	Account *AccountView `json:"account"`
	// TOTPEnrollmentRequired: the account must enroll a second factor
	// (EnrollTOTP, ConfirmTOTP) before it does anything else; the portal
	// lets it do only that.
	TOTPEnrollmentRequired bool `json:"totp_enrollment_required"`
}

// errReplay: the code's step was used by a concurrent sign-in.
var errReplay = errors.New("totp code already used")

// VerifyLogin checks a portal sign-in: email (any case), password and,
// when the account has a second factor, its TOTP code (a code is accepted
// once). Failures are throttled per email (the lockout; unknown emails
// alike, so locking tells nothing about which exist), and an unknown
// email costs what a wrong password costs (a dummy argon2id hash). On
// this node one check per email runs at a time: a guess sent while
// another for the same email runs is refused unevaluated, so a burst of
// guesses cannot all pass the lockout before their failures are counted.
// The context's actor, if any, gives the kind and remote address recorded
// with the sign-in's audit event; none is needed. When the actor is the
// account itself (a signed-in account confirming its password, as before
// a password change), the check is not a sign-in: a success records no
// account.login event; failures are throttled and recorded alike. Errors:
// ErrBadCredentials (unknown email, wrong password or code, disabled
// account — indistinguishable); ErrTOTPRequired (the password is right
// and a code is needed: ask for it, then call again with all three);
// *LockedError (too many failures, or another check of the email is
// running: wait RetryAfter); ErrUnavailable (also when the service's
// password hasher is busy).
func (s *Service) VerifyLogin(ctx context.Context, email, password, code string) (*LoginResult, error) {
	key := "account:" + oauth.EmailKey(email)
	if len(key) > 300 {
		key = "account:long" // bounded; such an email matches no account anyway
	}
	// Taken before the lockout is read, so that the read sees every
	// failure of the checks before it.
	if !s.signingIn.Acquire(key) {
		return nil, &LockedError{RetryAfter: time.Second}
	}
	defer s.signingIn.Release(key)
	d, err := s.lockout.Check(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%w: lockout: %w", ErrUnavailable, err)
	}
	if !d.Allowed {
		return nil, &LockedError{RetryAfter: d.RetryAfter}
	}
	var acc *oauth.Account
	if len(email) <= 254 {
		acc, err = s.store.GetAccountByEmail(ctx, email)
		if err != nil && !errors.Is(err, oauth.ErrNotFound) {
			return nil, storeErr("account", err)
		}
	}
	ok := false
	if acc == nil {
		if err := s.passwords.DummyVerify(ctx, password); err != nil {
			return nil, passwordErr(err)
		}
	} else if ok, err = s.passwords.Verify(ctx, password, acc.PasswordHash); err != nil {
		return nil, passwordErr(err)
	}
	switch {
	case !ok:
		return nil, s.loginFailed(ctx, key, acc, "password")
	case acc.Disabled:
		return nil, s.loginFailed(ctx, key, acc, "disabled")
	}
	var evs []*oauth.AuditEvent
	if a, _ := ActorFrom(ctx); a.Account != acc.ID {
		evs = append(evs, s.loginEvent(ctx, acc, "account.login", nil))
	}
	if acc.TOTPEnabled {
		if code == "" {
			return nil, ErrTOTPRequired
		}
		step, ok := totp.Verify(acc.TOTPSecret, code, s.now(), acc.TOTPLastStep)
		if !ok {
			return nil, s.loginFailed(ctx, key, acc, "totp")
		}
		// The step is spent in the same write as the sign-in's event, so a
		// code replayed concurrently on another node is refused.
		err := s.audited(ctx, func(ctx context.Context) error {
			return s.store.UpdateAccount(ctx, acc.ID, func(a *oauth.Account) error {
				if step <= a.TOTPLastStep {
					return errReplay
				}
				a.TOTPLastStep = step
				return nil
			})
		}, evs...)
		if errors.Is(err, errReplay) {
			return nil, s.loginFailed(ctx, key, acc, "totp")
		}
		if err != nil {
			return nil, accountErr(acc.ID, err)
		}
	} else if err := s.appendLeft(ctx, evs...); err != nil {
		return nil, err
	}
	if err := s.lockout.Succeed(ctx, key); err != nil {
		return nil, fmt.Errorf("%w: lockout: %w", ErrUnavailable, err)
	}
	return &LoginResult{Account: NewAccountView(acc), TOTPEnrollmentRequired: acc.TOTPRequired && !acc.TOTPEnabled}, nil
}

// loginEvent is the audit event of a sign-in of acc: the actor is the
// account, through the context actor's kind (the portal by default) and
// from its remote address.
func (s *Service) loginEvent(ctx context.Context, acc *oauth.Account, action string, after any) *oauth.AuditEvent {
	a, _ := ActorFrom(ctx)
	kind := a.Kind
	if kind == "" {
		kind = ActorPortal
	}
	p := &principal{actor: Actor{Kind: kind, ID: acc.ID, Name: acc.Email, Remote: a.Remote}}
	return s.event(p, action, ObjectAccount, acc.ID, acc.ID, nil, after)
}

// loginFailed records a failed sign-in with the lockout (and, for an
// existing account, in the audit trail) and returns the error to answer.
func (s *Service) loginFailed(ctx context.Context, key string, acc *oauth.Account, reason string) error {
	d, err := s.lockout.Fail(ctx, key)
	if err != nil {
		return fmt.Errorf("%w: lockout: %w", ErrUnavailable, err)
	}
	if acc != nil {
		ev := s.loginEvent(ctx, acc, "account.login_failed", map[string]string{"reason": reason})
		if err := s.appendLeft(ctx, ev); err != nil {
			return err
		}
	}
	if !d.Allowed {
		return &LockedError{RetryAfter: d.RetryAfter}
	}
	return ErrBadCredentials
}
