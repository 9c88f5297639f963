package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/oauth"
)

var testOpaqueKey = bytes.Repeat([]byte{0x42}, 32)

func TestOpaqueMintCheck(t *testing.T) {
	o := NewOpaque(testOpaqueKey)
	for _, tc := range []struct {
		kind   oauth.TokenKind
		prefix string
	}{{oauth.KindAccess, "tga_"}, {oauth.KindRefresh, "tgr_"}} {
		value, id, err := o.Mint(tc.kind)
		if err != nil {
			t.Fatalf("Mint(%s): %v", tc.kind, err)
		}
		if !strings.HasPrefix(value, tc.prefix) || len(value) != OpaqueLen || OpaqueLen != 76 {
			t.Errorf("Mint(%s) = %q (len %d), want prefix %q and length 76", tc.kind, value, len(value), tc.prefix)
		}
		body, err := base64.RawURLEncoding.DecodeString(value[4:])
		if err != nil || len(body) != 54 {
			t.Errorf("body is not base64url of 54 bytes: %v, %d", err, len(body))
		}
		if id != ID(value) || id != ID(value) || len(id) != 55 {
			t.Errorf("id %q is not the stable ID(value) %q", id, ID(value))
		}
		if strings.Contains(id, value[4:20]) {
			t.Errorf("id reveals the token")
		}
		gotID, gotKind, ok := o.Check(value)
		if !ok || gotID != id || gotKind != tc.kind {
			t.Errorf("Check(minted) = %q, %q, %v; want %q, %q, true", gotID, gotKind, ok, id, tc.kind)
		}
		if !LooksOpaque(value) {
			t.Errorf("LooksOpaque(%q) = false", value)
		}
	}
}

func TestIDsSortByIssueTime(t *testing.T) {
	o := NewOpaque(testOpaqueKey)
	var random [opaqueRandLen]byte
	_, early, _ := o.mint(oauth.KindAccess, 1_700_000_000_000, &random)
	random[0] = 0xff // a later token with "smaller" randomness still sorts after
	_, late, _ := o.mint(oauth.KindAccess, 1_700_000_000_001, &random)
	if !(early < late) || early[:12] != "018bcfe56800" {
		t.Errorf("IDs %q, %q do not sort by issue time", early, late)
	}
	_, now, _ := o.Mint(oauth.KindRefresh)
	if !(late < now) {
		t.Errorf("a token minted now sorts before one from 2023: %q < %q", now, late)
	}
}

func TestIDKnownValue(t *testing.T) {
	// base64url(SHA-256("abc")), the FIPS 180-2 test vector.
	if got, want := ID("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"; got != want {
		t.Errorf("ID(abc) = %q, want %q", got, want)
	}
	long := strings.Repeat("x", 1000)
	sum := sha256.Sum256([]byte(long))
	if got, want := ID(long), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("ID(long) = %q, want %q", got, want)
	}
}

func TestOpaqueMintDistinct(t *testing.T) {
	o := NewOpaque(testOpaqueKey)
	seen := make(map[string]bool)
	for range 2000 {
		v, id, err := o.Mint(oauth.KindAccess)
		if err != nil {
			t.Fatal(err)
		}
		if seen[v] || seen[id] {
			t.Fatalf("duplicate token or ID after %d mints", len(seen)/2)
		}
		seen[v], seen[id] = true, true
	}
}

func TestOpaqueMintUnknownKind(t *testing.T) {
	if _, _, err := NewOpaque(testOpaqueKey).Mint("id_token"); err != ErrUnknownKind {
		t.Errorf("Mint(id_token) error = %v, want ErrUnknownKind", err)
	}
}

func TestNewOpaqueShortKeyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewOpaque with a 15-byte key did not panic")
		}
	}()
	NewOpaque(make([]byte, 15))
}

func TestOpaqueKeyIsCopied(t *testing.T) {
	key := bytes.Clone(testOpaqueKey)
	o := NewOpaque(key)
	v, _, _ := o.Mint(oauth.KindAccess)
	key[0] ^= 1
	if _, _, ok := o.Check(v); !ok {
		t.Error("changing the caller's key slice changed the Opaque")
	}
}

// reencode decodes a token's body, applies f to the raw bytes and encodes it
// again under prefix.
func reencode(t *testing.T, value, prefix string, f func([]byte)) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(value[4:])
	if err != nil {
		t.Fatal(err)
	}
	f(raw)
	return prefix + base64.RawURLEncoding.EncodeToString(raw)
}

func TestOpaqueCheckRejectsForgeries(t *testing.T) {
	o := NewOpaque(testOpaqueKey)
	access, _, _ := o.Mint(oauth.KindAccess)
	refresh, _, _ := o.Mint(oauth.KindRefresh)
	other, _, _ := NewOpaque(bytes.Repeat([]byte{7}, 32)).Mint(oauth.KindAccess)

	cases := map[string]string{
		"empty":                 "",
		"prefix only":           "tga_",
		"flipped random byte":   reencode(t, access, "tga_", func(b []byte) { b[5] ^= 0x01 }),
		"flipped last random":   reencode(t, access, "tga_", func(b []byte) { b[31] ^= 0x80 }),
		"flipped tag byte":      reencode(t, access, "tga_", func(b []byte) { b[40] ^= 0x01 }),
		"zeroed tag":            reencode(t, access, "tga_", func(b []byte) { clear(b[32:]) }),
		"access body as tgr_":   "tgr_" + access[4:],
		"refresh body as tga_":  "tga_" + refresh[4:],
		"unknown prefix":        "tgx_" + access[4:],
		"no prefix":             access[4:],
		"uppercase prefix":      "TGA_" + access[4:],
		"truncated by one":      access[:len(access)-1],
		"truncated to half":     access[:34],
		"one char appended":     access + "A",
		"std base64 alphabet":   access[:10] + "+" + access[11:],
		"slash":                 access[:10] + "/" + access[11:],
		"padding char":          access[:len(access)-1] + "=",
		"newline inside":        access[:10] + "\n" + access[11:],
		"space inside":          access[:10] + " " + access[11:],
		"non-ASCII":             access[:10] + "é" + access[12:],
		"other key":             other,
		"JWT-looking":           "eyJhbGciOiJFUzI1NiJ9.e30.sig",
		"all A of right length": "tga_" + strings.Repeat("A", 72),
	}
	for name, v := range cases {
		if id, kind, ok := o.Check(v); ok || id != "" || kind != "" {
			t.Errorf("%s: Check(%q) = %q, %q, %v; want rejection", name, v, id, kind, ok)
		}
	}
	// The originals still pass: the rejections above are due to the edits.
	for _, v := range []string{access, refresh} {
		if _, _, ok := o.Check(v); !ok {
			t.Errorf("Check(%q) rejected a minted token", v)
		}
	}
}

func TestOpaqueCheckRejectsEveryByteFlip(t *testing.T) {
	o := NewOpaque(testOpaqueKey)
	v, _, _ := o.Mint(oauth.KindAccess)
	for i := range opaqueRawLen {
		forged := reencode(t, v, "tga_", func(b []byte) { b[i] ^= 0x10 })
		if _, _, ok := o.Check(forged); ok {
			t.Errorf("byte %d flipped: accepted", i)
		}
	}
}

func TestOpaqueCheckGarbageDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	o := NewOpaque(testOpaqueKey)
	v, _, _ := o.Mint(oauth.KindAccess)
	forged := reencode(t, v, "tga_", func(b []byte) { b[0] ^= 1 })
	if n := testing.AllocsPerRun(100, func() { o.Check(forged) }); n != 0 {
		t.Errorf("Check of a forged token allocates %v times, want 0", n)
	}
}

func TestLooksOpaque(t *testing.T) {
	for v, want := range map[string]bool{
		"tga_x": true, "tgr_": true, "tga": false, "": false, "eyJhbGciOi.x.y": false, "TGA_x": false, "tgx_a": false,
	} {
		if got := LooksOpaque(v); got != want {
			t.Errorf("LooksOpaque(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestOpaqueConcurrent(t *testing.T) {
	o := NewOpaque(testOpaqueKey)
	t.Run("group", func(t *testing.T) {
		for range 4 {
			t.Run("", func(t *testing.T) {
				t.Parallel()
				for range 500 {
					v, id, err := o.Mint(oauth.KindRefresh)
					if err != nil {
						t.Fatal(err)
					}
					if gotID, kind, ok := o.Check(v); !ok || gotID != id || kind != oauth.KindRefresh {
						t.Fatalf("Check(minted) failed under concurrency")
					}
				}
			})
		}
	})
}

func FuzzOpaqueCheck(f *testing.F) {
	o := NewOpaque(testOpaqueKey)
	// The fuzzer runs this function in several processes, so the minted
	// tokens must not depend on crypto/rand.
	minted := make(map[string]oauth.TokenKind)
	for i, kind := range []oauth.TokenKind{oauth.KindAccess, oauth.KindRefresh, oauth.KindAccess} {
		random := [opaqueRandLen]byte(sha256.Sum256([]byte{byte(i)}))
		v, _, err := o.mint(kind, 1_700_000_000_000+uint64(i), &random)
		if err != nil {
			f.Fatal(err)
		}
		minted[v] = kind
		f.Add(v)
		f.Add(v[:len(v)-1] + "A")
		f.Add("tgr_" + v[4:])
	}
	f.Add("")
	f.Add("tga_")
	f.Add("tga_" + strings.Repeat("_", 72))
	f.Fuzz(func(t *testing.T, value string) {
		id, kind, ok := o.Check(value)
		wantKind, isMinted := minted[value]
		if ok != isMinted {
			t.Fatalf("Check(%q) ok = %v, want %v", value, ok, isMinted)
		}
		if ok && (id != ID(value) || kind != wantKind || !LooksOpaque(value)) {
			t.Fatalf("Check(%q) = %q, %q; want %q, %q", value, id, kind, ID(value), wantKind)
		}
		if !ok && (id != "" || kind != "") {
			t.Fatalf("rejected Check(%q) returned %q, %q", value, id, kind)
		}
	})
}
