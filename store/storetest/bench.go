package storetest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/batch"
)

// BenchCreateTokens measures durable issuance from parallelism concurrent
// callers per CPU: each operation stores one access token, whose ID newID
// makes from a sequence number, and returns once it is committed. It
// reports tokens/s and, for a store with group-commit Stats, tokens/commit.
func BenchCreateTokens(b *testing.B, s oauth.Store, parallelism int, newID func(seq int64) string) {
	ctx := b.Context()
	now := time.Now()
	stats, hasStats := s.(interface{ Stats() batch.Stats })
	var start batch.Stats
	if hasStats {
		start = stats.Stats()
	}
	var seq atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := &oauth.Token{
				ID:        newID(seq.Add(1)),
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
	if hasStats {
		st := stats.Stats()
		if n := st.Batches - start.Batches; n > 0 {
			b.ReportMetric(float64(st.Ops-start.Ops)/float64(n), "tokens/commit")
		}
	}
}
