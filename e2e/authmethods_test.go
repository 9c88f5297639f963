package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
)

// clientView is what `client show --json` says about a client's methods,
// endpoints and permissions.
type clientView struct {
	AuthMethods   []string `json:"auth_methods"`
	Endpoints     []string `json:"endpoints"`
	CanIntrospect bool     `json:"can_introspect"`
}

func (e *env) showClient(id string) clientView {
	e.t.Helper()
	var v clientView
	out := e.mustRun("", "client", "show", id, "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.AuthMethods == nil || v.Endpoints == nil {
		e.t.Fatalf("client show --json: %v in %s", err, out)
	}
	return v
}

// neox posts client credentials to the NeoX endpoint.
func (e *env) neox(id, secret string) *response {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": id, "client_secret": secret})
	req, _ := http.NewRequest(http.MethodPost, e.base+"/v2/auth/oauth2/token", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	return e.do(req)
}

// postBodyCredentials posts form with the client credentials in the body
// (client_secret_post).
func (e *env) postBodyCredentials(path string, form url.Values, id, secret string) *response {
	e.t.Helper()
	f := url.Values{"client_id": {id}, "client_secret": {secret}}
	for k, v := range form {
		f[k] = v
	}
	return e.postForm(path, f, "", "")
}

// TestClientUsesOnlyItsMethodsAndEndpoints (issue 8, point 4): a client
// registered with a SNAP public key and nothing else is SNAP-only (its
// generated secret gets it nothing elsewhere); the methods and endpoints an
// operator allows are what the server enforces, within the propagation
// bound; the metadata names the methods RFC 6749 clients can use.
func TestClientUsesOnlyItsMethodsAndEndpoints(t *testing.T) {
	e := start(t, func(c *config.Config) {
		snapEndpoints(c)
		c.Endpoints = append(c.Endpoints, config.Endpoint{Path: "/partner/oauth/token", Dialect: "oauth2"})
	})
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := e.createClient("--name", "snap merchant", "--grant", "client_credentials", "--snap-public-key", pub)
	cc := url.Values{"grant_type": {"client_credentials"}}
	snapToken := func() *response {
		ts := uniqueTimestamp()
		sig, err := snap.Sign(key, id, ts)
		if err != nil {
			t.Fatal(err)
		}
		return e.snapRequest("/v1.0/access-token/b2b", id, ts, sig, `{"grantType":"client_credentials","additionalInfo":{}}`)
	}
	refusedBasic := func(r *response) bool {
		return r.status == 401 && r.str("error") == "invalid_client" && strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") &&
			r.str("access_token") == ""
	}
	refusedBody := func(r *response) bool {
		return r.status == 400 && r.str("error") == "invalid_client" && r.header.Get("WWW-Authenticate") == "" && r.str("access_token") == ""
	}

	t.Run("SNAP-only by default", func(t *testing.T) {
		if v := e.showClient(id); !slices.Equal(v.AuthMethods, []string{"snap_signature"}) || len(v.Endpoints) != 0 || v.CanIntrospect {
			t.Errorf("client show: %+v", v)
		}
		if r := e.postForm("/oauth/token", cc, id, secret); !refusedBasic(r) {
			t.Errorf("the right secret in Basic at /oauth/token: %d %v %s", r.status, r.header, r.body)
		}
		if r := e.postBodyCredentials("/oauth/token", cc, id, secret); !refusedBody(r) {
			t.Errorf("the right secret in the body at /oauth/token: %d %v %s", r.status, r.header, r.body)
		}
		if r := e.neox(id, secret); r.status != 401 || r.json["code"] != float64(401) || r.str("message") == "" || r.str("access_token") != "" {
			t.Errorf("the right secret at the NeoX endpoint: %d %s", r.status, r.body)
		}
		r := snapToken()
		if r.status != 200 || r.str("responseCode") != "2007300" || r.str("expiresIn") != "900" {
			t.Fatalf("SNAP: %d %s", r.status, r.body)
		}
	})

	t.Run("update allows Basic too", func(t *testing.T) {
		e.mustRun("", "client", "update", id, "--auth-method", "client_secret_basic", "--auth-method", "snap_signature")
		if v := e.showClient(id); !slices.Equal(v.AuthMethods, []string{"client_secret_basic", "snap_signature"}) {
			t.Errorf("client show after update: %+v", v)
		}
		took := eventually(t, "Basic accepted after the update", func() bool {
			return e.postForm("/oauth/token", cc, id, secret).status == 200
		})
		t.Logf("the running server took the new methods after %v", took)
		if r := e.postBodyCredentials("/oauth/token", cc, id, secret); !refusedBody(r) {
			t.Errorf("client_secret_post, not allowed: %d %s", r.status, r.body)
		}
		if r := e.neox(id, secret); r.status != 401 {
			t.Errorf("NeoX (client_secret_post), not allowed: %d %s", r.status, r.body)
		}
		if r := snapToken(); r.status != 200 || r.str("expiresIn") != "900" {
			t.Errorf("SNAP after the update: %d %s", r.status, r.body)
		}
	})

	t.Run("endpoint restriction and lifting it", func(t *testing.T) {
		e.mustRun("", "client", "update", id, "--endpoint", "/partner/oauth/token")
		if v := e.showClient(id); !slices.Equal(v.Endpoints, []string{"/partner/oauth/token"}) {
			t.Errorf("client show: %+v", v)
		}
		eventually(t, "other endpoints refused", func() bool { return refusedBasic(e.postForm("/oauth/token", cc, id, secret)) })
		if r := e.postForm("/partner/oauth/token", cc, id, secret); r.status != 200 {
			t.Errorf("the allowed endpoint: %d %s", r.status, r.body)
		}
		if r := snapToken(); r.status != 401 || r.str("responseCode") != "4017300" {
			t.Errorf("SNAP endpoint, not allowed: %d %s", r.status, r.body)
		}
		e.mustRun("", "client", "update", id, "--any-endpoint")
		if v := e.showClient(id); len(v.Endpoints) != 0 {
			t.Errorf("client show after --any-endpoint: %+v", v)
		}
		eventually(t, "every endpoint again", func() bool {
			return e.postForm("/oauth/token", cc, id, secret).status == 200 && snapToken().status == 200
		})
	})

	t.Run("endpoint restriction at creation", func(t *testing.T) {
		pid, psecret := e.createClient("--name", "partner", "--grant", "client_credentials", "--endpoint", "/partner/oauth/token")
		if v := e.showClient(pid); !slices.Equal(v.Endpoints, []string{"/partner/oauth/token"}) ||
			!slices.Equal(v.AuthMethods, []string{"client_secret_basic", "client_secret_post"}) {
			t.Errorf("client show: %+v", v)
		}
		if r := e.postForm("/partner/oauth/token", cc, pid, psecret); r.status != 200 {
			t.Errorf("the allowed endpoint: %d %s", r.status, r.body)
		}
		if r := e.postBodyCredentials("/oauth/token", cc, pid, psecret); !refusedBody(r) {
			t.Errorf("another endpoint: %d %s", r.status, r.body)
		}
		if r := e.neox(pid, psecret); r.status != 401 {
			t.Errorf("the NeoX endpoint: %d %s", r.status, r.body)
		}
	})

	t.Run("can_introspect in client show", func(t *testing.T) {
		rs, _ := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
		if v := e.showClient(rs); !v.CanIntrospect {
			t.Errorf("created with --can-introspect: %+v", v)
		}
		e.mustRun("", "client", "update", rs, "--can-introspect", "false")
		if v := e.showClient(rs); v.CanIntrospect {
			t.Errorf("after --can-introspect false: %+v", v)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, e.base+"/.well-known/oauth-authorization-server", nil)
		r := e.do(req)
		got, _ := json.Marshal(r.json["token_endpoint_auth_methods_supported"])
		if string(got) != `["client_secret_basic","client_secret_post"]` {
			t.Errorf("token_endpoint_auth_methods_supported %s", got)
		}
	})
}
