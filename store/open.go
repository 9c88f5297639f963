// Package store opens the storage backend a configuration selects.
package store

import (
	"context"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/postgres"
	"github.com/tokengate/tokengate/store/sqlite"
)

// Open returns the PostgreSQL store when cfg.DSN is set, else the embedded
// SQLite store in cfg.DataDir (created if missing). now is the server's
// clock, by which the store judges nonce expiry and dates revocation
// events; nil means time.Now. feedRetention is how long revocation events
// are kept (config feed.retention); 0 means oauth.DefaultFeedRetention.
// Errors: those of postgres.Open or sqlite.Open (an unreachable database
// wraps oauth.ErrUnavailable).
func Open(ctx context.Context, cfg config.Store, feedRetention time.Duration, now func() time.Time) (oauth.Store, error) {
	if now == nil {
		now = time.Now
	}
	if cfg.DSN != "" {
		return postgres.Open(ctx, cfg.DSN, postgres.Options{MaxConns: cfg.MaxConns, Timeout: cfg.Timeout, Now: now, FeedRetention: feedRetention})
	}
	return sqlite.Open(ctx, cfg.DataDir, sqlite.WithClock(now), sqlite.WithFeedRetention(feedRetention))
}
