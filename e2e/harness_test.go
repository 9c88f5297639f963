// Package e2e drives a real tokengate server over real HTTP: the server is
// started in-process on a random port with a fresh embedded store, and
// operators' commands run through the real CLI on the same data directory.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/app"
	"github.com/tokengate/tokengate/cli"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/server"
)

// syncBuffer collects the server's log output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	t       *testing.T
	dir     string
	cfgFile string
	node    *app.Node
	srv     *server.Server
	now     func() time.Time // the server's clock (nil: the real one)
	base    string
	ops     string // the operations listener: /metrics, /debug/pprof/
	admin   string // the admin API's base URL; "" without admin.listen
	logs    *syncBuffer
	mu      sync.Mutex
	secrets map[string]struct{} // every secret value the test saw or sent: none may be logged
	cliEnv  []string            // the environment the CLI runs with
}

// postgresKEK is the KEK of every PostgreSQL-backed server of this test
// run (nodes sharing a database share it).
var postgresKEK = func() string {
	k, err := kek.Generate()
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(k)
}()

// withPostgres puts the server on PostgreSQL at dsn, with postgresKEK.
func withPostgres(dsn string, more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Store.DSN = dsn
		c.Secrets.KEK = postgresKEK
		for _, m := range more {
			m(c)
		}
	}
}

// start runs a server on a fresh data directory. mutate may change the
// configuration; the CLI gets the store and secrets settings through the
// environment.
func start(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	return startIn(t, t.TempDir(), mutate)
}

// startClock is start with the server (and the CLI the test runs against
// it) reading clk instead of the real clock.
func startClock(t *testing.T, clk *clock, mutate func(*config.Config)) *env {
	t.Helper()
	return startWith(t, t.TempDir(), clk.Now, mutate)
}

// clock is a fake clock a test moves by hand; it starts at the real time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// startIn is start on the data directory dir, which may hold a store
// already (a restart).
func startIn(t *testing.T, dir string, mutate func(*config.Config)) *env {
	t.Helper()
	return startWith(t, dir, nil, mutate)
}

func startWith(t *testing.T, dir string, now func() time.Time, mutate func(*config.Config)) *env {
	t.Helper()
	return startNode(t, dir, now, app.Open, mutate)
}

// startNode is startWith with the node built by open (app.Open, or
// app.OpenGateway for a gateway-only node).
func startNode(t *testing.T, dir string, now func() time.Time, open func(context.Context, config.Config, app.Deps) (*app.Node, error),
	mutate func(*config.Config)) *env {
	t.Helper()
	e := &env{t: t, dir: dir, logs: &syncBuffer{}, now: now}
	cfg, err := config.Load("", nil, config.Overrides{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "http://tokengate.test"
	cfg.Log.Level = "debug"
	cfg.OpsListen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	node, err := open(context.Background(), cfg, app.Deps{Logger: log, Now: e.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		node.Close()
		t.Fatal(err)
	}
	srv := node.Server
	e.node, e.srv = node, srv
	e.base = "http://" + srv.Addr()
	e.cliEnv = cliEnv(cfg)
	e.remember(cfg.Secrets.KEK)
	for _, f := range append([]string{filepath.Join(dir, kek.DataDirFile), cfg.Secrets.KEKFile}, cfg.Secrets.OldKEKFiles...) {
		if k, err := os.ReadFile(f); f != "" && err == nil {
			e.remember(strings.TrimSpace(string(k)))
		}
	}
	if a := srv.OpsAddr(); a != "" {
		e.ops = "http://" + a
	}
	if api := node.AdminAPI; api != nil {
		e.admin = "http://" + api.Addr()
		if cfg.Admin.TLS.Enabled() {
			e.admin = "https://" + api.Addr()
		}
	}
	t.Cleanup(func() {
		e.stop()
		e.assertNoSecretsLogged()
	})
	return e
}

// stop closes the server (a test may then start another on the same
// directory); it is safe to call more than once.
func (e *env) stop() {
	e.t.Helper()
	e.mu.Lock()
	node := e.node
	e.node, e.srv = nil, nil
	e.mu.Unlock()
	if node == nil {
		return
	}
	if err := node.Close(); err != nil {
		e.t.Errorf("close: %v", err)
	}
}

// cliEnv is the environment that gives the CLI cfg's store and secrets.
func cliEnv(cfg config.Config) []string {
	var env []string
	if cfg.Store.DSN != "" {
		env = append(env, "TOKENGATE_STORE_DSN="+cfg.Store.DSN)
	}
	if s := cfg.Secrets; s.KEK != "" {
		env = append(env, "TOKENGATE_SECRETS_KEK="+s.KEK)
	}
	if s := cfg.Secrets; s.KEKFile != "" {
		env = append(env, "TOKENGATE_SECRETS_KEK_FILE="+s.KEKFile)
	}
	if old := cfg.Secrets.OldKEKFiles; len(old) > 0 {
		b, _ := json.Marshal(old)
		env = append(env, "TOKENGATE_SECRETS_OLD_KEK_FILES="+string(b))
	}
	return env
}

// remember records a secret value that must never appear in the logs.
func (e *env) remember(values ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.secrets == nil {
		e.secrets = make(map[string]struct{})
	}
	for _, v := range values {
		if v != "" {
			e.secrets[v] = struct{}{}
		}
	}
}

// minSentCredential is the shortest credential value a request sent is
// remembered by: 8, the shortest password the server accepts (client
// secrets have 43 characters, tokens more), so every value the server
// could ever take for a real credential is checked, however wrong it was.
// Shorter values ("x", "nope", "c2ln") are words tests send on purpose that
// may well appear in the log for good reasons ("wrong", "no such"...).
const minSentCredential = 8

// credentialFields are the request fields (form, query or JSON, at any
// depth) that carry a credential.
var credentialFields = map[string]bool{
	"client_secret": true, "clientSecret": true, "password": true,
	"refresh_token": true, "refreshToken": true, "token": true,
	"access_token": true, "accessToken": true, "assertion": true, "client_assertion": true,
}

// rememberSent records every credential value req carries, right or
// wrong: the Basic password (and the header's whole base64 value), a
// bearer token, the SNAP signature, and the credential fields of its query
// and body. A server that logs what it was sent leaks a user's mistyped
// (often nearly right) password as surely as the right one.
func (e *env) rememberSent(req *http.Request) {
	var vals []string
	if auth := req.Header.Get("Authorization"); auth != "" {
		scheme, cred, _ := strings.Cut(auth, " ")
		cred = strings.TrimSpace(cred)
		vals = append(vals, cred)
		if strings.EqualFold(scheme, "Basic") {
			if raw, err := base64.StdEncoding.DecodeString(cred); err == nil {
				_, pw, _ := strings.Cut(string(raw), ":")
				vals = append(vals, pw)
				if u, err := url.QueryUnescape(pw); err == nil {
					vals = append(vals, u)
				}
			}
		}
	}
	vals = append(vals, req.Header.Get("X-SIGNATURE"))
	vals = append(vals, formCredentials(req.URL.Query())...)
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			body, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			var v any
			if json.Unmarshal(body, &v) == nil {
				vals = append(vals, jsonCredentials(v)...)
			} else {
				q, _ := url.ParseQuery(string(body)) // partial on error
				vals = append(vals, formCredentials(q)...)
			}
		}
	}
	for _, v := range vals {
		if len(v) >= minSentCredential {
			e.remember(v)
		}
	}
}

func formCredentials(q url.Values) []string {
	var out []string
	for k, vs := range q {
		if credentialFields[k] {
			out = append(out, vs...)
		}
	}
	return out
}

func jsonCredentials(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && credentialFields[k] {
				out = append(out, s)
			} else {
				out = append(out, jsonCredentials(x)...)
			}
		}
	case []any:
		for _, x := range v {
			out = append(out, jsonCredentials(x)...)
		}
	}
	return out
}

// nearMisses are wrong secrets as close to s as a broken comparison
// could let through: the last character changed, one character appended,
// and a 32-character prefix (s less its last character when shorter).
func nearMisses(s string) []string {
	last := byte('A')
	if s[len(s)-1] == last {
		last = 'B'
	}
	return []string{s[:len(s)-1] + string(last), s + "A", s[:min(32, len(s)-1)]}
}

// nearMiss is nearMisses(s)[i % 3].
func nearMiss(s string, i int) string { return nearMisses(s)[i%3] }

func (e *env) assertNoSecretsLogged() {
	for _, s := range e.leakedSecrets() {
		e.t.Errorf("a secret value (%d chars, starting %q) appears in the server log", len(s), s[:min(4, len(s))])
	}
}

// leakedSecrets are the remembered values that appear in the log.
func (e *env) leakedSecrets() []string {
	logs := e.logs.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	var leaked []string
	for s := range e.secrets {
		if strings.Contains(logs, s) {
			leaked = append(leaked, s)
		}
	}
	return leaked
}

// run runs the CLI on the server's data directory.
func (e *env) run(stdin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--data", e.dir}, args...)
	code = cli.Run(full, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errb, Now: e.now}, e.cliEnv)
	return out.String(), errb.String(), code
}

// mustRun runs the CLI and fails the test on a non-zero exit.
func (e *env) mustRun(stdin string, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(stdin, args...)
	if code != 0 {
		e.t.Fatalf("tokengate %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// createClient registers a client through the CLI and returns its
// credentials.
func (e *env) createClient(args ...string) (id, secret string) {
	e.t.Helper()
	out := e.mustRun("", append([]string{"client", "create", "--json"}, args...)...)
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		e.t.Fatalf("client create --json: %v in %q", err, out)
	}
	if len(got) != 2 || got["client_id"] == "" || got["client_secret"] == "" {
		e.t.Fatalf("client create --json: want exactly client_id and client_secret, got %q", out)
	}
	e.remember(got["client_secret"])
	return got["client_id"], got["client_secret"]
}

func (e *env) createUser(name, password string) {
	e.t.Helper()
	e.remember(password)
	e.mustRun(password+"\n", "user", "create", name)
}

// response is a decoded HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r *response) str(k string) string {
	s, _ := r.json[k].(string)
	return s
}

func (e *env) do(req *http.Request) *response {
	e.t.Helper()
	r, err := e.try(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// httpClient keeps enough idle connections for the tests that send from
// several goroutines at once.
var httpClient = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr}
}()

// try is do for any goroutine: it returns what would fail the test.
func (e *env) try(req *http.Request) (*response, error) {
	e.rememberSent(req)
	res, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	r := &response{status: res.StatusCode, header: res.Header, body: body}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &r.json); err != nil {
			return nil, fmt.Errorf("%s %s: bad JSON %q: %v", req.Method, req.URL.Path, body, err)
		}
		for _, k := range []string{"access_token", "refresh_token", "accessToken"} {
			if v := r.str(k); v != "" {
				e.remember(v)
			}
		}
	}
	return r, nil
}

// metrics returns the Prometheus text from the operations listener.
func (e *env) metrics() string {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.ops+"/metrics", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	r := e.do(req)
	if r.status != http.StatusOK {
		e.t.Fatalf("metrics: status %d", r.status)
	}
	return string(r.body)
}

// postForm posts a form, with Basic credentials when id is not "".
func (e *env) postForm(path string, form url.Values, id, secret string) *response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return e.do(req)
}

// token asks the RFC 6749 endpoint for a token and fails unless it gets 200.
func (e *env) token(form url.Values, id, secret string) *response {
	e.t.Helper()
	r := e.postForm("/oauth/token", form, id, secret)
	if r.status != http.StatusOK {
		e.t.Fatalf("token: status %d: %s", r.status, r.body)
	}
	return r
}

func (e *env) introspect(tok, id, secret string) *response {
	e.t.Helper()
	r := e.postForm("/oauth/introspect", url.Values{"token": {tok}}, id, secret)
	if r.status != http.StatusOK {
		e.t.Fatalf("introspect: status %d: %s", r.status, r.body)
	}
	return r
}

func (e *env) active(tok, id, secret string) bool {
	e.t.Helper()
	r := e.introspect(tok, id, secret)
	a, ok := r.json["active"].(bool)
	if !ok {
		e.t.Fatalf("introspect: no boolean active in %s", r.body)
	}
	return a
}

// eventually polls cond for up to the CLI-to-server propagation bound
// documented in the README (2 seconds).
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	return eventuallyWithin(t, 2*time.Second, what, cond)
}

func eventuallyWithin(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, limit)
	return 0
}
