package portal_test

import (
	"context"
	"encoding/base32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/app"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/totp"
	"github.com/tokengate/tokengate/portal"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// fixture is a portal over real HTTP on the admin service and store a
// node builds (app.OpenAdmin), everything on one fake clock.
type fixture struct {
	t   testing.TB
	p   *portal.Portal
	a   *app.Admin
	svc *admin.Service
	clk *clock
	ctx context.Context // an operator at the CLI
	srv *httptest.Server
	cfg config.Config
}

const password = "a long enough password"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	clk := &clock{now: time.Now().Truncate(time.Second)}
	cfg, err := config.Load("", nil, config.Overrides{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "https://tokengate.test"
	cfg.Portal.SessionIdle, cfg.Portal.SessionMax = 30*time.Minute, 2*time.Hour
	cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Path: "/snap/v1.0/access-token/b2b", Dialect: "snap-b2b"})
	a, err := app.OpenAdmin(t.Context(), cfg, app.Deps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	p, err := portal.New(cfg, portal.Deps{Admin: a.Admin, Sessions: a.Store, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &fixture{t: t, p: p, a: a, svc: a.Admin, clk: clk, ctx: admin.WithActor(t.Context(), admin.CLIActor()), srv: srv, cfg: cfg}
}

// account creates an account through the service (as the CLI would).
func (f *fixture) account(email, role string, limits admin.AccountLimits, totpRequired bool) *admin.AccountView {
	f.t.Helper()
	v, err := f.svc.CreateAccount(f.ctx, admin.AccountSpec{Email: email, Password: password, Role: role, Limits: limits, TOTPRequired: totpRequired})
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

var merchantLimits = admin.AccountLimits{Grants: []string{"client_credentials"}, Scopes: []string{"payments", "refunds"}, MaxClients: 3, SNAPKeys: true}

// browser is a minimal browser: it keeps cookies by name (all for the
// one test host, Secure ones included, as browsers do for 127.0.0.1),
// follows no redirects, and remembers the last page's CSRF token and
// rotate form's one-time value.
type browser struct {
	f       *fixture
	cookies map[string]*http.Cookie
	csrf    string
	once    string
}

func (f *fixture) browser() *browser { return &browser{f: f, cookies: map[string]*http.Cookie{}} }

// page is a response as a test sees it.
type page struct {
	status int
	header http.Header
	body   string
	// setCookies are the cookies the response set, by name.
	setCookies map[string]*http.Cookie
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	onceField = regexp.MustCompile(`name="once" value="([^"]+)"`)
)

func (b *browser) do(req *http.Request) *page {
	b.f.t.Helper()
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.f.t.Fatal(err)
	}
	p := &page{status: res.StatusCode, header: res.Header, body: string(body), setCookies: map[string]*http.Cookie{}}
	for _, c := range res.Cookies() {
		p.setCookies[c.Name] = c
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	if m := csrfField.FindStringSubmatch(p.body); m != nil {
		b.csrf = m[1]
	}
	if m := onceField.FindStringSubmatch(p.body); m != nil {
		b.once = m[1]
	}
	return p
}

func (b *browser) get(path string) *page {
	b.f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.f.srv.URL+path, nil)
	if err != nil {
		b.f.t.Fatal(err)
	}
	return b.do(req)
}

// post sends form with the last page's CSRF token (unless form has one),
// and to a rotate form, the last page's one-time value (unless form has
// one).
func (b *browser) post(path string, form url.Values) *page {
	b.f.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	if _, ok := form["once"]; !ok && strings.HasSuffix(path, "/rotate") {
		form.Set("once", b.once)
	}
	req, err := http.NewRequest(http.MethodPost, b.f.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// signIn signs in through the sign-in form and fails the test unless it
// is sent on (303).
func (b *browser) signIn(email, pw, code string) *page {
	b.f.t.Helper()
	b.get("/login")
	p := b.post("/login", url.Values{"email": {email}, "password": {pw}, "code": {code}})
	if p.status != http.StatusSeeOther {
		b.f.t.Fatalf("sign-in of %s: status %d: %s", email, p.status, p.body)
	}
	return p
}

// signedIn returns a browser signed in as a new account.
func (f *fixture) signedIn(email, role string, limits admin.AccountLimits) (*browser, *admin.AccountView) {
	f.t.Helper()
	acc := f.account(email, role, limits, false)
	b := f.browser()
	b.signIn(email, password, "")
	b.get("/clients") // a page with the session's CSRF token
	return b, acc
}

// createClient creates a client through the form and returns its ID and
// secret as the page shows them.
func (b *browser) createClient(name string, form url.Values) (id, secret string) {
	b.f.t.Helper()
	b.get("/clients/new")
	if form == nil {
		form = url.Values{"grant": {"client_credentials"}, "scope": {"payments"}}
	}
	form.Set("name", name)
	p := b.post("/clients/new", form)
	if p.status != http.StatusOK {
		b.f.t.Fatalf("create client: status %d: %s", p.status, p.body)
	}
	return text(b.f.t, p.body, "client-id"), text(b.f.t, p.body, "client-secret")
}

// text returns the text of the element with id in body.
func text(t testing.TB, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no element #%s in the page:\n%s", id, body)
	}
	return m[1]
}

// code is the TOTP code of secret (base32) for the step now+steps.
func code(t *testing.T, secret string, now time.Time, steps int64) string {
	t.Helper()
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return totp.Code(raw, totp.Step(now)+steps)
}
