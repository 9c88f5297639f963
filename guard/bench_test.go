package guard

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// cachedTokens starts a guard on a fake server and returns it with n
// opaque tokens and n JWTs, each validated once (so cached).
func cachedTokens(tb testing.TB, n int) (g *Guard, opaque, jwts []string) {
	f := newFakeAS(tb)
	clk := newClock()
	g = newGuard(tb, f, clk, Config{})
	clk.Advance(time.Minute)
	now := clk.Now()
	for i := range n {
		tok, _ := f.opaque(fmt.Sprint("merchant-", i), "", "payments refunds", now, now.Add(time.Hour))
		opaque = append(opaque, tok)
		jwts = append(jwts, f.jwt(f.keys[0], f.claims(fmt.Sprint("merchant-", i), "", "payments refunds", now, time.Hour)))
	}
	for _, tok := range append(append([]string(nil), opaque...), jwts...) {
		if _, err := g.Validate(context.Background(), tok); err != nil {
			tb.Fatal(err)
		}
	}
	return g, opaque, jwts
}

// BenchmarkValidateCached is Validate of a token whose result is cached:
// the target is ≤ 2 µs and ≤ 1 allocation.
func BenchmarkValidateCached(b *testing.B) {
	g, opaque, jwts := cachedTokens(b, 1000)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		toks []string
	}{{"opaque", opaque}, {"jwt", jwts}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := g.Validate(ctx, bc.toks[i%len(bc.toks)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := g.Validate(ctx, bc.toks[i%len(bc.toks)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkValidateUncachedJWT is the first validation of a JWT (signature
// verification), for comparison.
func BenchmarkValidateUncachedJWT(b *testing.B) {
	g, _, jwts := cachedTokens(b, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g.cache.clear()
		if _, err := g.Validate(ctx, jwts[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestValidateCachedAllocations holds the allocation target of the
// benchmark, so a regression fails the tests.
func TestValidateCachedAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	g, opaque, jwts := cachedTokens(t, 10)
	ctx := context.Background()
	for name, tok := range map[string]string{"opaque": opaque[3], "jwt": jwts[3]} {
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := g.Validate(ctx, tok); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Errorf("%s: %.1f allocations a cached validation, want ≤ 1", name, allocs)
		}
	}
}
