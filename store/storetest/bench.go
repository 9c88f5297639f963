package storetest

import (
	"fmt"
	"strconv"
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

// BenchUseNonce measures one-time values (a SNAP call's X-EXTERNAL-ID) from
// parallelism concurrent callers per CPU: each operation records a fresh
// key, which starts with the day as the gateway's do, and returns once it
// is committed. It reports nonces/s, the process's CPU time per nonce and,
// for a store with group-commit Stats, nonces/commit.
func BenchUseNonce(b *testing.B, s oauth.Store, parallelism int) {
	ctx := b.Context()
	exp := time.Now().Add(24 * time.Hour)
	stats, hasStats := s.(interface{ Stats() batch.Stats })
	var start batch.Stats
	if hasStats {
		start = stats.Stats()
	}
	var seq atomic.Int64
	prefix := fmt.Sprintf("snapx:%s:8:merchant:bench-%d-", time.Now().Format("20060102"), time.Now().UnixNano())
	cpu0 := processCPU()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.UseNonce(ctx, prefix+strconv.FormatInt(seq.Add(1), 10), exp); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "nonces/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
	if hasStats {
		st := stats.Stats()
		if n := st.Batches - start.Batches; n > 0 {
			b.ReportMetric(float64(st.Ops-start.Ops)/float64(n), "nonces/commit")
		}
	}
}
