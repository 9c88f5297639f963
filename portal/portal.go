// Package portal is tokengate's merchant portal: server-rendered pages
// (html/template, embedded in the binary, no script) where merchants
// sign in to see and manage their own clients and operators manage
// accounts and every client. It is a skin over the admin service: it
// authenticates people, puts an admin.Actor in the context and renders
// what the service returns; the service decides who may see and do what
// (a merchant asking for another merchant's client gets the same "not
// found" as for a client that does not exist).
//
// Security properties:
//
//   - Sessions are random 256-bit values in a cookie that is HttpOnly,
//     Secure, SameSite=Strict and host-only (__Host- prefix). The store
//     keeps only their SHA-256 (oauth.Session), so every node behind a
//     load balancer knows them and a copy of the store holds none anyone
//     can use. A session ends when unused for portal.session_idle, at
//     portal.session_max after its sign-in, at sign-out, and when the
//     account's sessions are ended (a password change, a disable, a
//     second factor turned on or reset: the service's SessionsNotBefore).
//   - Every form carries a CSRF token, compared in constant time: for a
//     session, an HMAC of the session's secret value (so it is per
//     session and not stored); for the sign-in form, a double-submit
//     value in a cookie of its own. A POST whose Origin or Sec-Fetch-Site
//     says it came from another site is refused before that.
//   - Every response has a strict Content-Security-Policy (no script at
//     all, styles from the portal only, forms post only to it, no
//     framing), X-Content-Type-Options, Referrer-Policy same-origin (no
//     client ID in a URL leaves for another site; the portal's own form
//     posts keep their Origin, which no-referrer would make "null") and
//     Cache-Control no-store (pages show secrets once, and configuration
//     the whole time).
//   - Sign-in failures are throttled per account by the service's
//     lockout; the answer never says whether an email exists. Sign-in
//     attempts are also limited per source address (Deps.SignInLimit),
//     so one address cannot make the server check passwords for new
//     emails without end.
//   - A new client secret is shown once, in the response to the create
//     or rotate form, with its downloads (JSON and .env) as data: links
//     inside that response: nothing can fetch it again later. The rotate
//     form carries a one-time value spent in the store, so the same form
//     sent twice rotates once.
//   - IDs put into URL paths are escaped (imported client IDs may hold
//     '/', '?', '#' or '%').
package portal

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Sessions is where sessions (and the one-time values of forms that
// must not be sent twice) are kept: the store (oauth.Store has these
// methods), shared by every node.
type Sessions interface {
	CreateSession(ctx context.Context, s *oauth.Session) error
	GetSession(ctx context.Context, id string) (*oauth.Session, error)
	TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error
	DeleteSession(ctx context.Context, id string) error
	UseNonce(ctx context.Context, key string, expiresAt time.Time) error
}

// Deps are what a portal is built on.
type Deps struct {
	// Admin is the admin service every page goes through (the node's, so
	// that sign-in failures are throttled with the node's lockout).
	Admin *admin.Service
	// Sessions is the store.
	Sessions Sessions
	// Logger gets internal failures (never a secret); nil: discarded.
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// SignInLimit limits sign-in attempts per source address (an IPv4
	// address, an IPv6 /64); nil: in this process, 10 a minute in bursts
	// of 20, in bounded memory (limit.NewMemoryRateLimiter).
	SignInLimit limit.RateLimiter
}

// The default limit on sign-in attempts from one address: each costs an
// argon2id check, and the lockout, per account, does not stop one
// address trying a new email every time.
const (
	signInRate  = 10.0 / 60
	signInBurst = 20
)

// Portal is the merchant portal's HTTP handler. It is safe for
// concurrent use.
type Portal struct {
	svc       *admin.Service
	sessions  Sessions
	signIns   limit.RateLimiter
	log       *slog.Logger
	now       func() time.Time
	idle, max time.Duration
	issuer    string
	endpoints []string // the token endpoints' paths, in configuration order
	pages     map[string]*template.Template
	mux       *http.ServeMux
	// afterSignInCheck, when set (by tests), runs in a sign-in between
	// the credentials' check and the session's creation.
	afterSignInCheck func()
}

// New builds the portal for cfg (portal.session_idle and session_max, the
// issuer and the token endpoints, which the create form and the
// credential downloads name). Errors: a template that does not parse (a
// bug), a missing dependency.
func New(cfg config.Config, d Deps) (*Portal, error) {
	if d.Admin == nil || d.Sessions == nil {
		return nil, errors.New("portal: Admin and Sessions are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.SignInLimit == nil {
		d.SignInLimit = limit.NewMemoryRateLimiter(signInRate, signInBurst, d.Now)
	}
	p := &Portal{
		svc: d.Admin, sessions: d.Sessions, signIns: d.SignInLimit, log: d.Logger, now: d.Now,
		idle: cfg.Portal.SessionIdle, max: cfg.Portal.SessionMax, issuer: cfg.Issuer,
	}
	if p.idle <= 0 || p.max <= 0 {
		def := config.Default().Portal
		p.idle, p.max = def.SessionIdle, def.SessionMax
	}
	for _, ep := range cfg.Endpoints {
		p.endpoints = append(p.endpoints, ep.Path)
	}
	var err error
	if p.pages, err = parsePages(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

// maxBody bounds a form's body: a SNAP key's PEM is a few kilobytes.
const maxBody = 64 << 10

// ServeHTTP serves a portal request with the security headers every
// response carries.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		p.errorPage(w, r, nil, http.StatusForbidden, "This form was sent from another site.")
		return
	}
	p.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows no script at all, styles from the portal
// only, images only as data: (none are used today), forms posted to the
// portal only, and no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// sameOrigin reports whether a POST may have come from the portal's own
// pages: browsers send Sec-Fetch-Site and Origin with form posts, and a
// cross-site one is refused whatever its CSRF token (defence in depth:
// the token is the check that counts, for clients that send neither).
// Origin's host must be the request's Host; its scheme is not compared,
// so that a portal behind a load balancer that ends TLS (the portal sees
// plain HTTP, the browser's Origin says https) works.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

func (p *Portal) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))
	mux.HandleFunc("GET /login", p.loginForm)
	mux.HandleFunc("POST /login", p.login)

	mux.Handle("GET /{$}", p.auth(p.home))
	mux.Handle("POST /logout", p.auth(p.logout))
	mux.Handle("GET /totp", p.auth(p.totpPage))
	mux.Handle("POST /totp/enroll", p.auth(p.totpEnroll))
	mux.Handle("POST /totp/confirm", p.auth(p.totpConfirm))
	mux.Handle("GET /account", p.auth(p.accountSelf))
	mux.Handle("POST /account/password", p.auth(p.accountPassword))

	mux.Handle("GET /clients", p.auth(p.clientList))
	mux.Handle("GET /clients/new", p.auth(p.clientNewForm))
	mux.Handle("POST /clients/new", p.auth(p.clientCreate))
	mux.Handle("GET /clients/{id}", p.auth(p.clientShow))
	mux.Handle("POST /clients/{id}/rotate", p.auth(p.clientRotate))
	mux.Handle("POST /clients/{id}/snap-key", p.auth(p.clientSNAPKey))
	mux.Handle("POST /clients/{id}/revoke-tokens", p.auth(p.clientRevoke))
	mux.Handle("POST /clients/{id}/disable", p.auth(p.clientDisable(true)))
	mux.Handle("POST /clients/{id}/enable", p.auth(p.clientDisable(false)))

	mux.Handle("GET /audit", p.auth(p.auditList))

	mux.Handle("GET /accounts", p.auth(p.accountList))
	mux.Handle("POST /accounts", p.auth(p.accountCreate))
	mux.Handle("GET /accounts/{id}", p.auth(p.accountShow))
	mux.Handle("POST /accounts/{id}/limits", p.auth(p.accountLimits))
	mux.Handle("POST /accounts/{id}/disable", p.auth(p.accountDisable(true)))
	mux.Handle("POST /accounts/{id}/enable", p.auth(p.accountDisable(false)))
	mux.Handle("POST /accounts/{id}/reset-totp", p.auth(p.accountResetTOTP))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.errorPage(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	p.mux = mux
}

// staticHandler serves the stylesheet, cacheable for an hour.
func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// remote is the address an actor acts from: the connection's host.
func remote(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// signInKey is the key sign-in attempts from r's address are limited by:
// the IPv4 address, or the /64 of an IPv6 one (a single host commonly
// has a whole /64, so limiting single IPv6 addresses would limit
// nothing).
func signInKey(r *http.Request) string {
	a, err := netip.ParseAddr(remote(r))
	if err != nil {
		return "signin:" + remote(r)
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "signin:" + p.String()
	}
	return "signin:" + a.String()
}

// fail answers err from the admin service in one place: the status its
// code suggests and a page saying what may be said. An ended session
// (the account disabled, its sessions ended) signs the browser out.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	switch admin.ErrorCode(err) {
	case admin.CodeNotFound:
		p.errorPage(w, r, s, http.StatusNotFound, "Not found.")
	case admin.CodeForbidden:
		p.errorPage(w, r, s, http.StatusForbidden, admin.ErrorMessage(err))
	case admin.CodeInvalid:
		p.errorPage(w, r, s, http.StatusBadRequest, admin.ErrorMessage(err))
	case admin.CodeConflict:
		p.errorPage(w, r, s, http.StatusConflict, admin.ErrorMessage(err))
	case admin.CodeUnauthenticated:
		p.endSession(w, r, s)
		http.Redirect(w, r, "/login?m=ended", http.StatusSeeOther)
	case admin.CodeLocked:
		var le *admin.LockedError
		if errors.As(err, &le) {
			w.Header().Set("Retry-After", strconv.Itoa(limit.Decision{RetryAfter: le.RetryAfter}.RetryAfterSeconds()))
		}
		p.errorPage(w, r, s, http.StatusTooManyRequests, admin.ErrorMessage(err))
	case admin.CodeUnavailable:
		w.Header().Set("Retry-After", "1")
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The service is unavailable; try again in a moment.")
	case admin.CodeUnsupported:
		p.errorPage(w, r, s, http.StatusNotImplemented, admin.ErrorMessage(err))
	default:
		p.log.Error("portal: internal error", "path", r.URL.Path, "err", err)
		p.errorPage(w, r, s, http.StatusInternalServerError, "Internal error.")
	}
}

// formError is the message of a validation or conflict error to show
// beside a form, "" for other errors (which fail answers).
func formError(err error) string {
	switch admin.ErrorCode(err) {
	case admin.CodeInvalid, admin.CodeConflict, admin.CodeForbidden:
		return admin.ErrorMessage(err)
	}
	return ""
}

// messages are the notices a redirect can ask a page to show (?m=KEY):
// fixed texts, so nothing a link carries is echoed into a page.
var messages = map[string]string{
	"ended":         "Your session has ended. Please sign in again.",
	"signed_out":    "You have signed out.",
	"totp_enabled":  "Two-factor authentication is on.",
	"snap_key":      "The SNAP public key is registered.",
	"revoked":       "Every token of this client is revoked.",
	"disabled":      "The client is disabled; its tokens are revoked.",
	"enabled":       "The client is enabled.",
	"password":      "Your password is changed. Your other sessions have ended.",
	"created":       "The account is created.",
	"limits":        "The account is updated.",
	"acct_disabled": "The account is disabled; its sessions have ended.",
	"acct_enabled":  "The account is enabled.",
	"totp_reset":    "The account's second factor is removed; it enrolls again at its next sign-in.",
}

func message(r *http.Request) string { return messages[r.URL.Query().Get("m")] }
