package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/storetest"
)

const envDSN = pgtest.EnvDSN

func TestConformance(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	storetest.RunTests(t, func(t *testing.T, now func() time.Time) oauth.Store {
		return openStore(t, pgtest.FreshSchema(t, dsn), Options{Now: now})
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

// TestNonceDatabaseClock: without Options.Now, nonce expiry is judged by
// the database's clock.
func TestNonceDatabaseClock(t *testing.T) {
	t.Parallel()
	s := openStore(t, pgtest.FreshSchema(t, pgtest.DSN(t)), Options{})
	defer s.Close()
	ctx := t.Context()
	var dbNow time.Time
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "live", dbNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "live", dbNow.Add(time.Hour)); !errors.Is(err, oauth.ErrAlreadyExists) {
		t.Fatalf("UseNonce(live) again = %v, want ErrAlreadyExists", err)
	}
	if err := s.UseNonce(ctx, "past", dbNow.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "past", dbNow.Add(time.Hour)); err != nil {
		t.Fatalf("UseNonce(past) after it expired by the database's clock: %v", err)
	}
}
