package postgres

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/tokengate/tokengate/internal/pgtest"
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
