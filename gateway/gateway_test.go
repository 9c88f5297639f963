package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/oauth"
)

// fakeTokens knows a fixed set of token values.
type fakeTokens struct {
	tokens map[string]*oauth.Token
	fail   bool
}

func (f *fakeTokens) AccessToken(_ context.Context, v string) (*oauth.Token, *oauth.Client, error) {
	if f.fail {
		return nil, nil, errors.New("store down")
	}
	t, ok := f.tokens[v]
	if !ok {
		return nil, nil, nil
	}
	return t, &oauth.Client{ID: t.ClientID}, nil
}

// upstream records what reached it.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	body [][]byte
	wait time.Duration
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, r)
		u.body = append(u.body, b)
		wait := u.wait
		u.mu.Unlock()
		time.Sleep(wait) // a slow upstream, for the timeout test
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(201)
		w.Write([]byte(`{"from":"upstream"}`))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return u.seen[len(u.seen)-1], u.body[len(u.body)-1]
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.seen) }

func bearerGateway(t *testing.T, upstreamURL string, tokens *fakeTokens, reg *prometheus.Registry) *Gateway {
	t.Helper()
	cfg := config.Default().Gateway
	cfg.MaxBody = 1024
	cfg.UpstreamTimeout = 200 * time.Millisecond
	cfg.Routes = []config.GatewayRoute{
		{Prefix: "/api/", Upstream: upstreamURL, Auth: "bearer"},
		{Prefix: "/api/payouts/", Upstream: upstreamURL, Auth: "bearer", Scopes: []string{"payouts"}},
	}
	g, err := New(cfg, map[string]Verifier{"bearer": &BearerVerifier{Tokens: tokens}}, Deps{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestBearerRoutes(t *testing.T) {
	up := newUpstream(t)
	tokens := &fakeTokens{tokens: map[string]*oauth.Token{
		"good":  {ClientID: "merchant", Subject: "merchant", Scopes: []string{"payments"}},
		"payer": {ClientID: "merchant", Subject: "alice", Scopes: []string{"payments", "payouts"}},
	}}
	reg := prometheus.NewRegistry()
	g := bearerGateway(t, up.srv.URL, tokens, reg)
	srv := httptest.NewServer(g)
	defer srv.Close()

	do := func(method, path, auth, body string, extra map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for k, v := range extra {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}

	// A verified call reaches the upstream with the exact body and query,
	// the identity headers, and no forged ones.
	body := "{ \"amount\" : 10,\n \"note\": \"a  b\" }"
	res := do("POST", "/api/pay?x=1&y=%20", "Bearer good", body, map[string]string{
		"X-Tokengate-Client-Id": "forged", "x-tokengate-scope": "admin", "X-Tokengate-Anything": "forged",
		"X_Tokengate_Client_Id": "forged", "x-tokengate_subject": "forged", "X-Tokengatex": "kept"})
	if res.StatusCode != 201 || res.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("verified call: %d", res.StatusCode)
	}
	r, b := up.last(t)
	if string(b) != body || r.URL.RawQuery != "x=1&y=%20" || r.URL.Path != "/api/pay" || r.Method != "POST" {
		t.Errorf("upstream got %s %s?%s %q", r.Method, r.URL.Path, r.URL.RawQuery, b)
	}
	if r.Header.Get(HeaderClientID) != "merchant" || r.Header.Get(HeaderScope) != "payments" ||
		r.Header.Get(HeaderSubject) != "merchant" || r.Header.Get("X-Tokengate-Anything") != "" ||
		r.Header.Get("X_Tokengate_Client_Id") != "" || r.Header.Get("X-Tokengate_subject") != "" || r.Header.Get("X-Tokengatex") != "kept" {
		t.Errorf("identity headers at the upstream: %v", r.Header)
	}
	if r.Header.Get("Authorization") != "Bearer good" {
		t.Errorf("the Authorization header was not forwarded: %q", r.Header.Get("Authorization"))
	}

	for _, tc := range []struct {
		name, path, auth string
		status           int
		challenge        string
	}{
		{"no token", "/api/pay", "", 401, `Bearer realm="tokengate"`},
		{"another scheme", "/api/pay", "Basic Zm9vOmJhcg==", 401, `Bearer realm="tokengate"`},
		{"unknown token", "/api/pay", "Bearer nope", 401, `Bearer realm="tokengate", error="invalid_token", error_description="the access token is invalid, expired or revoked"`},
		{"malformed", "/api/pay", "Bearer a b", 400, `Bearer realm="tokengate", error="invalid_request"`},
		{"scope missing", "/api/payouts/run", "Bearer good", 403, `Bearer realm="tokengate", error="insufficient_scope", error_description="the access token does not grant the scope this resource needs", scope="payouts"`},
	} {
		before := up.count()
		res := do("POST", tc.path, tc.auth, "{}", nil)
		if res.StatusCode != tc.status || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%s: %d %q", tc.name, res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
		if up.count() != before {
			t.Errorf("%s: a refused call reached the upstream", tc.name)
		}
	}
	if res := do("POST", "/api/payouts/run", "Bearer payer", "{}", nil); res.StatusCode != 201 {
		t.Errorf("scoped route with the scope: %d", res.StatusCode)
	}
	if res := do("GET", "/elsewhere", "Bearer good", "", nil); res.StatusCode != 404 {
		t.Errorf("no route: %d", res.StatusCode)
	}
	if res := do("POST", "/api/pay", "Bearer good", strings.Repeat("x", 2000), nil); res.StatusCode != 413 {
		t.Errorf("body over max_body: %d", res.StatusCode)
	}
	// Bodies of no declared length (chunked): read whole, forwarded as sent.
	chunked := func(body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/api/pay", io.MultiReader(strings.NewReader(body)))
		req.Header.Set("Authorization", "Bearer good")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	long := strings.Repeat(`{"a":"b"}`, 100) // 900 bytes: more than a first read
	if res := chunked(long); res.StatusCode != 201 {
		t.Errorf("chunked body: %d", res.StatusCode)
	} else if r, b := up.last(t); string(b) != long || r.ContentLength != int64(len(long)) {
		t.Errorf("chunked body at the upstream: %d bytes (Content-Length %d), want %d", len(b), r.ContentLength, len(long))
	}
	if res := chunked(""); res.StatusCode != 201 {
		t.Errorf("empty chunked body: %d", res.StatusCode)
	} else if r, b := up.last(t); len(b) != 0 || r.ContentLength != 0 || len(r.TransferEncoding) != 0 {
		t.Errorf("empty chunked body at the upstream: %q, Content-Length %d, Transfer-Encoding %v", b, r.ContentLength, r.TransferEncoding)
	}
	if res := chunked(strings.Repeat("x", 2000)); res.StatusCode != 413 {
		t.Errorf("chunked body over max_body: %d", res.StatusCode)
	}

	tokens.fail = true
	if res := do("POST", "/api/pay", "Bearer good", "{}", nil); res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Errorf("store down: %d, want 503 with Retry-After (never a guessed refusal)", res.StatusCode)
	}
	tokens.fail = false

	up.mu.Lock()
	up.wait = time.Second
	up.mu.Unlock()
	if res := do("POST", "/api/pay", "Bearer good", "{}", nil); res.StatusCode != 504 {
		t.Errorf("slow upstream: %d, want 504", res.StatusCode)
	}
	up.mu.Lock()
	up.wait = 0
	up.mu.Unlock()
	up.srv.Close()
	if res := do("POST", "/api/pay", "Bearer good", "{}", nil); res.StatusCode != 502 {
		t.Errorf("upstream down: %d, want 502", res.StatusCode)
	}

	for _, c := range []struct {
		route, result string
		want          float64
	}{
		{"/api/", "ok", 3}, {"/api/payouts/", "ok", 1}, {"/api/", "invalid_token", 1}, {"/api/payouts/", "insufficient_scope", 1},
		{"/api/", "no_token", 2}, {"/api/", "upstream_timeout", 1}, {"/api/", "upstream_unavailable", 1},
	} {
		if got := counterValue(t, g.routes[0].requests.WithLabelValues(c.route, c.result)); got != c.want {
			t.Errorf("tokengate_gateway_requests_total{route=%q,result=%q} = %v, want %v", c.route, c.result, got, c.want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestSlowUpstreamOutlastsListenerTimeouts: an upstream that answers
// within upstream_timeout gets its answer through even when that is
// longer than the listener's read and write timeouts (which count from the
// start of the request), with a body and without.
func TestSlowUpstreamOutlastsListenerTimeouts(t *testing.T) {
	up := newUpstream(t)
	up.wait = 600 * time.Millisecond
	cfg := config.Default().Gateway
	cfg.UpstreamTimeout = 5 * time.Second
	cfg.Routes = []config.GatewayRoute{{Prefix: "/api/", Upstream: up.srv.URL, Auth: "bearer"}}
	tokens := &fakeTokens{tokens: map[string]*oauth.Token{"good": {ClientID: "merchant", Subject: "merchant"}}}
	g, err := New(cfg, map[string]Verifier{"bearer": &BearerVerifier{Tokens: tokens}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(g)
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	for _, body := range []string{"", `{"amount":1}`} {
		method := "GET"
		if body != "" {
			method = "POST"
		}
		req, _ := http.NewRequest(method, srv.URL+"/api/slow", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer good")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 201 || string(b) != `{"from":"upstream"}` {
			t.Errorf("%s: %d %q", method, res.StatusCode, b)
		}
	}
}

// An upstream that sends its headers and then stalls its body does not
// hold the call (its connections, its goroutines) longer than
// upstream_timeout plus the answer's time: the call is cut, the caller
// sees its connection end, and the upstream sees its request end.
func TestStalledUpstreamBodyIsCut(t *testing.T) {
	ended := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(ended)
		case <-time.After(10 * time.Second):
		}
	}))
	defer up.Close()
	tokens := &fakeTokens{tokens: map[string]*oauth.Token{"good": {ClientID: "merchant", Subject: "merchant"}}}
	g := bearerGateway(t, up.URL, tokens, prometheus.NewRegistry())
	g.answerTime = 100 * time.Millisecond
	srv := httptest.NewServer(g)
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/api/stall", nil)
	req.Header.Set("Authorization", "Bearer good")
	start := time.Now()
	// The headers may not even have left the gateway's buffer: the caller
	// sees the connection end, early or in the body.
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			t.Errorf("a stalled answer arrived whole: %q", b)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stalled answer was cut after %v", d)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the upstream's request was not ended")
	}
}

// A body's memory grows as its bytes arrive: headers declaring the largest
// body allowed, followed by a few bytes, do not get max_body at once.
func TestDeclaredBodyLengthAllocatesAsBytesArrive(t *testing.T) {
	cfg := config.Default().Gateway
	cfg.MaxBody = 8 << 20
	g := &Gateway{maxBody: cfg.MaxBody}
	req := httptest.NewRequest("POST", "/api/pay", io.MultiReader(strings.NewReader("{}"), errReader{}))
	req.ContentLength = cfg.MaxBody
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, f := g.readBody(req); f != BodyUnreadable {
		t.Fatalf("a body that stops after 2 of %d bytes: %v", cfg.MaxBody, f)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("2 bytes of a body declared %d bytes long took %d bytes", cfg.MaxBody, n)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
