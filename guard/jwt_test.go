package guard

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/token"
)

func TestJWTValidAndCached(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	var hits, misses int
	g := newGuard(t, f, clk, Config{Hooks: Hooks{CacheLookup: func(_ Format, hit bool) {
		if hit {
			hits++
		} else {
			misses++
		}
	}}})
	now := clk.Now()
	c := f.claims("merchant-1", "alice", "payments refunds", now, 15*time.Minute)
	tok := f.jwt(f.keys[0], c)
	f.activeJWT(tok, c)
	for range 5 {
		id, err := g.Validate(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if id.ClientID != "merchant-1" || id.Subject != "alice" || id.Username != "alice" || id.Format != FormatJWT ||
			!slices.Equal(id.Scopes, []string{"payments", "refunds"}) || id.TokenID != c["jti"] ||
			!id.ExpiresAt.Equal(now.Add(15*time.Minute).Truncate(time.Second)) {
			t.Fatalf("identity %+v", id)
		}
	}
	if misses != 1 || hits != 4 {
		t.Errorf("cache: %d misses, %d hits; want 1 verification then hits", misses, hits)
	}
	// Issued before the guard's first feed connection: introspected once.
	if n := f.introspections.Load(); n != 1 {
		t.Errorf("introspections = %d, want 1 (a JWT issued before the guard started)", n)
	}

	// A JWT issued after the feed connected needs no introspection.
	clk.Advance(time.Minute)
	tok2 := f.jwt(f.keys[0], f.claims("merchant-1", "", "payments", clk.Now(), 15*time.Minute))
	id, err := g.Validate(context.Background(), tok2)
	if err != nil || id.Username != "" || id.Subject != "merchant-1" {
		t.Fatalf("client token: %+v, %v", id, err)
	}
	if n := f.introspections.Load(); n != 1 {
		t.Errorf("introspections = %d, want still 1", n)
	}
	// Expiry ends the cached result too.
	clk.Advance(15*time.Minute + DefaultLeeway)
	if _, err := g.Validate(context.Background(), tok2); !errors.Is(err, ErrExpired) {
		t.Errorf("after expiry: %v, want ErrExpired", err)
	}
}

// TestJWTFromTokengate checks a token signed by package token (what the
// server issues) against the JWKS package token publishes.
func TestJWTFromTokengate(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	for _, alg := range []string{oauth.AlgES256, oauth.AlgRS256, oauth.AlgEdDSA} {
		sk, err := token.GenerateKey(alg, clk.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ks, err := token.NewKeySet([]*oauth.SigningKey{sk})
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.jwksRaw = ks.JWKS()
		f.mu.Unlock()
		g := newGuard(t, f, clk, Config{})
		clk.Advance(time.Minute) // issued after the guard's start: no introspection
		tok, err := ks.Sign(alg, &token.Claims{Issuer: f.srv.URL, Subject: "m", Audience: []string{f.srv.URL},
			ClientID: "m", Scope: "payments", ID: token.NewJTI(clk.Now()), IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Validate(context.Background(), tok); err != nil {
			t.Errorf("%s token of package token: %v", alg, err)
		}
	}
}

func TestJWTRefused(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g := newGuard(t, f, clk, Config{Algorithms: []string{"ES256", "EdDSA"}})
	clk.Advance(time.Minute)
	now := clk.Now()
	k := f.keys[0]
	good := func() map[string]any { return f.claims("m", "", "payments", now, 15*time.Minute) }
	with := func(key string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, key)
		} else {
			c[key] = v
		}
		return c
	}
	forger := newES256Key(t)
	forger.kid = k.kid // same kid, another key
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := &testKey{kid: "rsa-1", alg: jose.RS256, priv: rsaPriv}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edAsES := &testKey{kid: k.kid, alg: jose.EdDSA, priv: edPriv} // kid of an ES256 key, alg EdDSA
	f.mu.Lock()
	f.keys = append(f.keys, rsaKey) // published, but RS256 is not allowed here
	f.mu.Unlock()

	pub, _ := json.Marshal(jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid})
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"forged signature", signJWT(t, forger, "at+jwt", good()), ErrBadSignature},
		{"tampered payload", tamper(t, f.jwt(k, good())), ErrBadSignature},
		{"expired", f.jwt(k, with("exp", now.Add(-DefaultLeeway-time.Second).Unix())), ErrExpired},
		{"not yet valid (nbf)", f.jwt(k, with("nbf", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"issued in the future", f.jwt(k, with("iat", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"wrong audience", f.jwt(k, with("aud", "https://other.example")), ErrWrongAudience},
		{"wrong audience (array)", f.jwt(k, with("aud", []string{"https://a.example", "https://b.example"})), ErrWrongAudience},
		{"no audience", f.jwt(k, with("aud", nil)), ErrWrongAudience},
		{"wrong issuer", f.jwt(k, with("iss", "https://evil.example")), ErrWrongIssuer},
		{"typ JWT", signJWT(t, k, "JWT", good()), ErrWrongType},
		{"no typ", signJWT(t, k, "", good()), ErrWrongType},
		{"alg none", unsigned(t, k.kid, good()), ErrAlgorithm},
		{"HS256 keyed with the public key", hs256(t, k.kid, pub, good()), ErrAlgorithm},
		{"RS256 not allowed", signJWT(t, rsaKey, "at+jwt", good()), ErrAlgorithm},
		{"alg not the key's", signJWT(t, edAsES, "at+jwt", good()), ErrUnknownKey},
		{"lifetime too long", f.jwt(k, with("exp", now.Add(DefaultMaxTokenLifetime+time.Hour).Unix())), ErrLifetimeTooLong},
		{"no exp", f.jwt(k, with("exp", nil)), ErrMalformed},
		{"no jti", f.jwt(k, with("jti", nil)), ErrMalformed},
		{"no client_id", f.jwt(k, with("client_id", nil)), ErrMalformed},
		{"exp a string", f.jwt(k, with("exp", "2099-01-01")), ErrMalformed},
		{"garbage", "a.b.c", ErrMalformed},
		{"refresh token", token.PrefixRefresh + strings.Repeat("A", token.OpaqueLen-4), ErrNotAccessToken},
		{"opaque of another shape", "some-opaque-token", ErrMalformed},
		{"empty", "", ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // refused again, not served from a cache
				_, err := g.Validate(context.Background(), tc.tok)
				if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Validate = %v, want %v", err, tc.want)
				}
				if strings.Contains(err.Error(), tc.tok) && tc.tok != "" {
					t.Fatal("the error contains the token")
				}
			}
		})
	}
	// Forged tokens cost no introspection.
	if n := f.introspections.Load(); n != 0 {
		t.Errorf("introspections = %d, want 0", n)
	}
}

func tamper(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	var c map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c["scope"] = "payments refunds admin"
	b, _ = json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func unsigned(t *testing.T, kid string, c map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": kid})
	p, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// hs256 is the algorithm-confusion attack: an HMAC keyed with the public
// key the verifier holds.
func hs256(t *testing.T, kid string, key []byte, c map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "at+jwt", "kid": kid})
	p, _ := json.Marshal(c)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestJWKSRotation(t *testing.T) {
	f := newFakeAS(t)
	clk := newClock()
	g := newGuard(t, f, clk, Config{})
	// Past the leeway after the first feed connection (no introspection),
	// within JWKSMinRefresh of the start's JWKS fetch.
	clk.Advance(DefaultLeeway + time.Second)
	oldKey := f.keys[0]
	oldTok := f.jwt(oldKey, f.claims("m", "", "payments", clk.Now(), time.Hour))
	if _, err := g.Validate(context.Background(), oldTok); err != nil {
		t.Fatal(err)
	}
	fetches := f.jwksFetches.Load()

	// The server rotates: a new key is published and signs.
	newKey := newES256Key(t)
	f.setKeys(oldKey, newKey)
	newTok := f.jwt(newKey, f.claims("m", "", "payments", clk.Now(), time.Hour))
	// Within JWKSMinRefresh of the last fetch: no refetch, refused.
	if _, err := g.Validate(context.Background(), newTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new kid within the rate limit: %v, want ErrUnknownKey", err)
	}
	if n := f.jwksFetches.Load(); n != fetches {
		t.Fatalf("JWKS fetched %d times within the rate limit", n-fetches)
	}
	clk.Advance(DefaultJWKSMinRefresh)
	if _, err := g.Validate(context.Background(), newTok); err != nil {
		t.Fatalf("new kid after the rate limit: %v", err)
	}
	if n := f.jwksFetches.Load(); n != fetches+1 {
		t.Fatalf("JWKS fetched %d times, want 1", n-fetches)
	}
	// A flood of unknown kids costs one fetch per interval.
	clk.Advance(DefaultJWKSMinRefresh)
	stranger := newES256Key(t)
	for range 50 {
		if _, err := g.Validate(context.Background(), f.jwt(stranger, f.claims("m", "", "", clk.Now(), time.Hour))); !errors.Is(err, ErrUnknownKey) {
			t.Fatal(err)
		}
	}
	if n := f.jwksFetches.Load(); n != fetches+2 {
		t.Fatalf("50 unknown kids: %d fetches, want 1", n-fetches-1)
	}

	// The old key is withdrawn: its tokens stop being accepted, cached or
	// not, once the JWKS is refetched (here: its max-age passed).
	f.setKeys(newKey)
	clk.Advance(time.Minute)
	if _, err := g.Validate(context.Background(), newTok); err != nil {
		t.Fatal(err)
	}
	// Validate of a cached token does not fetch: a miss that needs newKey
	// starts the background refresh.
	g.Validate(context.Background(), f.jwt(newKey, f.claims("m", "", "", clk.Now(), time.Hour)))
	eventually(t, 5*time.Second, "background JWKS refresh", func() bool { return f.jwksFetches.Load() == fetches+3 })
	eventually(t, 5*time.Second, "withdrawn key refused", func() bool {
		_, err := g.Validate(context.Background(), oldTok)
		return errors.Is(err, ErrUnknownKey)
	})
	if _, err := g.Validate(context.Background(), newTok); err != nil {
		t.Fatalf("token of the current key after the refresh: %v", err)
	}
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	ec := newES256Key(t)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: ec.priv.Public(), KeyID: "ec", Use: "sig"},
		{Key: ec.priv.Public(), KeyID: "ec-enc", Use: "enc"},
		{Key: ec.priv.Public(), KeyID: "ec-as-rs", Algorithm: "RS256"},
		{Key: ec.priv.Public()}, // no kid
		{Key: &small.PublicKey, KeyID: "rsa-1024"},
		{Key: ed.Public(), KeyID: "ed", Algorithm: "EdDSA"},
		{Key: ec.priv, KeyID: "ec-private"}, // only its public half is used
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	// A key of an unknown type does not spoil the set.
	b = []byte(strings.Replace(string(b), `"keys":[`, `"keys":[{"kty":"OKP","crv":"X448","x":"AAAA","kid":"x448"},`, 1))
	keys, err := parseJWKS(b, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for kid, k := range keys {
		kids = append(kids, kid)
		if _, ok := k.key.(*ecdsa.PrivateKey); ok {
			t.Error("a private key kept")
		}
	}
	slices.Sort(kids)
	if want := []string{"ec", "ec-private", "ed"}; !slices.Equal(kids, want) {
		t.Errorf("keys %v, want %v", kids, want)
	}
	if _, err := parseJWKS([]byte("not json"), nil); err == nil {
		t.Error("a JWKS that is not JSON accepted")
	}
}

func TestMaxAge(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"public, max-age=60": time.Minute, "max-age=0": 0, "no-store": 0, "": defaultJWKSAge,
		"max-age=99999999999": maxJWKSAge, "max-age=abc": defaultJWKSAge, `max-age="30"`: 30 * time.Second,
	} {
		if got := maxAge(cc); got != want {
			t.Errorf("maxAge(%q) = %s, want %s", cc, got, want)
		}
	}
}
