package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/batch"
)

// CreateSession stores a new portal session. Errors:
// oauth.ErrAlreadyExists (the ID is taken).
func (s *Store) CreateSession(ctx context.Context, ps *oauth.Session) error {
	if ps == nil {
		return errNil
	}
	args := []any{ps.ID, ps.Account, ps.CreatedAt.UnixMicro(), ps.LastSeenAt.UnixMicro(), ps.ExpiresAt.UnixMicro()}
	return s.doAtomic(ctx, func(ctx context.Context, w *writer) error {
		_, err := w.conn.ExecContext(ctx, `INSERT INTO portal_sessions (id, account, created_at, last_seen_at, expires_at)
			VALUES (?, ?, ?, ?, ?)`, args...)
		return cleanConflict(mapErr(err))
	})
}

// GetSession returns a session by ID. Errors: oauth.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (*oauth.Session, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	var (
		ps                 = &oauth.Session{}
		created, seen, exp int64
	)
	err = db.QueryRowContext(ctx, `SELECT id, account, created_at, last_seen_at, expires_at FROM portal_sessions WHERE id = ?`, id).
		Scan(&ps.ID, &ps.Account, &created, &seen, &exp)
	if err != nil {
		return nil, notFound(err, "session")
	}
	ps.CreatedAt, ps.LastSeenAt, ps.ExpiresAt = time.UnixMicro(created).UTC(), time.UnixMicro(seen).UTC(), time.UnixMicro(exp).UTC()
	return ps, nil
}

// TouchSession moves a session's last use and end. Errors:
// oauth.ErrNotFound.
func (s *Store) TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error {
	return s.doAtomic(ctx, func(ctx context.Context, w *writer) error {
		res, err := w.conn.ExecContext(ctx, `UPDATE portal_sessions SET last_seen_at = ?, expires_at = ? WHERE id = ?`,
			lastSeen.UnixMicro(), expiresAt.UnixMicro(), id)
		return affectedOne(res, err)
	})
}

// DeleteSession removes a session, if it exists.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return s.doAtomic(ctx, func(ctx context.Context, w *writer) error {
		_, err := w.conn.ExecContext(ctx, `DELETE FROM portal_sessions WHERE id = ?`, id)
		return mapErr(err)
	})
}

// affectedOne is the error of a write of one session row: not found when
// it touched none.
func affectedOne(res sql.Result, err error) error {
	if err != nil {
		return mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapErr(err)
	}
	if n == 0 {
		return batch.Clean(fmt.Errorf("sqlite: session: %w", oauth.ErrNotFound)) // wrote nothing
	}
	return nil
}
