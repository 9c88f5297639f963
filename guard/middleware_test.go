package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestMiddlewareRFC6750 checks the answers against RFC 6750 §3's examples
// and §3.1's error codes.
func TestMiddlewareRFC6750(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g := newGuard(t, f, clk, Config{Realm: "example"})
	clk.Advance(time.Minute)
	now := clk.Now()

	mux := http.NewServeMux()
	mux.Handle("GET /balance", g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := FromContext(r.Context())
		fmt.Fprintf(w, "%s/%s", id.ClientID, id.Subject)
	})))
	refunds := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "refund by %s", FromContext(r.Context()).ClientID)
	})
	mux.Handle("POST /refunds", g.Middleware(g.Require("payments", "refunds")(refunds)))
	mux.Handle("POST /standalone", g.Require("payments", "refunds")(refunds))
	rs := httptest.NewServer(mux)
	defer rs.Close()

	jwt := func(scope string, exp time.Time) string {
		c := f.claims("merchant-1", "alice", scope, now, time.Hour)
		c["exp"] = exp.Unix()
		return f.jwt(f.keys[0], c)
	}
	full := jwt("payments refunds", now.Add(time.Hour))
	paymentsOnly := jwt("payments", now.Add(time.Hour))
	expired := jwt("payments", now.Add(-time.Minute))
	revoked, revokedID := f.opaque("merchant-1", "", "payments refunds", now, now.Add(time.Hour))
	f.revokeToken(revokedID)
	unreachable, _ := f.opaque("merchant-1", "", "payments refunds", now, now.Add(time.Hour))
	eventually(t, time.Second, "revocation received", func() bool {
		_, err := g.Validate(context.Background(), revoked)
		return errors.Is(err, ErrRevoked)
	})

	type answer struct {
		status int
		www    string // exact WWW-Authenticate, "-" for none
		body   string // exact, when set
	}
	cases := []struct {
		name   string
		method string
		path   string
		header []string // Authorization values
		want   answer
	}{
		// §3: "in response to a protected resource request without
		// authentication": the challenge alone.
		{"no credentials", "GET", "/balance", nil, answer{401, `Bearer realm="example"`, ""}},
		{"another scheme", "GET", "/balance", []string{"Basic bWU6cHc="}, answer{401, `Bearer realm="example"`, ""}},
		{"token in the query is not accepted", "GET", "/balance?access_token=" + full, nil, answer{401, `Bearer realm="example"`, ""}},
		// §3: "in response to a protected resource request with an
		// authentication attempt using an expired access token".
		{"expired", "GET", "/balance", []string{"Bearer " + expired},
			answer{401, `Bearer realm="example", error="invalid_token", error_description="The access token expired"`, ""}},
		{"revoked", "GET", "/balance", []string{"Bearer " + revoked},
			answer{401, `Bearer realm="example", error="invalid_token", error_description="the access token was revoked"`, ""}},
		{"forged", "GET", "/balance", []string{"Bearer " + signJWT(t, newES256Key(t), "at+jwt", f.claims("m", "", "", now, time.Hour))},
			answer{401, `Bearer realm="example", error="invalid_token", error_description="the access token was signed with an unknown key"`, ""}},
		// §3.1 invalid_request: 400.
		{"malformed header", "GET", "/balance", []string{"Bearer two words"},
			answer{400, `Bearer realm="example", error="invalid_request", error_description="the Authorization header does not hold a bearer token"`, ""}},
		{"two Authorization headers", "GET", "/balance", []string{"Bearer " + full, "Bearer " + full},
			answer{400, `Bearer realm="example", error="invalid_request", error_description="more than one Authorization header"`, ""}},
		// §3.1 insufficient_scope: 403 with the scope needed.
		{"insufficient scope", "POST", "/refunds", []string{"Bearer " + paymentsOnly},
			answer{403, `Bearer realm="example", error="insufficient_scope", error_description="the access token does not grant the scope this resource needs", scope="payments refunds"`, ""}},
		{"insufficient scope, standalone", "POST", "/standalone", []string{"Bearer " + paymentsOnly},
			answer{403, `Bearer realm="example", error="insufficient_scope", error_description="the access token does not grant the scope this resource needs", scope="payments refunds"`, ""}},
		{"standalone without credentials", "POST", "/standalone", nil, answer{401, `Bearer realm="example"`, ""}},
		{"valid", "GET", "/balance", []string{"Bearer " + full}, answer{200, "-", "merchant-1/alice"}},
		{"scheme is case-insensitive", "GET", "/balance", []string{"bearer " + full}, answer{200, "-", "merchant-1/alice"}},
		{"all scopes", "POST", "/refunds", []string{"Bearer " + full}, answer{200, "-", "refund by merchant-1"}},
		{"all scopes, standalone", "POST", "/standalone", []string{"Bearer " + full}, answer{200, "-", "refund by merchant-1"}},
		// The server cannot be asked: 503, never a guess.
		{"unavailable", "GET", "/balance", []string{"Bearer " + unreachable}, answer{503, "-", ""}},
	}
	f.setIntrospectionDown(true)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, rs.URL+tc.path, nil)
			for _, h := range tc.header {
				req.Header.Add("Authorization", h)
			}
			resp, err := rs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.want.status, body)
			}
			www := resp.Header.Values("WWW-Authenticate")
			switch {
			case tc.want.www == "-" && len(www) != 0:
				t.Errorf("WWW-Authenticate %q on a %d", www, resp.StatusCode)
			case tc.want.www != "-" && (len(www) != 1 || www[0] != tc.want.www):
				t.Errorf("WWW-Authenticate %q\n                   want %q", www, tc.want.www)
			}
			if tc.want.body != "" && string(body) != tc.want.body {
				t.Errorf("body %q, want %q", body, tc.want.body)
			}
			if resp.StatusCode != 200 && resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("an error answer without Cache-Control: no-store")
			}
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

func TestBearerError(t *testing.T) {
	if e := BearerError(ErrExpired); e.Status != 401 || e.Code != "invalid_token" || e.Description != "The access token expired" {
		t.Errorf("expired: %+v", e)
	}
	if e := BearerError(fmt.Errorf("wrapped: %w", ErrWrongAudience)); e.Status != 401 || e.Description != "the access token is not meant for this resource" {
		t.Errorf("wrapped: %+v", e)
	}
	if e := BearerError(unavailable("x", errors.New("y"))); e.Status != 503 {
		t.Errorf("unavailable: %+v", e)
	}
	if e := BearerError(context.Canceled); e.Status != 503 {
		t.Errorf("other error: %+v", e)
	}
}
