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
)

// BenchmarkCreateTokensParallel measures durable token issuance from many
// concurrent callers: each op stores one access token and returns once it
// is committed.
func BenchmarkCreateTokensParallel(b *testing.B) {
	s := openStore(b, pgtest.FreshSchema(b, pgtest.DSN(b)), Options{})
	b.Cleanup(func() { s.Close() })
	ctx := b.Context()
	now := time.Now()
	var prefix [8]byte
	rand.Read(prefix[:])
	base := hex.EncodeToString(prefix[:]) + "-"
	var seq atomic.Int64
	start := s.Stats()

	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := &oauth.Token{
				ID:        base + strconv.FormatInt(seq.Add(1), 10),
				Kind:      oauth.KindAccess,
				Format:    oauth.FormatOpaque,
				ClientID:  "merchant-1",
				Subject:   "merchant-1",
				Scopes:    []string{"payments:read", "payments:write"},
				IssuedAt:  now,
				ExpiresAt: now.Add(15 * time.Minute),
			}
			if err := s.CreateTokens(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	st := s.Stats()
	if n := st.Batches - start.Batches; n > 0 {
		b.ReportMetric(float64(st.Ops-start.Ops)/float64(n), "ops/commit")
	}
}
