package e2e

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/adminapi"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/testcert"
)

// TestAdminAPIAuthentication: only an access token of a client holding
// tokengate:admin, asked for with it, is let in; every refusal is an RFC
// 6750 challenge with a problem body; a revoked token, a disabled client
// and a client that lost the scope are refused on their next call; the
// admin API is not on the public listener.
func TestAdminAPIAuthentication(t *testing.T) {
	e := start(t, withAdminAPI())
	op, opID := e.operator("ops")
	as := func(token string) *apiClient { return &apiClient{e: e, token: token} }
	challenge := func(r *apiResp, errCode string) {
		t.Helper()
		h := r.header.Get("WWW-Authenticate")
		if !strings.HasPrefix(h, `Bearer realm="tokengate-admin"`) || (errCode != "" && !strings.Contains(h, `error="`+errCode+`"`)) ||
			(errCode == "" && strings.Contains(h, "error=")) {
			t.Fatalf("WWW-Authenticate %q, want the %q challenge", h, errCode)
		}
	}

	op.call("GET", "/admin/v1/clients", nil).want(t, 200)
	// No credentials.
	r := as("").call("GET", "/admin/v1/clients", nil)
	r.wantProblem(t, 401, "unauthenticated")
	challenge(r, "")
	// Another scheme is no credentials either.
	r = as("").call("GET", "/admin/v1/clients", nil, "Authorization", "Basic b3BzOnNlY3JldA==")
	r.wantProblem(t, 401, "unauthenticated")
	challenge(r, "")
	// A malformed bearer header.
	r = as("").call("GET", "/admin/v1/clients", nil, "Authorization", "Bearer a b")
	r.wantProblem(t, 400, "invalid", "Authorization")
	challenge(r, "invalid_request")
	// Not a token of this server.
	r = as("tg_at_notatoken.notatoken").call("GET", "/admin/v1/clients", nil)
	r.wantProblem(t, 401, "unauthenticated")
	challenge(r, "invalid_token")

	// A client without the scope, and a token of the operator client asked
	// for without it.
	id, sec := e.createClient("--name", "merchant", "--grant", "client_credentials", "--scope", "payments")
	r = as(e.token(url.Values{"grant_type": {"client_credentials"}}, id, sec).str("access_token")).call("GET", "/admin/v1/clients", nil)
	r.wantProblem(t, 403, "forbidden")
	challenge(r, "insufficient_scope")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="tokengate:admin"`) {
		t.Fatalf("the challenge does not name the scope: %s", r.header.Get("WWW-Authenticate"))
	}

	// A second operator client, used to check refusals as they happen.
	op2, op2ID := e.operator("ops2")
	op2.call("GET", "/admin/v1/users", nil).want(t, 200)
	// Revoked (through the API itself): refused on the next call.
	op.call("POST", "/admin/v1/tokens/revoke", map[string]any{"token": op2.token}).want(t, 204)
	r = op2.call("GET", "/admin/v1/users", nil)
	r.wantProblem(t, 401, "unauthenticated")
	challenge(r, "invalid_token")

	// A client that loses the scope loses the API with the tokens it holds.
	op3, op3ID := e.operator("ops3")
	op3.call("GET", "/admin/v1/users", nil).want(t, 200)
	op.call("PATCH", "/admin/v1/clients/"+op3ID, map[string]any{"scopes": []string{"payments"}}).want(t, 200)
	eventually(t, "a client without the scope is refused", func() bool {
		return as(op3.token).call("GET", "/admin/v1/users", nil).status == 403
	})

	// A disabled operator client: refused.
	op.call("POST", "/admin/v1/clients/"+op2ID+"/enable", nil).want(t, 200)
	op4, op4ID := e.operator("ops4")
	op4.call("GET", "/admin/v1/users", nil).want(t, 200)
	op.call("POST", "/admin/v1/clients/"+op4ID+"/disable", nil).want(t, 200)
	eventually(t, "a disabled operator client is refused", func() bool {
		return as(op4.token).call("GET", "/admin/v1/users", nil).status == 401
	})

	// The public listener does not serve the admin API.
	req, _ := http.NewRequest("GET", e.base+"/admin/v1/clients", nil)
	req.Header.Set("Authorization", "Bearer "+op.token)
	if r := e.do(req); r.status == 200 {
		t.Fatal("the public listener serves the admin API")
	}
	// The OpenAPI document and problem types need no credentials.
	as("").call("GET", "/admin/v1/openapi.json", nil).want(t, 200)
	as("").call("GET", "/admin/v1/problems/forbidden", nil).want(t, 200)

	// The audit trail names the API client that acted.
	evs := op.call("GET", "/admin/v1/audit-events?client_id="+op4ID, nil).want(t, 200)
	last := evs.obj["events"].([]any)
	if a := last[len(last)-1].(map[string]any)["actor"].(map[string]any); a["kind"] != "api" || a["id"] != opID {
		t.Fatalf("actor %v", a)
	}
}

// TestAdminAPIOffByDefault: without admin.listen nothing serves the API.
func TestAdminAPIOffByDefault(t *testing.T) {
	e := start(t, nil)
	if e.admin != "" || e.node.AdminAPI != nil {
		t.Fatal("the admin API listens without admin.listen")
	}
	if config.Default().Admin.Listen != "" {
		t.Fatal("admin.listen has a default")
	}
}

// TestAdminAPIMutualTLS: on an HTTPS admin listener with a client CA, a
// client certificate that CA issued authenticates an operator named by
// its common name; a certificate of another CA, an expired one and a
// server certificate fail the handshake; one without a common name is a
// 401 problem; without a certificate, bearer tokens still work.
func TestAdminAPIMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := testcert.NewCA(t), testcert.NewCA(t), testcert.NewCA(t)
	srvPair := serverCA.Issue(t, time.Now().Add(time.Hour))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile, caFile := write("admin.crt", srvPair.CertPEM), write("admin.key", srvPair.KeyPEM), write("clients-ca.pem", clientCA.CertPEM())
	e := start(t, withAdminAPI(func(c *config.Config) {
		c.Admin.TLS = config.AdminTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	}))
	if !strings.HasPrefix(e.admin, "https://") {
		t.Fatalf("admin base %s", e.admin)
	}
	client := func(p *testcert.Pair) *http.Client {
		cfg := &tls.Config{RootCAs: serverCA.Pool, MinVersion: tls.VersionTLS12}
		if p != nil {
			cert, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	now := time.Now()
	alice := clientCA.IssueClient(t, "alice", now.Add(-time.Hour), now.Add(time.Hour))
	ca := &apiClient{e: e, client: client(&alice), hits: map[string]bool{}}
	cr := ca.call("POST", "/admin/v1/clients", map[string]any{"name": "by certificate", "grants": []string{"client_credentials"}}).want(t, 201)
	id := cr.obj["client"].(map[string]any)["client_id"].(string)
	evs := ca.call("GET", "/admin/v1/audit-events?client_id="+id, nil).want(t, 200).obj["events"].([]any)
	if a := evs[0].(map[string]any)["actor"].(map[string]any); a["kind"] != "api" || a["id"] != adminapi.CertActorPrefix+"alice" || a["name"] != "alice" {
		t.Fatalf("a certificate's actor: %v", a)
	}

	// Refused in the handshake.
	otherPair := otherCA.IssueClient(t, "mallory", now.Add(-time.Hour), now.Add(time.Hour))
	expired := clientCA.IssueClient(t, "bob", now.Add(-2*time.Hour), now.Add(-time.Hour))
	serverPair := clientCA.Issue(t, now.Add(time.Hour)) // issued by the right CA, but for servers
	for name, c := range map[string]struct {
		p    *testcert.Pair
		want string
	}{
		"another CA's": {&otherPair, "tls: unknown certificate authority"},
		"an expired":   {&expired, "tls: expired certificate"},
		"a server":     {&serverPair, "tls: bad certificate"},
	} {
		_, err := client(c.p).Get(e.admin + "/admin/v1/clients")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s certificate: %v, want the handshake refused (%s)", name, err, c.want)
		}
	}
	// Verified, but naming nobody.
	nameless := clientCA.IssueClient(t, "", now.Add(-time.Hour), now.Add(time.Hour))
	(&apiClient{e: e, client: client(&nameless)}).call("GET", "/admin/v1/clients", nil).wantProblem(t, 401, "unauthenticated")
	// No certificate: a bearer token (over TLS) or nothing.
	(&apiClient{e: e, client: client(nil)}).call("GET", "/admin/v1/clients", nil).wantProblem(t, 401, "unauthenticated")
	oid, osec := e.createClient("--name", "ops", "--grant", "client_credentials", "--scope", adminapi.Scope)
	tok := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {adminapi.Scope}}, oid, osec).str("access_token")
	(&apiClient{e: e, client: client(nil), token: tok}).call("GET", "/admin/v1/clients", nil).want(t, 200)
	// An Authorization header decides, even beside a good certificate.
	(&apiClient{e: e, client: client(&alice), token: "tg_at_bad.bad"}).call("GET", "/admin/v1/clients", nil).wantProblem(t, 401, "unauthenticated")
	// Plain HTTP is not served.
	if r, err := http.Get("http://" + strings.TrimPrefix(e.admin, "https://") + "/admin/v1/openapi.json"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Fatal("the TLS admin listener answered plain HTTP")
		}
	}
}
