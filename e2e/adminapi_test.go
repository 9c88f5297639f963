package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/adminapi"
)

func snapPublicPEM(t *testing.T) string {
	spki, err := x509.MarshalPKIXPublicKey(&testSnapKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
}

func (e *env) tokenWorks(id, secret string) bool {
	e.t.Helper()
	r := e.postForm("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, id, secret)
	return r.status == http.StatusOK
}

// TestAdminAPIEveryRoute goes through every route of the admin API over
// real HTTP, as an operator client bootstrapped with the CLI, checks what
// each does (through the token endpoint and the CLI where it shows), and
// that every response conforms to the OpenAPI document; it fails if a
// route was left out.
func TestAdminAPIEveryRoute(t *testing.T) {
	e := start(t, withAdminAPI())
	op, opID := e.operator("ops")

	// Meta.
	doc := op.call("GET", "/admin/v1/openapi.json", nil).want(t, 200)
	if doc.obj["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %.200s", doc.body)
	}
	pt := op.call("GET", "/admin/v1/problems/idempotency_key_reused", nil).want(t, 200)
	if pt.obj["status"] != float64(422) || pt.str("type") != "/admin/v1/problems/idempotency_key_reused" {
		t.Fatalf("problem type: %s", pt.body)
	}
	op.call("GET", "/admin/v1/problems/nope", nil).wantProblem(t, 404, "not_found")

	// Clients: create, and the secret works at the token endpoint.
	cr := op.call("POST", "/admin/v1/clients", map[string]any{
		"name": "Acme prod", "grants": []string{"client_credentials"}, "scopes": []string{"payments", "refunds"},
		"access_ttl": "15m",
	}).want(t, 201)
	client := cr.obj["client"].(map[string]any)
	id, secret := client["client_id"].(string), cr.str("client_secret")
	if cr.header.Get("Location") != "/admin/v1/clients/"+id || secret == "" || client["access_ttl"] != "15m0s" {
		t.Fatalf("create: Location %q, %s", cr.header.Get("Location"), cr.body)
	}
	if !e.tokenWorks(id, secret) {
		t.Fatal("the created client's secret does not get a token")
	}
	for i := range 3 {
		op.call("POST", "/admin/v1/clients", map[string]any{"name": fmt.Sprintf("bulk %d", i), "grants": []string{"client_credentials"}}).want(t, 201)
	}

	// List: filters and paging.
	page := op.call("GET", "/admin/v1/clients?name=acme", nil).want(t, 200)
	if cs := page.obj["clients"].([]any); len(cs) != 1 || cs[0].(map[string]any)["client_id"] != id {
		t.Fatalf("list ?name=acme: %s", page.body)
	}
	var seen []string
	for after := ""; ; {
		p := op.call("GET", "/admin/v1/clients?limit=2&after="+url.QueryEscape(after), nil).want(t, 200)
		for _, c := range p.obj["clients"].([]any) {
			seen = append(seen, c.(map[string]any)["client_id"].(string))
		}
		if after = p.str("next"); after == "" {
			break
		}
	}
	if len(seen) != 5 || !slices.IsSorted(seen) || !slices.Contains(seen, opID) {
		t.Fatalf("paging saw %v", seen)
	}
	if p := op.call("GET", "/admin/v1/clients?disabled=true", nil).want(t, 200); len(p.obj["clients"].([]any)) != 0 {
		t.Fatalf("?disabled=true: %s", p.body)
	}
	op.call("GET", "/admin/v1/clients?owner=x", nil).wantProblem(t, 400, "invalid", "owner")
	op.call("GET", "/admin/v1/clients?limit=0", nil).wantProblem(t, 400, "invalid", "limit")

	// Show and update (PATCH: absent stays, [] clears, null is refused).
	if g := op.call("GET", "/admin/v1/clients/"+id, nil).want(t, 200); g.str("name") != "Acme prod" || strings.Contains(string(g.body), secret) {
		t.Fatalf("show: %s", g.body)
	}
	up := op.call("PATCH", "/admin/v1/clients/"+id, map[string]any{"name": "Acme", "scopes": []string{"payments"}}).want(t, 200)
	if up.str("name") != "Acme" || fmt.Sprint(up.obj["scopes"]) != "[payments]" || up.obj["access_ttl"] != "15m0s" {
		t.Fatalf("patch: %s", up.body)
	}
	op.call("PATCH", "/admin/v1/clients/"+id, `{"scopes":null}`).wantProblem(t, 400, "invalid", "scopes")
	op.call("PATCH", "/admin/v1/clients/"+id, `{"scope":["a"]}`).wantProblem(t, 400, "invalid", "scope")
	op.call("PATCH", "/admin/v1/clients/"+id, map[string]any{"grants": []string{"nope"}}).wantProblem(t, 400, "invalid", "grants")
	op.call("PATCH", "/admin/v1/clients/nope", map[string]any{"name": "x"}).wantProblem(t, 404, "not_found")

	// Disable: its tokens stop; enable: a new one works.
	tok := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
	if d := op.call("POST", "/admin/v1/clients/"+id+"/disable", nil).want(t, 200); d.obj["disabled"] != true {
		t.Fatalf("disable: %s", d.body)
	}
	eventually(t, "a disabled client gets no token", func() bool { return !e.tokenWorks(id, secret) })
	if in := op.call("POST", "/admin/v1/tokens/introspect", map[string]any{"token": tok}).want(t, 200); in.obj["active"] != false {
		t.Fatalf("a disabled client's token: %s", in.body)
	}
	op.call("POST", "/admin/v1/clients/"+id+"/enable", nil).want(t, 200)
	eventually(t, "an enabled client gets tokens", func() bool { return e.tokenWorks(id, secret) })
	op.call("POST", "/admin/v1/clients/"+id+"/enable", `{"x":1}`).wantProblem(t, 400, "invalid")

	// Rotate with grace: both secrets work.
	rot := op.call("POST", "/admin/v1/clients/"+id+"/rotate-secret", map[string]any{"grace": "1h"}).want(t, 200)
	newSecret := rot.str("client_secret")
	if newSecret == "" || newSecret == secret || rot.str("previous_expires_at") == "" {
		t.Fatalf("rotate: %s", rot.body)
	}
	eventually(t, "the new secret works", func() bool { return e.tokenWorks(id, newSecret) })
	if !e.tokenWorks(id, secret) {
		t.Fatal("the previous secret stopped during its grace")
	}
	op.call("POST", "/admin/v1/clients/"+id+"/rotate-secret", map[string]any{"grace": "-1h"}).wantProblem(t, 400, "invalid", "grace")

	// SNAP key: validated, fingerprint shown.
	sk := op.call("PUT", "/admin/v1/clients/"+id+"/snap-key", map[string]any{"snap_public_key": snapPublicPEM(t)}).want(t, 200)
	if len(sk.str("snap_key_fingerprint")) != 64 || !slices.Contains(sk.obj["auth_methods"].([]any), any("snap_signature")) {
		t.Fatalf("snap key: %s", sk.body)
	}
	op.call("PUT", "/admin/v1/clients/"+id+"/snap-key", map[string]any{"snap_public_key": "not a key"}).wantProblem(t, 400, "invalid", "snap_public_key")

	// Revoke all: the token issued before is inactive.
	tok = e.token(url.Values{"grant_type": {"client_credentials"}}, id, newSecret).str("access_token")
	rv := op.call("POST", "/admin/v1/clients/"+id+"/revoke-tokens", nil).want(t, 200)
	if rv.str("client_id") != id || rv.str("tokens_not_before") == "" {
		t.Fatalf("revoke-tokens: %s", rv.body)
	}
	eventually(t, "revoked tokens are inactive", func() bool { return !e.active(tok, id, newSecret) })

	// Import and export.
	imp := []map[string]any{
		{"client_id": "merchant-001", "client_secret": "an existing secret of thirty-two chars!", "name": "Imported",
			"grants": []string{"client_credentials"}, "scopes": []string{"payments"}},
	}
	ir := op.call("POST", "/admin/v1/client-imports?dry_run=true", imp).want(t, 200)
	if ir.obj["dry_run"] != true || fmt.Sprint(ir.obj["created"]) != "[merchant-001]" {
		t.Fatalf("dry run: %s", ir.body)
	}
	op.call("GET", "/admin/v1/clients/merchant-001", nil).wantProblem(t, 404, "not_found")
	op.call("POST", "/admin/v1/client-imports", imp).want(t, 200)
	if !e.tokenWorks("merchant-001", "an existing secret of thirty-two chars!") {
		t.Fatal("the imported client's existing secret does not work")
	}
	if again := op.call("POST", "/admin/v1/client-imports", imp).want(t, 200); fmt.Sprint(again.obj["unchanged"]) != "[merchant-001]" {
		t.Fatalf("import again: %s", again.body)
	}
	bad := op.call("POST", "/admin/v1/client-imports", "[\n"+`{"client_id":"m2","name":"x","grants":["client_credentials"]},`+"\n"+
		`{"client_id":"m3","name":"y","grants":["teleport"]}`+"\n]").wantProblem(t, 400, "invalid", "grants")
	if fe := bad.Errors[0]; fe.Record != 2 || fe.Line != 3 || fe.ClientID != "m3" {
		t.Fatalf("import error: %+v", fe)
	}
	op.call("GET", "/admin/v1/clients/m2", nil).wantProblem(t, 404, "not_found")
	ex := op.call("GET", "/admin/v1/client-export", nil).want(t, 200)
	if len(ex.arr) != 6 || strings.Contains(string(ex.body), `"client_secret"`) {
		t.Fatalf("export: %d records: %s", len(ex.arr), ex.body)
	}

	// Users.
	u := op.call("POST", "/admin/v1/users", map[string]any{"username": "alice", "password": "alice's password"}).want(t, 201)
	if u.header.Get("Location") != "/admin/v1/users/alice" || strings.Contains(string(u.body), "password") {
		t.Fatalf("user create: %s", u.body)
	}
	op.call("POST", "/admin/v1/users", map[string]any{"username": "alice", "password": "another password"}).wantProblem(t, 409, "conflict", "username")
	op.call("POST", "/admin/v1/users", map[string]any{"username": "bob", "password": "short"}).wantProblem(t, 400, "invalid", "password")
	if l := op.call("GET", "/admin/v1/users", nil).want(t, 200); len(l.obj["users"].([]any)) != 1 {
		t.Fatalf("users: %s", l.body)
	}
	op.call("GET", "/admin/v1/users/alice", nil).want(t, 200)
	op.call("GET", "/admin/v1/users/nobody", nil).wantProblem(t, 404, "not_found")
	pw := e.createClientPassword()
	utok := e.token(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice's password"}}, pw.id, pw.secret).str("access_token")
	op.call("PUT", "/admin/v1/users/alice/password", map[string]any{"password": "alice's new password"}).want(t, 200)
	eventually(t, "a password change revokes the user's tokens", func() bool { return !e.active(utok, pw.id, pw.secret) })
	e.token(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice's new password"}}, pw.id, pw.secret)
	if d := op.call("POST", "/admin/v1/users/alice/disable", nil).want(t, 200); d.obj["disabled"] != true {
		t.Fatalf("user disable: %s", d.body)
	}
	op.call("POST", "/admin/v1/users/alice/enable", nil).want(t, 200)
	if r := op.call("POST", "/admin/v1/users/alice/revoke-tokens", nil).want(t, 200); r.str("username") != "alice" {
		t.Fatalf("user revoke-tokens: %s", r.body)
	}

	// Signing keys.
	keys := op.call("GET", "/admin/v1/signing-keys", nil).want(t, 200)
	before := len(keys.obj["keys"].([]any))
	nk := op.call("POST", "/admin/v1/signing-keys/rotate", map[string]any{"alg": "EdDSA"}).want(t, 200)
	if nk.str("alg") != "EdDSA" || nk.str("state") != "current" || strings.Contains(string(nk.body), "PRIVATE") {
		t.Fatalf("rotate key: %s", nk.body)
	}
	if after := op.call("GET", "/admin/v1/signing-keys", nil).want(t, 200); len(after.obj["keys"].([]any)) != before+1 {
		t.Fatalf("keys after rotation: %s", after.body)
	}
	op.call("POST", "/admin/v1/signing-keys/rotate", map[string]any{"alg": "HS256"}).wantProblem(t, 400, "invalid", "alg")

	// Tokens: introspect any client's token, revoke it.
	tok = e.token(url.Values{"grant_type": {"client_credentials"}}, id, newSecret).str("access_token")
	in := op.call("POST", "/admin/v1/tokens/introspect", map[string]any{"token": tok}).want(t, 200)
	if in.obj["active"] != true || in.str("client_id") != id {
		t.Fatalf("introspect: %s", in.body)
	}
	op.call("POST", "/admin/v1/tokens/revoke", map[string]any{"token": tok}).want(t, 204)
	if in := op.call("POST", "/admin/v1/tokens/introspect", map[string]any{"token": tok}).want(t, 200); in.obj["active"] != false || len(in.obj) != 1 {
		t.Fatalf("introspect after revoke: %s", in.body)
	}
	op.call("POST", "/admin/v1/tokens/revoke", map[string]any{"token": "garbage-that-is-no-token"}).wantProblem(t, 404, "not_found")
	op.call("POST", "/admin/v1/tokens/introspect", map[string]any{}).wantProblem(t, 400, "invalid", "token")

	// Accounts.
	acc := op.call("POST", "/admin/v1/accounts", map[string]any{
		"email": "finance@merchant.example", "password": "a merchant password",
		"limits": map[string]any{"grants": []string{"client_credentials"}, "scopes": []string{"payments"}, "max_clients": 2},
	}).want(t, 201)
	accID := acc.str("id")
	if acc.header.Get("Location") != "/admin/v1/accounts/"+accID || acc.str("role") != "merchant" || strings.Contains(string(acc.body), "password") {
		t.Fatalf("account create: %s", acc.body)
	}
	op.call("POST", "/admin/v1/accounts", map[string]any{"email": "FINANCE@merchant.example", "password": "another password"}).
		wantProblem(t, 409, "conflict", "email")
	op.call("POST", "/admin/v1/accounts", map[string]any{"email": "x@y.z", "password": "long enough", "limits": map[string]any{"max_clients": -1}}).
		wantProblem(t, 400, "invalid", "limits.max_clients")
	if l := op.call("GET", "/admin/v1/accounts", nil).want(t, 200); len(l.obj["accounts"].([]any)) != 1 {
		t.Fatalf("accounts: %s", l.body)
	}
	op.call("GET", "/admin/v1/accounts/"+accID, nil).want(t, 200)
	pa := op.call("PATCH", "/admin/v1/accounts/"+accID, map[string]any{"limits": map[string]any{"max_clients": 5, "snap_keys": true}, "totp_required": true}).want(t, 200)
	if l := pa.obj["limits"].(map[string]any); l["max_clients"] != float64(5) || pa.obj["totp_required"] != true {
		t.Fatalf("account patch: %s", pa.body)
	}
	op.call("POST", "/admin/v1/accounts/"+accID+"/disable", nil).want(t, 200)
	op.call("POST", "/admin/v1/accounts/"+accID+"/enable", nil).want(t, 200)
	if sp := op.call("PUT", "/admin/v1/accounts/"+accID+"/password", map[string]any{"password": "a new merchant password"}).want(t, 200); sp.str("sessions_not_before") == "" {
		t.Fatalf("set password: %s", sp.body)
	}
	op.call("POST", "/admin/v1/accounts/"+accID+"/reset-totp", nil).want(t, 200)
	op.call("GET", "/admin/v1/accounts/nope", nil).wantProblem(t, 404, "not_found")
	// The client given to the account is listed by owner.
	op.call("PATCH", "/admin/v1/clients/"+id, map[string]any{"owner_account": accID}).want(t, 200)
	if p := op.call("GET", "/admin/v1/clients?owner_account="+accID, nil).want(t, 200); len(p.obj["clients"].([]any)) != 1 {
		t.Fatalf("?owner_account: %s", p.body)
	}

	// Audit: every change above, by this operator client; filters and
	// paging; the chain verifies.
	ev := op.call("GET", "/admin/v1/audit-events?client_id="+url.QueryEscape(id), nil).want(t, 200)
	var actions []string
	for _, x := range ev.obj["events"].([]any) {
		m := x.(map[string]any)
		actions = append(actions, m["action"].(string))
		if a := m["actor"].(map[string]any); a["kind"] != "api" || a["id"] != opID || a["name"] != "ops" || a["remote"] == "" {
			t.Errorf("event actor %v", a)
		}
	}
	want := "client.create client.update client.disable client.enable client.rotate_secret client.set_snap_key client.revoke_tokens token.revoke client.update"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("audit of the client:\n got %s\nwant %s", got, want)
	}
	desc := op.call("GET", "/admin/v1/audit-events?order=desc&limit=2", nil).want(t, 200)
	evs := desc.obj["events"].([]any)
	next, _ := desc.obj["next"].(float64)
	if len(evs) != 2 || next == 0 || evs[0].(map[string]any)["seq"].(float64) <= evs[1].(map[string]any)["seq"].(float64) {
		t.Fatalf("audit desc: %s", desc.body)
	}
	older := op.call("GET", fmt.Sprintf("/admin/v1/audit-events?order=desc&limit=2&before=%d", int64(next)), nil).want(t, 200)
	if s := older.obj["events"].([]any)[0].(map[string]any)["seq"].(float64); s >= evs[1].(map[string]any)["seq"].(float64) {
		t.Fatalf("audit next page: %s", older.body)
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	op.call("GET", "/admin/v1/audit-events?object_type=user&since="+since, nil).want(t, 200)
	op.call("GET", "/admin/v1/audit-events?since=yesterday", nil).wantProblem(t, 400, "invalid", "since")
	op.call("GET", "/admin/v1/audit-events?object_id=x", nil).wantProblem(t, 400, "invalid", "object_id")
	if v := op.call("GET", "/admin/v1/audit-events/verify", nil).want(t, 200); v.obj["ok"] != true || v.obj["events"].(float64) < 20 {
		t.Fatalf("verify: %s", v.body)
	}
	raw := op.call("GET", "/admin/v1/audit-events?limit=1000", nil).want(t, 200)
	for _, s := range []string{secret, newSecret, "alice's password", "a merchant password", "an existing secret"} {
		if strings.Contains(string(raw.body), s) {
			t.Fatalf("the audit trail shows a secret (%.6s...)", s)
		}
	}

	// Delete, last.
	op.call("DELETE", "/admin/v1/clients/"+id, nil).want(t, 204)
	op.call("GET", "/admin/v1/clients/"+id, nil).wantProblem(t, 404, "not_found")
	op.call("DELETE", "/admin/v1/clients/"+id, nil).wantProblem(t, 404, "not_found")
	eventually(t, "a deleted client gets no token", func() bool { return !e.tokenWorks(id, newSecret) })

	for _, rt := range adminapi.Routes() {
		if !op.hits[rt.Method+" "+rt.Path] {
			t.Errorf("route %s %s was not exercised", rt.Method, rt.Path)
		}
	}
}

type creds struct{ id, secret string }

// createClientPassword registers a client of the password grant.
func (e *env) createClientPassword() creds {
	e.t.Helper()
	id, sec := e.createClient("--name", "app", "--grant", "password")
	return creds{id, sec}
}
