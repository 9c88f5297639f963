package sqlite

import (
	"context"

	"github.com/tokengate/tokengate/oauth"
)

// Counts returns how many token records and nonces are stored.
func (s *Store) Counts(ctx context.Context) (oauth.StoreCounts, error) {
	var c oauth.StoreCounts
	err := s.rdb.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM nonces)`).Scan(&c.Tokens, &c.Nonces)
	if err != nil {
		return c, mapErr(err)
	}
	return c, nil
}
