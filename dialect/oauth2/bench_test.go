package oauth2

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// rereader is a request body that can be rewound, so benchmarks measure the
// decoder rather than building requests.
type rereader struct {
	strings.Reader
	s string
}

func (r *rereader) Close() error { return nil }
func (r *rereader) rewind()      { r.Reset(r.s) }

func benchDecode(b *testing.B, ct, auth, body string) {
	d := newDialect(b, nil)
	rb := &rereader{s: body}
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
	r.Header.Set("Content-Type", ct)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	r.ContentLength = int64(len(body))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		rb.rewind()
		r.Body = rb
		req, e := d.DecodeTokenRequest(r)
		if e != nil || req.GrantType == "" {
			b.Fatal(e)
		}
	}
}

// The hot path: a client_credentials request as most payment clients send it.
func BenchmarkDecodeForm(b *testing.B) {
	b.Run("basic", func(b *testing.B) {
		benchDecode(b, formCT, basic("merchant-7f3a9c", "q8VfX2mYb7Rk1JcT0sLw9HnAeZpG4uDi6oKjN3xQyBt"),
			"grant_type=client_credentials&scope=payments.read+payments.write")
	})
	b.Run("post", func(b *testing.B) {
		benchDecode(b, formCT, "",
			"grant_type=client_credentials&client_id=merchant-7f3a9c&client_secret=q8VfX2mYb7Rk1JcT0sLw9HnAeZpG4uDi6oKjN3xQyBt&scope=payments.read+payments.write")
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	benchDecode(b, jsonCT, "",
		`{"grant_type":"client_credentials","client_id":"merchant-7f3a9c","client_secret":"q8VfX2mYb7Rk1JcT0sLw9HnAeZpG4uDi6oKjN3xQyBt","scope":"payments.read payments.write"}`)
}

// discard is a ResponseWriter that keeps its header map between writes, as
// net/http's does for one response.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

var benchResp = &oauth.TokenResponse{
	AccessToken:  "tg_at_q8VfX2mYb7Rk1JcT0sLw9HnAeZpG4uDi6oKjN3xQyBt.9c1f",
	TokenType:    "Bearer",
	ExpiresIn:    3600,
	RefreshToken: "tg_rt_aR8dFcfjUZsa9BoO3WhBDS9OuV0aR8dFcfjUZsa9BoO3WhB",
	Scopes:       []string{"payments.read", "payments.write"},
	IssuedAt:     time.Unix(1595411399, 0),
}

func BenchmarkWriteToken(b *testing.B) {
	d := newDialect(b, map[string]any{"created_at": true})
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		d.WriteToken(w, nil, benchResp)
	}
}

// BenchmarkWriteTokenEncodingJSON is the reflection-based alternative, for
// comparison with BenchmarkWriteToken.
func BenchmarkWriteTokenEncodingJSON(b *testing.B) {
	type body struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token,omitempty"`
		Scope        string `json:"scope,omitempty"`
		CreatedAt    int64  `json:"created_at,omitempty"`
	}
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		WriteJSON(w, http.StatusOK, body{benchResp.AccessToken, "Bearer", benchResp.ExpiresIn, benchResp.RefreshToken,
			strings.Join(benchResp.Scopes, " "), benchResp.IssuedAt.Unix()})
	}
}

var sinkErr *oauth.Error

func BenchmarkDecodeError(b *testing.B) {
	body := "grant_type=client_credentials&grant_type=client_credentials"
	rb := &rereader{s: body}
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
	r.Header.Set("Content-Type", formCT)
	b.ReportAllocs()
	for b.Loop() {
		rb.rewind()
		r.Body = rb
		_, sinkErr = decodeTokenRequest(r)
	}
}
