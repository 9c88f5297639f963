// Package store opens the storage backend a configuration selects.
package store

import (
	"context"
	"errors"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
)

// Open returns the PostgreSQL store when cfg.DSN is set, else the embedded
// SQLite store in cfg.DataDir (created if missing).
func Open(ctx context.Context, cfg config.Store) (oauth.Store, error) {
	if cfg.DSN != "" {
		return nil, errors.New("store.dsn: PostgreSQL support is not built yet")
	}
	return sqlite.Open(ctx, cfg.DataDir)
}
