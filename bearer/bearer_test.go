package bearer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// rfcB64Char is RFC 6750 §2.1's b64token character set, spelled as the
// grammar does: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/".
func rfcB64Char(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
}

// TestB64Token checks b64token against the grammar for every byte, alone,
// inside a token, before the padding and in it.
func TestB64Token(t *testing.T) {
	if B64Token("") {
		t.Error(`"" accepted`)
	}
	for c := range 256 {
		b := byte(c)
		for _, tc := range []struct {
			s    string
			want bool
		}{
			{string([]byte{b}), rfcB64Char(b)},                           // alone
			{"ab" + string([]byte{b}) + "cd", rfcB64Char(b)},             // inside
			{"ab" + string([]byte{b}) + "==", rfcB64Char(b) || b == '='}, // before the padding, or more of it
			{"ab=" + string([]byte{b}), b == '='},                        // after "=": only more "="
			{"ab" + string([]byte{b}), rfcB64Char(b) || b == '='},        // last
			{string([]byte{b}) + "=", rfcB64Char(b)},                     // "=" alone is not a token
		} {
			if got := B64Token(tc.s); got != tc.want {
				t.Errorf("B64Token(%q) = %v, want %v", tc.s, got, tc.want)
			}
		}
	}
	if B64Token("==") || !B64Token("a==") {
		t.Error(`padding: "==" must be refused, "a==" accepted`)
	}
}

func TestToken(t *testing.T) {
	jwt := strings.Repeat("eyJhbGciOiJFUzI1NiJ9", 20) + ".abc_-." + strings.Repeat("x", 86)
	for _, tc := range []struct {
		header []string
		tok    string
		status int // 0: no error
	}{
		{[]string{"Bearer " + jwt}, jwt, 0},
		{[]string{"bearer   tga_abc/+=="}, "tga_abc/+==", 0},
		{nil, "", http.StatusUnauthorized},
		{[]string{"Basic abc"}, "", http.StatusUnauthorized},
		{[]string{"Bearer a", "Bearer b"}, "", http.StatusBadRequest},
		{[]string{"Bearer a b"}, "", http.StatusBadRequest},
		{[]string{"Bearer a=b"}, "", http.StatusBadRequest},
		{[]string{"Bearer " + strings.Repeat("a", maxTokenLen+1)}, "", http.StatusBadRequest},
	} {
		h := http.Header{}
		for _, v := range tc.header {
			h.Add("Authorization", v)
		}
		tok, e := Token(h)
		status := 0
		if e != nil {
			status = e.Status
		}
		if tok != tc.tok || status != tc.status {
			t.Errorf("%q: got %q, %d; want %q, %d", tc.header, tok, status, tc.tok, tc.status)
		}
	}
}

// BenchmarkToken reads the token of an Authorization header: an ES256
// JWT as tokengate issues them (~500 bytes), and an opaque token.
func BenchmarkToken(b *testing.B) {
	for _, bc := range []struct{ name, tok string }{
		{"jwt", strings.Repeat("eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFUzI1NiIsImtpZCI6IjAxIn0", 8) + "." + strings.Repeat("a-_B", 16) + "." + strings.Repeat("Zz9", 28)},
		{"opaque", "tga_" + strings.Repeat("Ab3_", 18)},
	} {
		h := http.Header{"Authorization": {"Bearer " + bc.tok}}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, e := Token(h); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	for _, c := range []struct {
		e    *Error
		want string
	}{
		{Missing(), `Bearer realm="r"`},
		{InvalidRequest("bad header"), `Bearer realm="r", error="invalid_request", error_description="bad header"`},
		{InvalidToken(`expired "x"`), `Bearer realm="r", error="invalid_token", error_description="expired ?x?"`},
		{InsufficientScope("tokengate:admin"), `Bearer realm="r", error="insufficient_scope", ` +
			`error_description="the access token does not grant the scope this resource needs", scope="tokengate:admin"`},
		{Unavailable(), ""},
	} {
		if got := c.e.Challenge("r"); got != c.want {
			t.Errorf("%+v: Challenge = %q, want %q", c.e, got, c.want)
		}
		// Write sends the same challenge.
		w := httptest.NewRecorder()
		c.e.Write(w, "r")
		if got := w.Header().Get("WWW-Authenticate"); got != c.want || w.Code != c.e.Status {
			t.Errorf("%+v: Write sent %d with %q", c.e, w.Code, got)
		}
	}
	if got := Missing().Challenge("a\"b"); got != `Bearer realm="a?b"` {
		t.Errorf("realm quoting: %q", got)
	}
	w := httptest.NewRecorder()
	Unavailable().Write(w, "r")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Errorf("unavailable: %d %v", w.Code, w.Header())
	}
}
