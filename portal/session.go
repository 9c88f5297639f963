package portal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// Cookies. The __Host- prefix makes browsers refuse them unless they are
// Secure, host-only and for the whole path, so a sibling subdomain cannot
// plant or overwrite one. Browsers keep Secure cookies from plain-HTTP
// localhost and 127.0.0.1 (potentially trustworthy origins), which is
// what the tests use.
const (
	sessionCookie = "__Host-tokengate-session"
	signinCookie  = "__Host-tokengate-signin"
)

// touchEvery is how often a session's use is recorded: the idle timeout
// is kept to within it, and a page view costs no write most of the time.
const touchEvery = time.Minute

// session is a signed-in request's session.
type session struct {
	id      string // the store's ID: storeID of the cookie's value
	csrf    string // the forms' CSRF token: csrfToken of the cookie's value
	started time.Time
	account *admin.AccountView
	actor   admin.Actor
}

func (s *session) operator() bool { return s.account.Role == admin.RoleOperator }

// wellFormed reports whether v can be a value secret.NewID(32) made: a
// session or sign-in cookie's 256 random bits.
func wellFormed(v string) bool {
	if len(v) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil
}

// storeID is the ID a session is stored under: the SHA-256 of its cookie
// value, so the store never holds the value.
func storeID(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

// csrfToken is the CSRF token of the forms of the session (or sign-in
// form) whose cookie value is value: an HMAC keyed by that value, so it
// is per session, needs no storage, and reveals nothing of the value.
func csrfToken(value string) string {
	m := hmac.New(sha256.New, []byte(value))
	m.Write([]byte("tokengate portal csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validToken compares a form's CSRF token with want in constant time.
func validToken(got, want string) bool {
	return len(got) > 0 && hmac.Equal([]byte(got), []byte(want))
}

func secureCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, secureCookie(name, "", -1))
}

// load returns the request's session, or nil when it has none that is
// still valid (no cookie, an unknown or ended session, an account that is
// disabled or whose sessions were ended); an ended session is deleted.
// Errors: the store's or the service's (unavailable, internal).
func (p *Portal) load(w http.ResponseWriter, r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || !wellFormed(c.Value) {
		return nil, nil
	}
	ctx := r.Context()
	id := storeID(c.Value)
	ps, err := p.sessions.GetSession(ctx, id)
	if errors.Is(err, oauth.ErrNotFound) {
		clearCookie(w, sessionCookie)
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	ended := func() (*session, error) {
		clearCookie(w, sessionCookie)
		if err := p.sessions.DeleteSession(ctx, id); err != nil {
			return nil, storeErr(err)
		}
		return nil, nil
	}
	now := p.now()
	if !now.Before(ps.ExpiresAt) || !now.Before(ps.CreatedAt.Add(p.max)) {
		return ended()
	}
	actor := admin.Actor{Kind: admin.ActorPortal, ID: ps.Account, Account: ps.Account, Remote: remote(r), SessionStart: ps.CreatedAt}
	acc, err := p.svc.GetAccount(admin.WithActor(ctx, actor), ps.Account)
	switch admin.ErrorCode(err) {
	case "":
	case admin.CodeUnauthenticated, admin.CodeNotFound:
		return ended() // disabled, deleted, or its sessions were ended
	default:
		return nil, err
	}
	if now.Sub(ps.LastSeenAt) >= touchEvery {
		err := p.sessions.TouchSession(ctx, id, now, p.expiry(ps.CreatedAt, now))
		if errors.Is(err, oauth.ErrNotFound) {
			return ended() // signed out meanwhile
		}
		if err != nil {
			return nil, storeErr(err)
		}
	}
	actor = admin.AccountActor(admin.ActorPortal, acc, remote(r))
	actor.SessionStart = ps.CreatedAt
	return &session{id: id, csrf: csrfToken(c.Value), started: ps.CreatedAt, account: acc, actor: actor}, nil
}

// expiry is when a session that began at created and was used at now
// ends unless used again.
func (p *Portal) expiry(created, now time.Time) time.Time {
	if idle, end := now.Add(p.idle), created.Add(p.max); idle.Before(end) {
		return idle
	}
	return created.Add(p.max)
}

// start begins a session for acc, replacing the request's session if any
// (a new value at every sign-in, so a value planted before it is
// worthless), and sets its cookie. started is when the credentials that
// open it were checked, taken before the check: the session counts as
// begun then, so a password change or disable that another node makes
// while the check runs (SessionsNotBefore after started) ends it, where
// a start taken after the check would outlive that cut-off. Errors: the
// store's.
func (p *Portal) start(w http.ResponseWriter, r *http.Request, acc *admin.AccountView, started time.Time) error {
	if c, err := r.Cookie(sessionCookie); err == nil && wellFormed(c.Value) {
		if err := p.sessions.DeleteSession(r.Context(), storeID(c.Value)); err != nil {
			return storeErr(err)
		}
	}
	value := secret.NewID(32)
	now := p.now()
	ps := &oauth.Session{ID: storeID(value), Account: acc.ID, CreatedAt: started, LastSeenAt: now, ExpiresAt: p.expiry(started, now)}
	if err := p.sessions.CreateSession(r.Context(), ps); err != nil {
		return storeErr(err)
	}
	// No Max-Age: the browser forgets it when it closes; the store ends it
	// sooner by the timeouts.
	http.SetCookie(w, secureCookie(sessionCookie, value, 0))
	return nil
}

// endSession deletes s (if any) and its cookie.
func (p *Portal) endSession(w http.ResponseWriter, r *http.Request, s *session) {
	clearCookie(w, sessionCookie)
	if s == nil {
		return
	}
	if err := p.sessions.DeleteSession(r.Context(), s.id); err != nil {
		p.log.Warn("portal: a session could not be deleted; it ends at its timeout", "err", err)
	}
}

// storeErr makes a store error one of the service's kinds.
func storeErr(err error) error {
	if errors.Is(err, oauth.ErrUnavailable) {
		return fmt.Errorf("%w: sessions: %w", admin.ErrUnavailable, err)
	}
	return fmt.Errorf("sessions: %w", err)
}

// parseForm reads a POST's form (multipart for the SNAP key upload),
// within maxBody.
func parseForm(r *http.Request) error {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" {
		return r.ParseMultipartForm(maxBody)
	}
	return r.ParseForm()
}

// totpPaths are what an account that must enroll a second factor may
// reach before it has.
var totpPaths = map[string]bool{"/totp": true, "/totp/enroll": true, "/totp/confirm": true, "/logout": true}

// auth serves h to signed-in requests only, with the session's actor in
// the context: others are sent to the sign-in page. A POST must carry
// the session's CSRF token. An account that must enroll a second factor
// and has not is sent to do that first.
func (p *Portal) auth(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := p.load(w, r)
		if err != nil {
			p.fail(w, r, nil, err)
			return
		}
		if s == nil {
			to := "/login"
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				to += "?m=ended"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := parseForm(r); err != nil {
				p.errorPage(w, r, s, http.StatusBadRequest, "The form could not be read (too large?).")
				return
			}
			if !validToken(r.PostFormValue("csrf"), s.csrf) {
				p.errorPage(w, r, s, http.StatusForbidden, "The form has expired or did not come from this portal. Reload the page and try again.")
				return
			}
		}
		if s.account.TOTPRequired && !s.account.TOTPEnabled && !totpPaths[r.URL.Path] {
			http.Redirect(w, r, "/totp", http.StatusSeeOther)
			return
		}
		h(w, r.WithContext(admin.WithActor(r.Context(), s.actor)), s)
	})
}
