package admin_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/internal/totp"
)

func TestAccounts(t *testing.T) {
	f := newFixture(t)
	v, err := f.svc.CreateAccount(f.ctx, admin.AccountSpec{Email: "Ops@Example.com", Password: "operator password", Role: admin.RoleOperator})
	if err != nil || v.Role != admin.RoleOperator || v.Email != "Ops@Example.com" || v.ID == "" {
		t.Fatalf("CreateAccount: %+v, %v", v, err)
	}
	ev := f.lastEvent(t)
	if ev.Action != "account.create" || ev.ObjectID != v.ID || ev.Account != v.ID || bytes.Contains(ev.After, []byte("argon2")) {
		t.Fatalf("create event: %+v %s", ev, ev.After)
	}
	// Unique email, any case.
	_, err = f.svc.CreateAccount(f.ctx, admin.AccountSpec{Email: "ops@example.COM", Password: "another password"})
	var ce *admin.ConflictError
	if !errors.As(err, &ce) || ce.Field != "email" {
		t.Fatalf("a taken email: %v", err)
	}
	var ve *admin.ValidationError
	for field, s := range map[string]admin.AccountSpec{
		"email":              {Email: "not an email", Password: "password1"},
		"password":           {Email: "x@example.com", Password: "short"},
		"role":               {Email: "x@example.com", Password: "password1", Role: "root"},
		"limits.grants":      {Email: "x@example.com", Password: "password1", Limits: admin.AccountLimits{Grants: []string{"implicit"}}},
		"limits.scopes":      {Email: "x@example.com", Password: "password1", Limits: admin.AccountLimits{Scopes: []string{"a b"}}},
		"limits.max_clients": {Email: "x@example.com", Password: "password1", Limits: admin.AccountLimits{MaxClients: -1}},
	} {
		_, err := f.svc.CreateAccount(f.ctx, s)
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("CreateAccount with a bad %s: %v", field, err)
		}
	}
	// A merchant holding the admin API's scope could make itself an operator.
	if _, err := f.svc.CreateAccount(f.ctx, admin.AccountSpec{Email: "x@example.com", Password: "password1",
		Limits: admin.AccountLimits{Scopes: []string{"payments", admin.OperatorScope}}}); !errors.As(err, &ve) || ve.Field != "limits.scopes" {
		t.Errorf("CreateAccount with %s in its limits: %v", admin.OperatorScope, err)
	}
	m, err := f.svc.CreateAccount(f.ctx, admin.AccountSpec{Email: "m@example.com", Password: "merchant password", Limits: merchantLimits})
	if err != nil || m.Role != admin.RoleMerchant {
		t.Fatalf("a merchant (the default role): %+v, %v", m, err)
	}
	u, err := f.svc.UpdateAccount(f.ctx, m.ID, admin.AccountPatch{Limits: &admin.AccountLimits{MaxClients: 9}, TOTPRequired: new(true)})
	if err != nil || u.Limits.MaxClients != 9 || len(u.Limits.Grants) != 0 || !u.TOTPRequired || u.Email != "m@example.com" {
		t.Fatalf("UpdateAccount: %+v, %v", u, err)
	}
	if _, err := f.svc.UpdateAccount(f.ctx, m.ID, admin.AccountPatch{Email: new("OPS@example.com")}); !errors.As(err, &ce) {
		t.Fatalf("changing to a taken email: %v", err)
	}
	list, err := f.svc.ListAccounts(f.ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListAccounts: %v, %v", list, err)
	}
	// An operator account acting in the portal cannot lock itself out.
	opCtx := adminCtx(f, v)
	_, err = f.svc.SetAccountDisabled(opCtx, v.ID, true)
	isCode(t, err, admin.CodeForbidden, "an operator disabling itself")
	_, err = f.svc.UpdateAccount(opCtx, v.ID, admin.AccountPatch{Role: new(admin.RoleMerchant)})
	isCode(t, err, admin.CodeForbidden, "an operator demoting itself")
	if d, err := f.svc.SetAccountDisabled(opCtx, m.ID, true); err != nil || !d.Disabled || d.SessionsNotBefore == nil {
		t.Fatalf("disabling a merchant: %+v, %v", d, err)
	}
}

func adminCtx(f *fixture, v *admin.AccountView) context.Context {
	return admin.WithActor(f.ctx, admin.AccountActor(admin.ActorPortal, v, "203.0.113.9"))
}

// TestLoginWithTOTP walks an account through enrolment and sign-ins: the
// password, then the code, once per code.
func TestLoginWithTOTP(t *testing.T) {
	f := newFixture(t)
	ctx, acc := f.merchant(t, "Merchant@Example.com", merchantLimits)
	portal := admin.WithActor(t.Context(), admin.Actor{Kind: admin.ActorPortal, ID: "anonymous", Remote: "192.0.2.10"})

	r, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", "")
	if err != nil || r.Account.ID != acc.ID || r.TOTPEnrollmentRequired {
		t.Fatalf("sign-in without a second factor: %+v, %v", r, err)
	}
	if ev := f.lastEvent(t); ev.Action != "account.login" || ev.ActorID != acc.ID || ev.Remote != "192.0.2.10" || ev.ActorKind != admin.ActorPortal {
		t.Fatalf("login event: %+v", ev)
	}

	// Only the account itself enrolls; the secret is shown once.
	_, err = f.svc.EnrollTOTP(f.ctx, acc.ID)
	isCode(t, err, admin.CodeNotFound, "an operator enrolling another account's second factor")
	en, err := f.svc.EnrollTOTP(ctx, acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(en.URI)
	if err != nil || u.Scheme != "otpauth" || u.Query().Get("secret") != en.Secret || !strings.Contains(u.Path, "Merchant@Example.com") {
		t.Fatalf("enrolment: %+v, %v", en, err)
	}
	key := totpKey(t, f, acc.ID)
	for _, e := range f.events(t) {
		if bytes.Contains(e.After, []byte(en.Secret)) || bytes.Contains(e.Before, []byte(en.Secret)) {
			t.Fatal("the TOTP secret is in the audit trail")
		}
	}
	// Not enabled until confirmed: signing in needs no code yet.
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", ""); err != nil {
		t.Fatalf("sign-in before confirmation: %v", err)
	}
	var ve *admin.ValidationError
	if _, err := f.svc.ConfirmTOTP(ctx, acc.ID, "000000"); !errors.As(err, &ve) || ve.Field != "totp_code" {
		t.Fatalf("confirming with a wrong code: %v", err)
	}
	v, err := f.svc.ConfirmTOTP(ctx, acc.ID, totp.Code(key, totp.Step(f.clk.Now())))
	if err != nil || !v.TOTPEnabled {
		t.Fatalf("ConfirmTOTP: %+v, %v", v, err)
	}
	if _, err := f.svc.EnrollTOTP(ctx, acc.ID); admin.ErrorCode(err) != admin.CodeConflict {
		t.Fatalf("enrolling over an enabled second factor: %v", err)
	}

	// The password alone is not enough now; the code of the step just
	// used for confirmation is not accepted again.
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", ""); !errors.Is(err, admin.ErrTOTPRequired) {
		t.Fatalf("sign-in without the code: %v", err)
	}
	now := totp.Code(key, totp.Step(f.clk.Now()))
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", now); !errors.Is(err, admin.ErrBadCredentials) {
		t.Fatalf("the confirmation's code again: %v", err)
	}
	f.clk.Advance(30 * time.Second)
	code := totp.Code(key, totp.Step(f.clk.Now()))
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", code); err != nil {
		t.Fatalf("sign-in with the current code: %v", err)
	}
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", code); !errors.Is(err, admin.ErrBadCredentials) {
		t.Fatalf("a replayed code: %v", err)
	}
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "wrong password", totp.Code(key, totp.Step(f.clk.Now())+1)); !errors.Is(err, admin.ErrBadCredentials) {
		t.Fatalf("a wrong password with a good code: %v", err)
	}
	// An operator resets a lost device.
	if v, err := f.svc.ResetTOTP(f.ctx, acc.ID); err != nil || v.TOTPEnabled {
		t.Fatalf("ResetTOTP: %+v, %v", v, err)
	}
	if _, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", ""); err != nil {
		t.Fatalf("sign-in after a reset: %v", err)
	}
	// An account that must have a second factor is told to enroll.
	if _, err := f.svc.UpdateAccount(f.ctx, acc.ID, admin.AccountPatch{TOTPRequired: new(true)}); err != nil {
		t.Fatal(err)
	}
	if r, err := f.svc.VerifyLogin(portal, "merchant@example.com", "merchant password", ""); err != nil || !r.TOTPEnrollmentRequired {
		t.Fatalf("sign-in of an account that must enroll: %+v, %v", r, err)
	}
}

// Turning on a second factor signs out every session begun with the
// password alone (the reason one turns it on), the confirming one too; a
// session begun at the returned cut-off goes on.
func TestConfirmTOTPEndsSessionsWithoutIt(t *testing.T) {
	f := newFixture(t)
	_, acc := f.merchant(t, "m@example.com", merchantLimits)
	session := func(start time.Time) context.Context {
		a := admin.AccountActor(admin.ActorPortal, acc, "198.51.100.7")
		a.SessionStart = start
		return admin.WithActor(t.Context(), a)
	}
	earlier := session(f.clk.Now().Add(-time.Hour))
	f.clk.Advance(time.Minute)
	confirming := session(f.clk.Now())
	f.clk.Advance(time.Minute)
	if _, err := f.svc.EnrollTOTP(confirming, acc.ID); err != nil {
		t.Fatal(err)
	}
	later := session(f.clk.Now()) // begun after the enrolment, before the confirmation
	f.clk.Advance(time.Minute)
	v, err := f.svc.ConfirmTOTP(confirming, acc.ID, totp.Code(totpKey(t, f, acc.ID), totp.Step(f.clk.Now())))
	if err != nil || !v.TOTPEnabled || v.SessionsNotBefore == nil || !v.SessionsNotBefore.Equal(f.clk.Now()) {
		t.Fatalf("ConfirmTOTP: %+v, %v", v, err)
	}
	for name, ctx := range map[string]context.Context{"earlier": earlier, "confirming": confirming, "later": later} {
		if _, err := f.svc.GetAccount(ctx, acc.ID); admin.ErrorCode(err) != admin.CodeUnauthenticated {
			t.Errorf("the %s session, begun without the second factor, goes on: %v", name, err)
		}
	}
	// The session a portal starts at the cut-off goes on.
	if _, err := f.svc.GetAccount(session(*v.SessionsNotBefore), acc.ID); err != nil {
		t.Errorf("a session begun at the cut-off: %v", err)
	}
}

// totpKey is the account's TOTP secret as stored (opened).
func totpKey(t *testing.T, f *fixture, id string) []byte {
	t.Helper()
	a, err := f.st.GetAccount(t.Context(), id)
	if err != nil || len(a.TOTPSecret) != totp.SecretLen {
		t.Fatalf("stored TOTP secret: %d bytes, %v", len(a.TOTPSecret), err)
	}
	return a.TOTPSecret
}

// TestLoginLockout: failures lock an account (and an unknown email
// alike) for a while; a disabled account's right password is a failure
// like any other.
func TestLoginLockout(t *testing.T) {
	f := newFixture(t)
	_, acc := f.merchant(t, "m@example.com", merchantLimits)
	bg := t.Context()
	for _, email := range []string{"m@example.com", "nobody@example.com"} {
		var err error
		for i := range 5 {
			if _, err = f.svc.VerifyLogin(bg, email, "wrong password", ""); i < 4 && !errors.Is(err, admin.ErrBadCredentials) {
				t.Fatalf("%s: failure %d: %v", email, i+1, err)
			}
		}
		var le *admin.LockedError
		if !errors.As(err, &le) || le.RetryAfter <= 0 {
			t.Fatalf("%s: the 5th failure: %v", email, err)
		}
		// Locked: even the right password is refused until the lock ends.
		_, err = f.svc.VerifyLogin(bg, email, "merchant password", "")
		isCode(t, err, admin.CodeLocked, email+" while locked")
	}
	f.clk.Advance(2 * time.Second)
	if _, err := f.svc.VerifyLogin(bg, "m@example.com", "merchant password", ""); err != nil {
		t.Fatalf("the right password after the lock: %v", err)
	}
	// Failures of an existing account are in the audit trail, without
	// the password.
	var failed int
	for _, e := range f.events(t) {
		if e.Action == "account.login_failed" && e.ObjectID == acc.ID {
			failed++
			if bytes.Contains(e.After, []byte("wrong password")) {
				t.Fatal("a tried password is in the audit trail")
			}
		}
	}
	if failed != 5 {
		t.Errorf("%d failed sign-ins recorded, want 5", failed)
	}
	if _, err := f.svc.SetAccountDisabled(f.ctx, acc.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.VerifyLogin(bg, "m@example.com", "merchant password", ""); !errors.Is(err, admin.ErrBadCredentials) {
		t.Fatalf("a disabled account: %v", err)
	}
}

// Guesses sent at once must not all pass the lockout before their
// failures are counted: on a node, one check per email runs at a time and
// the others are refused unevaluated, so a burst (with the clock standing
// still) gets at most the policy's 5 wrong passwords evaluated, as
// sequential guesses do (TestLoginLockout). Each evaluated failure of an
// existing account is one account.login_failed event.
func TestLoginLockoutHoldsAgainstConcurrentGuesses(t *testing.T) {
	f := newFixture(t)
	_, acc := f.merchant(t, "m@example.com", merchantLimits)
	evaluated := func() int {
		n := 0
		for _, e := range f.events(t) {
			if e.Action == "account.login_failed" && e.ObjectID == acc.ID {
				n++
			}
		}
		return n
	}
	const burst = 18 // what the fixture's hasher admits at once: 2 slots + 16 queued
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		codes = map[string]int{}
	)
	for range burst {
		wg.Go(func() {
			<-start
			_, err := f.svc.VerifyLogin(t.Context(), "m@example.com", "wrong password", "")
			mu.Lock()
			codes[admin.ErrorCode(err)]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	t.Logf("answers: %v; guesses evaluated: %d", codes, evaluated())
	if n := evaluated(); n > 5 {
		t.Fatalf("%d wrong passwords were evaluated in one burst at one instant; the lockout allows 5 before it locks", n)
	}
	if codes[admin.CodeBadCredentials]+codes[admin.CodeLocked] != burst {
		t.Fatalf("answers to the burst: %v", codes)
	}
	// Sequential guesses after it: the total evaluated is the policy's.
	for range 10 {
		if _, err := f.svc.VerifyLogin(t.Context(), "m@example.com", "wrong password", ""); errors.Is(err, admin.ErrLocked) && evaluated() == 5 {
			break
		}
	}
	if n := evaluated(); n != 5 {
		t.Errorf("%d wrong passwords evaluated in all, want 5", n)
	}
	if _, err := f.svc.VerifyLogin(t.Context(), "m@example.com", "merchant password", ""); !errors.Is(err, admin.ErrLocked) {
		t.Errorf("the right password once locked: %v", err)
	}
}

// A signed-in account confirming its own password (before a password
// change) is not signing in: a success records no account.login event,
// while wrong passwords are recorded and throttled like sign-ins.
func TestPasswordRecheckIsNoSignIn(t *testing.T) {
	f := newFixture(t)
	self, acc := f.merchant(t, "m@example.com", merchantLimits)
	count := func(action string) int {
		n := 0
		for _, e := range f.events(t) {
			if e.Action == action && e.ObjectID == acc.ID {
				n++
			}
		}
		return n
	}
	if _, err := f.svc.VerifyLogin(self, acc.Email, "merchant password", ""); err != nil {
		t.Fatal(err)
	}
	if n := count("account.login"); n != 0 {
		t.Errorf("the account's own password check recorded %d sign-ins", n)
	}
	// A sign-in (anonymous actor, as the portal's sign-in form) is one.
	anon := admin.WithActor(t.Context(), admin.Actor{Kind: admin.ActorPortal, ID: "anonymous", Name: "anonymous"})
	if _, err := f.svc.VerifyLogin(anon, acc.Email, "merchant password", ""); err != nil || count("account.login") != 1 {
		t.Fatalf("a sign-in: %v, %d events", err, count("account.login"))
	}
	var err error
	for range 5 {
		_, err = f.svc.VerifyLogin(self, acc.Email, "wrong password", "")
	}
	if !errors.Is(err, admin.ErrLocked) || count("account.login_failed") != 5 {
		t.Errorf("5 wrong passwords in re-checks: %v, %d failures recorded", err, count("account.login_failed"))
	}
}

// TestLoginUnknownEmailCostsAHash: an unknown email is answered after an
// argon2id computation too, so timing does not tell which emails exist.
// Loose on purpose (a shared machine): an unknown email must take at least
// a third of a known one's time, where without the dummy hash it takes
// well under a hundredth.
func TestLoginUnknownEmailCostsAHash(t *testing.T) {
	f := newFixture(t)
	f.merchant(t, "m@example.com", merchantLimits)
	bg := t.Context()
	measure := func(email string) time.Duration {
		best := time.Hour
		for i := range 3 {
			start := time.Now()
			f.svc.VerifyLogin(bg, email+strings.Repeat(" ", i), "wrong password", "")
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := measure("m@example.com"), measure("nobody@example.com")
	if unknown < known/3 {
		t.Fatalf("an unknown email takes %v, a known one %v", unknown, known)
	}
}

func TestAccountSecretsNeverShown(t *testing.T) {
	f := newFixture(t)
	ctx, acc := f.merchant(t, "m@example.com", merchantLimits)
	if _, err := f.svc.EnrollTOTP(ctx, acc.ID); err != nil {
		t.Fatal(err)
	}
	stored, err := f.st.GetAccount(t.Context(), acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	views := []any{}
	v, _ := f.svc.GetAccount(f.ctx, acc.ID)
	list, _ := f.svc.ListAccounts(f.ctx)
	views = append(views, v, list)
	for _, e := range f.events(t) {
		views = append(views, string(e.Before), string(e.After))
	}
	for _, x := range views {
		s := strings.ToLower(jsonString(t, x))
		if strings.Contains(s, strings.ToLower(stored.PasswordHash)) || strings.Contains(s, "argon2") ||
			strings.Contains(s, strings.ToLower(totp.EncodeSecret(stored.TOTPSecret))) {
			t.Fatalf("a view or an event shows a password hash or TOTP secret: %s", s)
		}
	}
	if !slices.Equal(v.Limits.Grants, merchantLimits.Grants) {
		t.Errorf("limits: %+v", v.Limits)
	}
}
