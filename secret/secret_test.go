package secret

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"go/ast"
	"go/parser"
	"go/token"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

var testPepper = bytes.Repeat([]byte{0x5a}, 32)

func TestNewClientSecret(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		s, err := NewClientSecret()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) != 32 || len(s) != 43 {
			t.Fatalf("secret %q: %d bytes, %v; want 32 bytes base64url unpadded", s, len(raw), err)
		}
		if seen[s] {
			t.Fatal("duplicate secret")
		}
		seen[s] = true
	}
}

func TestNewID(t *testing.T) {
	for _, n := range []int{1, 16, 32} {
		id := NewID(n)
		raw, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(raw) != n {
			t.Errorf("NewID(%d) = %q: %d bytes, %v", n, id, len(raw), err)
		}
	}
	if NewID(16) == NewID(16) {
		t.Error("two IDs are equal")
	}
	if NewID(0) != "" || NewID(-1) != "" {
		t.Error("NewID(<=0) is not empty")
	}
}

func TestHasherHash(t *testing.T) {
	h := NewHasher(testPepper)
	got := h.Hash("s3cret")
	m := hmac.New(sha256.New, testPepper)
	m.Write([]byte("s3cret"))
	if want := m.Sum(nil); !bytes.Equal(got, want) {
		t.Errorf("Hash = %x, want HMAC-SHA256 %x", got, want)
	}
	if !bytes.Equal(h.Hash("s3cret"), got) {
		t.Error("Hash is not deterministic")
	}
	if bytes.Equal(NewHasher([]byte("other pepper")).Hash("s3cret"), got) {
		t.Error("the pepper does not change the hash")
	}
	got[0] ^= 1
	if bytes.Equal(h.Hash("s3cret"), got) {
		t.Error("Hash returned pooled memory")
	}
}

func TestHasherPepperIsCopied(t *testing.T) {
	pepper := bytes.Clone(testPepper)
	h := NewHasher(pepper)
	want := h.Hash("x")
	pepper[0] ^= 1
	if !bytes.Equal(h.Hash("x"), want) {
		t.Error("changing the caller's pepper changed the Hasher")
	}
}

func TestHasherVerify(t *testing.T) {
	h := NewHasher(testPepper)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cur, old := "current-secret", "previous-secret"
	current := oauth.SecretHash{Hash: h.Hash(cur)}
	graceLive := oauth.SecretHash{Hash: h.Hash(old), ExpiresAt: now.Add(time.Hour)}
	graceOver := oauth.SecretHash{Hash: h.Hash(old), ExpiresAt: now.Add(-time.Second)}
	graceNow := oauth.SecretHash{Hash: h.Hash(old), ExpiresAt: now}
	long := string(bytes.Repeat([]byte("x"), 5000))

	cases := []struct {
		name   string
		secret string
		hashes []oauth.SecretHash
		want   bool
	}{
		{"current", cur, []oauth.SecretHash{current}, true},
		{"wrong secret", "nope", []oauth.SecretHash{current}, false},
		{"empty secret", "", []oauth.SecretHash{current}, false},
		{"prefix of secret", cur[:5], []oauth.SecretHash{current}, false},
		{"old secret in future grace", old, []oauth.SecretHash{current, graceLive}, true},
		{"current beside grace", cur, []oauth.SecretHash{current, graceLive}, true},
		{"old secret in expired grace", old, []oauth.SecretHash{current, graceOver}, false},
		{"grace ending exactly now", old, []oauth.SecretHash{current, graceNow}, false},
		{"grace first in the list", old, []oauth.SecretHash{graceLive, current}, true},
		{"no hashes", cur, nil, false},
		{"truncated stored hash", cur, []oauth.SecretHash{{Hash: current.Hash[:16]}}, false},
		{"empty stored hash", "", []oauth.SecretHash{{}}, false},
		{"unkeyed SHA-256 stored", cur, []oauth.SecretHash{{Hash: sha256Sum(cur)}}, false},
		{"long secret", long, []oauth.SecretHash{{Hash: h.Hash(long)}}, true},
	}
	for _, tc := range cases {
		if got := h.Verify(tc.secret, tc.hashes, now); got != tc.want {
			t.Errorf("%s: Verify = %v, want %v", tc.name, got, tc.want)
		}
	}
	if NewHasher([]byte("other pepper")).Verify(cur, []oauth.SecretHash{current}, now) {
		t.Error("a hash made with another pepper verified")
	}
}

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// TestHasherVerifyIsConstantTime inspects Verify's source: it must compare
// with crypto/subtle or hmac.Equal, never bytes.Equal or ==, and must not
// leave the loop early. Timing measurements would be too noisy to assert.
func TestHasherVerifyIsConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "secret.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var verify *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "Verify" && fd.Recv != nil {
			verify = fd
		}
	}
	if verify == nil {
		t.Fatal("Hasher.Verify not found")
	}
	constantTime := false
	ast.Inspect(verify.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok {
				switch x.Name + "." + n.Sel.Name {
				case "subtle.ConstantTimeCompare", "hmac.Equal":
					constantTime = true
				case "bytes.Equal", "bytes.Compare", "reflect.DeepEqual", "slices.Equal":
					t.Errorf("%s: Verify uses %s.%s", fset.Position(n.Pos()), x.Name, n.Sel.Name)
				}
			}
		case *ast.RangeStmt:
			ast.Inspect(n.Body, func(m ast.Node) bool {
				switch m := m.(type) {
				case *ast.ReturnStmt:
					t.Errorf("%s: Verify returns from inside its loop", fset.Position(m.Pos()))
				case *ast.BranchStmt:
					if m.Tok == token.BREAK {
						t.Errorf("%s: Verify breaks out of its loop", fset.Position(m.Pos()))
					}
				}
				return true
			})
		}
		return true
	})
	if !constantTime {
		t.Error("Verify does not use subtle.ConstantTimeCompare or hmac.Equal")
	}
}

func TestHasherConcurrent(t *testing.T) {
	h := NewHasher(testPepper)
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := NewID(8 + i)
			hashes := []oauth.SecretHash{{Hash: h.Hash(s)}}
			for range 500 {
				if !h.Verify(s, hashes, now) || h.Verify(s+"x", hashes, now) {
					t.Error("wrong result under concurrency")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestHasherVerifyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	h := NewHasher(testPepper)
	hashes := []oauth.SecretHash{{Hash: h.Hash("a")}, {Hash: h.Hash("b"), ExpiresAt: time.Now().Add(time.Hour)}}
	now := time.Now()
	h.Verify("a", hashes, now)
	if n := testing.AllocsPerRun(100, func() { h.Verify("a", hashes, now) }); n != 0 {
		t.Errorf("Verify allocates %v times per call", n)
	}
}

func TestDeriveKey(t *testing.T) {
	h := NewHasher(testPepper)
	a, b := h.DeriveKey("a"), h.DeriveKey("b")
	if len(a) != 32 || bytes.Equal(a, b) || !bytes.Equal(a, h.DeriveKey("a")) {
		t.Fatalf("DeriveKey: %x, %x", a, b)
	}
	if bytes.Equal(a, NewHasher(bytes.Repeat([]byte{1}, 32)).DeriveKey("a")) {
		t.Fatal("the derived key does not depend on the pepper")
	}
	if bytes.Equal(a, h.Hash("a")) {
		t.Fatal("a derived key is the hash of its label as a client secret")
	}
}
