package postgres

import (
	"context"

	"github.com/tokengate/tokengate/oauth"
)

// Counts returns how many token records and nonces are stored.
func (s *Store) Counts(ctx context.Context) (oauth.StoreCounts, error) {
	var c oauth.StoreCounts
	if s.closed.Load() {
		return c, errClosed
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM nonces)`).Scan(&c.Tokens, &c.Nonces)
	if err != nil {
		return c, mapErr(err)
	}
	return c, nil
}
