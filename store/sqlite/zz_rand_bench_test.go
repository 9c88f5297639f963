package sqlite_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func BenchmarkRandomIDs(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf [32]byte
		for pb.Next() {
			rand.Read(buf[:])
			h := sha256.Sum256(buf[:])
			tok := &oauth.Token{ID: base64.RawURLEncoding.EncodeToString(h[:]), Kind: oauth.KindAccess, Format: oauth.FormatOpaque,
				ClientID: "merchant-1", Subject: "merchant-1", Scopes: []string{"payments:read", "payments:write"},
				IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
			if err := s.CreateTokens(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(st.Ops)/float64(st.Batches), "tokens/commit")
}
