package portal

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/secret"
)

// loginData is the sign-in form.
type loginData struct {
	Email    string
	NeedCode bool // the password was right; the account needs its code
}

// signinToken returns the sign-in form's CSRF token, setting its cookie
// when the request has none (double submit: the form carries an HMAC of
// the cookie's value, which another site can neither read nor set).
func signinToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(signinCookie); err == nil && wellFormed(c.Value) {
		return csrfToken(c.Value)
	}
	v := secret.NewID(32)
	http.SetCookie(w, secureCookie(signinCookie, v, 3600))
	return csrfToken(v)
}

func (p *Portal) loginForm(w http.ResponseWriter, r *http.Request) {
	s, err := p.load(w, r)
	if err != nil {
		p.fail(w, r, nil, err)
		return
	}
	if s != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	p.renderLogin(w, r, http.StatusOK, loginData{}, message(r))
}

func (p *Portal) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData, msg string) {
	v := p.view(nil, "Sign in", d)
	v.CSRF = signinToken(w, r)
	if status == http.StatusOK {
		v.Notice = msg
	} else {
		v.Error = msg
	}
	p.render(w, r, status, "login", v)
}

// login checks email, password and TOTP code with the service (which
// throttles failures per account) and starts a session.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	// Limited before anything is read or checked: a refused attempt costs
	// no password hash.
	switch d, err := p.signIns.Allow(r.Context(), signInKey(r)); {
	case err != nil:
		p.fail(w, r, nil, fmt.Errorf("%w: sign-in limit: %w", admin.ErrUnavailable, err))
		return
	case !d.Allowed:
		wait := strconv.Itoa(d.RetryAfterSeconds())
		w.Header().Set("Retry-After", wait)
		p.renderLogin(w, r, http.StatusTooManyRequests, loginData{},
			"Too many sign-in attempts from your network. Try again in "+wait+" seconds.")
		return
	}
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || !wellFormed(c.Value) || !validToken(r.PostFormValue("csrf"), csrfToken(c.Value)) {
		p.renderLogin(w, r, http.StatusForbidden, loginData{}, "The sign-in form had expired. Please try again.")
		return
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	password, code := r.PostFormValue("password"), strings.TrimSpace(r.PostFormValue("code"))
	d := loginData{Email: email}
	ctx := admin.WithActor(r.Context(), admin.Actor{Kind: admin.ActorPortal, ID: "anonymous", Name: "anonymous", Remote: remote(r)})
	started := p.now() // before the check: see start
	res, err := p.svc.VerifyLogin(ctx, email, password, code)
	switch admin.ErrorCode(err) {
	case "":
	case admin.CodeTOTPRequired:
		d.NeedCode = true
		p.renderLogin(w, r, http.StatusUnauthorized, d, "Enter the code from your authenticator app, with your password again.")
		return
	case admin.CodeBadCredentials:
		d.NeedCode = code != ""
		p.renderLogin(w, r, http.StatusUnauthorized, d, "Wrong email, password or code.")
		return
	default: // locked, unavailable, internal
		p.fail(w, r, nil, err)
		return
	}
	if p.afterSignInCheck != nil {
		p.afterSignInCheck()
	}
	if err := p.start(w, r, res.Account, started); err != nil {
		p.fail(w, r, nil, err)
		return
	}
	clearCookie(w, signinCookie)
	to := "/clients"
	if res.TOTPEnrollmentRequired {
		to = "/totp"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request, s *session) {
	p.endSession(w, r, s)
	http.Redirect(w, r, "/login?m=signed_out", http.StatusSeeOther)
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request, _ *session) {
	http.Redirect(w, r, "/clients", http.StatusSeeOther)
}

// totpData is the second-factor page.
type totpData struct {
	Enabled, Required bool
	// Secret and URI are set only in the response that enrolled them.
	Secret, URI string
	Confirm     bool // show the confirmation form
}

func (p *Portal) totpPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := p.view(s, "Two-factor authentication", totpData{Enabled: s.account.TOTPEnabled, Required: s.account.TOTPRequired})
	v.Notice = message(r)
	p.render(w, r, http.StatusOK, "totp", v)
}

// totpEnroll makes a new TOTP secret and shows it this once (the secret
// for typing in, and the otpauth URI), with the form that confirms it.
func (p *Portal) totpEnroll(w http.ResponseWriter, r *http.Request, s *session) {
	e, err := p.svc.EnrollTOTP(r.Context(), s.account.ID)
	if err != nil {
		if msg := formError(err); msg != "" {
			v := p.view(s, "Two-factor authentication", totpData{Enabled: s.account.TOTPEnabled, Required: s.account.TOTPRequired})
			v.Error = msg
			p.render(w, r, http.StatusConflict, "totp", v)
			return
		}
		p.fail(w, r, s, err)
		return
	}
	p.render(w, r, http.StatusOK, "totp", p.view(s, "Two-factor authentication",
		totpData{Required: s.account.TOTPRequired, Secret: e.Secret, URI: e.URI, Confirm: true}))
}

// totpConfirm turns the enrolled factor on, with the account's password
// and a current code: turning it on ends every other session of the
// account, which a stolen session alone must not be able to do.
func (p *Portal) totpConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	fail := func(status int, msg string) {
		v := p.view(s, "Two-factor authentication", totpData{Required: s.account.TOTPRequired, Confirm: true})
		v.Error = msg
		p.render(w, r, status, "totp", v)
	}
	if !p.passwordRechecked(w, r, s, fail) {
		return
	}
	// The service ends every session begun without the second factor,
	// this one too.
	acc, err := p.svc.ConfirmTOTP(r.Context(), s.account.ID, strings.TrimSpace(r.PostFormValue("code")))
	p.restart(w, r, s, acc, err, fail, "/clients?m=totp_enabled")
}

func (p *Portal) accountSelf(w http.ResponseWriter, r *http.Request, s *session) {
	v := p.view(s, "Your account", s.account)
	v.Notice = message(r)
	p.render(w, r, http.StatusOK, "account", v)
}

// accountPassword changes the signed-in account's password, after
// checking the current one (through VerifyLogin, so guesses here are
// throttled like sign-ins). The service ends every session of the
// account; this browser gets a new one.
func (p *Portal) accountPassword(w http.ResponseWriter, r *http.Request, s *session) {
	fail := func(status int, msg string) {
		v := p.view(s, "Your account", s.account)
		v.Error = msg
		p.render(w, r, status, "account", v)
	}
	next := r.PostFormValue("new_password")
	if next != r.PostFormValue("repeat_password") {
		fail(http.StatusBadRequest, "The new password and its repetition differ.")
		return
	}
	if !p.passwordRechecked(w, r, s, fail) {
		return
	}
	acc, err := p.svc.SetAccountPassword(r.Context(), s.account.ID, next)
	p.restart(w, r, s, acc, err, fail, "/account?m=password")
}

// restart answers a change that ended every session of the account (acc
// and err are the service's answer): a form error through fail; else this
// browser gets a new session at the change's cut-off and goes on to "to".
func (p *Portal) restart(w http.ResponseWriter, r *http.Request, s *session, acc *admin.AccountView, err error, fail func(status int, msg string), to string) {
	if err != nil {
		if msg := formError(err); msg != "" {
			fail(http.StatusBadRequest, msg)
			return
		}
		p.fail(w, r, s, err)
		return
	}
	// The new session begins at the change's own cut-off, so a later
	// change (on any node) ends it too.
	started := p.now()
	if acc.SessionsNotBefore != nil {
		started = *acc.SessionsNotBefore
	}
	if err := p.start(w, r, acc, started); err != nil {
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// passwordRechecked reports whether the form's current_password is the
// signed-in account's, checked through VerifyLogin so that guesses here
// are throttled like sign-ins; when it is not, it has answered (fail for
// a wrong password).
func (p *Portal) passwordRechecked(w http.ResponseWriter, r *http.Request, s *session, fail func(status int, msg string)) bool {
	_, err := p.svc.VerifyLogin(r.Context(), s.account.Email, r.PostFormValue("current_password"), "")
	switch admin.ErrorCode(err) {
	case "", admin.CodeTOTPRequired: // the password is right
		return true
	case admin.CodeBadCredentials:
		fail(http.StatusUnauthorized, "The current password is wrong.")
	default:
		p.fail(w, r, s, err)
	}
	return false
}
