package postgres

import (
	"io/fs"
	"testing"

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
