package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/oauth"
)

// mounted is a gateway with a lax route and a stricter one on the same
// upstream, mounted on a ServeMux as the server mounts it.
func mounted(t *testing.T, up string) *httptest.Server {
	t.Helper()
	cfg := config.Default().Gateway
	cfg.Routes = []config.GatewayRoute{
		{Prefix: "/api/", Upstream: up, Auth: "bearer"},
		{Prefix: "/api/payouts/", Upstream: up, Auth: "bearer", Scopes: []string{"payouts"}},
		{Prefix: "/v2", Upstream: up, Auth: "bearer"},
	}
	tokens := &fakeTokens{tokens: map[string]*oauth.Token{"good": {ClientID: "merchant", Subject: "merchant", Scopes: []string{"payments"}}}}
	g, err := New(cfg, map[string]Verifier{"bearer": &BearerVerifier{Tokens: tokens}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", g)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// raw sends a raw HTTP/1.1 request and reads one response.
func raw(t *testing.T, addr, req string) (*http.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res, c
}

// TestEncodedPathsCannotReachAnotherRoute: a path that an upstream would
// decode or normalise into another route's (or no route's) path is refused:
// routing matches the escaped path, upstreams route on the decoded one.
func TestEncodedPathsCannotReachAnotherRoute(t *testing.T) {
	var mu sync.Mutex
	var reached []string
	umux := http.NewServeMux()
	umux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.URL.EscapedPath())
		mu.Unlock()
	})
	up := httptest.NewServer(umux)
	defer up.Close()
	srv := mounted(t, up.URL)
	for _, p := range []string{
		"/api/%70ayouts/run", "/api/pay%6Fouts/run", "/api/x/%2e%2e/payouts/run", "/api/x%2F..%2Fpayouts/run",
		"/api/x/../payouts/run", "/api/./payouts/run", "/api/x%5C..%5Cpayouts", "/api/%2Fpayouts/run", "/api/%zz",
	} {
		res, _ := raw(t, srv.Listener.Addr().String(), "POST "+p+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\n{}")
		// 400 from the gateway, or (raw dot-segments) the ServeMux's
		// redirect to the clean path, which the gateway then checks.
		if res.StatusCode != http.StatusBadRequest && res.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("%s: %d, want 400", p, res.StatusCode)
		}
	}
	// A prefix without a trailing slash ends at a segment boundary.
	res, _ := raw(t, srv.Listener.Addr().String(), "GET /v2x/secret HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n")
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("/v2x under the prefix /v2: %d, want 404", res.StatusCode)
	}
	// Canonical escapes (a space, a reserved character) still pass.
	for _, p := range []string{"/api/a%20b", "/api/%3F", "/v2", "/v2/x"} {
		res, _ := raw(t, srv.Listener.Addr().String(), "GET "+p+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n")
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200", p, res.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range reached {
		if strings.Contains(strings.ToLower(p), "payouts") || strings.Contains(p, "..") {
			t.Errorf("the upstream was reached at %s", p)
		}
	}
}

// TestNoProtocolUpgrade: a verified request cannot turn its connection into
// a tunnel to the upstream; an upstream that switches protocols anyway gets
// its answer refused.
func TestNoProtocolUpgrade(t *testing.T) {
	upgraded := make(chan struct{}, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/sneaky" { // switches whatever was asked
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "h2c")
			w.WriteHeader(http.StatusSwitchingProtocols)
			upgraded <- struct{}{}
			return
		}
		if r.Header.Get("Upgrade") != "" {
			upgraded <- struct{}{}
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", r.Header.Get("Upgrade"))
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer up.Close()
	srv := mounted(t, up.URL)
	for _, hdr := range []string{"Connection: Upgrade\r\nUpgrade: websocket\r\n", "Upgrade: h2c\r\n", "Connection: keep-alive, upgrade\r\n"} {
		res, _ := raw(t, srv.Listener.Addr().String(), "GET /api/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"+hdr+"\r\n")
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", hdr, res.StatusCode)
		}
	}
	res, _ := raw(t, srv.Listener.Addr().String(), "GET /api/sneaky HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n")
	if res.StatusCode == http.StatusSwitchingProtocols || res.StatusCode < 500 {
		t.Errorf("an upstream's unasked 101: %d reached the caller", res.StatusCode)
	}
	if len(upgraded) > 1 {
		t.Errorf("the upstream saw %d upgrade requests", len(upgraded))
	}
}

// TestTrailersAndHost: trailers (which could carry identity headers) are
// refused, and the upstream gets its own host, the caller's in
// X-Forwarded-Host.
func TestTrailersAndHost(t *testing.T) {
	var mu sync.Mutex
	var hosts, fwd []string
	var trailers []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		mu.Lock()
		hosts, fwd, trailers = append(hosts, r.Host), append(fwd, r.Header.Get("X-Forwarded-Host")), append(trailers, r.Trailer)
		mu.Unlock()
	}))
	defer up.Close()
	srv := mounted(t, up.URL)
	res, _ := raw(t, srv.Listener.Addr().String(), "POST /api/pay HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"+
		"Transfer-Encoding: chunked\r\nTrailer: X-Tokengate-Client-Id\r\n\r\n2\r\n{}\r\n0\r\nX-Tokengate-Client-Id: victim\r\n\r\n")
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("a call declaring trailers: %d, want 400", res.StatusCode)
	}
	res, _ = raw(t, srv.Listener.Addr().String(), "POST /api/pay HTTP/1.1\r\nHost: admin.internal\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\n{}")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a plain call: %d", res.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	want := strings.TrimPrefix(up.URL, "http://")
	if len(hosts) != 1 || hosts[0] != want || fwd[0] != "admin.internal" || len(trailers[0]) != 0 {
		t.Errorf("upstream saw Host %q, X-Forwarded-Host %q, trailers %v; want %q, admin.internal, none", hosts, fwd, trailers, want)
	}
}

func TestCanonicalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/a/b": true, "/a%20b": true, "/a/%3F": true, "/": true, "/a/b/": true,
		"/a/../b": false, "/a/./b": false, "/..": false, "/a/..": false, "/a/%2e%2E/b": false, "/a%2fb": false,
		"/a%41": false, "/a%7e": false, "/a%": false, "/a%4": false, "/a%g1": false, `/a\b`: false, "a/b": false, "/a%5cb": false,
	} {
		if got := canonicalPath(p); got != want {
			t.Errorf("canonicalPath(%q) = %v, want %v", p, got, want)
		}
	}
}
