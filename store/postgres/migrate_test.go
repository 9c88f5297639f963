package postgres

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
)

// TestMigrationKeepsExistingRows: clients and users stored before
// migrations 00002 and 00003 read back with their defaults (no AuthMethods or
// Endpoints, CanIntrospect false, no TokensNotBefore) and can be updated.
func TestMigrationKeepsExistingRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	cfg, err := poolConfig(dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO clients (id, name, secrets, grants, scopes, default_scopes, access_ttl, token_format,
			signing_alg, refresh_with_client_credentials, public_key_pem, disabled, created_at, updated_at)
			VALUES ('old', 'Old merchant', '[]', '{client_credentials}', '{a}', '{}', 0, '', '', false, '', false, now(), now())`,
		`INSERT INTO users (username, password_hash, disabled, created_at, updated_at) VALUES ('bob', 'h', false, now(), now())`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	s := openStore(t, dsn, Options{})
	defer s.Close()
	c, err := s.GetClient(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Old merchant" || len(c.Grants) != 1 || c.AuthMethods != nil || c.Endpoints != nil ||
		c.CanIntrospect || !c.TokensNotBefore.IsZero() || c.SNAPServiceSignature != "" || c.PartnerID != "" {
		t.Fatalf("pre-migration client reads back as %+v", c)
	}
	// Migration 00003: its client ID is its partner ID.
	if byPartner, err := s.GetClientByPartnerID(ctx, "old"); err != nil || byPartner.ID != "old" {
		t.Fatalf("GetClientByPartnerID(old) after migrating = %v, %v", byPartner, err)
	}
	u, err := s.GetUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.PasswordHash != "h" || !u.TokensNotBefore.IsZero() {
		t.Fatalf("pre-migration user reads back as %+v", u)
	}
	if err := s.UpdateClient(ctx, "old", func(c *oauth.Client) error {
		c.AuthMethods, c.CanIntrospect = []string{oauth.AuthSecretBasic}, true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetClient(ctx, "old"); err != nil || !c.CanIntrospect || len(c.AuthMethods) != 1 {
		t.Fatalf("pre-migration client after an update: %+v, %v", c, err)
	}
}

// TestMigrationNumbersKeptEvents: migration 00008 gives the events kept
// from before their positions in their old (xid, seq) order, after a
// purge mark if events had been deleted; cursors of the old "xid.seq" form
// are expired, and later revocations follow the kept events.
func TestMigrationNumbersKeptEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	cfg, err := poolConfig(dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	// Three transactions, as nodes of the previous version wrote them (the
	// first of them since deleted), then the purge mark at it.
	for _, q := range []string{
		`INSERT INTO revocation_events (type, subject, created_at) VALUES ('token', 'gone', now())`,
		`INSERT INTO revocation_events (type, subject, created_at) VALUES ('token', 'a', now()), ('token', 'b', now())`,
		`INSERT INTO revocation_events (type, subject, before, created_at) VALUES ('client', 'c', now(), now())`,
		`UPDATE revocation_feed SET (purged_xid, purged_seq) = (SELECT xid, seq FROM revocation_events WHERE subject = 'gone') WHERE id = 1`,
		`DELETE FROM revocation_events WHERE subject = 'gone'`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var oldCursor string
	if err := db.QueryRowContext(ctx, `SELECT xid::text || '.' || seq FROM revocation_events WHERE subject = 'c'`).Scan(&oldCursor); err != nil {
		t.Fatal(err)
	}

	s := openStore(t, dsn, Options{})
	defer s.Close()
	if c, err := s.RevocationCursor(ctx); err != nil || c != "4" {
		t.Fatalf("RevocationCursor after migrating = %q, %v; want 4 (purge mark 1, three events)", c, err)
	}
	got, next, err := s.RevocationEvents(ctx, "1", 10)
	if err != nil {
		t.Fatal(err)
	}
	var cursors []string
	for _, e := range got {
		cursors = append(cursors, e.Cursor)
	}
	if !slices.Equal(ids(got), []string{"a", "b", "c"}) || !slices.Equal(cursors, []string{"2", "3", "4"}) || next != "4" {
		t.Fatalf("kept events: %v at %v, next %q; want [a b c] at [2 3 4], next 4", ids(got), cursors, next)
	}
	for _, c := range []string{"0", oldCursor, "5"} {
		if _, _, err := s.RevocationEvents(ctx, c, 10); !errors.Is(err, oauth.ErrCursorExpired) {
			t.Errorf("RevocationEvents(%q) after migrating: %v, want ErrCursorExpired", c, err)
		}
	}
	// Rows are inserted unnumbered and numbered at COMMIT: an index of pos
	// holding the NULLs would keep a dead entry of every event ever
	// written, and the numbering trigger's lookups would scan them all.
	var def string
	if err := s.pool.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'revocation_events_pos'`).Scan(&def); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(def, "WHERE (pos IS NOT NULL)") {
		t.Errorf("revocation_events_pos is %q, want an index of the numbered rows only", def)
	}
	now := time.Now()
	if err := s.RevokeToken(ctx, &oauth.Token{ID: "later", Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	if got, next, err := s.RevocationEvents(ctx, "4", 10); err != nil || !slices.Equal(ids(got), []string{"later"}) || next != "5" {
		t.Fatalf("a revocation after migrating: %v, next %q, %v; want [later], next 5", ids(got), next, err)
	}
}
