package neox

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

// allCodes is every "code" the dialect can emit: 1 on success, else the
// HTTP status.
var allCodes = []int{1, 400, 401, 403, 429, 500, 503}

type fakeClient struct {
	client *oauth.Client
	secret string
}

// fakeEngine does what the engine does around a dialect, in its order:
// credentials present, look the client up, check the secret, then what an
// authenticated client may do (method, endpoint, disabled), grant, then an
// injected failure (scope, rate limit, store...), then mint.
type fakeEngine struct {
	clients map[string]*fakeClient
	inject  *oauth.Error
	got     *oauth.TokenRequest
}

func (en *fakeEngine) serve(d dialect.Dialect, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req, e := d.DecodeTokenRequest(r)
	if e == nil {
		req.Endpoint = r.URL.Path // as the server does
		en.got = req
		e = en.issue(r.Context(), req)
	}
	if e != nil {
		d.WriteError(w, r, e)
		return w
	}
	d.WriteToken(w, r, &oauth.TokenResponse{AccessToken: "tok_abc", TokenType: "Bearer", ExpiresIn: 3600, ClientID: req.Credentials.ClientID})
	return w
}

func (en *fakeEngine) issue(ctx context.Context, req *oauth.TokenRequest) *oauth.Error {
	creds := req.Credentials
	if creds.Method == "" || creds.ClientID == "" {
		return oauth.InvalidClient(oauth.CauseNoCredentials, "client authentication required")
	}
	fc := en.clients[creds.ClientID]
	if fc == nil {
		return oauth.InvalidClient(oauth.CauseUnknownClient, "client authentication failed")
	}
	if creds.Method != oauth.AuthSecretPost || creds.Secret != fc.secret {
		return oauth.InvalidClient(oauth.CauseBadCredentials, "client authentication failed")
	}
	if !fc.client.AllowsAuthMethod(creds.Method) {
		return oauth.InvalidClient(oauth.CauseMethodNotAllowed, "the client is not registered for this client authentication method")
	}
	if req.Endpoint != "" && !fc.client.AllowsEndpoint(req.Endpoint) {
		return oauth.InvalidClient(oauth.CauseEndpointNotAllowed, "the client is not registered for this token endpoint")
	}
	if fc.client.Disabled {
		return oauth.InvalidClient(oauth.CauseClientDisabled, "client disabled")
	}
	if !fc.client.AllowsGrant(req.GrantType) {
		return oauth.UnauthorizedClient("grant not allowed")
	}
	return en.inject
}

func newEngine() *fakeEngine {
	return &fakeEngine{clients: map[string]*fakeClient{
		"merchant-1": {client: &oauth.Client{ID: "merchant-1", Grants: []string{oauth.GrantClientCredentials}}, secret: "s3cret"},
	}}
}

const okBody = `{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":"s3cret","scope":"disbursement"}`

func post(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v2/auth/oauth2/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func mustNew(t testing.TB, options map[string]any) dialect.Dialect {
	t.Helper()
	d, err := New(options, dialect.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkEnvelope asserts what every NeoX response carries and returns its
// decoded body.
func checkEnvelope(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	h := w.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("headers %v", h)
	}
	code, _ := m["code"].(float64)
	if w.Code == http.StatusOK {
		if code != 1 {
			t.Errorf("success with code %v", m["code"])
		}
	} else {
		if int(code) != w.Code {
			t.Errorf("HTTP %d but code %v", w.Code, m["code"])
		}
		if len(m) != 2 {
			t.Errorf("error body has token fields: %s", w.Body)
		}
	}
	return m
}

func TestNeoXCodes(t *testing.T) {
	cases := []struct {
		name    string
		req     func() *http.Request
		setup   func(en *fakeEngine)
		code    int
		message string
	}{
		{"success", func() *http.Request { return post(okBody) }, nil, 1, "SUCCESS"},
		{"success without scope", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":"s3cret"}`)
		}, nil, 1, "SUCCESS"},
		{"success with charset and unknown member", func() *http.Request {
			r := post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":"s3cret","extra":{"x":[1]}}`)
			r.Header.Set("Content-Type", "application/json; charset=UTF-8")
			return r
		}, nil, 1, "SUCCESS"},

		{"GET", func() *http.Request { r := post(okBody); r.Method = http.MethodGet; return r }, nil, 400, "method must be POST"},
		{"form content type", func() *http.Request {
			r := post(okBody)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, nil, 400, "Content-Type must be application/json"},
		{"no content type", func() *http.Request { r := post(okBody); r.Header.Del("Content-Type"); return r }, nil, 400, "Content-Type must be application/json"},
		{"bad JSON", func() *http.Request { return post(`{"grant_type":`) }, nil, 400, "request body must be a JSON object"},
		{"empty body", func() *http.Request { return post(``) }, nil, 400, "request body must be a JSON object"},
		{"JSON array", func() *http.Request { return post(`[]`) }, nil, 400, "request body must be a JSON object"},
		{"trailing data", func() *http.Request { return post(okBody + `{}`) }, nil, 400, "request body must be a JSON object"},
		{"too large", func() *http.Request {
			return post(`{"pad":"` + strings.Repeat("x", 64<<10) + `"}`)
		}, nil, 400, "request body must be a JSON object of at most 64 KiB"},
		{"duplicate client_id", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_id":"other","client_secret":"s3cret"}`)
		}, nil, 400, "duplicate field: client_id"},
		{"duplicate escaped key", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client\u005fid":"other","client_secret":"s3cret"}`)
		}, nil, 400, "duplicate field: client_id"},
		{"duplicate unknown key", func() *http.Request { return post(`{"a":1,"a":2}`) }, nil, 400, "duplicate field in request body"},
		{"missing grant_type", func() *http.Request { return post(`{"client_id":"merchant-1","client_secret":"s3cret"}`) }, nil, 400, "missing field: grant_type"},
		{"missing client_id", func() *http.Request { return post(`{"grant_type":"client_credentials","client_secret":"s3cret"}`) }, nil, 400, "missing field: client_id"},
		{"null client_id", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":null,"client_secret":"s3cret"}`)
		}, nil, 400, "missing field: client_id"},
		{"missing client_secret", func() *http.Request { return post(`{"grant_type":"client_credentials","client_id":"merchant-1"}`) }, nil, 400, "missing field: client_secret"},
		{"empty client_secret", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":""}`)
		}, nil, 400, "missing field: client_secret"},
		{"numeric client_id", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":42,"client_secret":"s3cret"}`)
		}, nil, 400, "malformed field: client_id"},
		{"array scope", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":"s3cret","scope":["a"]}`)
		}, nil, 400, "malformed field: scope"},
		{"bad scope character", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":"s3cret","scope":"a\"b"}`)
		}, nil, 400, "malformed field: scope"},
		{"long client_id", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"` + strings.Repeat("m", 300) + `","client_secret":"s3cret"}`)
		}, nil, 400, "malformed field: client_id"},
		{"password grant", func() *http.Request {
			return post(`{"grant_type":"password","client_id":"merchant-1","client_secret":"s3cret"}`)
		}, nil, 400, "unsupported grant_type: only client_credentials"},
		{"upper-case grant", func() *http.Request {
			return post(`{"grant_type":"CLIENT_CREDENTIALS","client_id":"merchant-1","client_secret":"s3cret"}`)
		}, nil, 400, "unsupported grant_type: only client_credentials"},

		{"unknown client", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"nobody","client_secret":"s3cret"}`)
		}, nil, 401, "invalid client credentials"},
		{"wrong secret", func() *http.Request {
			return post(`{"grant_type":"client_credentials","client_id":"merchant-1","client_secret":"nope"}`)
		}, nil, 401, "invalid client credentials"},

		{"client registered for Basic only", func() *http.Request { return post(okBody) }, func(en *fakeEngine) {
			en.clients["merchant-1"].client.AuthMethods = []string{oauth.AuthSecretBasic}
		}, 401, "invalid client credentials"},
		{"client registered for another endpoint", func() *http.Request { return post(okBody) }, func(en *fakeEngine) {
			en.clients["merchant-1"].client.Endpoints = []string{"/oauth/token"}
		}, 401, "invalid client credentials"},
		{"client registered for this endpoint", func() *http.Request { return post(okBody) }, func(en *fakeEngine) {
			en.clients["merchant-1"].client.Endpoints = []string{"/oauth/token", "/v2/auth/oauth2/token"}
		}, 1, "SUCCESS"},

		{"disabled", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.clients["merchant-1"].client.Disabled = true }, 403, "client disabled"},
		{"grant not allowed", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.clients["merchant-1"].client.Grants = nil }, 403, "grant type not allowed for this client"},
		{"scope not allowed", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.inject = oauth.InvalidScope("scope disbursement not allowed") }, 403, "scope not allowed"},

		{"rate limited", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.inject = oauth.RateLimited("slow down", time.Second) }, 429, "too many requests"},
		{"overloaded", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.inject = oauth.Overloaded("queue full", time.Second) }, 503, "service temporarily unavailable, try again shortly"},
		{"internal", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.inject = oauth.ServerError() }, 500, "internal error"},
		{"store unavailable", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.inject = oauth.Unavailable() }, 503, "service temporarily unavailable, try again shortly"},
		{"store timeout", func() *http.Request { return post(okBody) }, func(en *fakeEngine) { en.inject = oauth.Timeout() }, 503, "service temporarily unavailable, try again shortly"},
	}
	seen := map[int]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := mustNew(t, map[string]any{"default_scope": "disbursement"})
			en := newEngine()
			if c.setup != nil {
				c.setup(en)
			}
			r := c.req()
			w := en.serve(d, r)
			m := checkEnvelope(t, w)
			code := int(m["code"].(float64))
			if code != c.code || m["message"] != c.message {
				t.Fatalf("got %d %s, want %d %q", w.Code, w.Body, c.code, c.message)
			}
			seen[code] = true
			if r.Method == http.MethodGet && w.Header().Get("Allow") != http.MethodPost {
				t.Error("no Allow header")
			}
		})
	}
	for _, c := range allCodes {
		if !seen[c] {
			t.Errorf("no case produced code %d", c)
		}
	}
}

func TestNeoXSuccessExact(t *testing.T) {
	en := newEngine()
	w := en.serve(mustNew(t, nil), post(okBody))
	want := `{"code":1,"message":"SUCCESS","access_token":"tok_abc","token_type":"bearer","expires_in":3600}`
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s\nwant %s", w.Code, w.Body, want)
	}
	got := en.got
	if got.GrantType != oauth.GrantClientCredentials || got.Credentials.Method != oauth.AuthSecretPost ||
		got.Credentials.ClientID != "merchant-1" || got.Credentials.Secret != "s3cret" ||
		!slices.Equal(got.Scopes, []string{"disbursement"}) {
		t.Fatalf("decoded %+v", got)
	}
	// NeoX's response has no member for a refresh token: none is to be issued.
	if !got.NoRefreshToken {
		t.Error("NoRefreshToken not set")
	}
}

func TestNeoXErrorExact(t *testing.T) {
	w := newEngine().serve(mustNew(t, nil), post(`{"grant_type":"client_credentials","client_secret":"x"}`))
	if want := `{"code":400,"message":"missing field: client_id"}`; w.Code != 400 || w.Body.String() != want {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
}

func TestNeoXScopes(t *testing.T) {
	d := mustNew(t, map[string]any{"default_scope": "disbursement  payout"})
	pd, ok := d.(dialect.PolicyDefaulter)
	if !ok {
		t.Fatal("not a PolicyDefaulter")
	}
	if got := pd.PolicyDefaults(); !slices.Equal(got.DefaultScopes, []string{"disbursement", "payout"}) || got.AccessTTL != 0 {
		t.Fatalf("PolicyDefaults = %+v", got)
	}
	for body, want := range map[string][]string{
		`{"grant_type":"client_credentials","client_id":"a","client_secret":"b"}`:                        nil,
		`{"grant_type":"client_credentials","client_id":"a","client_secret":"b","scope":""}`:             nil,
		`{"grant_type":"client_credentials","client_id":"a","client_secret":"b","scope":null}`:           nil,
		`{"grant_type":"client_credentials","client_id":"a","client_secret":"b","scope":" a  b "}`:       {"a", "b"},
		`{"grant_type":"client_credentials","client_id":"a","client_secret":"b","scope":"disbursement"}`: {"disbursement"},
	} {
		req, e := d.DecodeTokenRequest(post(body))
		if e != nil || !slices.Equal(req.Scopes, want) {
			t.Errorf("%s: scopes %v, %v; want %v", body, req, e, want)
		}
	}
	if pd := mustNew(t, nil).(dialect.PolicyDefaulter).PolicyDefaults(); pd.DefaultScopes != nil {
		t.Errorf("no default_scope gives %v", pd.DefaultScopes)
	}
}

func TestNeoXOptions(t *testing.T) {
	for _, bad := range []map[string]any{
		{"default_scopes": "x"},
		{"default_scope": "a\\b"},
		{"default_scope": "caf\u00e9"},
	} {
		if _, err := New(bad, dialect.Deps{}); err == nil {
			t.Errorf("options %v accepted", bad)
		}
	}
}

func TestNeoXMapError(t *testing.T) {
	// The Cause alone decides: no Code, and a Status that would say otherwise.
	want := map[oauth.Cause]int{
		oauth.CauseMissingField:       400,
		oauth.CauseMalformedField:     400,
		oauth.CauseBadRequest:         400,
		oauth.CauseUnknownClient:      401,
		oauth.CauseBadCredentials:     401,
		oauth.CauseNoCredentials:      401,
		oauth.CauseMethodNotAllowed:   401,
		oauth.CauseEndpointNotAllowed: 401,
		oauth.CauseNoClientKey:        401,
		oauth.CauseClientDisabled:     403,
		oauth.CauseStaleRequest:       401,
		oauth.CauseReplay:             401,
		oauth.CauseGrantNotAllowed:    403,
		oauth.CauseScopeNotAllowed:    403,
		oauth.CauseBadGrant:           400,
		oauth.CauseUserDisabled:       400,
		oauth.CauseUserLocked:         400,
		oauth.CauseRateLimited:        429,
		oauth.CauseOverloaded:         503,
		oauth.CauseUnavailable:        503,
		oauth.CauseTimeout:            503,
		oauth.CauseInternal:           500,
	}
	for c := oauth.CauseMissingField; c <= oauth.CauseInternal; c++ {
		status, msg := mapError(&oauth.Error{Cause: c, Field: "f", Status: 418})
		if status != want[c] || msg == "" {
			t.Errorf("cause %d: %d %q, want %d", c, status, msg, want[c])
		}
	}
	if len(want) != int(oauth.CauseInternal) {
		t.Errorf("a Cause is missing from this test")
	}
	for c, msg := range map[oauth.Cause]string{
		oauth.CauseMethodNotAllowed:   msgBadCredentials,
		oauth.CauseEndpointNotAllowed: msgBadCredentials,
		oauth.CauseUserLocked:         msgInvalidGrant,
		oauth.CauseOverloaded:         msgUnavailable,
	} {
		if _, got := mapError(&oauth.Error{Cause: c}); got != msg {
			t.Errorf("cause %d: %q, want %q", c, got, msg)
		}
	}
	for _, c := range []struct {
		e      *oauth.Error
		status int
	}{
		{nil, 500},
		{&oauth.Error{Code: oauth.CodeInvalidRequest}, 400},
		{&oauth.Error{Code: oauth.CodeInvalidClient}, 401},
		{&oauth.Error{Code: oauth.CodeUnauthorizedClient}, 403},
		{&oauth.Error{Code: oauth.CodeInvalidScope}, 403},
		{&oauth.Error{Code: oauth.CodeInvalidGrant}, 400},
		{oauth.RateLimited("slow down", time.Second), 429},
		{&oauth.Error{Code: oauth.CodeTemporarilyUnavail}, 503},
		{&oauth.Error{Code: oauth.CodeServerError}, 500},
		{&oauth.Error{Code: "x", Status: 401}, 401},
		{&oauth.Error{Code: "x", Status: 403}, 403},
		{&oauth.Error{Code: "x", Status: 404}, 400},
		{&oauth.Error{Code: "x", Status: 429}, 429},
		{&oauth.Error{Code: "x", Status: 504}, 503},
		{&oauth.Error{Code: "x", Status: 502}, 500},
		{&oauth.Error{Code: "x"}, 500},
		{&oauth.Error{Cause: oauth.CauseMissingField}, 400},
	} {
		if status, _ := mapError(c.e); status != c.status {
			t.Errorf("%+v: %d, want %d", c.e, status, c.status)
		}
	}
}

// The causes the engine gives since client authentication methods and
// endpoints are registered per client, and since lockout and bounded
// queues, as the engine builds them.
func TestNeoXMapNewCauses(t *testing.T) {
	for _, c := range []struct {
		e      *oauth.Error
		status int
		msg    string
	}{
		{oauth.InvalidClient(oauth.CauseMethodNotAllowed, "the client is not registered for this client authentication method"), 401, msgBadCredentials},
		{oauth.InvalidClient(oauth.CauseEndpointNotAllowed, "the client is not registered for this token endpoint"), 401, msgBadCredentials},
		{oauth.InvalidClient(oauth.CauseNoCredentials, "client authentication required"), 401, msgBadCredentials},
		{oauth.Overloaded("queue full", time.Second), 503, msgUnavailable},
		{oauth.InvalidGrant(oauth.CauseUserLocked, "too many failed attempts"), 400, msgInvalidGrant},
		{oauth.InvalidGrant(oauth.CauseUserDisabled, "user disabled"), 400, msgInvalidGrant},
		{oauth.RateLimited("slow down", 0), 429, msgRateLimited},
	} {
		if status, msg := mapError(c.e); status != c.status || msg != c.msg {
			t.Errorf("%+v: %d %q, want %d %q", c.e, status, msg, c.status, c.msg)
		}
	}
	// A locked user gets the answer a wrong password gets.
	ls, lm := mapError(oauth.InvalidGrant(oauth.CauseUserLocked, "x"))
	bs, bm := mapError(oauth.InvalidGrant(oauth.CauseBadGrant, "y"))
	if ls != bs || lm != bm {
		t.Errorf("locked %d %q, bad password %d %q", ls, lm, bs, bm)
	}
}

// FuzzDecodeNeoX: nothing panics; errors come out as the NeoX envelope
// with code == HTTP status from the documented set and no token fields.
func FuzzDecodeNeoX(f *testing.F) {
	f.Add("POST", "application/json", okBody)
	f.Add("POST", "application/json", `{"grant_type":"client_credentials","client_id":1}`)
	f.Add("POST", "application/json; charset=utf-8", `{"a":{"b":[1,2,{"c":null}]},"a":0}`)
	f.Add("PUT", "text/plain", ``)
	f.Add("POST", "application/json", `{"grant_type":"client_credentials","client_id":"a","client_secret":"b","scope":"x\u0000y"}`)
	d := mustNew(f, map[string]any{"default_scope": "disbursement"})
	f.Fuzz(func(t *testing.T, method, contentType, body string) {
		r := &http.Request{Method: method, Header: http.Header{"Content-Type": {contentType}}, Body: http.NoBody}
		r = r.WithContext(context.Background())
		if body != "" {
			r.Body = readCloser{strings.NewReader(body)}
		}
		req, e := d.DecodeTokenRequest(r)
		if e == nil {
			c := req.Credentials
			if req.GrantType != oauth.GrantClientCredentials || c.Method != oauth.AuthSecretPost || c.ClientID == "" || c.Secret == "" {
				t.Fatalf("decoded %+v", req)
			}
			for _, s := range req.Scopes {
				if s == "" || strings.ContainsAny(s, " \"\\") {
					t.Fatalf("scope %q", s)
				}
			}
			return
		}
		w := httptest.NewRecorder()
		d.WriteError(w, r, e)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		code, _ := m["code"].(float64)
		if int(code) != w.Code || !slices.Contains(allCodes[1:], w.Code) || len(m) != 2 {
			t.Fatalf("emitted %d %s for %+v", w.Code, w.Body, e)
		}
	})
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
