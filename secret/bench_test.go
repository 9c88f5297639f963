package secret

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func BenchmarkSecretHash(b *testing.B) {
	h := NewHasher(testPepper)
	s, _ := NewClientSecret()
	b.ReportAllocs()
	for b.Loop() {
		h.Hash(s)
	}
}

// BenchmarkSecretVerify checks a secret against a client in a rotation's
// grace period (two stored hashes), the worst common case.
func BenchmarkSecretVerify(b *testing.B) {
	h := NewHasher(testPepper)
	s, _ := NewClientSecret()
	old, _ := NewClientSecret()
	now := time.Now()
	hashes := []oauth.SecretHash{{Hash: h.Hash(s)}, {Hash: h.Hash(old), ExpiresAt: now.Add(time.Hour)}}
	b.ReportAllocs()
	for b.Loop() {
		if !h.Verify(s, hashes, now) {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkNewClientSecret(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewClientSecret(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPasswordVerify(b *testing.B) {
	p := NewPasswords(1, 0)
	ctx := context.Background()
	enc, err := p.Hash(ctx, testPassword)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := p.Verify(ctx, testPassword, enc); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkPasswordVerifyParallel shows throughput with the default limit
// (one hash per CPU).
func BenchmarkPasswordVerifyParallel(b *testing.B) {
	p := NewPasswords(0, 0)
	ctx := context.Background()
	enc, _ := p.Hash(ctx, testPassword)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := p.Verify(ctx, testPassword, enc); !ok || err != nil {
				b.Error(ok, err)
				return
			}
		}
	})
}
