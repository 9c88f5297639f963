package token

import (
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/oauth"
)

func BenchmarkOpaqueMint(b *testing.B) {
	o := NewOpaque(testOpaqueKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := o.Mint(oauth.KindAccess); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpaqueCheck(b *testing.B) {
	o := NewOpaque(testOpaqueKey)
	v, _, _ := o.Mint(oauth.KindAccess)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := o.Check(v); !ok {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkOpaqueCheckForged(b *testing.B) {
	o := NewOpaque(testOpaqueKey)
	v, _, _ := o.Mint(oauth.KindAccess)
	forged := v[:10] + "A" + v[11:]
	if forged == v {
		forged = v[:10] + "B" + v[11:]
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := o.Check(forged); ok {
			b.Fatal("accepted")
		}
	}
}

func benchSign(b *testing.B, alg string) {
	ks := testKeySet(b)
	c := testClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Sign(alg, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignES256(b *testing.B) { benchSign(b, oauth.AlgES256) }
func BenchmarkSignEdDSA(b *testing.B) { benchSign(b, oauth.AlgEdDSA) }
func BenchmarkSignRS256(b *testing.B) { benchSign(b, oauth.AlgRS256) }

// BenchmarkSignES256Parallel shows the throughput on all cores (GOMAXPROCS).
func BenchmarkSignES256Parallel(b *testing.B) {
	ks := testKeySet(b)
	c := testClaims()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ks.Sign(oauth.AlgES256, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSignES256GoJose is the go-jose signer (built once, reused) with
// encoding/json claims: the baseline Sign's hand-rolled serialization is
// measured against.
func BenchmarkSignES256GoJose(b *testing.B) {
	ks := testKeySet(b)
	k := ks.current[oauth.AlgES256]
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.ec, KeyID: k.id}},
		(&jose.SignerOptions{}).WithType(jwtType))
	if err != nil {
		b.Fatal(err)
	}
	c := testClaims()
	b.ReportAllocs()
	for b.Loop() {
		payload := appendClaims(nil, c) // stands in for json.Marshal of a claims struct
		jws, err := signer.Sign(payload)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.CompactSerialize(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	ks := testKeySet(b)
	tok, err := ks.Sign(oauth.AlgES256, testClaims())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Verify(tok, testIssuer, testT0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) {
	ks := testKeySet(b)
	tok, _ := ks.Sign(oauth.AlgEdDSA, testClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Verify(tok, testIssuer, testT0); err != nil {
			b.Fatal(err)
		}
	}
}
