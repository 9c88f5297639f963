package totp

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestRFC6238Vectors: RFC 6238 Appendix B, every time and hash (8 digits,
// as the appendix gives them).
func TestRFC6238Vectors(t *testing.T) {
	seed := "1234567890"
	keys := map[string]struct {
		h   func() hash.Hash
		key []byte
	}{
		"SHA1":   {sha1.New, []byte(strings.Repeat(seed, 2))},
		"SHA256": {sha256.New, []byte(strings.Repeat(seed, 3) + "12")},
		"SHA512": {sha512.New, []byte(strings.Repeat(seed, 6) + "1234")},
	}
	for _, v := range []struct {
		unix int64
		mode string
		want string
	}{
		{59, "SHA1", "94287082"}, {59, "SHA256", "46119246"}, {59, "SHA512", "90693936"},
		{1111111109, "SHA1", "07081804"}, {1111111109, "SHA256", "68084774"}, {1111111109, "SHA512", "25091201"},
		{1111111111, "SHA1", "14050471"}, {1111111111, "SHA256", "67062674"}, {1111111111, "SHA512", "99943326"},
		{1234567890, "SHA1", "89005924"}, {1234567890, "SHA256", "91819424"}, {1234567890, "SHA512", "93441116"},
		{2000000000, "SHA1", "69279037"}, {2000000000, "SHA256", "90698825"}, {2000000000, "SHA512", "38618901"},
		{20000000000, "SHA1", "65353130"}, {20000000000, "SHA256", "77737706"}, {20000000000, "SHA512", "47863826"},
	} {
		k := keys[v.mode]
		if got := HOTP(k.h, k.key, Step(time.Unix(v.unix, 0)), 8); got != v.want {
			t.Errorf("T=%d %s: %s, want %s", v.unix, v.mode, got, v.want)
		}
	}
	// The 6-digit codes apps show are the last 6 digits.
	if got := Code([]byte("12345678901234567890"), Step(time.Unix(59, 0))); got != "287082" {
		t.Errorf("6-digit code at T=59: %s", got)
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1111111111, 0)
	cur := Step(now)
	for _, c := range []struct {
		name string
		code string
		last int64
		want bool
		step int64
	}{
		{"now", Code(secret, cur), 0, true, cur},
		{"one step before", Code(secret, cur-1), 0, true, cur - 1},
		{"one step after", Code(secret, cur+1), 0, true, cur + 1},
		{"two steps before", Code(secret, cur-2), 0, false, 0},
		{"two steps after", Code(secret, cur+2), 0, false, 0},
		{"replayed", Code(secret, cur), cur, false, 0},
		{"earlier than the last accepted", Code(secret, cur-1), cur - 1, false, 0},
		{"later than the last accepted", Code(secret, cur+1), cur, true, cur + 1},
		{"too short", Code(secret, cur)[:5], 0, false, 0},
		{"too long", Code(secret, cur) + "0", 0, false, 0},
		{"not digits", "12345a", 0, false, 0},
		{"unicode digits", "١٢٣٤٥٦", 0, false, 0},
		{"empty", "", 0, false, 0},
	} {
		step, ok := Verify(secret, c.code, now, c.last)
		if ok != c.want || step != c.step {
			t.Errorf("%s: Verify = %d, %t; want %d, %t", c.name, step, ok, c.step, c.want)
		}
	}
	if _, ok := Verify(nil, "000000", now, 0); ok {
		t.Error("an empty secret verified")
	}
	if _, ok := Verify([]byte("another secret of 20b"), Code(secret, cur), now, 0); ok {
		t.Error("another secret's code verified")
	}
}

func TestURI(t *testing.T) {
	secret := []byte("12345678901234567890")
	u, err := url.Parse(URI("tokengate", "merchant@example.com", secret))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/tokengate:merchant@example.com" ||
		q.Get("secret") != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || q.Get("issuer") != "tokengate" ||
		q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("URI = %s", u)
	}
	s, err := NewSecret()
	if err != nil || len(s) != SecretLen {
		t.Fatalf("NewSecret = %d bytes, %v", len(s), err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("123456", int64(0))
	f.Add("", int64(-1))
	f.Add("99999999", int64(1<<62))
	secret := []byte("12345678901234567890")
	now := time.Unix(1111111111, 0)
	f.Fuzz(func(t *testing.T, code string, last int64) {
		step, ok := Verify(secret, code, now, last)
		if ok && (step <= last || code != Code(secret, step) || step < Step(now)-Skew || step > Step(now)+Skew) {
			t.Fatalf("Verify(%q, last %d) accepted step %d", code, last, step)
		}
	})
}
