package oauth2

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tokengate/tokengate/oauth"
)

var fuzzMethods = []string{"POST", "GET", "PUT", "HEAD", "OPTIONS", "post"}

func FuzzDecodeTokenRequest(f *testing.F) {
	f.Add(uint8(0), "", formCT, "", []byte("grant_type=client_credentials&scope=a+b"))
	f.Add(uint8(0), "", formCT, "Basic Og==", []byte("username=6982129990&grant_type=password&password=Test%401234567"))
	f.Add(uint8(0), "", formCT, basic("c", "s"), []byte("grant_type=refresh_token&refresh_token=r&client_id=c"))
	f.Add(uint8(0), "", jsonCT, "", []byte(`{"grant_type":"client_credentials","client_id":"c","client_secret":"s","scope":["a","b"]}`))
	f.Add(uint8(0), "", jsonCT+"; charset=utf-8", "", []byte(`{"grant_type":"password","username":"\u00fc","password":"\ud83d\ude00"}`))
	f.Add(uint8(0), "a=1;client_secret=x", formCT, "", []byte("grant_type=client_credentials"))
	f.Add(uint8(0), "", formCT, "Bearer x", []byte("grant_type=client_credentials&client_secret=s"))
	f.Add(uint8(1), "", "", "", []byte(""))
	f.Add(uint8(0), "", "text/plain", "", []byte("{"))
	f.Fuzz(func(t *testing.T, m uint8, query, ct, auth string, body []byte) {
		r := httptest.NewRequest(fuzzMethods[int(m)%len(fuzzMethods)], "/oauth/token", bytes.NewReader(body))
		r.URL.RawQuery = query
		if ct != "" {
			r.Header["Content-Type"] = []string{ct}
		}
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		req, e := decodeTokenRequest(r)
		if e != nil {
			if req != nil {
				t.Fatal("request and error")
			}
			// The dialect sets Status only for its own 405 and 413 (and
			// some 400s); everything else is decided on the wire by Status.
			switch e.Status {
			case 0, 400, 405, 413:
			default:
				t.Fatalf("e.Status %d: %v", e.Status, e)
			}
			status := Status(r, e)
			switch status {
			case 400, 401, 405, 413:
			default:
				t.Fatalf("status %d: %v", status, e)
			}
			switch e.Code {
			case oauth.CodeInvalidRequest, oauth.CodeInvalidClient, oauth.CodeUnsupportedGrantType, oauth.CodeInvalidScope:
			default:
				t.Fatalf("code %q", e.Code)
			}
			// Only a bad Authorization header makes the decoder answer
			// invalid_client, and that is a 401 with the Basic challenge.
			if (e.Code == oauth.CodeInvalidClient) != (status == 401) ||
				e.Code == oauth.CodeInvalidClient && (auth == "" || e.Field != "Authorization") {
				t.Fatalf("status %d for %+v (Authorization %q)", status, e, auth)
			}
			rec := httptest.NewRecorder()
			WriteError(rec, r, e)
			var v map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v["error"] != e.Code {
				t.Fatalf("error body %q: %v", rec.Body, err)
			}
			if rec.Code != status || (status == 401) != (rec.Header().Get("WWW-Authenticate") == WWWAuthenticate) {
				t.Fatalf("wrote %d %v for status %d", rec.Code, rec.Header(), status)
			}
			return
		}
		if !oauth.KnownGrant(req.GrantType) {
			t.Fatalf("grant %q", req.GrantType)
		}
		if req.GrantType == oauth.GrantPassword && (req.Username == "" || req.Password == "") {
			t.Fatal("password grant without username or password")
		}
		if req.GrantType == oauth.GrantRefreshToken && req.RefreshToken == "" {
			t.Fatal("refresh grant without refresh token")
		}
		if req.Scopes != nil && len(req.Scopes) == 0 {
			t.Fatal("empty non-nil scopes")
		}
		for i, s := range req.Scopes {
			if s == "" || strings.ContainsAny(s, " \"\\") || slices.Contains(req.Scopes[:i], s) {
				t.Fatalf("scopes %q", req.Scopes)
			}
			for _, c := range []byte(s) {
				if c < 0x21 || c > 0x7e {
					t.Fatalf("scopes %q", req.Scopes)
				}
			}
		}
		switch c := req.Credentials; c.Method {
		case "":
			if c.Secret != "" {
				t.Fatal("secret without method")
			}
		case oauth.AuthSecretBasic, oauth.AuthSecretPost:
			if c.ClientID == "" {
				t.Fatal("credentials without client ID")
			}
		default:
			t.Fatalf("method %q", c.Method)
		}
		for _, s := range []string{req.Username, req.Password, req.RefreshToken, req.Credentials.ClientID, req.Credentials.Secret} {
			if !oauth.ValidCredentialText(s) {
				t.Fatalf("control character or bad UTF-8 in %q", s)
			}
		}
	})
}

func FuzzParseBasic(f *testing.F) {
	f.Add("Basic Og==")
	f.Add(basic("a b+c", "d:e%f"))
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("caf%C3%A9:x")))
	f.Add("basic  YTpi")
	f.Add("Bearer abc")
	f.Add("Basic")
	f.Fuzz(func(t *testing.T, h string) {
		id, secret, e := parseBasic(h)
		if e != nil {
			r := &http.Request{Header: http.Header{"Authorization": {h}}}
			if e.Code != oauth.CodeInvalidClient || e.Field != "Authorization" || e.Status != 0 || Status(r, e) != 401 {
				t.Fatalf("error %#v", e)
			}
			return
		}
		if id == "" || !oauth.ValidCredentialText(id) || !oauth.ValidCredentialText(secret) {
			t.Fatalf("accepted %q %q", id, secret)
		}
		// What was accepted round-trips through a conforming encoder.
		id2, secret2, e := parseBasic(basic(id, secret))
		if e != nil || id2 != id || secret2 != secret {
			t.Fatalf("round trip of %q %q: %q %q %v", id, secret, id2, secret2, e)
		}
		// net/http's BasicAuth (no form decoding) agrees before decoding.
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		if u, p, ok := r.BasicAuth(); ok {
			du, err1 := url.QueryUnescape(u)
			dp, err2 := url.QueryUnescape(p)
			if err1 == nil && err2 == nil && (du != id || dp != secret) {
				t.Fatalf("net/http reads %q %q, we read %q %q", du, dp, id, secret)
			}
		}
	})
}

// FuzzParseJSON checks the JSON parameter reader (jsonx.ReadObject plus
// this dialect's string rules) against encoding/json:
// whatever it accepts, encoding/json accepts with the same values, and every
// object of non-empty strings encoding/json produces, it reads back.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"grant_type":"client_credentials","scope":["a","b"]}`))
	f.Add([]byte(`{"a\u00e9\ud83d\ude00":"\"\\\/\b\f\n\r\t","b":""}`))
	f.Add([]byte(` {"x" : "y" } `))
	f.Add([]byte(`{"scope":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m := map[string]string{}
		if e := parseJSON(string(body), m); e == nil {
			var ref map[string]any
			if err := json.Unmarshal(body, &ref); err != nil {
				t.Fatalf("accepted %q, encoding/json: %v", body, err)
			}
			for k, v := range ref {
				want, _ := v.(string)
				if a, ok := v.([]any); ok && k == "scope" {
					var parts []string
					for _, s := range a {
						parts = append(parts, s.(string))
					}
					want = strings.Join(parts, " ")
				}
				if k != "" && want != "" && m[k] != want || (k == "" || want == "") && m[k] != "" {
					t.Fatalf("%q: key %q = %q, encoding/json %q", body, k, m[k], want)
				}
			}
			if len(m) > len(ref) {
				t.Fatalf("%q: %v vs %v", body, m, ref)
			}
		}
		// The other direction: re-encode what encoding/json read, if it is an
		// object of valid strings, and expect the reader to agree.
		var ref map[string]string
		if json.Unmarshal(body, &ref) != nil {
			return
		}
		for k, v := range ref {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(k+v, utf8.RuneError) {
				return // encoding/json replaced something; the reader rejects such input
			}
		}
		enc, _ := json.Marshal(ref)
		m2 := map[string]string{}
		if e := parseJSON(string(enc), m2); e != nil {
			t.Fatalf("rejected %s: %v", enc, e)
		}
		for k, v := range ref {
			if k != "" && v != "" && m2[k] != v {
				t.Fatalf("%s: %q = %q, want %q", enc, k, m2[k], v)
			}
		}
	})
}

// FuzzParseForm checks the form parser against net/url where they agree on
// the rules (no ';', no repeated or empty parameters).
func FuzzParseForm(f *testing.F) {
	f.Add("grant_type=client_credentials&scope=a+b%20c")
	f.Add("a=%zz")
	f.Add("a=1&a=2")
	f.Add("a&b=&=c&%41=%42")
	f.Fuzz(func(t *testing.T, body string) {
		m := map[string]string{}
		e := parseForm(body, m)
		if strings.Contains(body, ";") {
			return
		}
		// Parameters without a value or a name are skipped unread, so
		// leave them out of the reference too.
		var kept []string
		for _, pair := range strings.Split(body, "&") {
			if k, v, _ := strings.Cut(pair, "="); k != "" && v != "" {
				kept = append(kept, pair)
			}
		}
		ref, err := url.ParseQuery(strings.Join(kept, "&"))
		if e == nil && err != nil {
			t.Fatalf("accepted %q, net/url: %v", body, err)
		}
		if e != nil {
			return
		}
		for k, vs := range ref {
			var nonEmpty []string
			for _, v := range vs {
				if v != "" {
					nonEmpty = append(nonEmpty, v)
				}
			}
			switch {
			case k == "" || len(nonEmpty) == 0:
				if m[k] != "" {
					t.Fatalf("%q: %q = %q", body, k, m[k])
				}
			case len(nonEmpty) > 1:
				t.Fatalf("%q: repeated %q accepted", body, k)
			case m[k] != nonEmpty[0]:
				t.Fatalf("%q: %q = %q, net/url %q", body, k, m[k], nonEmpty[0])
			}
		}
	})
}
