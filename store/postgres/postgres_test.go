package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/storetest"
)

// envDSN names the environment variable with the test database's DSN.
// The tests skip only when it is unset; CI sets it.
const envDSN = "TOKENGATE_TEST_POSTGRES"

func TestConformance(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	storetest.RunTests(t, func(t *testing.T) oauth.Store {
		return openStore(t, freshSchema(t, dsn), Options{})
	})
}

func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		t.Skip(envDSN + " is not set")
	}
	return dsn
}

// freshSchema creates an empty schema, drops it when the test ends, and
// returns dsn with its search_path set to it, so tests (and other
// packages' tests) sharing the database do not see each other's rows.
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "tg_test_" + hex.EncodeToString(b[:])
	admin(t, dsn, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { admin(t, dsn, `DROP SCHEMA `+schema+` CASCADE`) })
	return withParam(t, dsn, "search_path", schema)
}

// admin runs one statement on its own connection.
func admin(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", envDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// withParam sets a connection parameter in a URL or keyword/value DSN.
func withParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a valid URL", envDSN)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

func openStore(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}
