package e2e

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/internal/totp"
)

// chromiumPath finds Debian's chromium. Outside CI a machine without it
// skips the browser tests (saying so); under CI it fails them, since
// .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI is set: the browser tests must run (.ci/run installs it: apt-get install -y chromium)")
	}
	t.Skip("SKIPPED: chromium is not installed (apt-get install -y chromium); under CI this test fails instead")
	return ""
}

// artifactsDir is where the test's screenshots go: $TOKENGATE_ARTIFACTS
// (which .ci/run sets) or a temporary directory.
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("TOKENGATE_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots of the portal's pages: %s", dir)
	return dir
}

// tab is one browser tab on the portal, with the test's helpers.
type tab struct {
	t     *testing.T
	ctx   context.Context
	base  string // the portal's URL
	shots string // the screenshots' directory
	n     int    // screenshots taken
}

// newBrowser starts headless Chromium with a fresh profile and returns a
// tab in it; the browser ends with the test.
func newBrowser(t *testing.T, base, shots string) *tab {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no deadline
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, ctx: ctx, base: base, shots: shots}
}

// do runs actions with a bound, failing the test on an error.
func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// load runs actions that navigate (a link, a form) and returns the
// status of the page they lead to.
func (b *tab) load(what string, actions ...chromedp.Action[chromedp.Void]) int64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return res.Status
}

// open navigates to the portal's path and returns the page's status.
func (b *tab) open(path string) int64 {
	b.t.Helper()
	return b.load("open "+path, chromedp.Navigate(b.base+path))
}

// submit clicks a form's button and fails the test unless the page it
// leads to is answered with status want.
func (b *tab) submit(what, button string, want int64) {
	b.t.Helper()
	if got := b.load(what, chromedp.Click(chromedp.ID(button))); got != want {
		b.t.Fatalf("%s: status %d, want %d; page: %s", what, got, want, b.text("main"))
	}
}

// fill sets form fields by element ID.
func (b *tab) fill(fields map[string]string) {
	b.t.Helper()
	var acts []chromedp.Action[chromedp.Void]
	for id, v := range fields {
		if v != "" { // chromedp cannot set "" (and the fields start empty)
			acts = append(acts, chromedp.SetValue(chromedp.ID(id), v))
		}
	}
	b.do("fill the form", acts...)
}

// text is the text of the element the CSS selector finds.
func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// path is the current page's path.
func (b *tab) path() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return u.Path
}

// shot saves a screenshot of the whole page as the next numbered PNG.
func (b *tab) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *tab) signIn(email, password, code string) {
	b.t.Helper()
	b.open("/login")
	b.fill(map[string]string{"email": email, "password": password, "code": code})
	b.submit("sign in as "+email, "sign-in", http.StatusOK)
}

func (b *tab) signOut() {
	b.t.Helper()
	b.submit("sign out", "sign-out", http.StatusOK)
	if b.path() != "/login" {
		b.t.Fatalf("after sign-out: on %s", b.path())
	}
}

// TestPortalInABrowser drives the merchant portal in a real headless
// Chromium: an operator (bootstrapped with the CLI) creates two merchant
// accounts; the first enrolls a second factor and signs in with it,
// creates a client, copies the secret the page shows and gets tokens with
// it, downloads the credentials, rotates the secret (both work during the
// grace), registers a SNAP key and gets a SNAP token signed with its
// private key, revokes its tokens and reads its audit log; the second
// cannot see the first one's client, not in its list and not at its URL.
func TestPortalInABrowser(t *testing.T) {
	chromiumPath(t)
	started := time.Now()
	e := start(t, func(c *config.Config) {
		snapEndpoints(c)
		c.Portal.Listen = "127.0.0.1:0"
	})
	base := "http://" + e.srv.PortalAddr()
	b := newBrowser(t, base, artifactsDir(t, "portal"))
	ctx := t.Context()

	// An operator, bootstrapped from the command line.
	const opsPassword, aPassword, bPassword = "operator password 1", "merchant A password", "merchant B password"
	e.remember(opsPassword, aPassword, bPassword)
	e.mustRun(opsPassword+"\n", "account", "create", "--email", "ops@provider.example", "--role", "operator")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")

	b.open("/login")
	b.shot("sign-in")
	b.signIn("ops@provider.example", opsPassword, "")
	if b.path() != "/clients" {
		t.Fatalf("operator signed in: on %s", b.path())
	}
	// Chromium keeps the session cookie over plain HTTP on 127.0.0.1 (a
	// potentially trustworthy origin), with every attribute.
	cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "__Host-tokengate-session" {
			session = c
		}
	}
	if session == nil || !session.Secure || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict || !session.Session || session.Path != "/" {
		t.Fatalf("Chromium's session cookie: %+v", session)
	}

	// The operator creates merchant A (second factor required, SNAP keys
	// allowed) and merchant B.
	b.open("/accounts")
	b.fill(map[string]string{"account-email": "finance@merchant-a.example", "account-password": aPassword,
		"account-scopes": "payments refunds", "account-max-clients": "2"})
	b.do("allow SNAP keys", chromedp.Click(chromedp.ID("account-snap-keys")))
	b.shot("operator-new-account")
	b.submit("create merchant A", "create-account", http.StatusOK)
	if !strings.Contains(b.text("#notice"), "account is created") {
		t.Fatalf("after creating merchant A: %s", b.text("main"))
	}
	b.shot("operator-account")
	b.open("/accounts")
	b.fill(map[string]string{"account-email": "ops@merchant-b.example", "account-password": bPassword,
		"account-scopes": "payments", "account-max-clients": "1"})
	b.do("no second factor for B", chromedp.Click(chromedp.ID("account-totp-required")))
	b.submit("create merchant B", "create-account", http.StatusOK)
	b.open("/accounts")
	b.shot("operator-accounts")
	b.signOut()

	// Merchant A's first sign-in: password, then enrolment of the second
	// factor it must have.
	b.signIn("finance@merchant-a.example", aPassword, "")
	if b.path() != "/totp" {
		t.Fatalf("merchant A's first sign-in: on %s, want the enrolment page", b.path())
	}
	b.shot("totp-required")
	b.submit("start enrolment", "totp-start", http.StatusOK)
	secretText, uri := b.text("#totp-secret"), b.text("#totp-uri")
	e.remember(secretText)
	if !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+secretText) {
		t.Fatalf("enrolment: secret %q, URI %q", secretText, uri)
	}
	b.shot("totp-enrol")
	totpSecret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secretText)
	if err != nil {
		t.Fatal(err)
	}
	b.fill(map[string]string{"totp-password": aPassword, "totp-code": totp.Code(totpSecret, totp.Step(time.Now()))})
	b.submit("confirm the second factor", "totp-confirm-button", http.StatusOK)
	if b.path() != "/clients" {
		t.Fatalf("after enrolment: on %s: %s", b.path(), b.text("main"))
	}
	b.signOut()

	// Signing in now takes password and code (the next step's: the
	// confirmation spent this one).
	b.open("/login")
	b.fill(map[string]string{"email": "finance@merchant-a.example", "password": aPassword})
	b.submit("sign in without the code", "sign-in", http.StatusUnauthorized)
	b.shot("sign-in-needs-code")
	b.signIn("finance@merchant-a.example", aPassword, totp.Code(totpSecret, totp.Step(time.Now())+1))
	if b.path() != "/clients" {
		t.Fatalf("merchant A signed in with its code: on %s", b.path())
	}
	b.shot("clients-empty")

	// A creates a client and copies the secret from the page.
	b.open("/clients/new")
	b.fill(map[string]string{"client-name": "Merchant A checkout", "client-ttl": "15m"})
	b.do("choose the scope", chromedp.Click(chromedp.CSS(`input[name=scope][value=payments]`)))
	b.shot("client-new")
	b.submit("create the client", "create-client", http.StatusOK)
	b.shot("client-secret")
	clientID, secret1 := b.text("#client-id"), b.text("#client-secret")
	e.remember(secret1)
	if len(clientID) != 32 || len(secret1) < 43 {
		t.Fatalf("the page shows client %q, secret of %d characters", clientID, len(secret1))
	}
	tokenURL := e.base + "/oauth/token"
	if got := b.text("#token-url"); got != "http://tokengate.test/oauth/token" {
		t.Errorf("the page's token URL: %q", got)
	}

	// The JSON download holds the same credentials, from this response.
	dl := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl, EventsEnabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	progress := chromedp.BrowserEvents(b.ctx, browser.DownloadProgress)
	b.do("download the JSON", chromedp.Click(chromedp.ID("download-json")))
	waitDownload(t, progress)
	raw, err := os.ReadFile(filepath.Join(dl, "tokengate-"+clientID+".json"))
	if err != nil {
		t.Fatalf("the JSON download: %v", err)
	}
	var cred map[string]any
	if err := json.Unmarshal(raw, &cred); err != nil || cred["client_id"] != clientID || cred["client_secret"] != secret1 {
		t.Errorf("the JSON download: %s", raw)
	}
	progress = chromedp.BrowserEvents(b.ctx, browser.DownloadProgress)
	b.do("download the .env", chromedp.Click(chromedp.ID("download-env")))
	waitDownload(t, progress)
	raw, err = os.ReadFile(filepath.Join(dl, "tokengate-"+clientID+".env"))
	if err != nil || !strings.Contains(string(raw), "TOKENGATE_CLIENT_SECRET='"+secret1+"'\n") {
		t.Errorf("the .env download: %q %v", raw, err)
	}

	// The copied secret gets a real token.
	ccToken := func(id, secret string) (*oauth2.Token, error) {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL, Scopes: []string{"payments"},
			AuthStyle: oauth2.AuthStyleInHeader}
		tok, err := cc.Token(ctx)
		if err == nil {
			e.remember(tok.AccessToken)
		}
		return tok, err
	}
	tok1, err := ccToken(clientID, secret1)
	if err != nil {
		t.Fatalf("a token with the secret copied from the page: %v", err)
	}
	if !e.active(tok1.AccessToken, rsID, rsSecret) {
		t.Fatal("the token is not active")
	}

	// Rotation with a grace: the new secret works, and the old one still
	// does during the grace.
	b.open("/clients/" + clientID)
	b.shot("client")
	b.do("choose the grace", chromedp.SetValue(chromedp.ID("rotate-grace"), "24h"))
	b.submit("rotate the secret", "rotate", http.StatusOK)
	b.shot("client-rotated")
	secret2 := b.text("#client-secret")
	e.remember(secret2)
	if secret2 == secret1 || !strings.HasPrefix(b.text("#previous-expires"), "works until") {
		t.Fatalf("rotation page: new secret %t, previous %q", secret2 != secret1, b.text("#previous-expires"))
	}
	eventually(t, "the rotated secret works", func() bool { _, err := ccToken(clientID, secret2); return err == nil })
	if _, err := ccToken(clientID, secret1); err != nil {
		t.Errorf("the previous secret during the grace: %v", err)
	}

	// A SNAP key (PEM made here) uploaded as a file; then a real SNAP
	// token, signed with its private key.
	key := testSnapKey(t)
	_, pubPath := writeKeys(t, key)
	b.open("/clients/" + clientID)
	b.do("choose the PEM file", chromedp.SetUploadFiles(chromedp.ID("snap-file"), []string{pubPath}))
	b.submit("upload the SNAP key", "snap-upload", http.StatusOK)
	b.shot("client-snap-key")
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	if got := b.text("#snap-fingerprint"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("fingerprint on the page %q, want %x", got, sum)
	}
	snapToken := func(k *rsa.PrivateKey) *response {
		ts := uniqueTimestamp()
		sig, err := snap.Sign(k, clientID, ts)
		if err != nil {
			t.Fatal(err)
		}
		return e.snapRequest("/v1.0/access-token/b2b", clientID, ts, sig, `{"grantType":"client_credentials","additionalInfo":{}}`)
	}
	var sr *response
	eventually(t, "a SNAP token signed with the uploaded key's private key", func() bool {
		sr = snapToken(key)
		return sr.status == http.StatusOK
	})
	if sr.str("responseCode") != "2007300" || sr.str("accessToken") == "" {
		t.Fatalf("SNAP token: %d %s", sr.status, sr.body)
	}
	snapTok := sr.str("accessToken")

	// Revoke every token of the client from the page.
	b.open("/clients/" + clientID)
	b.submit("revoke the client's tokens", "revoke-tokens", http.StatusOK)
	if !strings.Contains(b.text("#notice"), "revoked") {
		t.Errorf("after revoking: %s", b.text("main"))
	}
	eventually(t, "the client's tokens revoked", func() bool {
		return !e.active(tok1.AccessToken, rsID, rsSecret) && !e.active(snapTok, rsID, rsSecret)
	})

	// The audit log shows what A did to its client.
	b.open("/audit?client=" + clientID)
	b.shot("audit")
	log := b.text("#audit")
	for _, action := range []string{"client.create", "client.rotate_secret", "client.set_snap_key", "client.revoke_tokens"} {
		if !strings.Contains(log, action) {
			t.Errorf("A's audit log misses %s", action)
		}
	}
	b.open("/clients")
	b.shot("clients")
	b.open("/account")
	b.shot("account")
	b.signOut()

	// Merchant B sees none of it: not in its list, not at its URL.
	b.signIn("ops@merchant-b.example", bPassword, "")
	if b.path() != "/clients" {
		t.Fatalf("merchant B signed in: on %s", b.path())
	}
	if list := b.text("main"); strings.Contains(list, clientID) || strings.Contains(list, "Merchant A") {
		t.Errorf("B's client list shows A's client: %s", list)
	}
	if status := b.open("/clients/" + clientID); status != http.StatusNotFound {
		t.Errorf("A's client page opened by B: status %d, want 404", status)
	}
	if msg := b.text("#message"); msg != "Not found." {
		t.Errorf("A's client page opened by B says %q", msg)
	}
	b.shot("other-merchant-not-found")
	if status := b.open("/audit?client=" + clientID); status != http.StatusOK || strings.Contains(b.text("main"), "client.create") {
		t.Errorf("B's audit log of A's client shows events")
	}
	if elapsed := time.Since(started); elapsed > 60*time.Second {
		t.Errorf("the browser test took %v; keep it under a minute", elapsed)
	}
}

// waitDownload waits for a download to complete.
func waitDownload(t *testing.T, progress iter.Seq2[browser.EventDownloadProgress, error]) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for ev, err := range progress {
			if err != nil {
				done <- err
				return
			}
			switch ev.State {
			case browser.DownloadProgressStateCompleted:
				done <- nil
				return
			case browser.DownloadProgressStateCanceled:
				done <- fmt.Errorf("download canceled")
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no download completed within 10 s")
	}
}
