package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/adminapi"
)

// TestAdminAPIProblems: every error is an RFC 9457 problem of the
// documented shape, with the fields at fault named: unknown routes and
// methods, bodies that are not JSON, too large, malformed, or given where
// none is taken; and the problem types are served at their type URIs.
func TestAdminAPIProblems(t *testing.T) {
	e := start(t, withAdminAPI())
	op, _ := e.operator("ops")

	op.call("GET", "/admin/v1/nothing-here", nil).wantProblem(t, 404, "not_found")
	op.call("GET", "/admin/v2/clients", nil).wantProblem(t, 404, "not_found")
	r := op.call("DELETE", "/admin/v1/users", nil)
	r.wantProblem(t, 405, "method_not_allowed")
	if allow := r.header.Get("Allow"); allow != "GET, POST, HEAD" {
		t.Fatalf("Allow: %q", allow)
	}
	op.call("PUT", "/admin/v1/clients", `{}`).wantProblem(t, 405, "method_not_allowed")

	// Bodies.
	op.call("POST", "/admin/v1/clients", `name=acme`, "Content-Type", "application/x-www-form-urlencoded").
		wantProblem(t, 415, "unsupported_media_type")
	big := `{"name":"` + strings.Repeat("a", 1<<20) + `"}`
	op.call("POST", "/admin/v1/clients", big).wantProblem(t, 413, "too_large")
	for _, body := range []string{`{"name":`, `{"name":"a"}{"name":"b"}`, `{"name":"a","name":"b"}`, `[]`, "{\"name\":\"\xff\"}"} {
		op.call("POST", "/admin/v1/clients", body).wantProblem(t, 400, "invalid")
	}
	p := op.call("POST", "/admin/v1/clients", `{"name":7,"grants":["client_credentials"],"colour":"red","default_scopes":null}`).
		wantProblem(t, 400, "invalid", "name", "colour", "default_scopes")
	if len(p.Errors) != 3 {
		t.Fatalf("errors %+v", p.Errors)
	}
	op.call("GET", "/admin/v1/clients", `{"name":"x"}`).wantProblem(t, 400, "invalid")
	op.call("POST", "/admin/v1/clients/x/disable", `{"really":true}`).wantProblem(t, 400, "invalid")
	// A validation error of the service names its field as the API spells
	// it.
	op.call("POST", "/admin/v1/clients", map[string]any{"name": "a", "grants": []string{"client_credentials"}, "access_ttl": "1ms"}).
		wantProblem(t, 400, "invalid", "access_ttl")
	op.call("POST", "/admin/v1/clients", map[string]any{"name": "a", "grants": []string{"client_credentials"}, "partner_id": "P1"}).want(t, 201)
	op.call("POST", "/admin/v1/clients", map[string]any{"name": "b", "grants": []string{"client_credentials"}, "partner_id": "P1"}).
		wantProblem(t, 409, "conflict", "partner_id")

	// Every problem type is described at its type URI, without credentials.
	anon := &apiClient{e: e}
	for _, code := range []string{"invalid", "unauthenticated", "forbidden", "not_found", "method_not_allowed", "conflict",
		"idempotency_in_progress", "too_large", "unsupported_media_type", "idempotency_key_reused", "internal", "unavailable"} {
		d := anon.call("GET", adminapi.ProblemBase+code, nil).want(t, 200)
		if d.str("type") != adminapi.ProblemBase+code || d.str("description") == "" {
			t.Fatalf("problem type %s: %s", code, d.body)
		}
	}
}

// TestAdminAPIOperatorsOnly: the API acts as an operator only. A client
// owned by a merchant account is refused even with the tokengate:admin
// scope (an operator can set any client's scopes),
// and a merchant's portal credentials are no way in; the operator sees and
// changes every merchant's clients.
func TestAdminAPIOperatorsOnly(t *testing.T) {
	e := start(t, withAdminAPI())
	op, _ := e.operator("ops")
	// The operator scope is never among a merchant's limits.
	op.call("POST", "/admin/v1/accounts", map[string]any{"email": "m@merchant.example", "password": "a merchant password",
		"limits": map[string]any{"grants": []string{"client_credentials"}, "scopes": []string{adminapi.Scope}, "max_clients": 2}}).
		wantProblem(t, 400, "invalid", "limits.scopes")
	acc := op.call("POST", "/admin/v1/accounts", map[string]any{"email": "m@merchant.example", "password": "a merchant password",
		"limits": map[string]any{"grants": []string{"client_credentials"}, "scopes": []string{"payments"}, "max_clients": 2}}).want(t, 201)
	accID := acc.str("id")
	// An operator may still give a merchant a client holding the scope
	// (its scopes are the operator's to set); the API refuses it anyway.
	cr := op.call("POST", "/admin/v1/clients", map[string]any{"name": "merchant's", "grants": []string{"client_credentials"},
		"scopes": []string{adminapi.Scope}, "owner_account": accID}).want(t, 201)
	id, sec := cr.obj["client"].(map[string]any)["client_id"].(string), cr.str("client_secret")
	tok := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {adminapi.Scope}}, id, sec).str("access_token")
	(&apiClient{e: e, token: tok}).call("GET", "/admin/v1/clients", nil).wantProblem(t, 403, "forbidden")
	// The portal account's email and password are not API credentials.
	req, _ := http.NewRequest("GET", e.admin+"/admin/v1/clients", nil)
	req.SetBasicAuth("m@merchant.example", "a merchant password")
	if r := e.do(req); r.status != 401 {
		t.Fatalf("a portal account's password: %d", r.status)
	}
	// The operator sees the merchant's client and can change it.
	if l := op.call("GET", "/admin/v1/clients?owner_account="+accID, nil).want(t, 200); len(l.obj["clients"].([]any)) != 1 {
		t.Fatalf("operator's view of the merchant's clients: %s", l.body)
	}
	op.call("POST", "/admin/v1/clients/"+id+"/disable", nil).want(t, 200)
}
