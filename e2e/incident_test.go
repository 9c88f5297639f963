package e2e

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/tokengate/tokengate/internal/pgtest"
)

// inactiveBody is RFC 7662 §2.2's whole answer for a token the caller may
// not know about.
const inactiveBody = `{"active":false}`

// TestIntrospectionOfOtherClientsTokens (issue 8, point 2): a client sees
// its own tokens; another client's token, opaque or JWT, access or
// refresh, is exactly {"active":false} to it unless it was given
// --can-introspect (at creation or by update, seen within the bound).
func TestIntrospectionOfOtherClientsTokens(t *testing.T) {
	e := start(t, nil)
	owner, ownerSecret := e.createClient("--name", "merchant", "--grant", "client_credentials", "--grant", "password",
		"--grant", "refresh_token", "--scope", "payments")
	jwtOwner, jwtSecret := e.createClient("--name", "jwt merchant", "--grant", "client_credentials", "--token-format", "jwt")
	nosy, nosySecret := e.createClient("--name", "another merchant", "--grant", "client_credentials")
	rs, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	e.createUser("payer", "payer's password")

	cc := url.Values{"grant_type": {"client_credentials"}}
	pw := e.token(url.Values{"grant_type": {"password"}, "username": {"payer"}, "password": {"payer's password"}}, owner, ownerSecret)
	tokens := map[string]struct{ value, id, secret string }{
		"opaque access":   {e.token(cc, owner, ownerSecret).str("access_token"), owner, ownerSecret},
		"password access": {pw.str("access_token"), owner, ownerSecret},
		"refresh":         {pw.str("refresh_token"), owner, ownerSecret},
		"JWT access":      {e.token(cc, jwtOwner, jwtSecret).str("access_token"), jwtOwner, jwtSecret},
	}
	for name, tok := range tokens {
		if in := e.introspect(tok.value, tok.id, tok.secret); in.json["active"] != true || in.str("client_id") != tok.id {
			t.Errorf("%s, by its own client: %s", name, in.body)
		}
		if in := e.introspect(tok.value, nosy, nosySecret); string(in.body) != inactiveBody {
			t.Errorf("%s, by another client: %s, want exactly %s", name, in.body, inactiveBody)
		}
		in := e.introspect(tok.value, rs, rsSecret)
		if in.json["active"] != true || in.str("client_id") != tok.id {
			t.Errorf("%s, by a client with --can-introspect: %s", name, in.body)
		}
		if name == "password access" && in.str("username") != "payer" {
			t.Errorf("%s: no username for the resource server: %s", name, in.body)
		}
	}
	// The nosy client's own token is still its business.
	if !e.active(e.token(cc, nosy, nosySecret).str("access_token"), nosy, nosySecret) {
		t.Error("a client's own token, by itself: inactive")
	}

	e.mustRun("", "client", "update", nosy, "--can-introspect", "true")
	eventually(t, "the permission reaches the server", func() bool {
		return e.active(tokens["opaque access"].value, nosy, nosySecret)
	})
	for name, tok := range tokens {
		if !e.active(tok.value, nosy, nosySecret) {
			t.Errorf("%s, by a client given --can-introspect: inactive", name)
		}
	}
	e.mustRun("", "client", "update", nosy, "--can-introspect", "false")
	eventually(t, "the permission withdrawn", func() bool {
		return string(e.introspect(tokens["JWT access"].value, nosy, nosySecret).body) == inactiveBody
	})
}

// pair is what a grant returned.
type pair struct{ access, refresh string }

// TestIncidentResponseAcrossNodes (issue 8, point 3): on two nodes sharing
// PostgreSQL, an operator's CLI command while they run revokes every token
// of a client or of a user (opaque and JWT access tokens, refresh tokens)
// on both within the documented bound, leaves everyone else's alone and
// does not stop new tokens; disabling a user, changing a password, and
// disable → rotate-secret → enable do what an incident needs.
func TestIncidentResponseAcrossNodes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	a := start(t, withPostgres(dsn))
	b := start(t, withPostgres(dsn))
	nodes := []*env{a, b}
	rs, rsSecret := a.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	app := []string{"--grant", "client_credentials", "--grant", "password", "--grant", "refresh_token"}
	opq, opqSecret := a.createClient(append([]string{"--name", "opaque app"}, app...)...)
	jwt, jwtSecret := a.createClient(append([]string{"--name", "jwt app", "--token-format", "jwt"}, app...)...)
	other, otherSecret := a.createClient(append([]string{"--name", "bystander app"}, app...)...)
	passwords := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		passwords[u] = u + "'s password"
		a.createUser(u, passwords[u])
	}
	secrets := map[string]string{opq: opqSecret, jwt: jwtSecret, other: otherSecret}

	cc := func(node *env, id string) string {
		t.Helper()
		return node.token(url.Values{"grant_type": {"client_credentials"}}, id, secrets[id]).str("access_token")
	}
	login := func(node *env, id, user string) pair {
		t.Helper()
		r := node.token(url.Values{"grant_type": {"password"}, "username": {user}, "password": {passwords[user]}}, id, secrets[id])
		return pair{r.str("access_token"), r.str("refresh_token")}
	}
	// activeAnywhere: the token is active on at least one node.
	activeAnywhere := func(tokens ...string) bool {
		for _, tok := range tokens {
			for _, n := range nodes {
				if n.active(tok, rs, rsSecret) {
					return true
				}
			}
		}
		return false
	}
	mustBeActive := func(what string, tokens ...string) {
		t.Helper()
		for i, tok := range tokens {
			for j, n := range nodes {
				if !n.active(tok, rs, rsSecret) {
					t.Errorf("%s: token %d inactive on node %d", what, i, j)
				}
			}
		}
	}
	// refreshRefused: the refresh token is refused on both nodes. Only
	// called once introspection says it is dead everywhere, so a refresh
	// racing the propagation cannot rotate it into a live one.
	refreshRefused := func(what, id, rt string) {
		t.Helper()
		for j, n := range nodes {
			r := n.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, id, secrets[id])
			if r.status != 400 || r.str("error") != "invalid_grant" {
				t.Errorf("%s: refresh on node %d: %d %s", what, j, r.status, r.body)
			}
		}
	}
	revokedWithinBound := func(what string, tokens ...string) {
		t.Helper()
		took := eventually(t, what, func() bool { return !activeAnywhere(tokens...) })
		t.Logf("%s: inactive on both nodes after %v", what, took)
	}

	t.Run("token revoke --client", func(t *testing.T) {
		opqCC, opqAlice, opqBob := cc(a, opq), login(b, opq, "alice"), login(a, opq, "bob")
		jwtCC, jwtAlice := cc(b, jwt), login(a, jwt, "alice")
		otherCC, otherAlice := cc(a, other), login(b, other, "alice")
		all := []string{opqCC, opqAlice.access, opqAlice.refresh, opqBob.access, opqBob.refresh, jwtCC, jwtAlice.access, jwtAlice.refresh}
		mustBeActive("before", append(all, otherCC, otherAlice.access, otherAlice.refresh)...)

		a.mustRun("", "token", "revoke", "--client", opq)
		a.mustRun("", "token", "revoke", "--client", jwt, "--json")
		revokedWithinBound("every token of both clients", all...)
		refreshRefused("opaque app", opq, opqAlice.refresh)
		refreshRefused("jwt app", jwt, jwtAlice.refresh)
		mustBeActive("another client's tokens", otherCC, otherAlice.access, otherAlice.refresh)

		fresh := []string{cc(a, opq), cc(b, jwt)}
		p := login(b, opq, "alice")
		fresh = append(fresh, p.access, p.refresh)
		mustBeActive("tokens issued right after", fresh...)
		a.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {p.refresh}}, opq, opqSecret)
	})

	t.Run("token revoke --user", func(t *testing.T) {
		opqAlice, jwtAlice, otherAlice := login(a, opq, "alice"), login(b, jwt, "alice"), login(a, other, "alice")
		bob := login(b, other, "bob")
		clientToken := cc(a, other)
		mustBeActive("before", opqAlice.access, opqAlice.refresh, jwtAlice.access, jwtAlice.refresh, otherAlice.access, otherAlice.refresh)

		b.mustRun("", "token", "revoke", "--user", "alice")
		revokedWithinBound("every token of the user", opqAlice.access, opqAlice.refresh, jwtAlice.access, jwtAlice.refresh,
			otherAlice.access, otherAlice.refresh)
		refreshRefused("the user's refresh (opaque app)", opq, opqAlice.refresh)
		refreshRefused("the user's refresh (jwt app)", jwt, jwtAlice.refresh)
		mustBeActive("another user's and the client's own tokens", bob.access, bob.refresh, clientToken)
		p := login(b, other, "alice")
		mustBeActive("a login right after", p.access, p.refresh)
	})

	t.Run("user disable and set-password", func(t *testing.T) {
		carol, dave, bob := login(a, other, "carol"), login(b, opq, "dave"), login(a, jwt, "bob")
		a.mustRun("", "user", "disable", "carol")
		passwords["dave"] = "dave's new password"
		b.mustRun(passwords["dave"]+"\n", "user", "set-password", "dave")
		revokedWithinBound("a disabled user's and a changed password's tokens", carol.access, carol.refresh, dave.access, dave.refresh)
		refreshRefused("disabled user", other, carol.refresh)
		refreshRefused("changed password", opq, dave.refresh)
		mustBeActive("another user", bob.access, bob.refresh)
		for j, n := range nodes {
			r := n.postForm("/oauth/token", url.Values{"grant_type": {"password"}, "username": {"dave"}, "password": {"dave's password"}}, opq, opqSecret)
			if r.status != 400 || r.str("error") != "invalid_grant" {
				t.Errorf("the old password on node %d: %d %s", j, r.status, r.body)
			}
		}
		p := login(a, opq, "dave")
		mustBeActive("a login with the new password", p.access, p.refresh)
	})

	t.Run("client disable, rotate-secret, enable", func(t *testing.T) {
		old := []string{cc(a, jwt)}
		p := login(b, jwt, "bob")
		old = append(old, p.access, p.refresh)
		a.mustRun("", "client", "disable", jwt)
		var rotated map[string]string
		if err := json.Unmarshal([]byte(a.mustRun("", "client", "rotate-secret", jwt, "--json")), &rotated); err != nil || rotated["client_secret"] == "" {
			t.Fatalf("rotate-secret: %v %v", err, rotated)
		}
		a.remember(rotated["client_secret"])
		b.remember(rotated["client_secret"])
		a.mustRun("", "client", "enable", jwt)
		oldSecret := secrets[jwt]
		secrets[jwt] = rotated["client_secret"]
		took := eventually(t, "the new secret works on both nodes", func() bool {
			for _, n := range nodes {
				if n.postForm("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, jwt, secrets[jwt]).status != 200 {
					return false
				}
			}
			return true
		})
		t.Logf("re-enabled with the new secret on both nodes after %v", took)
		if activeAnywhere(old...) {
			t.Error("a token issued before the disable is active again after enable")
		}
		refreshRefused("refresh issued before the disable", jwt, p.refresh)
		for j, n := range nodes {
			if r := n.postForm("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, jwt, oldSecret); r.status != 401 {
				t.Errorf("the old secret on node %d: %d %s", j, r.status, r.body)
			}
		}
		mustBeActive("tokens with the new secret", cc(b, jwt))
	})
}
