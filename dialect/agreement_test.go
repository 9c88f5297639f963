package dialect_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/dialect/neox"
	"github.com/tokengate/tokengate/dialect/oauth2"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/oauth"
)

var now = time.Date(2024, 12, 31, 10, 11, 40, 0, time.FixedZone("WIB", 7*3600))

type jsonDialect struct {
	name string
	d    dialect.Dialect
	// request builds a token request with body and clientID wherever the
	// dialect carries it (for SNAP, X-CLIENT-KEY; else the JSON body is
	// expected to hold it).
	request func(body, clientID string) *http.Request
}

func jsonDialects(t *testing.T) []jsonDialect {
	t.Helper()
	deps := dialect.Deps{Now: func() time.Time { return now }}
	o2, err1 := oauth2.New(nil, deps)
	sn, err2 := snap.NewB2B(nil, deps)
	nx, err3 := neox.New(nil, deps)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			t.Fatal(err)
		}
	}
	post := func(path, body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	return []jsonDialect{
		{"oauth2", o2, func(body, _ string) *http.Request { return post("/oauth/token", body) }},
		{"snap-b2b", sn, func(body, clientID string) *http.Request {
			r := post("/snap/v1.0/access-token/b2b", body)
			r.Header.Set(snap.HeaderTimestamp, snap.Timestamp(now))
			r.Header.Set(snap.HeaderClientKey, clientID)
			r.Header.Set(snap.HeaderSignature, "AAAA") // checked later, against the client's key
			return r
		}},
		{"neox", nx, func(body, _ string) *http.Request { return post("/v2/auth/oauth2/token", body) }},
	}
}

// body is a token request every dialect accepts, with member x set to the
// given JSON text; x is a member no dialect reads.
func body(x string) string {
	return `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"c","client_secret":"s","x":` + x + `}`
}

// Every dialect reads request JSON with the one reader, internal/jsonx, so
// they accept and refuse the same bodies, whichever member holds the
// offending text.
func TestDialectsAgreeOnJSON(t *testing.T) {
	accepted := []string{
		body(`"plain"`),
		body(`"\ud83d\ude00"`),
		body(`"\u00e9\u20ac"`),
		body("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""),
		body(`"\ufffd"`),
		body("\"\xef\xbf\xbd\""),
		body(`"\\ud800"`), // an escaped backslash, then text
		` {"grant_type" : "client_credentials", "grantType":"client_credentials","client_id":"c","client_secret":"s"} ` + "\n",
	}
	deep := func(depth int) string { // x's value brings the body to this depth
		return strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1)
	}
	refused := map[string]string{
		`lone high surrogate \ud800`:          body(`"\ud800"`),
		`lone low surrogate \udc00`:           body(`"\udc00"`),
		`high surrogate then \u0041`:          body(`"\ud800\u0041"`),
		`high surrogate at the end`:           body(`"a\ud83d"`),
		`raw 0xff`:                            body("\"\xff\""),
		`raw 0xff in a name`:                  `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"c","client_secret":"s","` + "\xff" + `":"1"}`,
		`CESU-8 surrogate bytes`:              body("\"\xed\xa0\x80\""),
		`overlong NUL`:                        body("\"\xc0\x80\""),
		`overlong slash, 3 bytes`:             body("\"\xe0\x80\xaf\""),
		`overlong slash, 4 bytes`:             body("\"\xf0\x80\x80\xaf\""),
		`beyond U+10FFFF`:                     body("\"\xf4\x90\x80\x80\""),
		`raw NUL`:                             body("\"a\x00b\""),
		`raw newline`:                         body("\"a\nb\""),
		`lone surrogate in an unread member`:  `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"c","client_secret":"s","y":{"z":["\udfff"]}}`,
		`duplicate unread member`:             body(`"1","x":"2"`),
		`duplicate differing by escaping`:     body(`"1","\u0078":"2"`),
		`duplicate grant_type, escaped`:       body(`"1","gr\u0061nt_type":"client_credentials"`),
		`duplicate client_id, escaped`:        body(`"1","client\u005fid":"c"`),
		`duplicate in a nested object`:        body(`{"a":1,"\u0061":2}`),
		`nesting deeper than 32`:              body(deep(33)),
		`nesting far deeper`:                  body(strings.Repeat("[", 20000) + strings.Repeat("]", 20000)),
		`trailing data`:                       body(`"1"`) + `{}`,
		`trailing garbage`:                    body(`"1"`) + ` x`,
		`two objects`:                         body(`"1"`) + body(`"1"`),
		`an array`:                            `[` + body(`"1"`) + `]`,
		`unterminated`:                        body(`"1"`)[:len(body(`"1"`))-1],
		`trailing comma`:                      body(`"1",`),
		`single quotes`:                       body(`'1'`),
		`leading zero`:                        body(`01`),
		`bad escape`:                          body(`"\x41"`),
		`byte order mark`:                     "\xef\xbb\xbf" + body(`"1"`),
		`control character after an escape`:   body("\"\\n\x01\""),
		`escaped surrogates of a CESU pair`:   body(`"\ud83d\ud83d\ude00"`),
		`lone surrogate in a scope array`:     `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"c","client_secret":"s","scope":["a","\ud800"]}`,
		`invalid UTF-8 in the client secret`:  `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"c","client_secret":"s` + "\xff" + `"}`,
		`lone surrogate in the client secret`: `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"c","client_secret":"s\udc00"}`,
	}
	for _, d := range jsonDialects(t) {
		for _, b := range accepted {
			if req, e := d.d.DecodeTokenRequest(d.request(b, "c")); e != nil || req.Credentials.ClientID != "c" {
				t.Errorf("%s refused %q: %v", d.name, b, e)
			}
		}
		// At the depth bound exactly, the dialects that take non-string
		// members accept; oauth2 refuses x for not being a string, not for
		// its depth.
		_, e := d.d.DecodeTokenRequest(d.request(body(deep(32)), "c"))
		if d.name == "oauth2" {
			if e == nil || e.Field != "x" {
				t.Errorf("oauth2, depth 32: %v", e)
			}
		} else if e != nil {
			t.Errorf("%s refused depth 32: %v", d.name, e)
		}
		for name, b := range refused {
			r := d.request(b, "c")
			req, e := d.d.DecodeTokenRequest(r)
			if e == nil {
				t.Errorf("%s accepted %s: %q -> %+v", d.name, name, b, req)
				continue
			}
			// Refused as a bad body, the dialect's own invalid_request,
			// not for a member's type or content, and answered 400.
			if e.Code != oauth.CodeInvalidRequest ||
				strings.Contains(e.Description, "must be a string") || e.Field == "scope" {
				t.Errorf("%s, %s: %+v", d.name, name, e)
			}
			w := httptest.NewRecorder()
			d.d.WriteError(w, r, e)
			if w.Code != http.StatusBadRequest {
				t.Errorf("%s, %s: answered %d", d.name, name, w.Code)
			}
		}
	}
}

// A client ID longer than oauth.MaxClientIDLen is refused by every dialect
// while decoding, before the engine could look it up; one of exactly that
// length goes through.
func TestDialectsBoundClientID(t *testing.T) {
	for _, d := range jsonDialects(t) {
		for n, ok := range map[int]bool{oauth.MaxClientIDLen: true, oauth.MaxClientIDLen + 1: false, 4096: false} {
			id := strings.Repeat("a", n)
			b := `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"` + id + `","client_secret":"s"}`
			if d.name == "snap-b2b" {
				b = `{"grantType":"client_credentials"}`
			}
			req, e := d.d.DecodeTokenRequest(d.request(b, id))
			switch {
			case ok && (e != nil || req.Credentials.ClientID != id):
				t.Errorf("%s, client ID of %d bytes: %v", d.name, n, e)
			case !ok && (e == nil || e.Code != oauth.CodeInvalidRequest || e.Cause != oauth.CauseMalformedField):
				t.Errorf("%s, client ID of %d bytes: %+v", d.name, n, e)
			}
		}
	}
}

// Every dialect tells a client how long to wait, in whole seconds rounded
// up, when the error says; and sends no Retry-After when it does not.
func TestDialectsWriteRetryAfter(t *testing.T) {
	for _, d := range jsonDialects(t) {
		for _, tt := range []struct {
			e    *oauth.Error
			want string
		}{
			{oauth.RateLimited("slow down", 1500*time.Millisecond), "2"},
			{oauth.RateLimited("slow down", 30*time.Second), "30"},
			{oauth.RateLimited("slow down", time.Millisecond), "1"},
			{oauth.Overloaded("queue full", 2*time.Second), "2"},
			{oauth.Unavailable(), "1"},
			{oauth.Timeout(), "1"},
			{oauth.RateLimited("slow down", 0), ""},
			{oauth.RateLimited("slow down", -time.Second), ""},
			{oauth.Overloaded("queue full", 0), ""},
			{oauth.ServerError(), ""},
			{oauth.InvalidClient(oauth.CauseBadCredentials, "client authentication failed"), ""},
			{oauth.BadRequest("bad"), ""},
			{nil, ""},
		} {
			r := d.request(body(`"1"`), "c")
			w := httptest.NewRecorder()
			d.d.WriteError(w, r, tt.e)
			got, present := w.Header()["Retry-After"]
			switch {
			case tt.want == "" && present:
				t.Errorf("%s, %v: Retry-After %q", d.name, tt.e, got)
			case tt.want != "" && (len(got) != 1 || got[0] != tt.want):
				t.Errorf("%s, %v: Retry-After %q, want %q", d.name, tt.e, got, tt.want)
			}
			if tt.e != nil && tt.e.Cause == oauth.CauseRateLimited && w.Code != http.StatusTooManyRequests {
				t.Errorf("%s, %v: rate limited answered %d", d.name, tt.e, w.Code)
			}
		}
	}
}

// TestDialectsRefuseControlCharactersInClientIDs: a client ID or secret with
// a control character (a JSON "\u0000", which PostgreSQL cannot even hold
// in a key) is refused by every dialect before any lookup.
func TestDialectsRefuseControlCharactersInClientIDs(t *testing.T) {
	for _, d := range jsonDialects(t) {
		for _, bad := range []struct{ json, raw string }{{`a\u0000b`, "a\x00b"}, {`a\nb`, "a\nb"}, {`a\u007fb`, "a\x7fb"}} {
			for _, field := range []string{"client_id", "client_secret"} {
				id, secret := "c", "s"
				if field == "client_id" {
					id = bad.json
				} else {
					secret = bad.json
				}
				b := `{"grant_type":"client_credentials","grantType":"client_credentials","client_id":"` + id + `","client_secret":"` + secret + `"}`
				header := "c"
				if d.name == "snap-b2b" {
					if field == "client_secret" {
						continue // SNAP carries no secret
					}
					b, header = `{"grantType":"client_credentials"}`, bad.raw
				}
				_, e := d.d.DecodeTokenRequest(d.request(b, header))
				if e == nil || e.Code != oauth.CodeInvalidRequest {
					t.Errorf("%s, %s %q: %+v, want invalid_request", d.name, field, bad.raw, e)
				}
			}
		}
	}
}
