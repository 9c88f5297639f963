package snapsig

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/dialect/snap"
)

// Hard-coded vectors, computed once with OpenSSL 3.0 (so they do not come
// from this package):
//
//	S='POST:/v1.0/transfer-va/create-va:gp9HjjEj813Y9JGoqwOeOPWbnt4CUpvIJbU1mMU4a11MNDZ7Sg5u9a:3274fab8dac896837b106a16da2a974e7e65142dcecb4b768ef0294102838977:2024-03-26T16:01:41+07:00'
//	printf '%s' "$S" | openssl dgst -sha512 -hmac 'kB3x-example-client-secret-0123456789ABCD' -binary | openssl base64 -A
//
//	A='POST:/v1.0/transfer-va/create-va:3274fab8dac896837b106a16da2a974e7e65142dcecb4b768ef0294102838977:2024-03-26T16:01:41+07:00'
//	printf '%s' "$A" | openssl dgst -sha256 -sign testdata/rsa2048-test-key.pem -binary | openssl base64 -A
const (
	kaMethod    = "POST"
	kaPath      = "/v1.0/transfer-va/create-va"
	kaToken     = "gp9HjjEj813Y9JGoqwOeOPWbnt4CUpvIJbU1mMU4a11MNDZ7Sg5u9a"
	kaTimestamp = "2024-03-26T16:01:41+07:00"
	kaSecret    = "kB3x-example-client-secret-0123456789ABCD"
	kaSymString = kaMethod + ":" + kaPath + ":" + kaToken + ":" + dokuHash + ":" + kaTimestamp
	kaAsyString = kaMethod + ":" + kaPath + ":" + dokuHash + ":" + kaTimestamp
	kaSymSig    = "7AcAik998rnYYppAhOCizTOvDRO9QJSCfNYjzLYAFeP3mu4zRD+/oIDz4cQfhxSZ2ZiS2+Q3Xl71RzFXLpl3ZA=="
	kaAsySig    = "pP6CZUVFHbfKoBPxXV9g8V6Sb6jOPpwXJO6rvFZROyUqInQFibEoUHdbdPiDV4plQXVqz9xttL+W7Yyc7r1/iKEJh9rII376ya9KOt+TwSd7mtiJailRFHUnnELdcYHacOvdkLMRz0e98+pX2OJcao9BPPffVIXkWY6B4ZVOYVFsCbt+GdPZH9x1SQ0aBne3rhN6Dq+3B9T6Tcd70iFLOfxq0usj4odSolN9p21L9pIfdQPynL1I3AkzbPPNOP4I8h2KTk9ebuXXjDUzibTeY70kKDEdpJnySkDBhGJMXTYKO3i/0ShLL/hiKVYyOEuM2Rg1mLMTANQqGvDlH80Fjg=="
)

// testKey is testdata/rsa2048-test-key.pem, a key made for these tests
// only (openssl genrsa 2048).
func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	raw, err := os.ReadFile("testdata/rsa2048-test-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	k, err := snap.ParsePrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKnownAnswers(t *testing.T) {
	m, err := Minify([]byte(dokuBody))
	if err != nil {
		t.Fatal(err)
	}
	ep := EndpointURL(kaPath, "", "", false)
	sym := SymmetricString(kaMethod, ep, kaToken, BodyHash(m), kaTimestamp)
	if sym != kaSymString {
		t.Fatalf("SymmetricString = %q", sym)
	}
	if got := SignSymmetric([]byte(kaSecret), sym); got != kaSymSig {
		t.Errorf("SignSymmetric = %s, want %s", got, kaSymSig)
	}
	if !VerifySymmetric([]byte(kaSecret), sym, kaSymSig) {
		t.Error("VerifySymmetric refuses the OpenSSL vector")
	}
	asy := AsymmetricString(kaMethod, ep, BodyHash(m), kaTimestamp)
	if asy != kaAsyString {
		t.Fatalf("AsymmetricString = %q", asy)
	}
	k := testKey(t)
	got, err := SignAsymmetric(k, asy)
	if err != nil || got != kaAsySig {
		t.Errorf("SignAsymmetric = %s, %v; want %s", got, err, kaAsySig)
	}
	if !VerifyAsymmetric(&k.PublicKey, asy, kaAsySig) {
		t.Error("VerifyAsymmetric refuses the OpenSSL vector")
	}
}

// TestAgainstOpenSSL signs fresh inputs and compares with what the openssl
// command computes at test time; both directions of RSA verification.
func TestAgainstOpenSSL(t *testing.T) {
	if opensslMissing(t) {
		return
	}
	secrets := [][]byte{[]byte(kaSecret), make([]byte, 32), []byte("a:b\n\x00\xff"), []byte(strings.Repeat("k", 200))}
	rand.Read(secrets[1])
	strs := []string{
		kaSymString,
		SymmetricString("GET", "/v1.0/transfer-va/status?x=1&y=%2F", "tok", emptyHash, "2026-01-02T03:04:05.123Z"),
		SymmetricString("POST", "/v1.0/qr/qr-mpm-generate", "", BodyHash([]byte(`{"n":"Jos`+"\u00e9"+`"}`)), kaTimestamp),
	}
	for _, secret := range secrets {
		for _, s := range strs {
			mac := openssl(t, []byte(s), "dgst", "-sha512", "-mac", "HMAC", "-macopt", "hexkey:"+hex.EncodeToString(secret), "-binary")
			want := strings.TrimSpace(string(openssl(t, mac, "base64", "-A")))
			if got := SignSymmetric(secret, s); got != want {
				t.Errorf("SignSymmetric(%q) = %s, openssl says %s", s, got, want)
			}
			if !VerifySymmetric(secret, s, want) {
				t.Errorf("VerifySymmetric refuses openssl's HMAC of %q", s)
			}
		}
	}

	dir := t.TempDir()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644)
	for _, s := range append(strs, kaAsyString, AsymmetricString("DELETE", "/", emptyHash, kaTimestamp)) {
		raw := openssl(t, []byte(s), "dgst", "-sha256", "-sign", keyPath, "-binary")
		want := strings.TrimSpace(string(openssl(t, raw, "base64", "-A")))
		got, err := SignAsymmetric(k, s)
		if err != nil || got != want {
			t.Errorf("SignAsymmetric(%q) = %s, %v; openssl says %s", s, got, err, want)
		}
		if !VerifyAsymmetric(&k.PublicKey, s, want) {
			t.Errorf("VerifyAsymmetric refuses openssl's signature of %q", s)
		}
		// And openssl accepts ours.
		sigPath := filepath.Join(dir, "sig.bin")
		b, _ := base64.StdEncoding.DecodeString(got)
		os.WriteFile(sigPath, b, 0o644)
		if out := openssl(t, []byte(s), "dgst", "-sha256", "-verify", pubPath, "-signature", sigPath); !strings.Contains(string(out), "Verified OK") {
			t.Errorf("openssl does not verify our signature of %q: %s", s, out)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	secret := []byte(kaSecret)
	k := testKey(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(kaSymSig)
	flipped := append([]byte(nil), raw...)
	flipped[10] ^= 1
	for name, sig := range map[string]string{
		"empty":           "",
		"not base64":      "!!!!",
		"flipped bit":     base64.StdEncoding.EncodeToString(flipped),
		"truncated":       base64.StdEncoding.EncodeToString(raw[:63]),
		"extended":        base64.StdEncoding.EncodeToString(append(raw, 0)),
		"hex":             hex.EncodeToString(raw),
		"with newline":    kaSymSig[:40] + "\n" + kaSymSig[40:],
		"too long":        strings.Repeat("A", MaxSignatureLen+4),
		"other variant":   kaAsySig,
		"url-safe base64": base64.URLEncoding.EncodeToString(raw),
	} {
		if name != "url-safe base64" || strings.ContainsAny(sig, "-_") {
			if VerifySymmetric(secret, kaSymString, sig) {
				t.Errorf("VerifySymmetric accepts %s", name)
			}
		}
	}
	if VerifySymmetric([]byte(kaSecret+"x"), kaSymString, kaSymSig) {
		t.Error("VerifySymmetric accepts another secret")
	}
	if VerifySymmetric(secret, kaSymString+" ", kaSymSig) {
		t.Error("VerifySymmetric accepts another string")
	}
	// Unpadded Base64 of the right MAC is the same signature.
	if !VerifySymmetric(secret, kaSymString, strings.TrimRight(kaSymSig, "=")) {
		t.Error("VerifySymmetric refuses the unpadded signature")
	}
	if VerifyAsymmetric(&other.PublicKey, kaAsyString, kaAsySig) {
		t.Error("VerifyAsymmetric accepts another key")
	}
	if VerifyAsymmetric(&k.PublicKey, kaAsyString+"x", kaAsySig) {
		t.Error("VerifyAsymmetric accepts another string")
	}
	if VerifyAsymmetric(nil, kaAsyString, kaAsySig) || VerifyAsymmetric(&k.PublicKey, kaAsyString, "") {
		t.Error("VerifyAsymmetric accepts a nil key or an empty signature")
	}
	if _, err := SignAsymmetric(nil, "x"); err == nil {
		t.Error("SignAsymmetric(nil) succeeded")
	}
}

func TestEndpointURL(t *testing.T) {
	for _, c := range []struct {
		path, query, strip string
		incl               bool
		want               string
	}{
		{"/v1.0/transfer-va/create-va", "", "", false, "/v1.0/transfer-va/create-va"},
		{"/v1.0/transfer-va/status", "a=1&b=2", "", false, "/v1.0/transfer-va/status"},
		{"/v1.0/transfer-va/status", "b=2&a=1", "", true, "/v1.0/transfer-va/status?b=2&a=1"},
		{"/v1.0/x", "", "", true, "/v1.0/x"},
		{"/nicepay/v1.0/x", "", "/nicepay", false, "/v1.0/x"},
		{"/nicepay/v1.0/x", "q=%2F", "/nicepay/", true, "/v1.0/x?q=%2F"},
		{"/nicepay", "", "/nicepay", false, "/"},
		{"/nicepayx/v1.0", "", "/nicepay", false, "/nicepayx/v1.0"},
		{"/other/v1.0/x", "", "/nicepay", false, "/other/v1.0/x"},
		{"/v1.0/a%20b", "", "", false, "/v1.0/a%20b"},
		{"/v1.0/x", "", "/", false, "/v1.0/x"},
	} {
		if got := EndpointURL(c.path, c.query, c.strip, c.incl); got != c.want {
			t.Errorf("EndpointURL(%q, %q, %q, %v) = %q, want %q", c.path, c.query, c.strip, c.incl, got, c.want)
		}
	}
}

// FuzzSymmetricString checks the builders and signers on arbitrary parts:
// no panic, the string is the parts joined by ":", and what is signed
// verifies while a change to the string does not.
func FuzzSymmetricString(f *testing.F) {
	f.Add("POST", "/v1.0/transfer-va/create-va", "q=1", "/api", true, kaToken, dokuBody, kaTimestamp, []byte(kaSecret))
	f.Add("", "", "", "", false, "", "", "", []byte{})
	f.Add("GET", "/api", "", "/api/", false, "a:b", "[", "x", []byte{0})
	f.Fuzz(func(t *testing.T, method, path, query, strip string, incl bool, token, body, ts string, secret []byte) {
		ep := EndpointURL(path, query, strip, incl)
		signedPath := ep
		if incl && query != "" {
			var ok bool
			if signedPath, ok = strings.CutSuffix(ep, "?"+query); !ok {
				t.Fatalf("EndpointURL(%q, %q, %q, true) = %q: no query", path, query, strip, ep)
			}
		}
		switch {
		case signedPath == path:
		case signedPath == "/" && strings.TrimRight(strip, "/") == path:
		case strip != "" && strings.HasSuffix(path, signedPath) && strings.HasPrefix(path, strings.TrimRight(strip, "/")+"/"):
		default:
			t.Fatalf("EndpointURL(%q, %q, %q, %v) = %q", path, query, strip, incl, ep)
		}
		hash := emptyHash
		if m, err := Minify([]byte(body)); err == nil {
			hash = BodyHash(m)
		}
		sym := SymmetricString(method, ep, token, hash, ts)
		if sym != strings.Join([]string{method, ep, token, hash, ts}, ":") {
			t.Fatalf("SymmetricString: %q", sym)
		}
		asy := AsymmetricString(method, ep, hash, ts)
		if asy != strings.Join([]string{method, ep, hash, ts}, ":") {
			t.Fatalf("AsymmetricString: %q", asy)
		}
		sig := SignSymmetric(secret, sym)
		if !VerifySymmetric(secret, sym, sig) {
			t.Fatal("a fresh symmetric signature does not verify")
		}
		if VerifySymmetric(secret, sym+"x", sig) || VerifySymmetric(secret, asy, sig) {
			t.Fatal("a symmetric signature verifies another string")
		}
	})
}

func BenchmarkVerifySymmetric(b *testing.B) {
	secret := []byte(kaSecret)
	for b.Loop() {
		if !VerifySymmetric(secret, kaSymString, kaSymSig) {
			b.Fatal("refused")
		}
	}
}

// hmacSHA512 is crypto/hmac's HMAC-SHA512 for keys shorter than, as long
// as and longer than the block, and for messages of every length around
// the block, whatever the pooled buffer held before; and it allocates
// nothing once the pool is warm.
func TestHMACSHA512(t *testing.T) {
	for _, keyLen := range []int{0, 1, 32, 127, 128, 129, 300} {
		key := make([]byte, keyLen)
		rand.Read(key)
		for _, msgLen := range []int{0, 1, 111, 112, 128, 255, 256, 1000, 10000} {
			msg := make([]byte, msgLen)
			rand.Read(msg)
			m := hmac.New(sha512.New, key)
			m.Write(msg)
			want := m.Sum(nil)
			if got := hmacSHA512(key, string(msg)); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d bytes, message %d bytes: %x, crypto/hmac says %x", keyLen, msgLen, got, want)
			}
		}
	}
	key, msg := []byte(kaSecret), kaSymString
	if n := testing.AllocsPerRun(100, func() { hmacSHA512(key, msg) }); n != 0 {
		t.Errorf("hmacSHA512 allocates %.1f times a call", n)
	}
}
