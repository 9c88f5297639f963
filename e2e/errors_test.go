package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestTokenEndpointErrors covers every error case of the RFC 6749 token
// endpoint with its exact status, error code and headers.
func TestTokenEndpointErrors(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "payments")
	pwID, pwSecret := e.createClient("--name", "app", "--grant", "password", "--grant", "refresh_token")
	offID, offSecret := e.createClient("--name", "off", "--grant", "client_credentials")
	e.mustRun("", "client", "disable", offID)
	e.createUser("bob", "bob's password")
	e.createUser("carol", "carol's password")
	e.mustRun("", "user", "disable", "carol")

	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	cc := "grant_type=client_credentials"
	form := "application/x-www-form-urlencoded"

	type errorCase struct {
		name        string
		method      string
		query       string
		contentType string
		body        string
		auth        string
		status      int
		code        string
		challenge   bool
	}
	cases := []errorCase{
		{name: "GET", method: "GET", auth: basic(id, secret), status: 405, code: "invalid_request"},
		{name: "PUT", method: "PUT", contentType: form, body: cc, auth: basic(id, secret), status: 405, code: "invalid_request"},
		{name: "text/plain body", contentType: "text/plain", body: cc, auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "no content type", body: cc, auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "repeated parameter", contentType: form, body: cc + "&scope=payments&scope=payments", auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "repeated grant_type", contentType: form, body: cc + "&" + cc, auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "body over the cap", contentType: form, body: cc + "&pad=" + strings.Repeat("x", 70<<10), auth: basic(id, secret), status: -1, code: "invalid_request"},
		{name: "secret in the URL", query: "client_id=" + id + "&client_secret=" + secret, contentType: form, body: cc, status: 400, code: "invalid_request"},
		{name: "two auth methods", contentType: form, body: cc + "&client_id=" + id + "&client_secret=" + secret, auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "malformed JSON", contentType: "application/json", body: `{"grant_type":`, auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "JSON number value", contentType: "application/json", body: `{"grant_type":"client_credentials","scope":5}`, auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "missing grant_type", contentType: form, body: "scope=payments", auth: basic(id, secret), status: 400, code: "invalid_request"},
		{name: "unknown grant_type", contentType: form, body: "grant_type=authorization_code", auth: basic(id, secret), status: 400, code: "unsupported_grant_type"},
		{name: "no client credentials", contentType: form, body: cc, status: 401, code: "invalid_client", challenge: true},
		{name: "unknown client, Basic", contentType: form, body: cc, auth: basic("nobody", secret), status: 401, code: "invalid_client", challenge: true},
		{name: "empty Basic (seed 003)", contentType: form, body: "grant_type=password&username=bob&password=x", auth: "Basic Og==", status: 401, code: "invalid_client", challenge: true},
		{name: "malformed Basic", contentType: form, body: cc, auth: "Basic !!!", status: 401, code: "invalid_client", challenge: true},
		{name: "disabled client", contentType: form, body: cc, auth: basic(offID, offSecret), status: 401, code: "invalid_client", challenge: true},
		{name: "grant not allowed", contentType: form, body: "grant_type=password&username=bob&password=x", auth: basic(id, secret), status: 400, code: "unauthorized_client"},
		{name: "scope not allowed", contentType: form, body: cc + "&scope=admin", auth: basic(id, secret), status: 400, code: "invalid_scope"},
		{name: "malformed scope", contentType: form, body: cc + "&scope=" + url.QueryEscape(`pay"ments`), auth: basic(id, secret), status: 400, code: "invalid_scope"},
		{name: "password grant without password", contentType: form, body: "grant_type=password&username=bob", auth: basic(pwID, pwSecret), status: 400, code: "invalid_request"},
		{name: "unknown user", contentType: form, body: "grant_type=password&username=mallory&password=" + url.QueryEscape("bob's password"), auth: basic(pwID, pwSecret), status: 400, code: "invalid_grant"},
		{name: "disabled user", contentType: form, body: "grant_type=password&username=carol&password=" + url.QueryEscape("carol's password"), auth: basic(pwID, pwSecret), status: 400, code: "invalid_grant"},
		{name: "refresh without token", contentType: form, body: "grant_type=refresh_token", auth: basic(pwID, pwSecret), status: 400, code: "invalid_request"},
		{name: "forged refresh token", contentType: form, body: "grant_type=refresh_token&refresh_token=tgr_" + strings.Repeat("A", 72), auth: basic(pwID, pwSecret), status: 400, code: "invalid_grant"},
		{name: "garbage refresh token", contentType: form, body: "grant_type=refresh_token&refresh_token=garbage", auth: basic(pwID, pwSecret), status: 400, code: "invalid_grant"},
	}
	// Wrong credentials are near misses of the right ones (the last
	// character changed, one appended, a prefix), so a comparison that
	// reads a prefix only or ignores what follows is caught.
	for i, wrong := range nearMisses(secret) {
		cases = append(cases,
			errorCase{name: fmt.Sprintf("wrong secret %d, Basic", i), contentType: form, body: cc, auth: basic(id, wrong), status: 401, code: "invalid_client", challenge: true},
			errorCase{name: fmt.Sprintf("wrong secret %d, body", i), contentType: form, body: cc + "&client_id=" + id + "&client_secret=" + url.QueryEscape(wrong), status: 400, code: "invalid_client"})
	}
	for i, wrong := range nearMisses("bob's password") {
		cases = append(cases, errorCase{name: fmt.Sprintf("wrong password %d", i), contentType: form,
			body: "grant_type=password&username=bob&password=" + url.QueryEscape(wrong), auth: basic(pwID, pwSecret), status: 400, code: "invalid_grant"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodPost
			}
			u := e.base + "/oauth/token"
			if c.query != "" {
				u += "?" + c.query
			}
			req, _ := http.NewRequest(method, u, strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			r := e.do(req)
			if c.status == -1 {
				if r.status != 400 && r.status != 413 {
					t.Errorf("status %d, want 400 or 413", r.status)
				}
			} else if r.status != c.status {
				t.Errorf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if r.str("error") != c.code {
				t.Errorf("error %q, want %q: %s", r.str("error"), c.code, r.body)
			}
			if r.str("access_token") != "" {
				t.Error("an error response carries a token")
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
				t.Errorf("error without no-store headers: %v", r.header)
			}
			challenge := r.header.Get("WWW-Authenticate")
			if c.challenge != strings.HasPrefix(challenge, "Basic realm=") {
				t.Errorf("WWW-Authenticate %q, challenge wanted: %v", challenge, c.challenge)
			}
			if method == http.MethodGet || method == http.MethodPut {
				if r.header.Get("Allow") != "POST" {
					t.Errorf("405 without Allow: POST")
				}
			}
			if strings.Contains(string(r.body), secret) {
				t.Error("the response echoes the client secret")
			}
		})
	}
}

func TestIntrospectionAndRevocationNeedClientAuth(t *testing.T) {
	e := start(t, nil)
	for _, path := range []string{"/oauth/introspect", "/oauth/revoke"} {
		r := e.postForm(path, url.Values{"token": {"x"}}, "", "")
		if r.status != 401 || r.str("error") != "invalid_client" {
			t.Errorf("%s without client auth: %d %s", path, r.status, r.body)
		}
		id, secret := e.createClient("--name", "rs", "--grant", "client_credentials")
		r = e.postForm(path, url.Values{}, id, secret)
		if r.status != 400 || r.str("error") != "invalid_request" {
			t.Errorf("%s without token: %d %s", path, r.status, r.body)
		}
	}
}
