// Package store opens the storage backend a configuration selects.
package store

import (
	"context"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/postgres"
	"github.com/tokengate/tokengate/store/sqlite"
)

// Open returns the PostgreSQL store when cfg.DSN is set, else the embedded
// SQLite store in cfg.DataDir (created if missing).
func Open(ctx context.Context, cfg config.Store) (oauth.Store, error) {
	if cfg.DSN != "" {
		return postgres.Open(ctx, cfg.DSN, postgres.Options{MaxConns: cfg.MaxConns})
	}
	return sqlite.Open(ctx, cfg.DataDir)
}
