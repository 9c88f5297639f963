package postgres

import (
	"testing"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/storetest"
)

const envDSN = pgtest.EnvDSN

func TestConformance(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	storetest.RunTests(t, func(t *testing.T) oauth.Store {
		return openStore(t, pgtest.FreshSchema(t, dsn), Options{})
	})
}

func openStore(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}
