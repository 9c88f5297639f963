package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
)

// Portal sessions are written straight through the pool, one statement
// each, not through the group-commit batcher: a person signing in or
// clicking is no hot path.

// CreateSession stores a new portal session. Errors:
// oauth.ErrAlreadyExists (the ID is taken).
func (s *Store) CreateSession(ctx context.Context, ps *oauth.Session) error {
	if ps == nil {
		return errNil
	}
	_, err := s.exec(ctx, `INSERT INTO portal_sessions (id, account, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, ps.ID, ps.Account, ps.CreatedAt, ps.LastSeenAt, ps.ExpiresAt)
	return err
}

// GetSession returns a session by ID. Errors: oauth.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (*oauth.Session, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var (
		ps                 = &oauth.Session{}
		created, seen, exp pgtype.Timestamptz
	)
	err = pool.QueryRow(ctx, `SELECT id, account, created_at, last_seen_at, expires_at FROM portal_sessions WHERE id = $1`, id).
		Scan(&ps.ID, &ps.Account, &created, &seen, &exp)
	if err != nil {
		return nil, notFound(err, "session")
	}
	ps.CreatedAt, ps.LastSeenAt, ps.ExpiresAt = goTime(created), goTime(seen), goTime(exp)
	return ps, nil
}

// TouchSession moves a session's last use and end. Errors:
// oauth.ErrNotFound.
func (s *Store) TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error {
	n, err := s.exec(ctx, `UPDATE portal_sessions SET last_seen_at = $2, expires_at = $3 WHERE id = $1`, id, lastSeen, expiresAt)
	if (err == nil && n == 0) || unstorableKey(err) {
		return fmt.Errorf("postgres: session: %w", oauth.ErrNotFound)
	}
	return err
}

// DeleteSession removes a session, if it exists.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `DELETE FROM portal_sessions WHERE id = $1`, id)
	if unstorableKey(err) {
		return nil // no session can have such an ID
	}
	return err
}

// exec runs one statement on the pool, bounded by the store's timeout,
// and returns how many rows it changed.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	pool, err := s.reader()
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	tag, err := pool.Exec(ctx, sql, args...)
	if err != nil {
		return 0, mapErr(err)
	}
	return tag.RowsAffected(), nil
}
