package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// ClaimIdempotency stores r as a pending record unless an unexpired one
// holds its key, which it returns instead (see oauth.Store). The check and
// the write are one statement of the writer, so of concurrent claims one
// wins, across processes too (BEGIN IMMEDIATE).
func (s *Store) ClaimIdempotency(ctx context.Context, r *oauth.IdempotencyRecord) (*oauth.IdempotencyRecord, error) {
	if r == nil {
		return nil, errNil
	}
	var existing *oauth.IdempotencyRecord
	err := s.do(ctx, func(ctx context.Context, w *writer) error {
		existing = nil
		res, err := w.conn.ExecContext(ctx, `INSERT INTO idempotency (key, fingerprint, claim, status, response, created_at, expires_at)
			VALUES (?, ?, ?, 0, x'', ?, ?)
			ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, claim = excluded.claim, status = 0,
				response = x'', created_at = excluded.created_at, expires_at = excluded.expires_at
			WHERE idempotency.expires_at <= excluded.created_at`,
			r.Key, dbBytes(r.Fingerprint), r.Claim, r.CreatedAt.UnixMicro(), r.ExpiresAt.UnixMicro())
		if err != nil {
			return mapErr(err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return mapErr(err)
		}
		existing, err = scanIdempotency(w.conn.QueryRowContext(ctx, `SELECT `+idempotencyColumns+` FROM idempotency WHERE key = ?`, r.Key))
		return err
	})
	if err != nil {
		return nil, err
	}
	return existing, nil
}

// CompleteIdempotency records the response of a pending record (see
// oauth.Store). Errors: oauth.ErrNotFound.
func (s *Store) CompleteIdempotency(ctx context.Context, key, claim string, status int, response []byte, expiresAt time.Time) error {
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		res, err := w.conn.ExecContext(ctx, `UPDATE idempotency SET status = ?, response = ?, expires_at = ?
			WHERE key = ? AND claim = ? AND status = 0`, status, dbBytes(response), expiresAt.UnixMicro(), key, claim)
		if err != nil {
			return mapErr(err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return mapErr(err)
			}
			return fmt.Errorf("sqlite: idempotency record: %w", oauth.ErrNotFound)
		}
		return nil
	})
}

// ReleaseIdempotency deletes a pending record (see oauth.Store).
func (s *Store) ReleaseIdempotency(ctx context.Context, key, claim string) error {
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		_, err := w.conn.ExecContext(ctx, `DELETE FROM idempotency WHERE key = ? AND claim = ? AND status = 0`, key, claim)
		return mapErr(err)
	})
}

const idempotencyColumns = `key, fingerprint, claim, status, response, created_at, expires_at`

func scanIdempotency(row *sql.Row) (*oauth.IdempotencyRecord, error) {
	var (
		r                 oauth.IdempotencyRecord
		created, expires  sql.NullInt64
		fingerprint, resp []byte
	)
	if err := row.Scan(&r.Key, &fingerprint, &r.Claim, &r.Status, &resp, &created, &expires); err != nil {
		return nil, notFound(err, "idempotency record")
	}
	r.Fingerprint, r.Response = goBytes(fingerprint), goBytes(resp)
	r.CreatedAt, r.ExpiresAt = goTime(created), goTime(expires)
	return &r, nil
}
