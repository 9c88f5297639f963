package kek

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustKey(t testing.TB) []byte {
	t.Helper()
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRing(t testing.TB, current []byte, old ...[]byte) *Keyring {
	t.Helper()
	r, err := New(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoundTrip(t *testing.T) {
	r := mustRing(t, mustKey(t))
	for _, plain := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte{0, 0xff}, 2000)} {
		sealed, err := r.Seal("setting:pepper", plain)
		if err != nil {
			t.Fatal(err)
		}
		if !IsSealed(sealed) || !r.IsCurrent(sealed) {
			t.Fatalf("Seal's output is not recognized as sealed under the current KEK")
		}
		if len(sealed) != len(plain)+Overhead {
			t.Errorf("sealed %d bytes into %d, want %d", len(plain), len(sealed), len(plain)+Overhead)
		}
		// (A one-byte plaintext turns up in random ciphertext by chance.)
		if len(plain) >= 8 && bytes.Contains(sealed, plain) {
			t.Error("the plaintext appears in the envelope")
		}
		got, err := r.Open("setting:pepper", sealed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("Open = %x, want %x", got, plain)
		}
	}
	a, _ := r.Seal("ad", []byte("same"))
	b, _ := r.Seal("ad", []byte("same"))
	if bytes.Equal(a, b) {
		t.Error("two seals of one value are identical: the nonce is not random")
	}
}

func TestWrongAssociatedDataFails(t *testing.T) {
	r := mustRing(t, mustKey(t))
	sealed, _ := r.Seal("signing_key:a", []byte("-----BEGIN PRIVATE KEY-----"))
	for _, ad := range []string{"signing_key:b", "setting:a", "", "signing_key:a\x00", "signing_key:"} {
		if _, err := r.Open(ad, sealed); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open with ad %q = %v, want ErrDecrypt", ad, err)
		}
	}
}

func TestTamperedByteFails(t *testing.T) {
	r := mustRing(t, mustKey(t))
	sealed, _ := r.Seal("setting:x", []byte("a secret value of some length"))
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := r.Open("setting:x", bad); err == nil {
			t.Fatalf("a flipped bit at byte %d still opens", i)
		}
	}
	for _, cut := range []int{1, tagLen, len(sealed) - Overhead + 1} {
		if _, err := r.Open("setting:x", sealed[:len(sealed)-cut]); err == nil {
			t.Errorf("the envelope cut by %d bytes still opens", cut)
		}
	}
	if _, err := r.Open("setting:x", append(bytes.Clone(sealed), 0)); err == nil {
		t.Error("the envelope with a byte appended still opens")
	}
}

func TestUnknownKEKFails(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	sealed, _ := mustRing(t, k1).Seal("ad", []byte("v"))
	_, err := mustRing(t, k2).Open("ad", sealed)
	if !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("Open under another KEK = %v, want ErrUnknownKEK", err)
	}
	if !strings.Contains(err.Error(), ID(k1)) {
		t.Errorf("the error %q does not name the missing KEK's id %s", err, ID(k1))
	}
}

func TestOldKEKAccepted(t *testing.T) {
	oldKey, newKey := mustKey(t), mustKey(t)
	old := mustRing(t, oldKey)
	sealed, _ := old.Seal("setting:pepper", []byte("pepper"))
	r := mustRing(t, newKey, oldKey)
	got, err := r.Open("setting:pepper", sealed)
	if err != nil || string(got) != "pepper" {
		t.Fatalf("Open of a value under an old KEK = %q, %v", got, err)
	}
	if r.IsCurrent(sealed) {
		t.Error("a value under an old KEK is reported current")
	}
	resealed, _ := r.Seal("setting:pepper", got)
	if !r.IsCurrent(resealed) {
		t.Error("Seal did not use the current KEK")
	}
	if _, err := old.Open("setting:pepper", resealed); !errors.Is(err, ErrUnknownKEK) {
		t.Errorf("the old keyring opens a value sealed under the new KEK: %v", err)
	}
	if r.ID() != ID(newKey) || old.ID() != ID(oldKey) || ID(oldKey) == ID(newKey) {
		t.Errorf("IDs: ring %s, new %s, old %s", r.ID(), ID(newKey), ID(oldKey))
	}
}

func TestNotSealed(t *testing.T) {
	r := mustRing(t, mustKey(t))
	for _, v := range [][]byte{nil, []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"),
		bytes.Repeat([]byte{0xab}, 32), append(bytes.Clone(magic[:]), make([]byte, 10)...)} {
		if IsSealed(v) {
			t.Errorf("IsSealed(%q) = true", v)
		}
		if _, err := r.Open("ad", v); !errors.Is(err, ErrNotSealed) {
			t.Errorf("Open(%q) = %v, want ErrNotSealed", v, err)
		}
	}
}

func TestBadKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte KEK succeeded", n)
		}
		if _, err := New(mustKey(t), make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte old KEK succeeded", n)
		}
	}
}

// TestErrorsCarryNoSecrets: no error of Open, for any failure, contains the
// KEK (raw or hex), the plaintext or the envelope.
func TestErrorsCarryNoSecrets(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	r := mustRing(t, k)
	plain := []byte("plaintext-secret-value")
	sealed, _ := r.Seal("ad", plain)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	otherSealed, _ := mustRing(t, other).Seal("ad", plain)
	var errs []error
	for _, c := range []struct {
		ad string
		v  []byte
	}{{"wrong", sealed}, {"ad", tampered}, {"ad", otherSealed}, {"ad", plain}} {
		_, err := r.Open(c.ad, c.v)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", c.ad)
		}
		errs = append(errs, err)
	}
	_, err := New(k[:31])
	errs = append(errs, err)
	for _, err := range errs {
		assertNoSecret(t, err.Error(), k, other, plain, sealed[headerLen:])
	}
}

func assertNoSecret(t *testing.T, msg string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{string(s), hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)), hex.EncodeToString(s[:8])} {
			if strings.Contains(msg, form) {
				t.Errorf("error %q contains a secret", msg)
			}
		}
	}
}

func FuzzOpen(f *testing.F) {
	r, err := New(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := r.Seal("ad", []byte("value"))
	f.Add("ad", good)
	f.Add("ad", []byte("-----BEGIN"))
	f.Add("", append(bytes.Clone(magic[:]), make([]byte, Overhead)...))
	f.Fuzz(func(t *testing.T, ad string, v []byte) {
		plain, err := r.Open(ad, v)
		if err != nil {
			if plain != nil {
				t.Fatal("Open returned a value with an error")
			}
			return
		}
		// Only a seal opens. (Fuzzing workers run this function's setup
		// again, so the seed's envelope may come from another Seal of the
		// same value under the same key.)
		if ad != "ad" || string(plain) != "value" || len(v) != len(good) {
			t.Fatalf("Open(%q, %x) = %q: a forgery opened", ad, v, plain)
		}
	})
}
