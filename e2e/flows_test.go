package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokengate/tokengate/config"
)

func TestClientCredentialsWithRealClient(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials",
		"--scope", "payments", "--scope", "refunds", "--access-ttl", "15m")
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: e.base + "/oauth/token",
			Scopes: []string{"payments"}, AuthStyle: style}
		before := time.Now()
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("auth style %v: %v", style, err)
		}
		e.remember(tok.AccessToken)
		if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
			t.Fatalf("token %+v", tok)
		}
		if d := tok.Expiry.Sub(before); d < 15*time.Minute-5*time.Second || d > 15*time.Minute+5*time.Second {
			t.Errorf("expiry in %v, want 15m", d)
		}
		if tok.RefreshToken != "" {
			t.Error("client_credentials issued a refresh token by default")
		}
		in := e.introspect(tok.AccessToken, id, secret)
		if in.json["active"] != true || in.str("client_id") != id || in.str("scope") != "payments" || in.str("token_type") != "Bearer" {
			t.Errorf("introspection %s", in.body)
		}
	}
	if !strings.Contains(e.logs.String(), "tokengate listening") {
		t.Error("the server logged nothing: the secret-leak check would be vacuous")
	}
}

func TestTokenResponseIsRFC6749(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "a", "--scope", "b",
		"--default-scope", "a", "--access-ttl", "15m")
	r := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret)
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	if got := r.header.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma %q", got)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
	if r.str("token_type") != "Bearer" || r.json["expires_in"] != float64(900) {
		t.Errorf("response %s", r.body)
	}
	// No scope was asked: the client's default was granted, and RFC 6749
	// §5.1 then requires it in the response.
	if r.str("scope") != "a" {
		t.Errorf("scope %q, want the default scope a", r.str("scope"))
	}
	if !strings.HasPrefix(r.str("access_token"), "tga_") {
		t.Errorf("opaque token lacks its prefix: %s", r.body)
	}
	// The whole allowed set, asked for explicitly.
	r = e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"b a"}}, id, secret)
	if r.status != 200 {
		t.Fatal(string(r.body))
	}
}

func TestJSONRequestBody(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "refer_merchant")
	body := `{"grant_type":"client_credentials","client_id":"` + id + `","client_secret":"` + secret + `","scope":"refer_merchant"}`
	req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	r := e.do(req)
	if r.status != 200 || r.str("access_token") == "" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

func TestCompatibilityOptions(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Endpoints = append(c.Endpoints,
			config.Endpoint{Path: "/partner/oauth/token", Dialect: "oauth2", Options: map[string]any{"created_at": true}},
			config.Endpoint{Path: "/legacy/oauth/token", Dialect: "oauth2", Options: map[string]any{"token_type": "bearer"}})
	})
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "send_sign_in_otp")
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"send_sign_in_otp"}}

	before := time.Now().Unix()
	r := e.postForm("/partner/oauth/token", form, id, secret)
	created, _ := r.json["created_at"].(float64)
	if r.status != 200 || int64(created) < before || int64(created) > time.Now().Unix() {
		t.Errorf("created_at option: %d %s", r.status, r.body)
	}
	r = e.postForm("/legacy/oauth/token", form, id, secret)
	if r.status != 200 || r.str("token_type") != "bearer" || r.json["created_at"] != nil {
		t.Errorf("token_type option: %d %s", r.status, r.body)
	}
	r = e.postForm("/oauth/token", form, id, secret)
	if r.str("token_type") != "Bearer" || r.json["created_at"] != nil {
		t.Errorf("default endpoint changed: %s", r.body)
	}
}

func TestPasswordAndRefreshRotation(t *testing.T) {
	// Without the reuse grace, so a reuse right after the rotation is one
	// (TestRefreshReuseGrace covers the window).
	e := start(t, func(c *config.Config) { c.Tokens.RefreshReuseGrace = 0 })
	id, secret := e.createClient("--name", "app", "--grant", "password", "--grant", "refresh_token",
		"--scope", "read", "--scope", "write", "--scope", "trust")
	e.createUser("6982129990", "Test@1234567")

	r := e.token(url.Values{"grant_type": {"password"}, "username": {"6982129990"}, "password": {"Test@1234567"},
		"scope": {"read write trust"}}, id, secret)
	access1, refresh1 := r.str("access_token"), r.str("refresh_token")
	if access1 == "" || !strings.HasPrefix(refresh1, "tgr_") {
		t.Fatalf("password grant: %s", r.body)
	}
	in := e.introspect(access1, id, secret)
	if in.str("username") != "6982129990" || in.str("sub") != "6982129990" {
		t.Errorf("introspection of a password-grant token: %s", in.body)
	}

	// Rotation: a new pair, narrowing the scope is allowed, widening is not.
	r = e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh1}, "scope": {"read"}}, id, secret)
	access2, refresh2 := r.str("access_token"), r.str("refresh_token")
	if refresh2 == "" || refresh2 == refresh1 || access2 == access1 {
		t.Fatalf("refresh did not rotate: %s", r.body)
	}
	if e.introspect(access2, id, secret).str("scope") != "read" {
		t.Error("narrowed scope not applied")
	}
	bad := e.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh2}, "scope": {"admin"}}, id, secret)
	if bad.status != 400 || bad.str("error") != "invalid_scope" {
		t.Errorf("widening scope on refresh: %d %s", bad.status, bad.body)
	}
	if e.active(refresh1, id, secret) {
		t.Error("a rotated refresh token introspects active")
	}

	// Reuse of the rotated token: invalid_grant, and the whole family dies
	// (RFC 9700 §4.14), including the legitimate newest pair.
	reuse := e.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh1}}, id, secret)
	if reuse.status != 400 || reuse.str("error") != "invalid_grant" {
		t.Fatalf("reuse: %d %s", reuse.status, reuse.body)
	}
	for name, tok := range map[string]string{"access1": access1, "access2": access2, "refresh2": refresh2} {
		if e.active(tok, id, secret) {
			t.Errorf("%s still active after refresh-token reuse", name)
		}
	}
	again := e.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh2}}, id, secret)
	if again.status != 400 || again.str("error") != "invalid_grant" {
		t.Errorf("newest refresh token after reuse: %d %s", again.status, again.body)
	}
}

func TestRefreshTokenBoundToClient(t *testing.T) {
	e := start(t, nil)
	id1, s1 := e.createClient("--name", "a", "--grant", "password", "--grant", "refresh_token")
	id2, s2 := e.createClient("--name", "b", "--grant", "password", "--grant", "refresh_token")
	e.createUser("alice", "correct horse battery")
	r := e.token(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"correct horse battery"}}, id1, s1)
	stolen := e.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, id2, s2)
	if stolen.status != 400 || stolen.str("error") != "invalid_grant" {
		t.Fatalf("another client's refresh token: %d %s", stolen.status, stolen.body)
	}
	// The rightful client can still use it: the failed attempt changed nothing.
	e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, id1, s1)
}

func TestRefreshForClientCredentialsOnlyWhenConfigured(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--grant", "refresh_token",
		"--refresh-with-client-credentials")
	r := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret)
	if !strings.HasPrefix(r.str("refresh_token"), "tgr_") {
		t.Fatalf("no refresh token for a client configured for one: %s", r.body)
	}
	r = e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, id, secret)
	if r.str("refresh_token") == "" {
		t.Fatalf("refresh: %s", r.body)
	}
}
