package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestDiscoveryAndHealth(t *testing.T) {
	e := start(t, nil)
	req, _ := http.NewRequest(http.MethodGet, e.base+"/.well-known/oauth-authorization-server", nil)
	r := e.do(req)
	if r.status != 200 {
		t.Fatalf("metadata: %d", r.status)
	}
	want := map[string]string{
		"issuer":                 "http://tokengate.test",
		"token_endpoint":         "http://tokengate.test/oauth/token",
		"jwks_uri":               "http://tokengate.test/.well-known/jwks.json",
		"introspection_endpoint": "http://tokengate.test/oauth/introspect",
		"revocation_endpoint":    "http://tokengate.test/oauth/revoke",
	}
	for k, v := range want {
		if r.str(k) != v {
			t.Errorf("%s = %q, want %q", k, r.str(k), v)
		}
	}
	grants, _ := json.Marshal(r.json["grant_types_supported"])
	if string(grants) != `["client_credentials","password","refresh_token"]` {
		t.Errorf("grant_types_supported %s", grants)
	}
	if len(e.jwks().Keys) == 0 {
		t.Error("empty JWKS: the default signing key was not created")
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		req, _ := http.NewRequest(http.MethodGet, e.base+path, nil)
		if got := e.do(req).status; got != want {
			t.Errorf("%s: %d", path, got)
		}
	}
	if m := e.metrics(); !strings.Contains(m, "tokengate_token_request_duration_seconds") {
		t.Error("metrics lack tokengate_token_request_duration_seconds")
	}
	// Metrics and the profiler are on the operations listener only.
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		req, _ := http.NewRequest(http.MethodGet, e.base+path, nil)
		if got := e.do(req).status; got != 404 {
			t.Errorf("public %s: %d, want 404", path, got)
		}
		req, _ = http.NewRequest(http.MethodGet, e.ops+path, nil)
		if got := e.do(req).status; got != 200 {
			t.Errorf("ops %s: %d, want 200", path, got)
		}
	}
}

// TestCLIChangesReachRunningServer: the README promises the running server
// sees an operator's change within 2 seconds.
func TestCLIChangesReachRunningServer(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "a")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	form := url.Values{"grant_type": {"client_credentials"}}
	tok := e.token(form, id, secret).str("access_token")

	e.mustRun("", "client", "disable", id)
	took := eventually(t, "disabled client refused", func() bool {
		return e.postForm("/oauth/token", form, id, secret).str("error") == "invalid_client"
	})
	t.Logf("disable seen after %v", took)
	if e.active(tok, rsID, rsSecret) {
		t.Error("a disabled client's token introspects active")
	}
	e.mustRun("", "client", "enable", id)
	eventually(t, "re-enabled client served", func() bool { return e.postForm("/oauth/token", form, id, secret).status == 200 })

	e.mustRun("", "client", "update", id, "--scope", "a", "--scope", "b")
	eventually(t, "new scope allowed", func() bool {
		return e.postForm("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"b"}}, id, secret).status == 200
	})
}

func TestSecretRotationGrace(t *testing.T) {
	e := start(t, nil)
	id, oldSecret := e.createClient("--name", "m", "--grant", "client_credentials")
	form := url.Values{"grant_type": {"client_credentials"}}

	var rotated map[string]string
	json.Unmarshal([]byte(e.mustRun("", "client", "rotate-secret", id, "--grace", "3s", "--json")), &rotated)
	newSecret := rotated["client_secret"]
	e.remember(newSecret)
	if newSecret == "" || newSecret == oldSecret {
		t.Fatalf("rotate-secret: %v", rotated)
	}
	eventually(t, "new secret works", func() bool { return e.postForm("/oauth/token", form, id, newSecret).status == 200 })
	if r := e.postForm("/oauth/token", form, id, oldSecret); r.status != 200 {
		t.Fatalf("old secret refused inside the grace period: %d %s", r.status, r.body)
	}
	time.Sleep(3 * time.Second)
	if r := e.postForm("/oauth/token", form, id, oldSecret); r.status != 401 {
		t.Errorf("old secret after the grace period: %d %s", r.status, r.body)
	}
	if r := e.postForm("/oauth/token", form, id, newSecret); r.status != 200 {
		t.Errorf("new secret after the grace period: %d %s", r.status, r.body)
	}

	// Without grace the old secret stops at once (within the cache bound).
	json.Unmarshal([]byte(e.mustRun("", "client", "rotate-secret", id, "--json")), &rotated)
	e.remember(rotated["client_secret"])
	eventually(t, "old secret refused", func() bool { return e.postForm("/oauth/token", form, id, newSecret).status == 401 })
}
