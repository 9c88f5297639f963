package postgres

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/storetest"
)

// BenchmarkCreateTokensParallel measures durable token issuance from many
// concurrent callers: each op stores one access token and returns once it
// is committed.
func BenchmarkCreateTokensParallel(b *testing.B) {
	s := openStore(b, pgtest.FreshSchema(b, pgtest.DSN(b)), Options{})
	b.Cleanup(func() { s.Close() })
	var prefix [8]byte
	rand.Read(prefix[:])
	base := hex.EncodeToString(prefix[:]) + "-"
	storetest.BenchCreateTokens(b, s, 32, func(seq int64) string { return base + strconv.FormatInt(seq, 10) })
}

// BenchmarkRevokeTwoNodes measures durable revocations from many
// concurrent callers on two nodes sharing one database: each op revokes
// one token (and records its feed event), alternating nodes. The commits
// of transactions that write events follow one another (see feed.go).
func BenchmarkRevokeTwoNodes(b *testing.B) {
	dsn := pgtest.FreshSchema(b, pgtest.DSN(b))
	nodes := []*Store{openStore(b, dsn, Options{}), openStore(b, dsn, Options{})}
	b.Cleanup(func() {
		for _, s := range nodes {
			s.Close()
		}
	})
	var seq atomic.Int64
	now := time.Now()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			tok := &oauth.Token{ID: "r" + strconv.FormatInt(n, 10), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := nodes[n%2].RevokeToken(b.Context(), tok, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRevokeOne measures one revocation at a time on one node: the
// latency of a revoking transaction, without contention.
func BenchmarkRevokeOne(b *testing.B) {
	s := openStore(b, pgtest.FreshSchema(b, pgtest.DSN(b)), Options{})
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		tok := &oauth.Token{ID: "r" + strconv.Itoa(i), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.RevokeToken(b.Context(), tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueWhileRevokingTwoNodes measures token writes on two nodes
// sharing one database when one operation in every "1 in N" is a
// revocation and the others are issuances.
func BenchmarkIssueWhileRevokingTwoNodes(b *testing.B) {
	for _, every := range []int64{1000, 50, 2} {
		b.Run("1 in "+strconv.FormatInt(every, 10), func(b *testing.B) { benchIssueWhileRevoking(b, every) })
	}
}

func benchIssueWhileRevoking(b *testing.B, every int64) {
	dsn := pgtest.FreshSchema(b, pgtest.DSN(b))
	nodes := []*Store{openStore(b, dsn, Options{}), openStore(b, dsn, Options{})}
	b.Cleanup(func() {
		for _, s := range nodes {
			s.Close()
		}
	})
	var seq atomic.Int64
	now := time.Now()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			tok := &oauth.Token{ID: "t" + strconv.FormatInt(n, 10), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			var err error
			if n%every == 0 {
				err = nodes[n%2].RevokeToken(b.Context(), tok, now)
			} else {
				err = nodes[n%2].CreateTokens(b.Context(), tok)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
