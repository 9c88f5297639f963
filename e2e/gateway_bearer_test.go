package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/config"
)

// TestGatewayBearerRoute: a bearer route of the gateway, on the public
// listener beside the token endpoints, forwards a call with a valid token
// (body and all) to its upstream with the identity headers, and refuses a
// revoked token on the next call, RFC 6750 style.
func TestGatewayBearerRoute(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var headers []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer up.Close()
	e := start(t, func(c *config.Config) {
		c.Gateway.Routes = []config.GatewayRoute{{Prefix: "/api/", Upstream: up.URL, Auth: "bearer", Scopes: []string{"payments"}}}
	})
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "payments")
	tok := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"payments"}}, id, secret).str("access_token")

	call := func(tok, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/api/payments?x=1", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Tokengate-Client-Id", "forged")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	// A body larger than what arrives with the headers: the server must
	// let the gateway read it (it reads no body of other unknown paths).
	body := `{"amount": 1, "note": "` + strings.Repeat("x", 300<<10) + `"}`
	if res := call(tok, body); res.StatusCode != http.StatusAccepted || res.Close {
		t.Fatalf("a call with a valid token: %d (connection closed: %v; it must stay open for the next call)", res.StatusCode, res.Close)
	}
	mu.Lock()
	if len(got) != 1 || got[0] != `POST /api/payments?x=1 `+body || headers[0].Get("X-Tokengate-Client-Id") != id ||
		headers[0].Get("X-Tokengate-Scope") != "payments" {
		t.Errorf("upstream got %d calls (%d bytes) with %v", len(got), len(strings.Join(got, "")), headers)
	}
	mu.Unlock()
	if r := e.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != 200 {
		t.Fatalf("revoke: %d", r.status)
	}
	res := call(tok, `{"amount": 2}`)
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(res.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a revoked token: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Errorf("a refused call reached the upstream: %q", got)
	}
}
