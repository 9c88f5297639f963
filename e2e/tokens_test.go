package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/tokengate/config"
)

func (e *env) jwks() jose.JSONWebKeySet {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.base+"/.well-known/jwks.json", nil)
	r := e.do(req)
	var set jose.JSONWebKeySet
	if r.status != 200 || json.Unmarshal(r.body, &set) != nil {
		e.t.Fatalf("jwks: %d %s", r.status, r.body)
	}
	return set
}

type accessClaims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// verifyJWT checks a token against the published JWKS the way a resource
// server would, returning its header and claims.
func (e *env) verifyJWT(tok string) (jose.Header, accessClaims) {
	e.t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		e.t.Fatalf("parse JWT: %v", err)
	}
	h := parsed.Headers[0]
	set := e.jwks()
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("kid %q: %d keys in the JWKS", h.KeyID, len(keys))
	}
	var c accessClaims
	if err := parsed.Claims(keys[0].Key, &c); err != nil {
		e.t.Fatalf("verify JWT with the JWKS key: %v", err)
	}
	return h, c
}

func TestJWTAccessTokensRFC9068(t *testing.T) {
	e := start(t, nil)
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			args := []string{"--name", "jwt", "--grant", "client_credentials", "--scope", "payouts", "--token-format", "jwt"}
			if alg != "ES256" {
				args = append(args, "--signing-alg", alg)
			}
			id, secret := e.createClient(args...)
			before := time.Now().Add(-time.Second)
			r := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"payouts"}}, id, secret)
			h, c := e.verifyJWT(r.str("access_token"))
			if h.Algorithm != alg || h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID == "" {
				t.Errorf("header alg=%s typ=%v kid=%q", h.Algorithm, h.ExtraHeaders["typ"], h.KeyID)
			}
			if c.Issuer != "http://tokengate.test" || c.Subject != id || c.ClientID != id || c.Scope != "payouts" ||
				c.ID == "" || len(c.Audience) == 0 {
				t.Errorf("claims %+v", c)
			}
			if c.IssuedAt.Time().Before(before) || c.Expiry.Time().Sub(c.IssuedAt.Time()) != time.Hour {
				t.Errorf("iat %v exp %v", c.IssuedAt.Time(), c.Expiry.Time())
			}
			if !e.active(r.str("access_token"), id, secret) {
				t.Error("a fresh JWT introspects inactive")
			}
		})
	}
}

func TestKeyRotationKeepsOldTokensVerifiable(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Tokens.KeyActivationDelay = 3 * time.Second })
	id, secret := e.createClient("--name", "jwt", "--grant", "client_credentials", "--token-format", "jwt")
	old := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
	oldHeader, _ := e.verifyJWT(old)

	out := e.mustRun("", "key", "rotate", "--json")
	var rotated struct{ KID string }
	if err := json.Unmarshal([]byte(out), &rotated); err != nil || rotated.KID == "" || rotated.KID == oldHeader.KeyID {
		t.Fatalf("key rotate: %q", out)
	}
	// Published at once, so resource servers can fetch it before it signs...
	eventually(t, "rotated key published", func() bool {
		set := e.jwks()
		return len(set.Key(rotated.KID)) == 1
	})
	// ...while the replaced key goes on signing until the activation delay.
	during := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
	if h, _ := e.verifyJWT(during); h.KeyID != oldHeader.KeyID {
		t.Errorf("signed with %s right after rotation, want the replaced key %s", h.KeyID, oldHeader.KeyID)
	}
	var fresh string
	eventuallyWithin(t, 6*time.Second, "server signs with the rotated key", func() bool {
		fresh = e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
		h, _ := e.verifyJWT(fresh)
		return h.KeyID == rotated.KID
	})
	// The old token still verifies against the published JWKS and is active.
	e.verifyJWT(old)
	if !e.active(old, id, secret) {
		t.Error("a token signed by the retired key introspects inactive")
	}
	var keys []struct{ KID, State string }
	json.Unmarshal([]byte(e.mustRun("", "key", "list", "--json")), &keys)
	states := map[string]string{}
	for _, k := range keys {
		states[k.KID] = k.State
	}
	if states[oldHeader.KeyID] != "retired" || states[rotated.KID] != "current" {
		t.Errorf("key list: %v", states)
	}
}

func TestRevocation(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--grant", "password", "--grant", "refresh_token")
	jid, jsecret := e.createClient("--name", "j", "--grant", "client_credentials", "--token-format", "jwt")
	e.createUser("dave", "dave's password")

	revoke := func(tok, id, secret string, hint string) *response {
		form := url.Values{"token": {tok}}
		if hint != "" {
			form.Set("token_type_hint", hint)
		}
		return e.postForm("/oauth/revoke", form, id, secret)
	}

	t.Run("opaque access token", func(t *testing.T) {
		tok := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
		if r := revoke(tok, id, secret, "access_token"); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if e.active(tok, id, secret) {
			t.Error("revoked token introspects active")
		}
	})
	t.Run("refresh token revokes its family", func(t *testing.T) {
		r := e.token(url.Values{"grant_type": {"password"}, "username": {"dave"}, "password": {"dave's password"}}, id, secret)
		if rr := revoke(r.str("refresh_token"), id, secret, ""); rr.status != 200 {
			t.Fatalf("revoke: %d %s", rr.status, rr.body)
		}
		if e.active(r.str("access_token"), id, secret) || e.active(r.str("refresh_token"), id, secret) {
			t.Error("tokens of a revoked refresh token's family still active")
		}
		use := e.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, id, secret)
		if use.str("error") != "invalid_grant" {
			t.Errorf("revoked refresh token still exchanges: %s", use.body)
		}
	})
	t.Run("JWT", func(t *testing.T) {
		tok := e.token(url.Values{"grant_type": {"client_credentials"}}, jid, jsecret).str("access_token")
		if r := revoke(tok, jid, jsecret, "access_token"); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if e.active(tok, jid, jsecret) {
			t.Error("revoked JWT introspects active")
		}
	})
	t.Run("unknown token is not an error", func(t *testing.T) {
		if r := revoke("tga_nonsense", id, secret, ""); r.status != 200 {
			t.Errorf("unknown token: %d %s", r.status, r.body)
		}
	})
	t.Run("another client's token is refused and stays active", func(t *testing.T) {
		tok := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
		r := revoke(tok, jid, jsecret, "")
		if r.status != 400 || r.str("error") != "unauthorized_client" {
			t.Errorf("revoking another client's token: %d %s", r.status, r.body)
		}
		if !e.active(tok, id, secret) {
			t.Error("another client revoked the token")
		}
	})
	t.Run("operator CLI", func(t *testing.T) {
		tok := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
		out := e.mustRun("", "token", "introspect", "--json", tok)
		if !strings.Contains(out, `"active": true`) {
			t.Fatalf("token introspect: %s", out)
		}
		e.mustRun(tok+"\n", "token", "revoke", "-")
		if e.active(tok, id, secret) {
			t.Error("token revoke via the CLI did not revoke")
		}
		if out := e.mustRun("", "token", "introspect", "--json", tok); !strings.Contains(out, `"active": false`) {
			t.Errorf("token introspect after revoke: %s", out)
		}
		// A JWT, revoked by the CLI, whose default issuer differs from the
		// server's (the server was configured with its own).
		jwt := e.token(url.Values{"grant_type": {"client_credentials"}}, jid, jsecret).str("access_token")
		e.mustRun(jwt+"\n", "token", "revoke", "-")
		if e.active(jwt, jid, jsecret) {
			t.Error("a JWT revoked through the CLI is still active on the server")
		}
		if _, errOut, code := e.run("tga_nonsense\n", "token", "revoke", "-"); code == 0 || !strings.Contains(errOut, "not a token of this server") {
			t.Errorf("revoking garbage: exit %d, %q", code, errOut)
		}
	})
}

func TestIntrospectionInactiveCases(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--access-ttl", "1s")
	tok := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
	for _, bogus := range []string{"garbage", "tga_" + strings.Repeat("A", 72), tok[:len(tok)-2] + "AA", "eyJhbGciOiJub25lIn0.e30."} {
		r := e.introspect(bogus, id, secret)
		if string(r.body) != `{"active":false}`+"\n" && string(r.body) != `{"active":false}` {
			t.Errorf("introspect %q: %s", bogus, r.body)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if e.active(tok, id, secret) {
		t.Error("an expired token introspects active")
	}
}
