package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokengate/tokengate/oauth"
)

const testIssuer = "https://auth.example.com"

var (
	testT0   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	algs     = []string{oauth.AlgES256, oauth.AlgRS256, oauth.AlgEdDSA}
	keyCache sync.Map // alg+n -> *oauth.SigningKey
)

// testKey returns the n-th generated key of alg, shared by all tests (RSA
// key generation is slow). Callers must not modify it.
func testKey(t testing.TB, alg string, n int) *oauth.SigningKey {
	t.Helper()
	name := alg + string(rune('0'+n))
	if k, ok := keyCache.Load(name); ok {
		return k.(*oauth.SigningKey)
	}
	k, err := GenerateKey(alg, testT0)
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", alg, err)
	}
	actual, _ := keyCache.LoadOrStore(name, k)
	return actual.(*oauth.SigningKey)
}

// testKeySet has one current key per algorithm.
func testKeySet(t testing.TB) *KeySet {
	t.Helper()
	ks, err := NewKeySet([]*oauth.SigningKey{testKey(t, oauth.AlgES256, 0), testKey(t, oauth.AlgRS256, 0), testKey(t, oauth.AlgEdDSA, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func testClaims() *Claims {
	return &Claims{
		Issuer:    testIssuer,
		Subject:   "merchant-42",
		Audience:  []string{"https://api.example.com"},
		ClientID:  "merchant-42",
		Scope:     "payments:read payments:write",
		ID:        "jti-0001",
		IssuedAt:  testT0,
		ExpiresAt: testT0.Add(15 * time.Minute),
	}
}

type jwtParts struct {
	header  map[string]any
	payload map[string]any
}

func decodeParts(t *testing.T, tok string) jwtParts {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var p jwtParts
	for i, dst := range []*map[string]any{&p.header, &p.payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	return p
}

// forge builds a compact JWS with the given header and payload, signed by
// sign (nil: an empty signature).
func forge(t *testing.T, header, payload any, sign func(input []byte) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(payload)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// keySigner signs with the stored key kid of ks, whatever the header says.
func keySigner(t *testing.T, ks *KeySet, kid string) func([]byte) []byte {
	return func(input []byte) []byte {
		sig, err := ks.byKID[kid].sign(input)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func validPayload() map[string]any {
	return map[string]any{"iss": testIssuer, "sub": "s", "client_id": "c", "jti": "j",
		"iat": testT0.Unix(), "exp": testT0.Add(time.Hour).Unix()}
}

func TestJWTRoundTrip(t *testing.T) {
	ks := testKeySet(t)
	for _, alg := range algs {
		for _, aud := range [][]string{nil, {"https://api.example.com"}, {"a", "b", "c"}} {
			c := testClaims()
			c.Audience = aud
			tok, err := ks.Sign(alg, c)
			if err != nil {
				t.Fatalf("Sign(%s): %v", alg, err)
			}
			p := decodeParts(t, tok)
			kid := testKey(t, alg, 0).ID
			if p.header["typ"] != "at+jwt" || p.header["alg"] != alg || p.header["kid"] != kid || len(p.header) != 3 {
				t.Errorf("%s header = %v", alg, p.header)
			}
			switch len(aud) {
			case 0:
				if _, ok := p.payload["aud"]; ok {
					t.Errorf("empty audience serialized: %v", p.payload["aud"])
				}
			case 1:
				if p.payload["aud"] != aud[0] {
					t.Errorf("single audience = %#v, want a string", p.payload["aud"])
				}
			default:
				if got, ok := p.payload["aud"].([]any); !ok || len(got) != len(aud) {
					t.Errorf("audiences = %#v, want an array", p.payload["aud"])
				}
			}
			got, err := ks.Verify(tok, testIssuer, testT0.Add(time.Minute))
			if err != nil {
				t.Fatalf("Verify(%s): %v", alg, err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("%s round trip:\n got %+v\nwant %+v", alg, got, c)
			}
		}
	}
}

// TestJWTInterop checks our hand-made serialization with go-jose's own JWT
// parser and claim validation.
func TestJWTInterop(t *testing.T) {
	ks := testKeySet(t)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(ks.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	for _, alg := range algs {
		c := testClaims()
		c.Audience = []string{"x", "y"}
		tok, err := ks.Sign(alg, c)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
		if err != nil {
			t.Fatalf("%s: go-jose cannot parse: %v", alg, err)
		}
		var std jwt.Claims
		var extra struct {
			ClientID string `json:"client_id"`
			Scope    string `json:"scope"`
		}
		if err := parsed.Claims(&set, &std, &extra); err != nil {
			t.Fatalf("%s: go-jose cannot verify with the JWKS: %v", alg, err)
		}
		err = std.Validate(jwt.Expected{Issuer: testIssuer, Subject: c.Subject, AnyAudience: jwt.Audience{"y"}, ID: c.ID, Time: testT0})
		if err != nil || extra.ClientID != c.ClientID || extra.Scope != c.Scope {
			t.Errorf("%s: go-jose claims %+v %+v: %v", alg, std, extra, err)
		}
	}
}

func TestClaimsJSONEscaping(t *testing.T) {
	ks := testKeySet(t)
	weird := []string{`quote " backslash \ slash /`, "ctl \x00\x01\x1f\x7f\t\r\n", "üñí©ødé 💳 \u2028", "bad \xff\xfe utf8", "<>&"}
	for _, s := range weird {
		c := testClaims()
		c.Subject, c.Scope, c.Audience = s, s, []string{s, s + "2"}
		tok, err := ks.Sign(oauth.AlgEdDSA, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ks.Verify(tok, testIssuer, testT0)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		// Like encoding/json, each invalid byte becomes one U+FFFD.
		var want string
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &want)
		if got.Subject != want || got.Scope != want || got.Audience[0] != want || got.Audience[1] != want+"2" {
			t.Errorf("%q came back as %q", s, got.Subject)
		}
	}
}

func TestVerifyAcceptsTypVariants(t *testing.T) {
	ks := testKeySet(t)
	kid := testKey(t, oauth.AlgES256, 0).ID
	for _, typ := range []string{"at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"} {
		tok := forge(t, map[string]any{"alg": "ES256", "kid": kid, "typ": typ}, validPayload(), keySigner(t, ks, kid))
		if _, err := ks.Verify(tok, testIssuer, testT0); err != nil {
			t.Errorf("typ %q: %v", typ, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	ks := testKeySet(t)
	esKey := testKey(t, oauth.AlgES256, 0)
	kid := esKey.ID
	good, err := ks.Sign(oauth.AlgES256, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	now := testT0.Add(time.Minute)
	if _, err := ks.Verify(good, testIssuer, now); err != nil {
		t.Fatalf("baseline token: %v", err)
	}
	header := func(alg, typ, kid string) map[string]any {
		h := map[string]any{"alg": alg, "kid": kid}
		if typ != "" {
			h["typ"] = typ
		}
		return h
	}
	sign := keySigner(t, ks, kid)
	parts := strings.Split(good, ".")

	// Alg confusion: an HMAC keyed with public key bytes an attacker can
	// fetch from the JWKS or guess from the PEM.
	pub, _ := x509.MarshalPKIXPublicKey(ks.byKID[kid].pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	hmacWith := func(key []byte) func([]byte) []byte {
		return func(input []byte) []byte {
			m := hmac.New(sha256.New, key)
			m.Write(input)
			return m.Sum(nil)
		}
	}
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + testIssuer + `","sub":"admin","exp":9999999999}`))
	otherKS, err := NewKeySet([]*oauth.SigningKey{testKey(t, oauth.AlgES256, 1)})
	if err != nil {
		t.Fatal(err)
	}
	otherTok, _ := otherKS.Sign(oauth.AlgES256, testClaims())
	noExp := validPayload()
	delete(noExp, "exp")
	badExp := validPayload()
	badExp["exp"] = "tomorrow"
	sigBytes, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sigBytes[3] ^= 1
	jsonSerialized := `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`

	cases := []struct {
		name  string
		token string
		iss   string
		now   time.Time
		want  error
	}{
		{"alg none", forge(t, header("none", "at+jwt", kid), validPayload(), nil), testIssuer, now, ErrMalformed},
		{"alg none with good sig", forge(t, header("none", "at+jwt", kid), validPayload(), sign), testIssuer, now, ErrMalformed},
		{"HS256 keyed with public PEM", forge(t, header("HS256", "at+jwt", kid), validPayload(), hmacWith(pubPEM)), testIssuer, now, ErrMalformed},
		{"HS256 keyed with public DER", forge(t, header("HS256", "at+jwt", kid), validPayload(), hmacWith(pub)), testIssuer, now, ErrMalformed},
		{"HS512", forge(t, header("HS512", "at+jwt", kid), validPayload(), hmacWith(pub)), testIssuer, now, ErrMalformed},
		{"ES384", forge(t, header("ES384", "at+jwt", kid), validPayload(), sign), testIssuer, now, ErrMalformed},
		{"PS256", forge(t, header("PS256", "at+jwt", kid), validPayload(), sign), testIssuer, now, ErrMalformed},
		{"typ JWT", forge(t, header("ES256", "JWT", kid), validPayload(), sign), testIssuer, now, ErrWrongType},
		{"typ missing", forge(t, header("ES256", "", kid), validPayload(), sign), testIssuer, now, ErrWrongType},
		{"typ not a string", forge(t, map[string]any{"alg": "ES256", "kid": kid, "typ": 1}, validPayload(), sign), testIssuer, now, ErrWrongType},
		{"unknown kid", forge(t, header("ES256", "at+jwt", "nope"), validPayload(), sign), testIssuer, now, ErrUnknownKey},
		{"no kid", forge(t, map[string]any{"alg": "ES256", "typ": "at+jwt"}, validPayload(), sign), testIssuer, now, ErrUnknownKey},
		{"key of another set", otherTok, testIssuer, now, ErrUnknownKey},
		{"kid of an ES256 key, alg EdDSA", forge(t, header("EdDSA", "at+jwt", kid), validPayload(), keySigner(t, ks, testKey(t, oauth.AlgEdDSA, 0).ID)), testIssuer, now, ErrUnknownKey},
		{"expired (now == exp)", good, testIssuer, testT0.Add(15 * time.Minute), ErrTokenExpired},
		{"expired (later)", good, testIssuer, testT0.Add(time.Hour), ErrTokenExpired},
		{"wrong issuer", good, "https://evil.example.com", now, ErrWrongIssuer},
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], testIssuer, now, ErrBadSignature},
		{"flipped signature byte", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sigBytes), testIssuer, now, ErrBadSignature},
		{"signature of another key", forge(t, header("ES256", "at+jwt", kid), validPayload(), keySigner(t, otherKS, testKey(t, oauth.AlgES256, 1).ID)), testIssuer, now, ErrBadSignature},
		{"no exp", forge(t, header("ES256", "at+jwt", kid), noExp, sign), testIssuer, now, ErrMalformed},
		{"exp not a number", forge(t, header("ES256", "at+jwt", kid), badExp, sign), testIssuer, now, ErrMalformed},
		{"payload not JSON", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("hello")) + "." + parts[2], testIssuer, now, ErrBadSignature},
		{"JSON serialization", jsonSerialized, testIssuer, now, ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], testIssuer, now, ErrMalformed},
		{"empty", "", testIssuer, now, ErrMalformed},
		{"opaque token", "tga_" + strings.Repeat("A", 72), testIssuer, now, ErrMalformed},
		{"huge", strings.Repeat("a", maxJWTLen+1), testIssuer, now, ErrMalformed},
	}
	for _, tc := range cases {
		c, err := ks.Verify(tc.token, tc.iss, tc.now)
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidToken) || c != nil {
			t.Errorf("%s: Verify = %v, %v; want %v", tc.name, c, err, tc.want)
		}
		if err != nil && len(tc.token) > 20 && strings.Contains(err.Error(), tc.token[len(tc.token)-20:]) {
			t.Errorf("%s: error %q contains the token", tc.name, err)
		}
	}
}

func TestRetiredKeyStillVerifies(t *testing.T) {
	old := *testKey(t, oauth.AlgES256, 0)
	ks1, err := NewKeySet([]*oauth.SigningKey{&old})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ks1.Sign(oauth.AlgES256, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	// Rotation: a new current key, the old one retired but published.
	next := *testKey(t, oauth.AlgES256, 1)
	next.CreatedAt = testT0.Add(time.Minute)
	old.RetiredAt, old.PublishUntil = next.CreatedAt, next.CreatedAt.Add(time.Hour)
	ks2, err := NewKeySet([]*oauth.SigningKey{&next, &old})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks2.Verify(tok, testIssuer, testT0.Add(2*time.Minute)); err != nil {
		t.Errorf("token of the retired key: %v", err)
	}
	fresh, err := ks2.Sign(oauth.AlgES256, testClaims())
	if err != nil {
		t.Fatal(err)
	}
	if kid := decodeParts(t, fresh).header["kid"]; kid != next.ID {
		t.Errorf("signed with kid %v, want the current key %s", kid, next.ID)
	}
	// Only retired keys: verification yes, signing no.
	ks3, err := NewKeySet([]*oauth.SigningKey{&old})
	if err != nil {
		t.Fatal(err)
	}
	if ks3.Has(oauth.AlgES256) {
		t.Error("Has(ES256) with only a retired key")
	}
	if _, err := ks3.Sign(oauth.AlgES256, testClaims()); !errors.Is(err, ErrNoKey) {
		t.Errorf("Sign with only a retired key: %v, want ErrNoKey", err)
	}
	if _, err := ks3.Verify(tok, testIssuer, testT0); err != nil {
		t.Errorf("retired-only set: %v", err)
	}
}

func TestNewestCurrentKeySigns(t *testing.T) {
	a, b := *testKey(t, oauth.AlgES256, 0), *testKey(t, oauth.AlgES256, 1)
	b.CreatedAt = a.CreatedAt.Add(time.Second)
	for _, order := range [][]*oauth.SigningKey{{&a, &b}, {&b, &a}} {
		ks, err := NewKeySet(order)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := ks.Sign(oauth.AlgES256, testClaims())
		if kid := decodeParts(t, tok).header["kid"]; kid != b.ID {
			t.Errorf("signed with %v, want the newest key %s", kid, b.ID)
		}
	}
}

func TestSignErrors(t *testing.T) {
	ks, err := NewKeySet([]*oauth.SigningKey{testKey(t, oauth.AlgES256, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if !ks.Has(oauth.AlgES256) || ks.Has(oauth.AlgRS256) || ks.Has(oauth.AlgEdDSA) || ks.Has("HS256") {
		t.Error("Has is wrong")
	}
	for _, alg := range []string{oauth.AlgRS256, oauth.AlgEdDSA, "none", "HS256", ""} {
		if _, err := ks.Sign(alg, testClaims()); !errors.Is(err, ErrNoKey) {
			t.Errorf("Sign(%q) error = %v, want ErrNoKey", alg, err)
		}
	}
	c := testClaims()
	c.ExpiresAt = time.Time{}
	if _, err := ks.Sign(oauth.AlgES256, c); err == nil {
		t.Error("Sign without exp succeeded")
	}
	if _, err := ks.Sign(oauth.AlgES256, nil); err == nil {
		t.Error("Sign(nil claims) succeeded")
	}
	var nilKS *KeySet
	if nilKS.Has(oauth.AlgES256) {
		t.Error("nil KeySet has a key")
	}
	if _, err := nilKS.Sign(oauth.AlgES256, testClaims()); !errors.Is(err, ErrNoKey) {
		t.Errorf("nil KeySet Sign: %v", err)
	}
	tok, _ := ks.Sign(oauth.AlgES256, testClaims())
	if _, err := nilKS.Verify(tok, testIssuer, testT0); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("nil KeySet Verify: %v", err)
	}
	if string(nilKS.JWKS()) != `{"keys":[]}` {
		t.Errorf("nil KeySet JWKS = %s", nilKS.JWKS())
	}
}

func pkcs8PEM(t *testing.T, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestNewKeySetErrors(t *testing.T) {
	es := testKey(t, oauth.AlgES256, 0)
	ed := testKey(t, oauth.AlgEdDSA, 0)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecDER, _ := x509.MarshalECPrivateKey(p384)
	secretPEM := []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
	with := func(alg string, pemBytes []byte) *oauth.SigningKey {
		return &oauth.SigningKey{ID: "k1", Alg: alg, PrivateKeyPEM: pemBytes, CreatedAt: testT0}
	}
	cases := map[string][]*oauth.SigningKey{
		"nil key":              {nil},
		"no ID":                {{Alg: oauth.AlgES256, PrivateKeyPEM: es.PrivateKeyPEM}},
		"not PEM":              {with(oauth.AlgES256, []byte("garbage"))},
		"bad DER":              {with(oauth.AlgES256, secretPEM)},
		"SEC1 not PKCS#8":      {with(oauth.AlgES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))},
		"ES256 with Ed25519":   {with(oauth.AlgES256, ed.PrivateKeyPEM)},
		"EdDSA with P-256":     {with(oauth.AlgEdDSA, es.PrivateKeyPEM)},
		"RS256 with P-256":     {with(oauth.AlgRS256, es.PrivateKeyPEM)},
		"ES256 with P-384":     {with(oauth.AlgES256, pkcs8PEM(t, p384))},
		"RS256 with RSA-1024":  {with(oauth.AlgRS256, pkcs8PEM(t, rsa1024))},
		"unknown alg":          {with("HS256", es.PrivateKeyPEM)},
		"duplicate ID":         {es, es},
		"duplicate across alg": {with(oauth.AlgES256, es.PrivateKeyPEM), with(oauth.AlgEdDSA, ed.PrivateKeyPEM)},
	}
	for name, keys := range cases {
		ks, err := NewKeySet(keys)
		if err == nil || ks != nil {
			t.Errorf("%s: NewKeySet = %v, %v; want an error", name, ks, err)
			continue
		}
		if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: error %q contains key material", name, err)
		}
	}
	if ks, err := NewKeySet(nil); err != nil || ks.Has(oauth.AlgES256) || string(ks.JWKS()) != `{"keys":[]}` {
		t.Errorf("empty KeySet: %v, %s", err, ks.JWKS())
	}
}

func TestGenerateKey(t *testing.T) {
	for _, alg := range algs {
		k := testKey(t, alg, 0)
		if k.Alg != alg || !k.CreatedAt.Equal(testT0) || !k.Current() || !k.PublishUntil.IsZero() {
			t.Errorf("%s: %+v", alg, k)
		}
		block, rest := pem.Decode(k.PrivateKeyPEM)
		if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 {
			t.Fatalf("%s: not a single PKCS#8 PEM block", alg)
		}
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		switch key := priv.(type) {
		case *ecdsa.PrivateKey:
			if alg != oauth.AlgES256 || key.Curve != elliptic.P256() {
				t.Errorf("%s: got a %s ECDSA key", alg, key.Curve.Params().Name)
			}
		case *rsa.PrivateKey:
			if alg != oauth.AlgRS256 || key.N.BitLen() != 2048 {
				t.Errorf("%s: got RSA-%d", alg, key.N.BitLen())
			}
		case ed25519.PrivateKey:
			if alg != oauth.AlgEdDSA {
				t.Errorf("%s: got Ed25519", alg)
			}
		default:
			t.Errorf("%s: got %T", alg, priv)
		}
		// The kid is the RFC 7638 thumbprint of the public key.
		jwk := jose.JSONWebKey{Key: priv.(crypto.Signer).Public()}
		tp, _ := jwk.Thumbprint(crypto.SHA256)
		if k.ID != base64.RawURLEncoding.EncodeToString(tp) {
			t.Errorf("%s: kid %q is not the thumbprint", alg, k.ID)
		}
		if k2 := testKey(t, alg, 1); k2.ID == k.ID || string(k2.PrivateKeyPEM) == string(k.PrivateKeyPEM) {
			t.Errorf("%s: two generated keys are equal", alg)
		}
	}
	if _, err := GenerateKey("HS256", testT0); !errors.Is(err, ErrUnknownAlg) {
		t.Errorf("GenerateKey(HS256) error = %v", err)
	}
}

func TestJWKS(t *testing.T) {
	retired := *testKey(t, oauth.AlgES256, 1)
	retired.RetiredAt, retired.PublishUntil = testT0, testT0.Add(time.Hour)
	keys := []*oauth.SigningKey{testKey(t, oauth.AlgES256, 0), testKey(t, oauth.AlgRS256, 0), testKey(t, oauth.AlgEdDSA, 0), &retired}
	ks, err := NewKeySet(keys)
	if err != nil {
		t.Fatal(err)
	}
	raw := ks.JWKS()
	for _, private := range []string{`"d"`, `"p"`, `"q"`, `"dp"`, `"dq"`, `"qi"`} {
		if strings.Contains(string(raw), private+":") {
			t.Errorf("JWKS contains private parameter %s", private)
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS does not parse back: %v\n%s", err, raw)
	}
	if len(set.Keys) != len(keys) {
		t.Fatalf("JWKS has %d keys, want %d", len(set.Keys), len(keys))
	}
	for _, k := range keys {
		found := set.Key(k.ID)
		if len(found) != 1 {
			t.Fatalf("kid %s appears %d times", k.ID, len(found))
		}
		j := found[0]
		if j.Algorithm != k.Alg || j.Use != "sig" || !j.IsPublic() || !j.Valid() {
			t.Errorf("kid %s: alg %q use %q public %v", k.ID, j.Algorithm, j.Use, j.IsPublic())
		}
		if !reflect.DeepEqual(j.Key, ks.byKID[k.ID].pub) {
			t.Errorf("kid %s: public key differs", k.ID)
		}
	}
	var generic struct {
		Keys []map[string]any `json:"keys"`
	}
	_ = json.Unmarshal(raw, &generic)
	for _, k := range generic.Keys {
		if k["kid"] == nil || k["alg"] == nil || k["use"] != "sig" || k["kty"] == nil {
			t.Errorf("JWK misses a member: %v", k)
		}
	}
	raw[0] = 'X'
	if ks.JWKS()[0] != '{' {
		t.Error("modifying JWKS()'s result changed the KeySet")
	}
}

func TestSignVerifyConcurrent(t *testing.T) {
	ks := testKeySet(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			alg := []string{oauth.AlgES256, oauth.AlgEdDSA}[i%2]
			for range 50 {
				tok, err := ks.Sign(alg, testClaims())
				if err == nil {
					_, err = ks.Verify(tok, testIssuer, testT0)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func FuzzVerifyJWT(f *testing.F) {
	ks := testKeySet(f)
	for _, alg := range algs {
		tok, err := ks.Sign(alg, testClaims())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
	}
	f.Add("")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.e30.AAAA")
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := ks.Verify(token, testIssuer, testT0)
		if err != nil {
			if c != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %v, %v", c, err)
			}
			return
		}
		if c == nil || c.Issuer != testIssuer || !testT0.Before(c.ExpiresAt) || !utf8.ValidString(c.Subject) {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}

func TestVerifyNumericDates(t *testing.T) {
	ks := testKeySet(t)
	kid := testKey(t, oauth.AlgEdDSA, 0).ID
	h := map[string]any{"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
	p := validPayload()
	p["exp"] = float64(testT0.Unix()) + 0.5
	p["iat"] = 1.7e9
	c, err := ks.Verify(forge(t, h, p, keySigner(t, ks, kid)), testIssuer, testT0)
	if err != nil {
		t.Fatal(err)
	}
	if want := testT0.Add(500 * time.Millisecond); !c.ExpiresAt.Equal(want) || c.IssuedAt.Unix() != 1.7e9 {
		t.Errorf("exp %v iat %v", c.ExpiresAt, c.IssuedAt)
	}
	if _, err := ks.Verify(forge(t, h, p, keySigner(t, ks, kid)), testIssuer, testT0.Add(time.Second)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("fractional exp in the past: %v", err)
	}
	for _, exp := range []any{1e300, -1e300, "1", true, nil} {
		p["exp"] = exp
		if _, err := ks.Verify(forge(t, h, p, keySigner(t, ks, kid)), testIssuer, testT0); !errors.Is(err, ErrMalformed) {
			t.Errorf("exp %v: %v, want ErrMalformed", exp, err)
		}
	}
}

func TestVerifyEmptyIssuerSkipsTheIssuerCheck(t *testing.T) {
	ks := testKeySet(t)
	now := time.Now()
	tok, err := ks.Sign(oauth.AlgES256, &Claims{Issuer: "https://old.example", Subject: "s", ID: "j", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Verify(tok, "https://new.example", now); !errors.Is(err, ErrWrongIssuer) {
		t.Errorf("wrong issuer: %v", err)
	}
	c, err := ks.Verify(tok, "", now)
	if err != nil || c.Issuer != "https://old.example" {
		t.Errorf("empty issuer: %v %+v", err, c)
	}
}

func TestActivationDelay(t *testing.T) {
	old := *testKey(t, oauth.AlgES256, 0) // created testT0
	next := *testKey(t, oauth.AlgES256, 1)
	next.CreatedAt = testT0.Add(time.Hour)
	old.RetiredAt, old.PublishUntil = next.CreatedAt, next.CreatedAt.Add(25*time.Hour)
	ks, err := NewKeySet([]*oauth.SigningKey{&next, &old}, ActivationDelay(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	kidAt := func(at time.Time) any {
		c := testClaims()
		c.IssuedAt, c.ExpiresAt = at, at.Add(time.Hour)
		tok, err := ks.Sign(oauth.AlgES256, c)
		if err != nil {
			t.Fatal(err)
		}
		return decodeParts(t, tok).header["kid"]
	}
	if got := kidAt(next.CreatedAt.Add(time.Minute)); got != old.ID {
		t.Errorf("a minute after rotation signed with %v, want the replaced key %s (the new one is not in cached JWKS yet)", got, old.ID)
	}
	if got := kidAt(next.CreatedAt.Add(2 * time.Minute)); got != next.ID {
		t.Errorf("after the delay signed with %v, want the new key %s", got, next.ID)
	}
	// The replaced key signs during the delay even when it is young itself
	// (rotated again soon after it was made).
	young := next
	young.CreatedAt = testT0.Add(time.Second)
	old.RetiredAt = young.CreatedAt
	ks, err = NewKeySet([]*oauth.SigningKey{&young, &old}, ActivationDelay(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := kidAt(young.CreatedAt.Add(time.Second)); got != old.ID {
		t.Errorf("rotation a second after the first key: signed with %v, want %s", got, old.ID)
	}

	// The first key of an algorithm signs at once.
	first, err := NewKeySet([]*oauth.SigningKey{&next}, ActivationDelay(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c := testClaims()
	c.IssuedAt, c.ExpiresAt = next.CreatedAt, next.CreatedAt.Add(time.Hour)
	tok, err := first.Sign(oauth.AlgES256, c)
	if err != nil || decodeParts(t, tok).header["kid"] != next.ID {
		t.Errorf("first key: %v", err)
	}
}
