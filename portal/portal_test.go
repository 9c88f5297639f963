package portal_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/portal"
)

const wantCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func checkSecurityHeaders(t *testing.T, what string, p *page) {
	t.Helper()
	for h, want := range map[string]string{
		"Content-Security-Policy": wantCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
	} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s: %s = %q, want %q", what, h, got, want)
		}
	}
}

func checkCookie(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || !strings.HasPrefix(c.Name, "__Host-") {
		t.Errorf("cookie %s: Secure %t HttpOnly %t SameSite %v Path %q Domain %q; want a Secure, HttpOnly, SameSite=Strict, host-only __Host- cookie for /",
			c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
}

func TestHeadersAndCookies(t *testing.T) {
	f := newFixture(t)
	f.account("ops@example.com", admin.RoleOperator, admin.AccountLimits{}, false)
	b := f.browser()
	p := b.get("/login")
	if p.status != http.StatusOK {
		t.Fatalf("GET /login: %d", p.status)
	}
	checkSecurityHeaders(t, "GET /login", p)
	if strings.Contains(p.body, "<script") || strings.Contains(p.body, "style=") || strings.Contains(p.body, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(p.body) {
		t.Error("the sign-in page has script, inline style or event handlers (the CSP would block them)")
	}
	signin := p.setCookies["__Host-tokengate-signin"]
	if signin == nil {
		t.Fatal("GET /login set no sign-in cookie")
	}
	checkCookie(t, signin)

	p = b.post("/login", url.Values{"email": {"ops@example.com"}, "password": {password}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/clients" {
		t.Fatalf("sign-in: %d to %q", p.status, p.header.Get("Location"))
	}
	sc := p.setCookies["__Host-tokengate-session"]
	if sc == nil {
		t.Fatal("sign-in set no session cookie")
	}
	checkCookie(t, sc)
	if sc.MaxAge != 0 || !sc.Expires.IsZero() {
		t.Errorf("session cookie has MaxAge %d Expires %v; want a browser-session cookie", sc.MaxAge, sc.Expires)
	}
	if c := p.setCookies["__Host-tokengate-signin"]; c == nil || c.MaxAge >= 0 {
		t.Error("sign-in did not delete the sign-in cookie")
	}
	// The store knows the session by the value's SHA-256 only.
	sum := sha256.Sum256([]byte(sc.Value))
	if _, err := f.a.Store.GetSession(t.Context(), hex.EncodeToString(sum[:])); err != nil {
		t.Errorf("session by the hash of its value: %v", err)
	}
	if _, err := f.a.Store.GetSession(t.Context(), sc.Value); !errors.Is(err, oauth.ErrNotFound) {
		t.Errorf("session by its value itself: %v, want not found", err)
	}
	for _, path := range []string{"/clients", "/clients/new", "/audit", "/accounts", "/account", "/totp", "/nope"} {
		checkSecurityHeaders(t, "GET "+path, b.get(path))
	}
	css := b.get("/static/portal.css")
	if css.status != http.StatusOK || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %q", css.status, css.header.Get("Content-Type"))
	}
}

func TestSignedOutIsSentToSignIn(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	for _, path := range []string{"/", "/clients", "/clients/x", "/audit", "/accounts", "/account", "/totp"} {
		p := b.get(path)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/login" {
			t.Errorf("GET %s signed out: %d to %q", path, p.status, p.header.Get("Location"))
		}
	}
	// A made-up session cookie is no session.
	b.cookies["__Host-tokengate-session"] = &http.Cookie{Name: "__Host-tokengate-session", Value: strings.Repeat("A", 43)}
	if p := b.get("/clients"); p.status != http.StatusSeeOther {
		t.Errorf("a made-up session: %d", p.status)
	}
}

func TestSignInCSRFAndOrigin(t *testing.T) {
	f := newFixture(t)
	f.account("m@example.com", admin.RoleMerchant, merchantLimits, false)
	form := func() url.Values {
		return url.Values{"email": {"m@example.com"}, "password": {password}}
	}

	b := f.browser() // never loaded the form: no cookie, no token
	if p := b.post("/login", form()); p.status != http.StatusForbidden {
		t.Errorf("sign-in without the form's cookie: %d", p.status)
	}
	b = f.browser()
	b.get("/login")
	wrong := form()
	wrong.Set("csrf", strings.Repeat("x", 43))
	if p := b.post("/login", wrong); p.status != http.StatusForbidden {
		t.Errorf("sign-in with a wrong token: %d", p.status)
	}
	// Another site's form, even with a valid token and cookie.
	b.get("/login")
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(func() string { v := form(); v.Set("csrf", b.csrf); return v.Encode() }()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Errorf("sign-in from another origin: %d", p.status)
	}
	req, _ = http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(func() string { v := form(); v.Set("csrf", b.csrf); return v.Encode() }()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Errorf("sign-in with Sec-Fetch-Site cross-site: %d", p.status)
	}
	for _, origin := range []string{"null", "https://evil.example:" + strings.Split(f.srv.URL, ":")[2], "ftp://" + strings.TrimPrefix(f.srv.URL, "http://")} {
		req, _ = http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(func() string { v := form(); v.Set("csrf", b.csrf); return v.Encode() }()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		if p := b.do(req); p.status != http.StatusForbidden {
			t.Errorf("sign-in with Origin %s: %d", origin, p.status)
		}
	}
	// Behind a load balancer that ends TLS, the browser's Origin says
	// https while the portal sees plain HTTP: the host is what counts.
	b2 := f.browser()
	b2.get("/login")
	req, _ = http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(func() string { v := form(); v.Set("csrf", b2.csrf); return v.Encode() }()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://"+strings.TrimPrefix(f.srv.URL, "http://"))
	if p := b2.do(req); p.status != http.StatusSeeOther {
		t.Errorf("sign-in through a TLS-ending load balancer: %d", p.status)
	}
	// The same origin, as a browser sends it, is fine.
	req, _ = http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(func() string { v := form(); v.Set("csrf", b.csrf); return v.Encode() }()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if p := b.do(req); p.status != http.StatusSeeOther {
		t.Errorf("sign-in from the portal's own page: %d %s", p.status, p.body)
	}
}

func TestFormsNeedTheSessionsCSRFToken(t *testing.T) {
	f := newFixture(t)
	b, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	id, _ := b.createClient("Shop", nil)
	before, err := f.svc.GetClient(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := f.signedIn("other@example.com", admin.RoleMerchant, merchantLimits)

	for _, path := range []string{"/clients/" + id + "/rotate", "/clients/" + id + "/revoke-tokens", "/clients/" + id + "/disable",
		"/clients/" + id + "/snap-key", "/clients/new", "/logout", "/account/password", "/totp/enroll"} {
		for name, token := range map[string]string{"none": "", "wrong": strings.Repeat("x", 43), "another session's": other.csrf} {
			p := b.post(path, url.Values{"csrf": {token}, "grace": {"1h"}, "name": {"x"}, "grant": {"client_credentials"}})
			if p.status != http.StatusForbidden {
				t.Errorf("POST %s with %s token: %d, want 403", path, name, p.status)
			}
		}
	}
	after, err := f.svc.GetClient(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Secrets) != 1 || after.TokensNotBefore != nil || after.Disabled || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("refused forms changed the client: %+v", after)
	}
	if page, _ := f.svc.ListClients(f.ctx, admin.ClientQuery{}); len(page.Clients) != 1 {
		t.Errorf("refused create form made a client: %d clients", len(page.Clients))
	}
	if p := b.get("/clients"); p.status != http.StatusOK {
		t.Errorf("the session ended after refused forms (sign-out was refused too): %d", p.status)
	}
	// A cross-site post is refused before its token is looked at.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/clients/"+id+"/revoke-tokens", strings.NewReader(url.Values{"csrf": {b.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-site")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Errorf("same-site (another subdomain) post: %d", p.status)
	}
	// With the token the same form works.
	if p := b.post("/clients/"+id+"/revoke-tokens", nil); p.status != http.StatusSeeOther {
		t.Errorf("revoke with the token: %d %s", p.status, p.body)
	}
}

// TestMerchantsSeeOnlyTheirOwn: every page and form refuses another
// merchant's client and account as if they did not exist.
func TestMerchantsSeeOnlyTheirOwn(t *testing.T) {
	f := newFixture(t)
	a, accA := f.signedIn("a@example.com", admin.RoleMerchant, merchantLimits)
	idA, secretA := a.createClient("A's shop", nil)
	b, accB := f.signedIn("b@example.com", admin.RoleMerchant, merchantLimits)
	idB, _ := b.createClient("B's shop", nil)

	list := b.get("/clients")
	if !strings.Contains(list.body, idB) || strings.Contains(list.body, idA) {
		t.Errorf("B's list: has B's client %t, has A's %t", strings.Contains(list.body, idB), strings.Contains(list.body, idA))
	}
	missing := b.get("/clients/" + strings.Repeat("0", 32))
	got := b.get("/clients/" + idA)
	if got.status != http.StatusNotFound || missing.status != http.StatusNotFound {
		t.Errorf("GET A's client as B: %d; a missing client: %d; want 404 for both", got.status, missing.status)
	}
	if strings.Contains(got.body, "A&#39;s shop") || strings.Contains(got.body, "A's shop") {
		t.Error("the 404 page names A's client")
	}
	if text(t, got.body, "message") != text(t, missing.body, "message") {
		t.Error("another merchant's client and a missing one answer differently")
	}
	key := rsaPEM(t, 2048)
	for path, form := range map[string]url.Values{
		"/clients/" + idA + "/rotate":        {"grace": {"1h"}},
		"/clients/" + idA + "/revoke-tokens": nil,
		"/clients/" + idA + "/disable":       nil,
		"/clients/" + idA + "/enable":        nil,
		"/clients/" + idA + "/snap-key":      {"pem": {string(key)}},
	} {
		if p := b.post(path, form); p.status != http.StatusNotFound {
			t.Errorf("POST %s as B: %d, want 404", path, p.status)
		}
	}
	c, err := f.svc.GetClient(f.ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Secrets) != 1 || c.TokensNotBefore != nil || c.Disabled || c.SNAPKeyFingerprint != "" {
		t.Errorf("B's refused forms changed A's client: %+v", c)
	}
	if !strings.Contains(a.get("/clients/"+idA).body, idA) {
		t.Error("A cannot see its own client")
	}
	_ = secretA

	audit := b.get("/audit")
	if strings.Contains(audit.body, idA) || strings.Contains(audit.body, "a@example.com") {
		t.Error("B's audit log shows A's events")
	}
	if !strings.Contains(audit.body, idB) {
		t.Error("B's audit log misses its own client's events")
	}
	if p := b.get("/audit?client=" + idA); strings.Contains(p.body, "client.create") {
		t.Error("B's audit log filtered by A's client shows events")
	}
	if p := b.get("/audit?account=" + accA.ID); strings.Contains(p.body, idA) {
		t.Error("B's audit log filtered by A's account shows A's events")
	}
	// Accounts are for operators.
	if p := b.get("/accounts"); p.status != http.StatusForbidden {
		t.Errorf("GET /accounts as a merchant: %d", p.status)
	}
	for _, path := range []string{"/accounts/" + accA.ID, "/accounts/" + accB.ID} {
		if p := b.get(path); p.status != http.StatusNotFound {
			t.Errorf("GET %s as a merchant: %d", path, p.status)
		}
	}
	for _, path := range []string{"/accounts/" + accA.ID + "/disable", "/accounts/" + accA.ID + "/reset-totp", "/accounts/" + accA.ID + "/limits", "/accounts"} {
		if p := b.post(path, url.Values{"email": {"x@example.com"}, "password": {password}, "max_clients": {"100"}}); p.status != http.StatusForbidden {
			t.Errorf("POST %s as a merchant: %d", path, p.status)
		}
	}
	if v, _ := f.svc.GetAccount(f.ctx, accA.ID); v.Disabled || v.Limits.MaxClients != merchantLimits.MaxClients {
		t.Errorf("a merchant changed another account: %+v", v)
	}
	if accs, _ := f.svc.ListAccounts(f.ctx); len(accs) != 2 {
		t.Errorf("a merchant created an account: %d accounts", len(accs))
	}
}

func TestOperatorManagesEveryAccount(t *testing.T) {
	f := newFixture(t)
	m, acc := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	id, _ := m.createClient("Shop", nil)
	ops, _ := f.signedIn("ops@example.com", admin.RoleOperator, admin.AccountLimits{})

	if p := ops.get("/clients"); !strings.Contains(p.body, id) || !strings.Contains(p.body, "m@example.com") {
		t.Error("the operator's list misses the merchant's client or its owner")
	}
	ops.get("/clients/" + id)
	if p := ops.post("/clients/"+id+"/rotate", url.Values{"grace": {"0s"}}); p.status != http.StatusOK {
		t.Errorf("operator rotating a merchant's secret: %d", p.status)
	}
	// Create a merchant with limits, through the form.
	ops.get("/accounts")
	p := ops.post("/accounts", url.Values{"email": {"new@example.com"}, "password": {password}, "role": {"merchant"},
		"grant": {"client_credentials"}, "scopes": {"payments refunds"}, "max_clients": {"2"}, "snap_keys": {"on"}, "totp_required": {"on"}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/accounts/") {
		t.Fatalf("create account: %d %s", p.status, p.body)
	}
	newID := strings.TrimPrefix(strings.Split(p.header.Get("Location"), "?")[0], "/accounts/")
	v, err := f.svc.GetAccount(f.ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Role != admin.RoleMerchant || !v.TOTPRequired || v.Limits.MaxClients != 2 || !v.Limits.SNAPKeys ||
		strings.Join(v.Limits.Scopes, " ") != "payments refunds" || strings.Join(v.Limits.Grants, " ") != "client_credentials" {
		t.Errorf("created account: %+v", v)
	}
	// A taken email is shown on the form.
	ops.get("/accounts")
	if p := ops.post("/accounts", url.Values{"email": {"NEW@example.com"}, "password": {password}, "role": {"merchant"}}); p.status != http.StatusConflict ||
		!strings.Contains(p.body, `id="error"`) {
		t.Errorf("a taken email: %d", p.status)
	}
	// Change the merchant's limits, then disable it: its session ends.
	ops.get("/accounts/" + acc.ID)
	if p := ops.post("/accounts/"+acc.ID+"/limits", url.Values{"grant": {"client_credentials"}, "scopes": {"payments"}, "max_clients": {"1"}}); p.status != http.StatusSeeOther {
		t.Fatalf("limits: %d %s", p.status, p.body)
	}
	if v, _ := f.svc.GetAccount(f.ctx, acc.ID); v.Limits.MaxClients != 1 || v.Limits.SNAPKeys || strings.Join(v.Limits.Scopes, " ") != "payments" {
		t.Errorf("limits after the form: %+v", v.Limits)
	}
	m.get("/clients/new")
	if p := m.post("/clients/new", url.Values{"name": {"Second"}, "grant": {"client_credentials"}}); p.status != http.StatusForbidden ||
		!strings.Contains(p.body, "at most 1 clients") {
		t.Errorf("a merchant over its max_clients: %d", p.status)
	}
	if p := ops.post("/accounts/"+acc.ID+"/disable", nil); p.status != http.StatusSeeOther {
		t.Fatalf("disable: %d", p.status)
	}
	if p := m.get("/clients"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/login" {
		t.Errorf("a disabled merchant's session: %d to %q", p.status, p.header.Get("Location"))
	}
	mb := f.browser()
	mb.get("/login")
	if p := mb.post("/login", url.Values{"email": {"m@example.com"}, "password": {password}}); p.status != http.StatusUnauthorized {
		t.Errorf("a disabled merchant signing in: %d", p.status)
	}
	// An operator cannot disable itself.
	self, _ := f.svc.ListAccounts(f.ctx)
	for _, a := range self {
		if a.Email == "ops@example.com" {
			if p := ops.post("/accounts/"+a.ID+"/disable", nil); p.status != http.StatusForbidden {
				t.Errorf("an operator disabling itself: %d", p.status)
			}
		}
	}
}

func TestSessionTimeouts(t *testing.T) {
	f := newFixture(t)
	// Idle: a session unused for session_idle is over.
	b, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	f.clk.Advance(29 * time.Minute)
	if p := b.get("/clients"); p.status != http.StatusOK {
		t.Fatalf("after 29 idle minutes: %d", p.status)
	}
	f.clk.Advance(31 * time.Minute)
	if p := b.get("/clients"); p.status != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %d, want the sign-in page", p.status)
	}

	// Absolute: used every 20 minutes, it still ends at session_max (2h).
	b2 := f.browser()
	b2.signIn("m@example.com", password, "")
	for range 5 {
		f.clk.Advance(20 * time.Minute)
		if p := b2.get("/clients"); p.status != http.StatusOK {
			t.Fatalf("a session in use ended early: %d", p.status)
		}
	}
	f.clk.Advance(20*time.Minute + time.Second) // 2h and a second since sign-in
	if p := b2.get("/clients"); p.status != http.StatusSeeOther {
		t.Fatalf("a session past session_max: %d", p.status)
	}
	// Ended sessions are gone from the store, and so are ended sessions
	// nobody came back for, once garbage is collected.
	b3 := f.browser()
	b3.signIn("m@example.com", password, "")
	f.clk.Advance(time.Hour)
	if n, err := oauth.DeleteAllExpired(t.Context(), f.a.Store, 100, f.clk.Now); err != nil || n != 1 {
		t.Errorf("garbage collection deleted %d (%v), want the one abandoned session", n, err)
	}
}

func TestSignOutAndPasswordChangeEndSessions(t *testing.T) {
	f := newFixture(t)
	b, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	other := f.browser()
	other.signIn("m@example.com", password, "")
	if p := other.get("/clients"); p.status != http.StatusOK {
		t.Fatal(p.status)
	}

	b.get("/account")
	if p := b.post("/account/password", url.Values{"current_password": {"wrong password"}, "new_password": {"another long password"}, "repeat_password": {"another long password"}}); p.status != http.StatusUnauthorized {
		t.Errorf("password change with a wrong current password: %d", p.status)
	}
	f.clk.Advance(time.Second)
	p := b.post("/account/password", url.Values{"current_password": {password}, "new_password": {"another long password"}, "repeat_password": {"another long password"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("password change: %d %s", p.status, p.body)
	}
	if p.setCookies["__Host-tokengate-session"] == nil {
		t.Error("the browser that changed its password got no new session")
	}
	if p := b.get("/clients"); p.status != http.StatusOK {
		t.Errorf("the browser that changed its password: %d", p.status)
	}
	if p := other.get("/clients"); p.status != http.StatusSeeOther {
		t.Errorf("another session after the password change: %d, want ended", p.status)
	}

	// Sign-out deletes the session: its cookie replayed is nothing.
	cookie := *b.cookies["__Host-tokengate-session"]
	b.get("/clients")
	if p := b.post("/logout", nil); p.status != http.StatusSeeOther || p.header.Get("Location") != "/login?m=signed_out" {
		t.Fatalf("sign-out: %d %q", p.status, p.header.Get("Location"))
	}
	replay := f.browser()
	replay.cookies[cookie.Name] = &cookie
	if p := replay.get("/clients"); p.status != http.StatusSeeOther {
		t.Errorf("a signed-out session's cookie replayed: %d", p.status)
	}
}

func TestSignInThrottled(t *testing.T) {
	f := newFixture(t)
	f.account("m@example.com", admin.RoleMerchant, merchantLimits, false)
	b := f.browser()
	b.get("/login")
	var p *page
	for i := range 6 {
		p = b.post("/login", url.Values{"email": {"m@example.com"}, "password": {"wrong password " + string(rune('a'+i))}})
	}
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Fatalf("after 6 wrong passwords: %d, Retry-After %q", p.status, p.header.Get("Retry-After"))
	}
	if p := b.post("/login", url.Values{"email": {"m@example.com"}, "password": {password}}); p.status != http.StatusTooManyRequests {
		t.Errorf("the right password while locked: %d", p.status)
	}
	// Unknown emails answer like wrong passwords.
	b2 := f.browser()
	b2.get("/login")
	wrong := b2.post("/login", url.Values{"email": {"nobody@example.com"}, "password": {password}})
	if wrong.status != http.StatusUnauthorized || text(t, wrong.body, "error") != "Wrong email, password or code." {
		t.Errorf("an unknown email: %d %q", wrong.status, wrong.body)
	}
	f.clk.Advance(time.Hour)
	b.signIn("m@example.com", password, "")
}

func TestTOTPEnrollmentAndSignIn(t *testing.T) {
	f := newFixture(t)
	f.account("m@example.com", admin.RoleMerchant, merchantLimits, true)
	b := f.browser()
	p := b.signIn("m@example.com", password, "")
	if p.header.Get("Location") != "/totp" {
		t.Fatalf("first sign-in of an account that must enroll: to %q", p.header.Get("Location"))
	}
	for _, path := range []string{"/clients", "/clients/new", "/audit", "/account"} {
		if p := b.get(path); p.status != http.StatusSeeOther || p.header.Get("Location") != "/totp" {
			t.Errorf("GET %s before enrolling: %d to %q", path, p.status, p.header.Get("Location"))
		}
	}
	b.get("/totp")
	if p := b.post("/clients/new", url.Values{"name": {"x"}, "grant": {"client_credentials"}}); p.status != http.StatusSeeOther {
		t.Errorf("create before enrolling: %d", p.status)
	}
	p = b.post("/totp/enroll", nil)
	secret, uri := text(t, p.body, "totp-secret"), text(t, p.body, "totp-uri")
	if !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+secret) {
		t.Errorf("enrollment page: secret %q, URI %q", secret, uri)
	}
	if p.header.Get("Cache-Control") != "no-store" {
		t.Error("the page with the TOTP secret may be cached")
	}
	if p := b.post("/totp/confirm", url.Values{"code": {"000000"}, "current_password": {password}}); p.status != http.StatusBadRequest {
		t.Errorf("a wrong confirmation code: %d", p.status)
	}
	// The right code without the password does not turn it on: a stolen
	// session alone cannot end the owner's other sessions.
	for _, pw := range []string{"", "not-the-password"} {
		if p := b.post("/totp/confirm", url.Values{"code": {code(t, secret, f.clk.Now(), 0)}, "current_password": {pw}}); p.status != http.StatusUnauthorized {
			t.Errorf("confirmation with password %q: %d", pw, p.status)
		}
	}
	// Another browser signed in with the password alone meanwhile.
	other := f.browser()
	other.signIn("m@example.com", password, "")
	f.clk.Advance(time.Minute)
	now := f.clk.Now()
	if p := b.post("/totp/confirm", url.Values{"code": {code(t, secret, now, 0)}, "current_password": {password}}); p.status != http.StatusSeeOther {
		t.Fatalf("confirmation: %d %s", p.status, p.body)
	}
	if p := b.get("/clients"); p.status != http.StatusOK {
		t.Errorf("after enrolling: %d", p.status)
	}
	if p := other.get("/totp"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/login" {
		t.Errorf("a session begun with the password alone, after the second factor was turned on: %d to %q", p.status, p.header.Get("Location"))
	}

	// Signing in now needs the code; the confirmation's code is spent.
	b2 := f.browser()
	b2.get("/login")
	p = b2.post("/login", url.Values{"email": {"m@example.com"}, "password": {password}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, `id="code"`) || !strings.Contains(p.body, "authenticator app") {
		t.Errorf("sign-in without the code: %d", p.status)
	}
	if p := b2.post("/login", url.Values{"email": {"m@example.com"}, "password": {password}, "code": {code(t, secret, now, 0)}}); p.status != http.StatusUnauthorized {
		t.Errorf("sign-in with the spent code: %d", p.status)
	}
	f.clk.Advance(30 * time.Second)
	b2.signIn("m@example.com", password, code(t, secret, f.clk.Now(), 0))
	if p := b2.get("/clients"); p.status != http.StatusOK {
		t.Errorf("after sign-in with the code: %d", p.status)
	}
	// Re-enrolling over an enabled factor is refused.
	b2.get("/totp")
	if p := b2.post("/totp/enroll", nil); p.status != http.StatusConflict {
		t.Errorf("enrolling again: %d", p.status)
	}
}

func TestSecretShownOnceWithDownloads(t *testing.T) {
	f := newFixture(t)
	b, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	b.get("/clients/new")
	p := b.post("/clients/new", url.Values{"name": {"Shop"}, "grant": {"client_credentials"}, "scope": {"payments", "refunds"},
		"access_ttl": {"15m"}, "endpoint": {"/oauth/token"}})
	if p.status != http.StatusOK || p.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d, Cache-Control %q", p.status, p.header.Get("Cache-Control"))
	}
	id, secret := text(t, p.body, "client-id"), text(t, p.body, "client-secret")
	if len(secret) < 40 {
		t.Fatalf("secret %q", secret)
	}
	c, err := f.svc.GetClient(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Shop" || strings.Join(c.Scopes, " ") != "payments refunds" || time.Duration(c.AccessTTL) != 15*time.Minute ||
		strings.Join(c.Endpoints, " ") != "/oauth/token" {
		t.Errorf("created client: %+v", c)
	}
	js := download(t, p.body, "download-json", "application/json")
	var cred map[string]any
	if err := json.Unmarshal(js, &cred); err != nil {
		t.Fatal(err)
	}
	if cred["client_id"] != id || cred["client_secret"] != secret || cred["token_url"] != "https://tokengate.test/oauth/token" {
		t.Errorf("JSON download: %s", js)
	}
	env := string(download(t, p.body, "download-env", "text/plain"))
	if env != "TOKENGATE_CLIENT_ID='"+id+"'\nTOKENGATE_CLIENT_SECRET='"+secret+"'\nTOKENGATE_TOKEN_URL='https://tokengate.test/oauth/token'\n" {
		t.Errorf(".env download: %q", env)
	}
	for _, path := range []string{"/clients/" + id, "/clients", "/audit"} {
		if strings.Contains(b.get(path).body, secret) {
			t.Errorf("GET %s shows the secret again", path)
		}
	}
	// Rotation: a new secret, once; the previous one's end is shown.
	b.get("/clients/" + id)
	p = b.post("/clients/"+id+"/rotate", url.Values{"grace": {"24h"}})
	if p.status != http.StatusOK {
		t.Fatalf("rotate: %d", p.status)
	}
	next := text(t, p.body, "client-secret")
	if next == secret || !strings.Contains(text(t, p.body, "previous-expires"), f.clk.Now().Add(24*time.Hour).UTC().Format("2006-01-02 15:04")) {
		t.Errorf("rotation page: new secret %t, previous %q", next != secret, text(t, p.body, "previous-expires"))
	}
	var rotated map[string]any
	json.Unmarshal(download(t, p.body, "download-json", "application/json"), &rotated)
	if rotated["client_secret"] != next || rotated["previous_secret_expires_at"] == nil {
		t.Errorf("rotation download: %v", rotated)
	}
	c, _ = f.svc.GetClient(f.ctx, id)
	if len(c.Secrets) != 2 || c.Secrets[1].State != "previous" {
		t.Errorf("secrets after rotation: %+v", c.Secrets)
	}
	// Revoke and disable through the page.
	b.get("/clients/" + id)
	b.post("/clients/"+id+"/revoke-tokens", nil)
	if p := b.get("/clients/" + id + "?m=revoked"); !strings.Contains(p.body, "Every token of this client is revoked") ||
		text(t, p.body, "client-revoked") == "—" {
		t.Error("the client page does not show the revocation")
	}
	// Bad input is shown on the form, nothing is created.
	b.get("/clients/new")
	for form, want := range map[string]url.Values{
		"your account may not use the scope":          {"name": {"x"}, "grant": {"client_credentials"}, "scope": {"admin"}},
		"your account may not use the password grant": {"name": {"x"}, "grant": {"password"}},
		"access_ttl": {"name": {"x"}, "grant": {"client_credentials"}, "access_ttl": {"soon"}},
	} {
		if p := b.post("/clients/new", want); p.status != http.StatusBadRequest || !strings.Contains(p.body, form) {
			t.Errorf("create with %v: %d, want 400 saying %q", want, p.status, form)
		}
	}
}

// download returns the content of the data: link with id, checking its
// media type.
func download(t *testing.T, body, id, mediaType string) []byte {
	t.Helper()
	m := regexp.MustCompile(`href="data:([^;"]+)[^",]*;base64,([^"]+)" download="[^"]+" [^>]*id="` + id + `"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no data: link #%s in\n%s", id, body)
	}
	if m[1] != mediaType {
		t.Errorf("#%s: media type %q, want %q", id, m[1], mediaType)
	}
	b, err := base64.StdEncoding.DecodeString(m[2])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rsaPEM(t *testing.T, bits int) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// postFile posts the SNAP key form with a file, as a browser's upload.
func (b *browser) postFile(path, field, name string, content []byte) *page {
	b.f.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("csrf", b.csrf)
	fw, _ := mw.CreateFormFile(field, name)
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.f.srv.URL+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

func TestSNAPKeyUpload(t *testing.T) {
	f := newFixture(t)
	b, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	id, _ := b.createClient("Shop", nil)
	b.get("/clients/" + id)

	weak := rsaPEM(t, 1024)
	p := b.postFile("/clients/"+id+"/snap-key", "pem_file", "weak.pem", weak)
	if p.status != http.StatusBadRequest || !strings.Contains(text(t, p.body, "error"), "snap_public_key") {
		t.Errorf("a 1024-bit key: %d", p.status)
	}
	key := rsaPEM(t, 2048)
	p = b.postFile("/clients/"+id+"/snap-key", "pem_file", "key.pem", key)
	if p.status != http.StatusSeeOther {
		t.Fatalf("upload: %d %s", p.status, p.body)
	}
	block, _ := pem.Decode(key)
	sum := sha256.Sum256(block.Bytes)
	page := b.get(p.header.Get("Location"))
	if got := text(t, page.body, "snap-fingerprint"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("fingerprint shown %q, want %x", got, sum)
	}
	if !strings.Contains(text(t, page.body, "client-auth-methods"), "snap_signature") {
		t.Error("the client cannot use snap_signature after its key was registered")
	}
	// Pasted, the key replaces the first.
	key2 := rsaPEM(t, 3072)
	if p := b.post("/clients/"+id+"/snap-key", url.Values{"pem": {string(key2)}}); p.status != http.StatusSeeOther {
		t.Fatalf("paste: %d", p.status)
	}
	block, _ = pem.Decode(key2)
	sum = sha256.Sum256(block.Bytes)
	if c, _ := f.svc.GetClient(f.ctx, id); c.SNAPKeyFingerprint != hex.EncodeToString(sum[:]) {
		t.Error("the pasted key did not replace the uploaded one")
	}
	// A merchant without snap_keys may not.
	nb, _ := f.signedIn("nosnap@example.com", admin.RoleMerchant, admin.AccountLimits{Grants: []string{"client_credentials"}, MaxClients: 1})
	nid, _ := nb.createClient("No SNAP", url.Values{"grant": {"client_credentials"}})
	nb.get("/clients/" + nid)
	if p := nb.post("/clients/"+nid+"/snap-key", url.Values{"pem": {string(key)}}); p.status != http.StatusForbidden {
		t.Errorf("a merchant without snap_keys: %d", p.status)
	}
}

func TestUnavailableStore(t *testing.T) {
	f := newFixture(t)
	b, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	f.a.Store.Close()
	p := b.get("/clients")
	if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" {
		t.Errorf("a closed store: %d", p.status)
	}
}

// importClients imports clients with these IDs, named "Imported 0",
// "Imported 1"..., owned by account.
func (f *fixture) importClients(account string, ids ...string) {
	f.t.Helper()
	var recs []string
	for i, id := range ids {
		rec, err := json.Marshal(map[string]any{"client_id": id, "name": fmt.Sprintf("Imported %d", i),
			"grants": []string{"client_credentials"}, "owner_account": account})
		if err != nil {
			f.t.Fatal(err)
		}
		recs = append(recs, string(rec))
	}
	if _, err := f.svc.ImportClients(f.ctx, strings.NewReader("["+strings.Join(recs, ",\n")+"]"), admin.ImportOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// TestImportedClientIDsWorkInLinks: an imported client keeps its ID,
// which may hold '/', '?', '#' or '%'. Every link and form of the portal
// that puts an ID in a path escapes it, and the routes find the client by
// it: no link is cut short, none leads to another client (here "acme",
// where "acme/prod" and "acme?x" unescaped would lead).
func TestImportedClientIDsWorkInLinks(t *testing.T) {
	f := newFixture(t)
	limits := merchantLimits
	limits.MaxClients = 10
	m, acc := f.signedIn("m@example.com", admin.RoleMerchant, limits)
	ids := []string{"acme/prod", "acme?x", "a#b", "50%off", "x/../acme", "acme"}
	f.importClients(acc.ID, ids...)
	untouched := func(id string) bool {
		c, err := f.svc.GetClient(f.ctx, id)
		return err == nil && c.TokensNotBefore == nil && len(c.Secrets) == 0
	}
	for i, id := range ids {
		escaped := "/clients/" + url.PathEscape(id)
		list := m.get("/clients")
		link := regexp.MustCompile(`<a href="([^"]*)">Imported ` + strconv.Itoa(i) + `</a>`).FindStringSubmatch(list.body)
		if link == nil {
			t.Fatalf("no link to %q in the list:\n%s", id, list.body)
		}
		href := html.UnescapeString(link[1])
		p := m.get(href)
		if p.status != http.StatusOK || html.UnescapeString(text(t, p.body, "client-id")) != id {
			t.Errorf("the list's link to client %q is %q: status %d, page of %q", id, href, p.status, text(t, p.body, "client-id"))
			continue
		}
		if href != escaped {
			t.Errorf("the list's link to %q is %q, want %q", id, href, escaped)
		}
		actions := map[string]string{}
		for _, a := range regexp.MustCompile(`action="([^"]*)"`).FindAllStringSubmatch(p.body, -1) {
			if a := html.UnescapeString(a[1]); a != "/logout" {
				actions[a[strings.LastIndex(a, "/")+1:]] = a
			}
		}
		for _, form := range []string{"rotate", "snap-key", "revoke-tokens", "disable"} {
			if actions[form] != escaped+"/"+form {
				t.Errorf("client %q: the %s form posts to %q, want %q", id, form, actions[form], escaped+"/"+form)
			}
		}
		if id != "acme" && !untouched("acme") {
			t.Fatal("client acme was changed before its turn")
		}
		// The forms reach this client, and their redirects come back to it.
		r := m.post(actions["revoke-tokens"], nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != escaped+"?m=revoked" {
			t.Errorf("client %q: revoke: %d to %q", id, r.status, r.header.Get("Location"))
		}
		m.get(href)
		rot := m.post(actions["rotate"], url.Values{"grace": {"1h"}})
		if rot.status != http.StatusOK || html.UnescapeString(text(t, rot.body, "client-id")) != id {
			t.Errorf("client %q: rotate: %d", id, rot.status)
		} else if back := regexp.MustCompile(`<a href="([^"]*)" id="client-link">`).FindStringSubmatch(rot.body); back == nil || html.UnescapeString(back[1]) != escaped {
			t.Errorf("client %q: the secret page links back to %v, want %q", id, back, escaped)
		}
		if c, err := f.svc.GetClient(f.ctx, id); err != nil || c.TokensNotBefore == nil || len(c.Secrets) != 1 {
			t.Errorf("client %q was not revoked and rotated by its own forms: %+v %v", id, c, err)
		}
		// The audit log links its events to the client's page.
		audit := m.get("/audit?client=" + url.QueryEscape(id))
		links := regexp.MustCompile(`<a href="(/clients/[^"]*)"><code>`).FindAllStringSubmatch(audit.body, -1)
		if len(links) == 0 {
			t.Errorf("client %q: no event links in its audit log", id)
		}
		for _, l := range links {
			if html.UnescapeString(l[1]) != escaped {
				t.Errorf("client %q: an audit event links to %q", id, html.UnescapeString(l[1]))
			}
		}
	}
}

// TestAuditOlderEventsLinkKeepsFilter: the "Older events" link of an
// audit log filtered by a client leads to the next page of that client's
// events, not of everyone's.
func TestAuditOlderEventsLinkKeepsFilter(t *testing.T) {
	f := newFixture(t)
	b, _ := f.signedIn("ops@example.com", admin.RoleOperator, admin.AccountLimits{})
	x, _, err := f.svc.CreateClient(f.ctx, admin.ClientSpec{Name: "X", Grants: []string{"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	y, _, err := f.svc.CreateClient(f.ctx, admin.ClientSpec{Name: "Y", Grants: []string{"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 60 { // more than a page (50) of X's events
		if _, err := f.svc.RevokeClientTokens(f.ctx, x.ClientID); err != nil {
			t.Fatal(err)
		}
	}
	p := b.get("/audit?client=" + x.ClientID)
	if strings.Contains(p.body, y.ClientID) {
		t.Fatal("the first page filtered by X shows Y")
	}
	m := regexp.MustCompile(`<a href="(/audit\?before=[^"]*)">Older events</a>`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no Older events link:\n%s", p.body)
	}
	next := html.UnescapeString(m[1])
	p2 := b.get(next)
	if p2.status != http.StatusOK {
		t.Fatalf("GET %s: %d", next, p2.status)
	}
	if strings.Contains(p2.body, y.ClientID) || !strings.Contains(p2.body, "Events of client <code>"+x.ClientID+"</code>") {
		t.Errorf("the Older events link %q leads to a page not filtered by X (shows Y's events: %t)", next, strings.Contains(p2.body, y.ClientID))
	}
	// X's 61 events: the 50 newest revocations, then 10 and its creation.
	if n := strings.Count(p2.body, `<td class="action">client.revoke_tokens</td>`); n != 10 || !strings.Contains(p2.body, `<td class="action">client.create</td>`) {
		t.Errorf("the second page has %d of X's revocations (want 10) and its creation: %t", n, strings.Contains(p2.body, `<td class="action">client.create</td>`))
	}
}

// TestRotationGraceOnlyTheOfferedChoices: the rotate form takes only the
// graces it offers (at most 30 days, as the README promises), not any
// duration the service would accept.
func TestRotationGraceOnlyTheOfferedChoices(t *testing.T) {
	f := newFixture(t)
	m, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	id, _ := m.createClient("shop", nil)
	for _, grace := range []string{"2136h", "721h", "30m", "", "24h0m0s"} {
		m.get("/clients/" + id)
		p := m.post("/clients/"+id+"/rotate", url.Values{"grace": {grace}})
		if p.status != http.StatusBadRequest || !strings.Contains(text(t, p.body, "error"), "at most 30 days") || !strings.Contains(p.body, `id="rotate-form"`) {
			t.Errorf("rotate with grace %q: %d, want 400 with the error on the client's page", grace, p.status)
		}
	}
	if c, _ := f.svc.GetClient(f.ctx, id); len(c.Secrets) != 1 {
		t.Fatalf("refused graces rotated the secret: %+v", c.Secrets)
	}
	m.get("/clients/" + id)
	if p := m.post("/clients/"+id+"/rotate", url.Values{"grace": {"720h"}}); p.status != http.StatusOK {
		t.Fatalf("rotate with the longest grace offered: %d", p.status)
	}
	c, _ := f.svc.GetClient(f.ctx, id)
	if len(c.Secrets) != 2 || c.Secrets[1].ExpiresAt == nil || !c.Secrets[1].ExpiresAt.Equal(f.clk.Now().Add(720*time.Hour)) {
		t.Errorf("secrets after a 30-day grace: %+v", c.Secrets)
	}
}

// TestDoubleSubmittedRotationRefused: the rotate form is single-use. The
// same form sent twice (a double click, a reload answering "resend?")
// rotates once; the second is refused, and the secret in use keeps
// working for the grace chosen.
func TestDoubleSubmittedRotationRefused(t *testing.T) {
	f := newFixture(t)
	m, _ := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	id, inUse := m.createClient("shop", nil)
	m.get("/clients/" + id)
	if m.once == "" {
		t.Fatal("the rotate form has no one-time value")
	}
	form := url.Values{"grace": {"24h"}, "csrf": {m.csrf}, "once": {m.once}}
	first := m.post("/clients/"+id+"/rotate", form)
	second := m.post("/clients/"+id+"/rotate", form)
	if first.status != http.StatusOK || second.status != http.StatusConflict || !strings.Contains(text(t, second.body, "error"), "already sent") {
		t.Fatalf("the same rotate form twice: %d, %d; want 200, 409 with an explanation", first.status, second.status)
	}
	if strings.Contains(second.body, `id="client-secret"`) {
		t.Error("the refused submission shows a secret")
	}
	if err := f.a.Engine.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, e := f.a.Engine.AuthenticateClient(t.Context(), oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: id, Secret: inUse}, ""); e != nil {
		t.Errorf("the secret in use stopped working after a double submit with 24h grace: %v", e)
	}
	// Without a one-time value, or with a made-up one, nothing rotates.
	for _, once := range []string{"", "x"} {
		if p := m.post("/clients/"+id+"/rotate", url.Values{"grace": {"24h"}, "once": {once}}); p.status != http.StatusBadRequest {
			t.Errorf("rotate with one-time value %q: %d", once, p.status)
		}
	}
	if c, _ := f.svc.GetClient(f.ctx, id); len(c.Secrets) != 2 {
		t.Errorf("secrets after one rotation: %+v", c.Secrets)
	}
	// The page, loaded again, has a new form that rotates.
	m.get("/clients/" + id)
	if p := m.post("/clients/"+id+"/rotate", url.Values{"grace": {"24h"}}); p.status != http.StatusOK {
		t.Errorf("a new rotate form: %d", p.status)
	}
}

// TestSignInRacingPasswordChangeEndsSession: a sign-in whose password
// check passed just before the account's password was changed (on
// another node, say) gets a session that the change ends: the session
// counts as begun when its credentials were checked, not after.
func TestSignInRacingPasswordChangeEndsSession(t *testing.T) {
	f := newFixture(t)
	acc := f.account("m@example.com", admin.RoleMerchant, merchantLimits, false)
	const changed = "another long password"
	race := true
	portal.SetAfterSignInCheck(f.p, func() {
		if race {
			race = false
			f.clk.Advance(time.Second)
			if _, err := f.svc.SetAccountPassword(f.ctx, acc.ID, changed); err != nil {
				t.Error(err)
			}
		}
	})
	b := f.browser()
	b.signIn("m@example.com", password, "")
	if p := b.get("/clients"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/login") {
		t.Errorf("the session of a sign-in checked before a password change: %d to %q, want ended", p.status, p.header.Get("Location"))
	}
	// A sign-in with the new password, after the change, lasts.
	f.clk.Advance(time.Second)
	b2 := f.browser()
	b2.signIn("m@example.com", changed, "")
	if p := b2.get("/clients"); p.status != http.StatusOK {
		t.Errorf("a sign-in after the change: %d", p.status)
	}
}

// TestEnvDownloadSafeToSource: the .env download quotes its values, so
// sourcing it in a shell runs nothing an imported client ID holds, and
// the variables hold the values exactly.
func TestEnvDownloadSafeToSource(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	f := newFixture(t)
	m, acc := f.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	hostile := `x'$(touch pwned1)'"$(touch pwned2)"` + "`touch pwned3`" + `;touch pwned4 #\ $HOME`
	f.importClients(acc.ID, hostile)
	m.get("/clients/" + url.PathEscape(hostile))
	p := m.post("/clients/"+url.PathEscape(hostile)+"/rotate", url.Values{"grace": {"0s"}})
	if p.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", p.status, p.body)
	}
	secret := text(t, p.body, "client-secret")
	env := download(t, p.body, "download-env", "text/plain")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "creds.env"), env, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, "-c", `. ./creds.env && printf '%s\n%s\n%s' "$TOKENGATE_CLIENT_ID" "$TOKENGATE_CLIENT_SECRET" "$TOKENGATE_TOKEN_URL"`)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sourcing the .env: %v: %s\n%s", err, out, env)
	}
	if want := hostile + "\n" + secret + "\nhttps://tokengate.test/oauth/token"; string(out) != want {
		t.Errorf("the sourced variables:\n%s\nwant\n%s", out, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("sourcing the .env ran commands: %d files in its directory", len(ents))
	}
	// The download's file names are plain.
	for _, m := range regexp.MustCompile(`download="([^"]*)"`).FindAllStringSubmatch(p.body, -1) {
		if name := html.UnescapeString(m[1]); !regexp.MustCompile(`^tokengate-[A-Za-z0-9._-]+\.(json|env)$`).MatchString(name) {
			t.Errorf("download file name %q", name)
		}
	}
}

// TestSignInLimitedPerSourceAddress: one address may try to sign in only
// so often, whatever emails it tries (the lockout is per account): past
// the burst it gets 429 with Retry-After and the sign-in page, even with
// the right password; other addresses are not affected, and an IPv6
// address counts as its /64.
func TestSignInLimitedPerSourceAddress(t *testing.T) {
	f := newFixture(t)
	f.account("m@example.com", admin.RoleMerchant, merchantLimits, false)
	handler := f.srv.Config.Handler
	post := func(addr string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "http://portal.test/login", strings.NewReader("email=x%40example.com&password=guess"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = addr
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w
	}
	const burst = 20
	for _, c := range []struct{ first, same, other string }{
		{"198.51.100.7:1000", "[::ffff:198.51.100.7]:2000", "198.51.100.8:1000"},
		{"[2001:db8::1]:1000", "[2001:db8::2]:3000", "[2001:db8:0:1::1]:1000"},
	} {
		for i := range burst {
			if w := post(c.first); w.Code != http.StatusForbidden { // no CSRF token: refused, but an attempt
				t.Fatalf("attempt %d from %s: %d", i+1, c.first, w.Code)
			}
		}
		w := post(c.same)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "6" || !strings.Contains(w.Body.String(), `id="login-form"`) {
			t.Errorf("attempt %d from %s (as %s): %d, Retry-After %q; want 429 after 6 s with the sign-in form",
				burst+1, c.first, c.same, w.Code, w.Header().Get("Retry-After"))
		}
		if w := post(c.other); w.Code != http.StatusForbidden {
			t.Errorf("an attempt from %s while %s is limited: %d", c.other, c.first, w.Code)
		}
	}

	// Through the sign-in form: new emails every time, then the right
	// password, refused without a session until the bucket refills.
	b := f.browser()
	b.get("/login")
	for i := range burst {
		if p := b.post("/login", url.Values{"email": {fmt.Sprintf("nobody-%d@example.com", i)}, "password": {"guess"}}); p.status != http.StatusUnauthorized {
			t.Fatalf("sign-in %d: %d", i+1, p.status)
		}
	}
	p := b.post("/login", url.Values{"email": {"m@example.com"}, "password": {password}})
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || !strings.Contains(text(t, p.body, "error"), "Too many sign-in attempts") ||
		p.setCookies["__Host-tokengate-session"] != nil {
		t.Errorf("the right password past the limit: %d, Retry-After %q, session %t", p.status, p.header.Get("Retry-After"), p.setCookies["__Host-tokengate-session"] != nil)
	}
	f.clk.Advance(6 * time.Second)
	b.signIn("m@example.com", password, "")
	if p := b.post("/login", url.Values{"email": {"m@example.com"}, "password": {password}}); p.status != http.StatusTooManyRequests {
		t.Errorf("the attempt after the refilled one: %d", p.status)
	}
}
