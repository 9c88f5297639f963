package guard

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestSSEReader(t *testing.T) {
	in := "\uFEFF: ping\r\n\r\nevent: hello\r\nid: c1\r\ndata: {\"cursor\":\"c1\"}\r\n\r\n" +
		"data: first\ndata:second\n: a comment inside an event\nid\n\n" + // id with no value: empty id
		"event: revoked\nid: c\x002\ndata: x\n\n" + // an id with NUL is ignored
		"retry: 10\nunknown: field\n\n" + // no data: not dispatched
		"event: tail\ndata: no blank line at the end\n"
	r := newSSEReader(strings.NewReader(in))
	want := []sseEvent{
		{comment: true},
		{name: "hello", id: "c1", hasID: true, data: `{"cursor":"c1"}`},
		{comment: true},
		{name: "message", id: "", hasID: true, data: "first\nsecond"},
		{name: "revoked", data: "x"},
	}
	for i, w := range want {
		ev, err := r.next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev != w {
			t.Errorf("event %d: %+v, want %+v", i, ev, w)
		}
	}
	if _, err := r.next(); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("an event cut short: %v", err)
	}
	long := "data: " + strings.Repeat("x", maxSSELine+1) + "\n\n"
	if _, err := newSSEReader(strings.NewReader(long)).next(); !errors.Is(err, errSSETooLong) {
		t.Errorf("over-long line: %v", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", 70) + "\n"
	if _, err := newSSEReader(strings.NewReader(many)).next(); !errors.Is(err, errSSETooLong) {
		t.Errorf("over-long event: %v", err)
	}
}

// FuzzFeed reads arbitrary bytes as the feed and applies what it finds:
// no panic, bounded events, bounded state.
func FuzzFeed(f *testing.F) {
	f.Add([]byte("event: hello\nid: c1\ndata: {\"cursor\":\"c1\"}\n\n"))
	f.Add([]byte("event: revoked\nid: c2\ndata: {\"type\":\"token\",\"id\":\"018f00000000abc\"}\n\n"))
	f.Add([]byte("event: revoked\ndata: {\"type\":\"client\",\"client_id\":\"m\",\"before\":\"2026-11-29T10:00:00.123456Z\"}\n\n"))
	f.Add([]byte("event: revoked\ndata: {\"type\":\"user\",\"username\":\"u\",\"before\":\"2026-11-29T10:00:00Z\"}\n\n"))
	f.Add([]byte("event: reset\nid: c9\ndata: {\"reason\":\"cursor expired\",\"cursor\":\"c9\"}\n\n: ping\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		g := &Guard{cfg: Config{Now: time.Now, Leeway: time.Second}, rev: newRevocations(8, time.Hour),
			cache: newCache(8, 1<<16, nil)}
		g.cfg.Logger = slog.New(slog.DiscardHandler)
		s := &subscriber{g: g, started: func() {}, cursor: "c0"}
		r := newSSEReader(bytes.NewReader(in))
		for {
			ev, err := r.next()
			if err != nil {
				break
			}
			if len(ev.data) > maxSSELine {
				t.Fatalf("event of %d bytes", len(ev.data))
			}
			s.handle(ev)
		}
		if n, _ := g.rev.stats(); n > 8 {
			t.Fatalf("%d revocations kept, bound 8", n)
		}
	})
}

// FuzzParse parses arbitrary JSON as claims, an introspection answer and a
// JWKS: no panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"iss":"https://a","aud":["x","y"],"exp":1.5e9,"iat":1,"nbf":2,"jti":"j","client_id":"c","sub":"s","scope":"a b"}`))
	f.Add([]byte(`{"active":true,"exp":99999999999999,"aud":"x"}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"k"}]}`))
	algs := []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}
	f.Fuzz(func(t *testing.T, in []byte) {
		parseClaims(in)
		parseIntrospection(in)
		if keys, err := parseJWKS(in, algs); err == nil {
			for _, k := range keys {
				if _, ok := algOf(k.key); !ok || k.kid == "" {
					t.Fatalf("unusable key kept: %+v", k)
				}
			}
		}
	})
}

// FuzzValidate presents arbitrary tokens to a guard: never valid, never a
// panic, never the token in the error.
func FuzzValidate(f *testing.F) {
	fa := newFakeAS(f)
	clk := newClock()
	g := newGuard(f, fa, clk, Config{})
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.AAAA")
	f.Add(fa.jwt(fa.keys[0], fa.claims("m", "", "", clk.Now(), time.Hour))[:100] + "x.y")
	f.Add("tga_" + strings.Repeat("A", 72))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := g.Validate(context.Background(), tok)
		if err == nil || id != nil {
			t.Fatalf("a made-up token is valid: %+v", id)
		}
		if len(tok) > 8 && strings.Contains(err.Error(), tok) {
			t.Fatal("the error contains the token")
		}
	})
}
