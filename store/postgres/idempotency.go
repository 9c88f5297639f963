package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
)

// ClaimIdempotency stores r as a pending record unless an unexpired one
// holds its key, which it returns instead (see oauth.Store). The claim is
// one upsert whose update applies only to an expired row: of concurrent
// claims, on any node, the row's lock lets exactly one through.
func (s *Store) ClaimIdempotency(ctx context.Context, r *oauth.IdempotencyRecord) (*oauth.IdempotencyRecord, error) {
	if r == nil {
		return nil, errNil
	}
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	// A record that is released between the refused claim and the read
	// is gone when read: claim again (a release is rare, and a retry
	// after it wins or finds the next attempt's record).
	for range 3 {
		var key string
		err := pool.QueryRow(ctx, `INSERT INTO idempotency (`+idempotencyColumns+`)
			VALUES ($1, $2, $3, 0, '\x', $4, $5)
			ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, claim = EXCLUDED.claim, status = 0,
				response = '\x', created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
			WHERE idempotency.expires_at <= EXCLUDED.created_at
			RETURNING key`,
			r.Key, dbBytes(r.Fingerprint), r.Claim, dbTime(r.CreatedAt), dbTime(r.ExpiresAt)).Scan(&key)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, mapErr(err)
		}
		existing, err := scanIdempotency(pool.QueryRow(ctx, `SELECT `+idempotencyColumns+` FROM idempotency WHERE key = $1`, r.Key))
		if errors.Is(err, oauth.ErrNotFound) {
			continue
		}
		return existing, err
	}
	return nil, fmt.Errorf("postgres: idempotency record %w: claimed and released over and over", oauth.ErrUnavailable)
}

// CompleteIdempotency records the response of a pending record (see
// oauth.Store). Errors: oauth.ErrNotFound.
func (s *Store) CompleteIdempotency(ctx context.Context, key, claim string, status int, response []byte, expiresAt time.Time) error {
	n, err := s.exec(ctx, `UPDATE idempotency SET status = $1, response = $2, expires_at = $3
		WHERE key = $4 AND claim = $5 AND status = 0`, status, dbBytes(response), dbTime(expiresAt), key, claim)
	if err == nil && n == 0 {
		return fmt.Errorf("postgres: idempotency record: %w", oauth.ErrNotFound)
	}
	return err
}

// ReleaseIdempotency deletes a pending record (see oauth.Store).
func (s *Store) ReleaseIdempotency(ctx context.Context, key, claim string) error {
	_, err := s.exec(ctx, `DELETE FROM idempotency WHERE key = $1 AND claim = $2 AND status = 0`, key, claim)
	return err
}

const idempotencyColumns = `key, fingerprint, claim, status, response, created_at, expires_at`

func scanIdempotency(row pgx.Row) (*oauth.IdempotencyRecord, error) {
	var (
		r                oauth.IdempotencyRecord
		created, expires pgtype.Timestamptz
		status           int32
	)
	if err := row.Scan(&r.Key, &r.Fingerprint, &r.Claim, &status, &r.Response, &created, &expires); err != nil {
		return nil, notFound(err, "idempotency record")
	}
	r.Status = int(status)
	if len(r.Fingerprint) == 0 {
		r.Fingerprint = nil
	}
	if len(r.Response) == 0 {
		r.Response = nil
	}
	r.CreatedAt, r.ExpiresAt = goTime(created), goTime(expires)
	return &r, nil
}
