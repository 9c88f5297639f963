package oauth2

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

const (
	formCT = "application/x-www-form-urlencoded"
	jsonCT = "application/json"
)

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func basicRaw(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

type reqSpec struct {
	method string // default POST
	target string // default /oauth/token
	ct     string // Content-Type; "-" for none; default form
	auth   []string
	header map[string]string
	body   string
}

func (s reqSpec) build() *http.Request {
	method, target := s.method, s.target
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/oauth/token"
	}
	r := httptest.NewRequest(method, target, strings.NewReader(s.body))
	switch s.ct {
	case "":
		r.Header.Set("Content-Type", formCT)
	case "-":
	default:
		r.Header.Set("Content-Type", s.ct)
	}
	for _, a := range s.auth {
		r.Header.Add("Authorization", a)
	}
	for k, v := range s.header {
		r.Header.Set(k, v)
	}
	return r
}

func newDialect(t testing.TB, opts map[string]any) dialect.Dialect {
	t.Helper()
	d, err := New(opts, dialect.Deps{Now: func() time.Time { return time.Unix(1595411399, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkErrorResponse asserts the wire form of an error answer.
func checkErrorResponse(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) map[string]string {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	checkJSONHeaders(t, rec.Header())
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	if body["error"] != code {
		t.Errorf("error = %q, want %q", body["error"], code)
	}
	for k := range body {
		if k != "error" && k != "error_description" {
			t.Errorf("unexpected member %q in error body", k)
		}
	}
	gotWWW := rec.Header().Get("WWW-Authenticate")
	if (status == 401) != (gotWWW != "") {
		t.Errorf("status %d with WWW-Authenticate %q", status, gotWWW)
	}
	if status == 401 && gotWWW != `Basic realm="tokengate", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate = %q", gotWWW)
	}
	if got := rec.Header().Get("Allow"); (status == 405) != (got == "POST") {
		t.Errorf("status %d with Allow %q", status, got)
	}
	return body
}

func checkJSONHeaders(t *testing.T, h http.Header) {
	t.Helper()
	if got := h.Get("Content-Type"); got != "application/json;charset=UTF-8" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	if got := h.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	big := "grant_type=client_credentials&x=" + strings.Repeat("a", MaxBodyBytes)
	tests := []struct {
		name   string
		req    reqSpec
		status int
		code   string
		field  string
		desc   string // substring of the description
		basic  bool
	}{
		{"GET", reqSpec{method: "GET", body: ""}, 405, "invalid_request", "", "POST", false},
		{"PUT", reqSpec{method: "PUT", body: "grant_type=client_credentials"}, 405, "invalid_request", "", "POST", false},
		{"HEAD", reqSpec{method: "HEAD"}, 405, "invalid_request", "", "POST", false},

		{"no content type", reqSpec{ct: "-", body: "grant_type=client_credentials"}, 400, "invalid_request", "Content-Type", "Content-Type", false},
		{"text/plain", reqSpec{ct: "text/plain", body: "grant_type=client_credentials"}, 400, "invalid_request", "Content-Type", "Content-Type", false},
		{"multipart", reqSpec{ct: "multipart/form-data; boundary=x", body: "--x--"}, 400, "invalid_request", "Content-Type", "Content-Type", false},
		{"json suffix", reqSpec{ct: "application/json-patch+json", body: "{}"}, 400, "invalid_request", "Content-Type", "Content-Type", false},
		{"latin1", reqSpec{ct: formCT + "; charset=ISO-8859-1", body: "grant_type=client_credentials"}, 400, "invalid_request", "Content-Type", "charset", false},
		{"json latin1", reqSpec{ct: jsonCT + ";charset=latin1", body: `{}`}, 400, "invalid_request", "Content-Type", "charset", false},
		{"gzip", reqSpec{header: map[string]string{"Content-Encoding": "gzip"}, body: "grant_type=client_credentials"}, 400, "invalid_request", "Content-Encoding", "Content-Encoding", false},

		{"too large", reqSpec{body: big}, 413, "invalid_request", "", "64 KiB", false},

		{"duplicate grant_type", reqSpec{body: "grant_type=client_credentials&grant_type=password"}, 400, "invalid_request", "grant_type", "repeated: grant_type", false},
		{"duplicate scope", reqSpec{body: "grant_type=client_credentials&scope=a&scope=b"}, 400, "invalid_request", "scope", "repeated: scope", false},
		{"duplicate unknown", reqSpec{body: "grant_type=client_credentials&foo=1&foo=1"}, 400, "invalid_request", "foo", "repeated: foo", false},
		{"duplicate odd name", reqSpec{body: "grant_type=client_credentials&f%20o=1&f+o=2"}, 400, "invalid_request", "", "a parameter is repeated", false},
		{"duplicate client_secret", reqSpec{body: "grant_type=client_credentials&client_id=c&client_secret=s1&client_secret=s2"}, 400, "invalid_request", "client_secret", "repeated: client_secret", false},
		{"bad percent", reqSpec{body: "grant_type=client%zzcredentials"}, 400, "invalid_request", "grant_type", "grant_type", false},
		{"truncated percent", reqSpec{body: "grant_type=client_credentials%2"}, 400, "invalid_request", "grant_type", "grant_type", false},
		{"bad name percent", reqSpec{body: "gr%ant_type=client_credentials"}, 400, "invalid_request", "", "", false},
		{"not utf-8", reqSpec{body: "grant_type=password&username=%ff&password=p"}, 400, "invalid_request", "username", "UTF-8", false},
		{"NUL in password", reqSpec{body: "grant_type=password&username=u&password=a%00b"}, 400, "invalid_request", "password", "control", false},
		{"newline in client_id", reqSpec{body: "grant_type=client_credentials&client_id=a%0Ab&client_secret=s"}, 400, "invalid_request", "client_id", "control", false},

		{"missing grant_type", reqSpec{body: "scope=a"}, 400, "invalid_request", "grant_type", "missing required parameter: grant_type", false},
		{"empty grant_type", reqSpec{body: "grant_type=&scope=a"}, 400, "invalid_request", "grant_type", "missing", false},
		{"empty body", reqSpec{body: ""}, 400, "invalid_request", "grant_type", "missing", false},
		{"unknown grant", reqSpec{body: "grant_type=authorization_code&code=x"}, 400, "unsupported_grant_type", "grant_type", "unsupported", false},
		{"grant case", reqSpec{body: "grant_type=Client_Credentials"}, 400, "unsupported_grant_type", "grant_type", "", false},
		{"password no username", reqSpec{body: "grant_type=password&password=p"}, 400, "invalid_request", "username", "missing required parameter: username", false},
		{"password empty username", reqSpec{body: "grant_type=password&username=&password=p"}, 400, "invalid_request", "username", "missing", false},
		{"password no password", reqSpec{body: "grant_type=password&username=u"}, 400, "invalid_request", "password", "missing required parameter: password", false},
		{"refresh no token", reqSpec{body: "grant_type=refresh_token"}, 400, "invalid_request", "refresh_token", "missing required parameter: refresh_token", false},

		{"scope quote", reqSpec{body: "grant_type=client_credentials&scope=a%22b"}, 400, "invalid_scope", "scope", "scope", false},
		{"scope backslash", reqSpec{body: "grant_type=client_credentials&scope=a%5Cb"}, 400, "invalid_scope", "scope", "scope", false},
		{"scope tab", reqSpec{body: "grant_type=client_credentials&scope=a%09b"}, 400, "invalid_scope", "scope", "scope", false},
		{"scope utf-8", reqSpec{body: "grant_type=client_credentials&scope=caf%C3%A9"}, 400, "invalid_scope", "scope", "scope", false},
		{"scope DEL", reqSpec{body: "grant_type=client_credentials&scope=a%7F"}, 400, "invalid_scope", "scope", "scope", false},

		{"query client_secret", reqSpec{target: "/oauth/token?client_secret=s", body: "grant_type=client_credentials"}, 400, "invalid_request", "client_secret", "credentials must not be sent in the URL", false},
		{"query client_id", reqSpec{target: "/oauth/token?client_id=c", body: "grant_type=client_credentials"}, 400, "invalid_request", "client_id", "credentials must not be sent in the URL", false},
		{"query password", reqSpec{target: "/oauth/token?grant_type=password&username=u&password=p"}, 400, "invalid_request", "password", "credentials must not be sent in the URL", false},
		{"query refresh_token", reqSpec{target: "/oauth/token?refresh_token=r", body: "grant_type=refresh_token"}, 400, "invalid_request", "refresh_token", "credentials must not be sent in the URL", false},
		{"query token", reqSpec{target: "/oauth/token?token=t", body: "grant_type=client_credentials"}, 400, "invalid_request", "token", "credentials", false},
		{"query encoded name", reqSpec{target: "/oauth/token?client%5Fsecret=s", body: "grant_type=client_credentials"}, 400, "invalid_request", "client_secret", "credentials", false},
		{"query semicolon", reqSpec{target: "/oauth/token?a=1;client_secret=s", body: "grant_type=client_credentials"}, 400, "invalid_request", "client_secret", "credentials", false},
		{"query bad escape", reqSpec{target: "/oauth/token?x=%zz&password=p", body: "grant_type=client_credentials"}, 400, "invalid_request", "password", "credentials", false},
		{"query grant_type", reqSpec{target: "/oauth/token?grant_type=client_credentials"}, 400, "invalid_request", "grant_type", "request body", false},
		{"query scope", reqSpec{target: "/oauth/token?scope=a", body: "grant_type=client_credentials"}, 400, "invalid_request", "scope", "request body", false},

		{"basic bad base64", reqSpec{auth: []string{"Basic !!!"}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "base64", true},
		{"basic unpadded", reqSpec{auth: []string{"Basic YTpi"[:9]}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "base64", true},
		{"basic no colon", reqSpec{auth: []string{basicRaw("abc")}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "colon", true},
		{"basic empty id", reqSpec{auth: []string{basicRaw(":secret")}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "empty client ID", true},
		{"basic Og== (seed 003)", reqSpec{auth: []string{"Basic Og=="},
			header: map[string]string{"Cookie": "JSESSIONID=3BB78CC75CEDD150743D7EE2E24722FC"},
			body:   "username=6982129990&grant_type=password&password=Test%401234567"}, 401, "invalid_client", "Authorization", "empty client ID", true},
		{"basic nothing", reqSpec{auth: []string{"Basic"}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "empty", true},
		{"basic spaces only", reqSpec{auth: []string{"Basic    "}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "empty", true},
		{"basic bad form encoding", reqSpec{auth: []string{basicRaw("a%zz:b")}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "encoding", true},
		{"basic control char", reqSpec{auth: []string{basicRaw("a:b%00")}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "control", true},
		{"basic not utf-8", reqSpec{auth: []string{basicRaw("a%ff:b")}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "UTF-8", true},
		{"bearer scheme", reqSpec{auth: []string{"Bearer abc"}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "scheme", true},
		{"digest scheme", reqSpec{auth: []string{`Digest username="a"`}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "scheme", true},
		{"empty authorization", reqSpec{auth: []string{""}, body: "grant_type=client_credentials"}, 401, "invalid_client", "Authorization", "", true},
		{"two authorizations", reqSpec{auth: []string{basic("a", "b"), basic("a", "b")}, body: "grant_type=client_credentials"}, 400, "invalid_request", "Authorization", "more than one Authorization", false},
		{"basic and post", reqSpec{auth: []string{basic("a", "b")}, body: "grant_type=client_credentials&client_id=a&client_secret=b"}, 400, "invalid_request", "client_secret", "more than one client authentication method", false},
		{"bearer and post", reqSpec{auth: []string{"Bearer x"}, body: "grant_type=client_credentials&client_id=a&client_secret=b"}, 400, "invalid_request", "client_secret", "more than one", false},
		{"basic id mismatch", reqSpec{auth: []string{basic("a", "b")}, body: "grant_type=client_credentials&client_id=other"}, 400, "invalid_request", "client_id", "differs", false},
		{"post without client_id", reqSpec{body: "grant_type=client_credentials&client_secret=s"}, 400, "invalid_request", "client_id", "missing required parameter: client_id", false},

		{"json number", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","client_id":123}`}, 400, "invalid_request", "client_id", "client_id (must be a string)", false},
		{"json negative", reqSpec{ct: jsonCT, body: `{"grant_type":-1}`}, 400, "invalid_request", "grant_type", "must be a string", false},
		{"json bool", reqSpec{ct: jsonCT, body: `{"grant_type":true}`}, 400, "invalid_request", "grant_type", "must be a string", false},
		{"json null", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","scope":null}`}, 400, "invalid_request", "scope", "must be a string", false},
		{"json object", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","extra":{"a":"b"}}`}, 400, "invalid_request", "extra", "must be a string", false},
		{"json array not scope", reqSpec{ct: jsonCT, body: `{"grant_type":["client_credentials"]}`}, 400, "invalid_request", "grant_type", "must be a string", false},
		{"json scope array of numbers", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","scope":["a",1]}`}, 400, "invalid_request", "scope", "array of strings", false},
		{"json scope nested array", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","scope":[["a"]]}`}, 400, "invalid_request", "scope", "array of strings", false},
		{"json duplicate key", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","grant_type":"password"}`}, 400, "invalid_request", "grant_type", "repeated: grant_type", false},
		{"json duplicate empty", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","scope":"","scope":"a"}`}, 400, "invalid_request", "scope", "repeated", false},
		{"json escaped duplicate", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","gr\u0061nt_type":"x"}`}, 400, "invalid_request", "grant_type", "repeated", false},
		{"json trailing", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials"}{}`}, 400, "invalid_request", "", "after the JSON object", false},
		{"json trailing garbage", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials"} x`}, 400, "invalid_request", "", "after the JSON object", false},
		{"json array top", reqSpec{ct: jsonCT, body: `[{"grant_type":"client_credentials"}]`}, 400, "invalid_request", "", "object", false},
		{"json string top", reqSpec{ct: jsonCT, body: `"grant_type"`}, 400, "invalid_request", "", "object", false},
		{"json empty", reqSpec{ct: jsonCT, body: ``}, 400, "invalid_request", "", "object", false},
		{"json truncated", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials"`}, 400, "invalid_request", "", "malformed JSON", false},
		{"json trailing comma", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials",}`}, 400, "invalid_request", "", "malformed JSON", false},
		{"json single quotes", reqSpec{ct: jsonCT, body: `{'grant_type':'client_credentials'}`}, 400, "invalid_request", "", "malformed JSON", false},
		{"json bad utf-8", reqSpec{ct: jsonCT, body: "{\"grant_type\":\"client_credentials\",\"username\":\"\xff\"}"}, 400, "invalid_request", "", "malformed JSON", false},
		{"json lone surrogate", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","username":"\ud800"}`}, 400, "invalid_request", "", "malformed JSON", false},
		{"json raw control", reqSpec{ct: jsonCT, body: "{\"grant_type\":\"client\ncredentials\"}"}, 400, "invalid_request", "", "malformed JSON", false},
		{"json bad escape", reqSpec{ct: jsonCT, body: `{"grant_type":"client\xcredentials"}`}, 400, "invalid_request", "", "malformed JSON", false},
		{"json escaped control", reqSpec{ct: jsonCT, body: `{"grant_type":"password","username":"u","password":"a\u0000b"}`}, 400, "invalid_request", "password", "control", false},
		{"json missing grant", reqSpec{ct: jsonCT, body: `{"client_id":"c","client_secret":"s"}`}, 400, "invalid_request", "grant_type", "missing", false},
		{"json empty grant", reqSpec{ct: jsonCT, body: `{"grant_type":""}`}, 400, "invalid_request", "grant_type", "missing", false},
	}
	d := newDialect(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req.build()
			req, e := d.DecodeTokenRequest(r)
			if e == nil {
				t.Fatalf("decoded %+v, want error", req)
			}
			if req != nil {
				t.Errorf("non-nil request with an error")
			}
			if got := Status(r, e); got != tt.status {
				t.Errorf("Status = %d, want %d", got, tt.status)
			}
			if e.Code != tt.code {
				t.Errorf("Code = %q, want %q (%s)", e.Code, tt.code, e.Description)
			}
			if e.Field != tt.field {
				t.Errorf("Field = %q, want %q", e.Field, tt.field)
			}
			if !strings.Contains(e.Description, tt.desc) {
				t.Errorf("Description = %q, want it to contain %q", e.Description, tt.desc)
			}
			if basic := e.Code == oauth.CodeInvalidClient && e.Field == "Authorization"; basic != tt.basic {
				t.Errorf("failed Basic authentication = %v, want %v", basic, tt.basic)
			}
			rec := httptest.NewRecorder()
			d.WriteError(rec, r, e)
			body := checkErrorResponse(t, rec, tt.status, tt.code)
			if body["error_description"] != e.Description {
				t.Errorf("error_description = %q, want %q", body["error_description"], e.Description)
			}
		})
	}
}

func TestDecodeTwoContentTypes(t *testing.T) {
	r := reqSpec{body: "grant_type=client_credentials"}.build()
	r.Header.Add("Content-Type", jsonCT)
	_, e := newDialect(t, nil).DecodeTokenRequest(r)
	if e == nil || e.Code != "invalid_request" || Status(r, e) != 400 || e.Field != "Content-Type" {
		t.Fatalf("got %#v", e)
	}
}

// A chunked body has no Content-Length, so only the MaxBytesReader stops it.
func TestDecodeTooLargeChunked(t *testing.T) {
	r := reqSpec{body: "grant_type=client_credentials&x=" + strings.Repeat("a", MaxBodyBytes)}.build()
	r.ContentLength = -1
	_, e := newDialect(t, nil).DecodeTokenRequest(r)
	if e == nil || e.Status != 413 || e.Code != "invalid_request" {
		t.Fatalf("got %#v", e)
	}
	rec := httptest.NewRecorder()
	WriteError(rec, r, e)
	checkErrorResponse(t, rec, 413, "invalid_request")
	if rec.Header().Get("Connection") != "close" {
		t.Errorf("Connection = %q", rec.Header().Get("Connection"))
	}
}

func TestDecodeExactlyMaxBody(t *testing.T) {
	body := "grant_type=client_credentials&x="
	body += strings.Repeat("a", MaxBodyBytes-len(body))
	req, e := newDialect(t, nil).DecodeTokenRequest(reqSpec{body: body}.build())
	if e != nil {
		t.Fatalf("a body of exactly %d bytes: %v", MaxBodyBytes, e)
	}
	if req.GrantType != "client_credentials" {
		t.Fatalf("GrantType %q", req.GrantType)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, http.ErrBodyReadAfterClose }

func TestDecodeBodyReadError(t *testing.T) {
	r := reqSpec{}.build()
	r.Body = io.NopCloser(errReader{})
	r.ContentLength = -1
	_, e := newDialect(t, nil).DecodeTokenRequest(r)
	if e == nil || Status(r, e) != 400 || e.Code != "invalid_request" || !strings.Contains(e.Description, "could not be read") {
		t.Fatalf("got %#v", e)
	}
}

func TestDecodeSuccess(t *testing.T) {
	tests := []struct {
		name string
		req  reqSpec
		want oauth.TokenRequest
	}{
		{"client_credentials basic", reqSpec{auth: []string{basic("client-1", "s3cr3t")}, body: "grant_type=client_credentials&scope=payments.read+payments.write"},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"payments.read", "payments.write"},
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "client-1", Secret: "s3cr3t"}}},
		{"client_credentials post", reqSpec{body: "grant_type=client_credentials&client_id=client-1&client_secret=s3cr3t"},
			oauth.TokenRequest{GrantType: "client_credentials",
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: "client-1", Secret: "s3cr3t"}}},
		{"basic lower-case scheme and extra spaces", reqSpec{auth: []string{"basic   " + base64.StdEncoding.EncodeToString([]byte("c:s"))}, body: "grant_type=client_credentials"},
			oauth.TokenRequest{GrantType: "client_credentials",
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "c", Secret: "s"}}},
		{"basic with same client_id in body", reqSpec{auth: []string{basic("c", "s")}, body: "grant_type=client_credentials&client_id=c"},
			oauth.TokenRequest{GrantType: "client_credentials",
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "c", Secret: "s"}}},
		{"basic with empty secret", reqSpec{auth: []string{basicRaw("c:")}, body: "grant_type=client_credentials"},
			oauth.TokenRequest{GrantType: "client_credentials",
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "c"}}},
		{"no credentials", reqSpec{body: "grant_type=client_credentials"},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"client_id only", reqSpec{body: "grant_type=client_credentials&client_id=c"},
			oauth.TokenRequest{GrantType: "client_credentials", Credentials: oauth.ClientCredentials{ClientID: "c"}}},
		{"empty client_secret is omitted", reqSpec{body: "grant_type=client_credentials&client_id=c&client_secret="},
			oauth.TokenRequest{GrantType: "client_credentials", Credentials: oauth.ClientCredentials{ClientID: "c"}}},
		{"password (seed 003 with real credentials)", reqSpec{auth: []string{basic("spring", "legacy")},
			body: "username=6982129990&grant_type=password&password=Test%401234567"},
			oauth.TokenRequest{GrantType: "password", Username: "6982129990", Password: "Test@1234567",
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "spring", Secret: "legacy"}}},
		{"password with tab and UTF-8", reqSpec{body: "grant_type=password&username=j%C3%BCrgen&password=a%09%E2%82%AC+b"},
			oauth.TokenRequest{GrantType: "password", Username: "jürgen", Password: "a\t€ b"}},
		{"refresh_token", reqSpec{body: "grant_type=refresh_token&refresh_token=rt-123&scope=a"},
			oauth.TokenRequest{GrantType: "refresh_token", RefreshToken: "rt-123", Scopes: []string{"a"}}},
		{"grant params of other grants are dropped", reqSpec{body: "grant_type=client_credentials&username=u&password=p&refresh_token=r"},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"unknown params ignored", reqSpec{body: "grant_type=client_credentials&foo=bar&x%0Ay=%01&semi=a;b"},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"parameters without value are omitted", reqSpec{body: "&grant_type=client_credentials&&scope&scope=&scope=a&=x&foo&foo"},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"a"}}},
		{"scope runs of spaces and duplicates", reqSpec{body: "grant_type=client_credentials&scope=++b+a++b+c+a+"},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"b", "a", "c"}}},
		{"scope only spaces", reqSpec{body: "grant_type=client_credentials&scope=+++"},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"scope all scope-token chars", reqSpec{body: "grant_type=client_credentials&scope=" + url.QueryEscape("!#[]~:/.-_{}")},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"!#[]~:/.-_{}"}}},
		{"content type case and charset", reqSpec{ct: "Application/X-WWW-Form-URLEncoded ; Charset=\"UTF-8\"; foo=bar", body: "grant_type=client_credentials"},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"query string ignored", reqSpec{target: "/oauth/token?tenant=eu&x", body: "grant_type=client_credentials"},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"identity encoding", reqSpec{header: map[string]string{"Content-Encoding": "identity"}, body: "grant_type=client_credentials"},
			oauth.TokenRequest{GrantType: "client_credentials"}},

		{"json (seed 002)", reqSpec{ct: jsonCT, body: `{"client_id":"c","client_secret":"s","scope":"send_sign_in_otp","grant_type":"client_credentials"}`},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"send_sign_in_otp"},
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: "c", Secret: "s"}}},
		{"json charset and whitespace", reqSpec{ct: "application/json; charset=utf-8", body: " \r\n\t{ \"grant_type\" : \"client_credentials\" , \"scope\" : \"a b\" }\n "},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"a", "b"}}},
		{"json scope array", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","scope":["a","b","a"]}`},
			oauth.TokenRequest{GrantType: "client_credentials", Scopes: []string{"a", "b"}}},
		{"json empty scope array", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","scope":[ ]}`},
			oauth.TokenRequest{GrantType: "client_credentials"}},
		{"json escapes", reqSpec{ct: jsonCT, body: `{"grant_type":"password","username":"j\u00fcrgen\/\"x\"","password":"\ud83d\ude00\\\t"}`},
			oauth.TokenRequest{GrantType: "password", Username: "jürgen/\"x\"", Password: "😀\\\t"}},
		{"json empty values omitted", reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","client_id":"c","client_secret":"","":"x"}`},
			oauth.TokenRequest{GrantType: "client_credentials", Credentials: oauth.ClientCredentials{ClientID: "c"}}},
		{"json with basic", reqSpec{ct: jsonCT, auth: []string{basic("c", "s")}, body: `{"grant_type":"client_credentials"}`},
			oauth.TokenRequest{GrantType: "client_credentials",
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: "c", Secret: "s"}}},
	}
	d := newDialect(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := d.DecodeTokenRequest(tt.req.build())
			if e != nil {
				t.Fatalf("error: %v (field %q)", e, e.Field)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestBasicDecoding(t *testing.T) {
	tests := []struct {
		name, raw, id, secret string
	}{
		{"plus is space", "my+client:pa+ss", "my client", "pa ss"},
		{"encoded colon", "a%3Ab:c%3ad", "a:b", "c:d"},
		{"encoded percent", "100%25:%2525", "100%", "%25"},
		{"encoded plus", "a%2Bb:c%2bd", "a+b", "c+d"},
		{"utf-8 percent-encoded", "caf%C3%A9:%E2%82%AC%F0%9F%98%80", "café", "€😀"},
		{"utf-8 raw", "café:€😀", "café", "€😀"},
		{"colon in secret", "id:a:b:c", "id", "a:b:c"},
		{"empty secret", "id:", "id", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reqSpec{auth: []string{basicRaw(tt.raw)}, body: "grant_type=client_credentials"}.build()
			p, e := ParseParams(r)
			if e != nil {
				t.Fatal(e)
			}
			c, e := ClientCredentials(r, p)
			if e != nil {
				t.Fatal(e)
			}
			if c.Method != oauth.AuthSecretBasic || c.ClientID != tt.id || c.Secret != tt.secret {
				t.Errorf("got %q %q %q, want %q %q", c.Method, c.ClientID, c.Secret, tt.id, tt.secret)
			}
		})
	}
	// What a conforming client sends for awkward values round-trips.
	for _, pair := range [][2]string{{"a b+c:d%e", "f g+h:i%j&k=l"}, {"ünïcødé", "пароль 密码"}} {
		r := reqSpec{auth: []string{basic(pair[0], pair[1])}, body: "grant_type=client_credentials"}.build()
		c, e := ClientCredentials(r, map[string]string{})
		if e != nil || c.ClientID != pair[0] || c.Secret != pair[1] {
			t.Errorf("round trip of %q: got %q %q %v", pair, c.ClientID, c.Secret, e)
		}
	}
}

// Descriptions are shown to clients and logged: no secret may reach them,
// however the request is malformed.
func TestNoSecretInErrors(t *testing.T) {
	const secret = "S3CRETvalue"
	// A generated 256-bit client secret, base64url, as a client might paste
	// it where a parameter name belongs.
	const longSecret = "q8VfX2mYb7Rk1JcT0sLw9HnAeZpG4uDi6oKjN3xQyBt"
	reqs := []reqSpec{
		{target: "/oauth/token?client_secret=" + secret, body: "grant_type=client_credentials"},
		{target: "/oauth/token?" + secret + "=1&password=" + secret, body: "grant_type=client_credentials"},
		{body: "grant_type=client_credentials&client_id=c&client_secret=" + secret + "%zz"},
		{body: "grant_type=client_credentials&client_id=c&client_secret=" + secret + "%ff"},
		{body: "grant_type=client_credentials&client_id=c&client_secret=" + secret + "%00"},
		{body: "grant_type=client_credentials&client_id=c&client_secret=" + secret + "&client_secret=" + secret},
		{body: "grant_type=client_credentials&" + longSecret + "=1&" + longSecret + "=2"},
		{body: "grant_type=client_credentials&%" + secret + "=1"},
		{body: "grant_type=client_credentials&scope=" + secret + "%22"},
		{body: "grant_type=" + secret},
		{auth: []string{basicRaw("c:" + secret + "%zz")}, body: "grant_type=client_credentials"},
		{auth: []string{basicRaw(secret)}, body: "grant_type=client_credentials"},
		{auth: []string{"Bearer " + secret}, body: "grant_type=client_credentials"},
		{auth: []string{basicRaw(":" + secret)}, body: "grant_type=client_credentials"},
		{auth: []string{basic("c", secret)}, body: "grant_type=client_credentials&client_secret=" + secret},
		{ct: jsonCT, body: `{"grant_type":"client_credentials","client_secret":"` + secret + `\x"}`},
		{ct: jsonCT, body: `{"grant_type":"client_credentials","` + longSecret + `":1}`},
		{ct: jsonCT, body: `{"grant_type":"client_credentials","` + longSecret + `":"1","` + longSecret + `":"2"}`},
		{ct: jsonCT, body: `{"grant_type":"client_credentials","` + secret + `+x":1}`},
		{ct: jsonCT, body: `{"grant_type":"client_credentials"}` + secret},
	}
	d := newDialect(t, nil)
	for i, s := range reqs {
		_, e := d.DecodeTokenRequest(s.build())
		if e == nil {
			t.Errorf("%d: no error", i)
			continue
		}
		if strings.Contains(e.Description, secret) || strings.Contains(e.Field, secret) ||
			strings.Contains(e.Description, longSecret) || strings.Contains(e.Field, longSecret) {
			t.Errorf("%d: secret in error %q (field %q)", i, e.Description, e.Field)
		}
	}
}

func TestParseParamsForIntrospection(t *testing.T) {
	r := reqSpec{auth: []string{basic("rs", "pw")}, body: "token=abc.def&token_type_hint=access_token"}.build()
	p, e := ParseParams(r)
	if e != nil {
		t.Fatal(e)
	}
	if want := map[string]string{"token": "abc.def", "token_type_hint": "access_token"}; !maps.Equal(p, want) {
		t.Errorf("params %v", p)
	}
	c, e := ClientCredentials(r, p)
	if e != nil || c.ClientID != "rs" || c.Secret != "pw" || c.Method != oauth.AuthSecretBasic {
		t.Errorf("credentials %+v %v", c, e)
	}
	_, e = ParseParams(reqSpec{target: "/introspect?token=abc", body: "x=1"}.build())
	if e == nil || !strings.Contains(e.Description, "credentials must not be sent in the URL") {
		t.Errorf("token in URL: %v", e)
	}
}

func TestNewOptions(t *testing.T) {
	for _, tt := range []struct {
		opts    map[string]any
		wantErr string
	}{
		{nil, ""},
		{map[string]any{}, ""},
		{map[string]any{"token_type": "Bearer"}, ""},
		{map[string]any{"token_type": "bearer", "created_at": true}, ""},
		{map[string]any{"token_type": "BEARER"}, "token_type"},
		{map[string]any{"token_type": "mac"}, "token_type"},
		{map[string]any{"created": true}, "created"},
		{map[string]any{"created_at": "sometimes"}, "cannot unmarshal"},
	} {
		_, err := New(tt.opts, dialect.Deps{})
		if tt.wantErr == "" && err != nil {
			t.Errorf("%v: %v", tt.opts, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%v: error %v, want one naming %q", tt.opts, err, tt.wantErr)
		}
	}
}

func TestWriteToken(t *testing.T) {
	issued := time.Unix(1595411399, 0)
	tests := []struct {
		name string
		opts map[string]any
		resp oauth.TokenResponse
		want string
	}{
		{"default", nil,
			oauth.TokenResponse{AccessToken: "at", TokenType: "Bearer", ExpiresIn: 7200, Scopes: []string{"send_sign_in_otp"}, IssuedAt: issued},
			`{"access_token":"at","token_type":"Bearer","expires_in":7200,"scope":"send_sign_in_otp"}`},
		{"seed 002: created_at", map[string]any{"created_at": true},
			oauth.TokenResponse{AccessToken: "82c38b64", TokenType: "Bearer", ExpiresIn: 7200, Scopes: []string{"send_sign_in_otp"}, IssuedAt: issued},
			`{"access_token":"82c38b64","token_type":"Bearer","expires_in":7200,"scope":"send_sign_in_otp","created_at":1595411399}`},
		{"seed 003: lower-case bearer and refresh token", map[string]any{"token_type": "bearer"},
			oauth.TokenResponse{AccessToken: "P3Dqn26dcUdYQP_11CNZHbyCpNE", TokenType: "Bearer", RefreshToken: "aR8dFcfjUZsa9BoO3WhBDS9OuV0",
				ExpiresIn: 86399, Scopes: []string{"read", "write", "trust"}},
			`{"access_token":"P3Dqn26dcUdYQP_11CNZHbyCpNE","token_type":"bearer","expires_in":86399,"refresh_token":"aR8dFcfjUZsa9BoO3WhBDS9OuV0","scope":"read write trust"}`},
		{"explicit Bearer", map[string]any{"token_type": "Bearer"},
			oauth.TokenResponse{AccessToken: "at", TokenType: "bearer", ExpiresIn: 1},
			`{"access_token":"at","token_type":"Bearer","expires_in":1}`},
		{"no scope", nil,
			oauth.TokenResponse{AccessToken: "at", TokenType: "Bearer", ExpiresIn: 60},
			`{"access_token":"at","token_type":"Bearer","expires_in":60}`},
		{"scope narrowed to nothing", nil,
			oauth.TokenResponse{AccessToken: "at", TokenType: "Bearer", ExpiresIn: 60, ScopeChanged: true},
			`{"access_token":"at","token_type":"Bearer","expires_in":60,"scope":""}`},
		{"created_at from the clock", map[string]any{"created_at": true},
			oauth.TokenResponse{AccessToken: "at", TokenType: "Bearer", ExpiresIn: 60},
			`{"access_token":"at","token_type":"Bearer","expires_in":60,"created_at":1595411399}`},
		{"escaping", nil,
			oauth.TokenResponse{AccessToken: "a\"b\\c\n\x01\u2028é\xff", TokenType: "Bearer", ExpiresIn: 60},
			`{"access_token":"a\"b\\c\n\u0001\u2028é\ufffd","token_type":"Bearer","expires_in":60}`},
		{"jwt", nil,
			oauth.TokenResponse{AccessToken: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjIn0.sig-_", TokenType: "Bearer", ExpiresIn: 900},
			`{"access_token":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjIn0.sig-_","token_type":"Bearer","expires_in":900}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDialect(t, tt.opts)
			rec := httptest.NewRecorder()
			d.WriteToken(rec, reqSpec{}.build(), &tt.resp)
			if rec.Code != 200 {
				t.Errorf("status %d", rec.Code)
			}
			checkJSONHeaders(t, rec.Header())
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
			var v map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("invalid JSON: %v", err)
			}
			if v["access_token"] != strings.ToValidUTF8(tt.resp.AccessToken, "\ufffd") {
				t.Errorf("access_token %q", v["access_token"])
			}
			if _, ok := v["expires_in"].(float64); !ok {
				t.Errorf("expires_in is %T, want a number", v["expires_in"])
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	withBasic := reqSpec{auth: []string{basic("c", "wrong")}, body: "grant_type=client_credentials"}.build()
	withPost := reqSpec{body: "grant_type=client_credentials&client_id=c&client_secret=wrong"}.build()
	tests := []struct {
		name   string
		r      *http.Request
		e      *oauth.Error
		status int
		body   string
	}{
		{"basic failed", withBasic, oauth.InvalidClient(oauth.CauseBadCredentials, "client authentication failed"), 401,
			`{"error":"invalid_client","error_description":"client authentication failed"}`},
		{"malformed basic", withBasic, &oauth.Error{Code: "invalid_client", Cause: oauth.CauseMalformedField, Field: "Authorization", Description: "bad"}, 401,
			`{"error":"invalid_client","error_description":"bad"}`},
		{"post failed", withPost, oauth.InvalidClient(oauth.CauseBadCredentials, "client authentication failed"), 400,
			`{"error":"invalid_client","error_description":"client authentication failed"}`},
		{"no credentials", withPost, oauth.InvalidClient(oauth.CauseNoCredentials, "client authentication required"), 401,
			`{"error":"invalid_client","error_description":"client authentication required"}`},
		{"invalid grant", withBasic, oauth.InvalidGrant(oauth.CauseBadGrant, "invalid username or password"), 400,
			`{"error":"invalid_grant","error_description":"invalid username or password"}`},
		{"sanitized", nil, oauth.BadRequest("say \"hi\" \\ café\n\x00"), 400,
			`{"error":"invalid_request","error_description":"say 'hi' / caf???"}`},
		{"no description", nil, &oauth.Error{Code: "invalid_scope"}, 400, `{"error":"invalid_scope"}`},
		{"unavailable", nil, oauth.Unavailable(), 503,
			`{"error":"temporarily_unavailable","error_description":"the token store is unavailable, try again shortly"}`},
		{"rate limited", nil, oauth.RateLimited("too many token requests for this client, retry later", 0), 429,
			`{"error":"temporarily_unavailable","error_description":"too many token requests for this client, retry later"}`},
		{"overloaded", nil, oauth.Overloaded("the server is busy", 0), 503,
			`{"error":"temporarily_unavailable","error_description":"the server is busy"}`},
		{"nil", nil, nil, 500, `{"error":"server_error","error_description":"internal error"}`},
		{"invalid_client without a request", nil, &oauth.Error{Code: "invalid_client"}, 400, `{"error":"invalid_client"}`},
		{"no code, a 400", nil, &oauth.Error{Status: 400}, 400, `{"error":"invalid_request"}`},
		{"no code, no status", nil, &oauth.Error{}, 500, `{"error":"server_error"}`},
		{"method", nil, &oauth.Error{Code: "invalid_request", Status: 405, Description: "the method must be POST"}, 405,
			`{"error":"invalid_request","error_description":"the method must be POST"}`},
		{"too large, with Authorization", withBasic, &oauth.Error{Code: "invalid_request", Status: 413, Description: "too large"}, 413,
			`{"error":"invalid_request","error_description":"too large"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, tt.r, tt.e)
			code := "server_error"
			if tt.e != nil {
				code = tt.e.Code
				if code == "" && tt.status < 500 {
					code = "invalid_request"
				} else if code == "" {
					code = "server_error"
				}
			}
			checkErrorResponse(t, rec, tt.status, code)
			if got := rec.Body.String(); got != tt.body {
				t.Errorf("body\n got %s\nwant %s", got, tt.body)
			}
			if got := rec.Header().Get("Retry-After"); got != "" && (tt.e == nil || tt.e.RetryAfter == 0) {
				t.Errorf("Retry-After %q without RetryAfter", got)
			}
		})
	}
}

// Status follows RFC 6749 §5.2 for invalid_client: 401 with a challenge
// only when the client tried HTTP authentication (or sent no credentials
// at all), 400 when its body credentials failed.
func TestStatus(t *testing.T) {
	withBasic := reqSpec{auth: []string{basic("c", "s")}, body: "grant_type=client_credentials"}.build()
	withOther := reqSpec{auth: []string{"Bearer x"}, body: "grant_type=client_credentials"}.build()
	withEmpty := reqSpec{auth: []string{""}, body: "grant_type=client_credentials"}.build()
	withPost := reqSpec{body: "grant_type=client_credentials&client_id=c&client_secret=s"}.build()
	bare := reqSpec{body: "grant_type=client_credentials"}.build()
	tooMany := func(c oauth.Cause) *oauth.Error { return &oauth.Error{Code: oauth.CodeTemporarilyUnavail, Cause: c} }
	for _, tt := range []struct {
		name string
		r    *http.Request
		e    *oauth.Error
		want int
	}{
		{"body credentials failed", withPost, oauth.InvalidClient(oauth.CauseBadCredentials, "x"), 400},
		{"body credentials of an unknown client", withPost, oauth.InvalidClient(oauth.CauseUnknownClient, "x"), 400},
		{"body credentials, method not allowed", withPost, oauth.InvalidClient(oauth.CauseMethodNotAllowed, "x"), 400},
		{"body credentials, endpoint not allowed", withPost, oauth.InvalidClient(oauth.CauseEndpointNotAllowed, "x"), 400},
		{"body credentials, client disabled", withPost, oauth.InvalidClient(oauth.CauseClientDisabled, "x"), 400},
		{"Basic credentials failed", withBasic, oauth.InvalidClient(oauth.CauseBadCredentials, "x"), 401},
		{"Basic, method not allowed", withBasic, oauth.InvalidClient(oauth.CauseMethodNotAllowed, "x"), 401},
		{"Basic, client disabled", withBasic, oauth.InvalidClient(oauth.CauseClientDisabled, "x"), 401},
		{"another scheme", withOther, oauth.InvalidClient(oauth.CauseMalformedField, "x"), 401},
		{"an empty Authorization header", withEmpty, oauth.InvalidClient(oauth.CauseMalformedField, "x"), 401},
		{"no credentials at all", bare, oauth.InvalidClient(oauth.CauseNoCredentials, "x"), 401},
		{"no credentials, no request", nil, oauth.InvalidClient(oauth.CauseNoCredentials, "x"), 401},
		{"invalid_client, no request", nil, oauth.InvalidClient(oauth.CauseBadCredentials, "x"), 400},
		{"rate limited", withBasic, oauth.RateLimited("x", time.Second), 429},
		{"rate limited, bare cause", nil, tooMany(oauth.CauseRateLimited), 429},
		{"overloaded", nil, oauth.Overloaded("x", time.Second), 503},
		{"store unavailable", nil, oauth.Unavailable(), 503},
		{"store timeout", nil, oauth.Timeout(), 503},
		{"temporarily_unavailable without cause", nil, tooMany(oauth.CauseUnspecified), 503},
		{"server error", withBasic, oauth.ServerError(), 500},
		{"no code", nil, &oauth.Error{}, 500},
		{"invalid_grant with Basic", withBasic, oauth.InvalidGrant(oauth.CauseBadGrant, "x"), 400},
		{"locked user", withBasic, oauth.InvalidGrant(oauth.CauseUserLocked, "x"), 400},
		{"unauthorized_client", withBasic, oauth.UnauthorizedClient("x"), 400},
		{"invalid_scope", nil, oauth.InvalidScope("x"), 400},
		{"unsupported_grant_type", nil, oauth.UnsupportedGrant("x"), 400},
		{"unsupported_token_type", nil, &oauth.Error{Code: oauth.CodeUnsupportedTokenType}, 400},
		{"invalid_request", withBasic, oauth.Missing("grant_type"), 400},
		{"unknown code", nil, &oauth.Error{Code: "weird"}, 400},
		{"own 405 wins", withBasic, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: 405}, 405},
		{"own 413 wins", nil, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: 413}, 413},
		{"a set Status wins over invalid_client", withBasic, &oauth.Error{Code: oauth.CodeInvalidClient, Status: 400}, 400},
		{"a Status out of range is ignored", withBasic, &oauth.Error{Code: oauth.CodeInvalidClient, Status: 200}, 401},
		{"a Status over 599 is ignored", nil, &oauth.Error{Code: oauth.CodeServerError, Status: 600}, 500},
	} {
		if got := Status(tt.r, tt.e); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
		// WriteError writes that status, with the challenge exactly on a 401.
		rec := httptest.NewRecorder()
		WriteError(rec, tt.r, tt.e)
		if rec.Code != tt.want || (rec.Code == 401) != (rec.Header().Get("WWW-Authenticate") == WWWAuthenticate) {
			t.Errorf("%s: wrote %d, WWW-Authenticate %q", tt.name, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
}

// An invalid_client answered through the dialect: the same engine error is
// a 401 with a challenge after Basic, a 400 without one after body
// credentials.
func TestDialectWriteErrorUsesRequest(t *testing.T) {
	d := newDialect(t, nil)
	e := oauth.InvalidClient(oauth.CauseBadCredentials, "client authentication failed")
	for _, tt := range []struct {
		r      *http.Request
		status int
	}{
		{reqSpec{auth: []string{basic("c", "wrong")}, body: "grant_type=client_credentials"}.build(), 401},
		{reqSpec{body: "grant_type=client_credentials&client_id=c&client_secret=wrong"}.build(), 400},
		{reqSpec{ct: jsonCT, body: `{"grant_type":"client_credentials","client_id":"c","client_secret":"wrong"}`}.build(), 400},
	} {
		rec := httptest.NewRecorder()
		d.WriteError(rec, tt.r, e)
		checkErrorResponse(t, rec, tt.status, "invalid_client")
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, 200, map[string]any{"active": true, "scope": "a b", "exp": 1700000000})
	if rec.Code != 200 {
		t.Errorf("status %d", rec.Code)
	}
	checkJSONHeaders(t, rec.Header())
	if got, want := rec.Body.String(), `{"active":true,"exp":1700000000,"scope":"a b"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	rec = httptest.NewRecorder()
	WriteJSON(rec, 200, map[string]any{"bad": func() {}})
	checkErrorResponse(t, rec, 500, "server_error")
}

// The dialect is used by many requests at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	d := newDialect(t, map[string]any{"created_at": true})
	resp := &oauth.TokenResponse{AccessToken: "at", TokenType: "Bearer", ExpiresIn: 60, Scopes: []string{"a"}}
	t.Run("group", func(t *testing.T) {
		for i := range 8 {
			t.Run("", func(t *testing.T) {
				t.Parallel()
				for j := range 200 {
					body := "grant_type=client_credentials&scope=s" + string(rune('a'+i))
					if j%2 == 0 {
						body += "&client_id=c&client_secret=s"
					}
					req, e := d.DecodeTokenRequest(reqSpec{body: body}.build())
					if e != nil || !slices.Equal(req.Scopes, []string{"s" + string(rune('a'+i))}) {
						t.Errorf("%v %v", req, e)
						return
					}
					rec := httptest.NewRecorder()
					d.WriteToken(rec, nil, resp)
					if !strings.HasPrefix(rec.Body.String(), `{"access_token":"at"`) {
						t.Errorf("body %s", rec.Body)
						return
					}
				}
			})
		}
	})
}

func TestParseScope(t *testing.T) {
	var many []string
	for i := range 40 {
		many = append(many, "s"+string(rune('A'+i%20)))
	}
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"a", []string{"a"}},
		{" a  b a ", []string{"a", "b"}},
		{strings.Join(many, " "), many[:20]}, // over 16 tokens: deduplicated with a map
	} {
		got, e := parseScope(tt.in)
		if e != nil || !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("parseScope(%q) = %q, %v; want %q", tt.in, got, e, tt.want)
		}
	}
}

func TestWriteTokenEdgeCases(t *testing.T) {
	d := newDialect(t, nil)
	rec := httptest.NewRecorder()
	d.WriteToken(rec, nil, nil)
	checkErrorResponse(t, rec, 500, "server_error")

	rec = httptest.NewRecorder()
	d.WriteToken(rec, nil, &oauth.TokenResponse{AccessToken: "a\tb\rc", TokenType: "DPoP", ExpiresIn: 5})
	if got, want := rec.Body.String(), `{"access_token":"a\tb\rc","token_type":"DPoP","expires_in":5}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestNoncharacterRejected(t *testing.T) {
	_, e := ParseParams(reqSpec{body: "grant_type=password&username=u&password=a%EF%BF%BF"}.build())
	if e == nil || e.Field != "password" {
		t.Errorf("U+FFFF in password: %v", e)
	}
	_, e = ParseParams(reqSpec{body: "grant_type=password&username=u&password=a%EF%BF%BD%7E"}.build())
	if e != nil {
		t.Errorf("U+FFFD in password: %v", e)
	}
}

// A client_id over oauth.MaxClientIDLen or a client_secret over
// oauth.MaxClientSecretLen is refused before the engine sees it, in a form
// body, a JSON body or Basic credentials, at the token endpoint and in
// ClientCredentials as the introspection and revocation endpoints call it.
func TestClientCredentialBounds(t *testing.T) {
	id, longID := strings.Repeat("i", oauth.MaxClientIDLen), strings.Repeat("i", oauth.MaxClientIDLen+1)
	sec, longSec := strings.Repeat("s", oauth.MaxClientSecretLen), strings.Repeat("s", oauth.MaxClientSecretLen+1)
	// Every byte form-encoded to three: the longest Basic credentials that
	// still fit the bounds.
	pctID, pctSec := strings.Repeat("%", oauth.MaxClientIDLen), strings.Repeat("%", oauth.MaxClientSecretLen)
	type want struct {
		status int
		code   string
		field  string
		desc   string
		basic  bool
	}
	okWant := want{}
	badID := want{400, "invalid_request", "client_id", "malformed parameter: client_id (longer than 256 bytes)", false}
	badSec := want{400, "invalid_request", "client_secret", "malformed parameter: client_secret (longer than 1024 bytes)", false}
	basicID := want{401, "invalid_client", "Authorization", "client ID longer than 256 bytes", true}
	basicSec := want{401, "invalid_client", "Authorization", "client secret longer than 1024 bytes", true}
	basicLong := want{401, "invalid_client", "Authorization", "malformed Basic credentials: too long", true}
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	jsonBody := func(kv ...string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tt := range []struct {
		name string
		req  reqSpec
		want want
	}{
		{"form id at the bound", reqSpec{body: form("grant_type", "client_credentials", "client_id", id, "client_secret", sec)}, okWant},
		{"form id over", reqSpec{body: form("grant_type", "client_credentials", "client_id", longID, "client_secret", "s")}, badID},
		{"form id over, no secret", reqSpec{body: form("grant_type", "client_credentials", "client_id", longID)}, badID},
		{"form id far over", reqSpec{body: form("grant_type", "client_credentials", "client_id", strings.Repeat("x", 60<<10))}, badID},
		{"form secret over", reqSpec{body: form("grant_type", "client_credentials", "client_id", "c", "client_secret", longSec)}, badSec},
		{"json id at the bound", reqSpec{ct: jsonCT, body: jsonBody("grant_type", "client_credentials", "client_id", id, "client_secret", sec)}, okWant},
		{"json id over", reqSpec{ct: jsonCT, body: jsonBody("grant_type", "client_credentials", "client_id", longID, "client_secret", "s")}, badID},
		{"json secret over", reqSpec{ct: jsonCT, body: jsonBody("grant_type", "client_credentials", "client_id", "c", "client_secret", longSec)}, badSec},
		{"body id over with basic", reqSpec{auth: []string{basic("c", "s")}, body: form("grant_type", "client_credentials", "client_id", longID)}, badID},
		{"basic at the bounds", reqSpec{auth: []string{basic(id, sec)}, body: "grant_type=client_credentials"}, okWant},
		{"basic encoded at the bounds", reqSpec{auth: []string{basic(pctID, pctSec)}, body: "grant_type=client_credentials"}, okWant},
		{"basic id over", reqSpec{auth: []string{basic(longID, "s")}, body: "grant_type=client_credentials"}, basicID},
		{"basic secret over", reqSpec{auth: []string{basic("c", longSec)}, body: "grant_type=client_credentials"}, basicSec},
		{"basic encoded id over", reqSpec{auth: []string{basic(pctID+"%", "s")}, body: "grant_type=client_credentials"}, basicID},
		{"basic far over", reqSpec{auth: []string{basic(strings.Repeat("x", 64<<10), "s")}, body: "grant_type=client_credentials"}, basicLong},
		{"basic just over the base64 bound", reqSpec{auth: []string{basic(pctID+"%", pctSec)}, body: "grant_type=client_credentials"}, basicLong},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, target := range []string{"/oauth/token", "/oauth/introspect", "/oauth/revoke"} {
				r := tt.req
				r.target = target
				if target != "/oauth/token" {
					r.body = strings.Replace(r.body, "grant_type", "token", 1)
				}
				req := r.build()
				p, e := ParseParams(req)
				if e != nil {
					t.Fatalf("%s: ParseParams: %v", target, e)
				}
				c, e := ClientCredentials(req, p)
				if tt.want == okWant {
					if e != nil || len(c.ClientID) == 0 || len(c.ClientID) > oauth.MaxClientIDLen || len(c.Secret) > oauth.MaxClientSecretLen {
						t.Fatalf("%s: %+v %v", target, c, e)
					}
					continue
				}
				if e == nil {
					t.Fatalf("%s: accepted %d-byte client ID, %d-byte secret", target, len(c.ClientID), len(c.Secret))
				}
				basic := e.Code == oauth.CodeInvalidClient && e.Field == "Authorization"
				if Status(req, e) != tt.want.status || e.Code != tt.want.code || e.Field != tt.want.field ||
					!strings.Contains(e.Description, tt.want.desc) || basic != tt.want.basic {
					t.Errorf("%s: %+v, want %+v", target, e, tt.want)
				}
			}
			// The token endpoint answers the same, on the wire.
			req := tt.req.build()
			_, e := newDialect(t, nil).DecodeTokenRequest(req)
			if (e == nil) != (tt.want == okWant) || e != nil && (e.Code != tt.want.code || Status(req, e) != tt.want.status) {
				t.Errorf("token endpoint: %v", e)
			}
		})
	}
}
