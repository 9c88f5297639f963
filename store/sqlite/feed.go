package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// The revocation feed. Events are rows of revocation_events written by the
// revocation's own operation, inside the group-commit transaction (and
// inside its savepoint: an operation rolled back takes its events with it).
// A cursor is the decimal seq of the last event read: seq is assigned in
// commit order (see the migration), so "seq > cursor" is exactly what a
// reader has not seen, whoever wrote it, and a read transaction sees a
// prefix of that order.

const (
	insertEventSQL = `INSERT INTO revocation_events (type, subject, before, created_at) VALUES (?, ?, ?, ?)`
	// Events for the rows the matching revoke statement (revokeID,
	// revokeFam) is about to change: run just before it, with the same
	// condition, in the same transaction.
	eventsOfIDSQL = `INSERT INTO revocation_events (type, subject, created_at)
		SELECT 'token', id, ? FROM tokens WHERE id = ? AND revoked_at IS NULL`
	eventsOfFamilySQL = `INSERT INTO revocation_events (type, subject, created_at)
		SELECT 'token', id, ? FROM tokens WHERE family_id = ? AND family_id <> '' AND revoked_at IS NULL`
)

var errCursor = fmt.Errorf("sqlite: %w", oauth.ErrCursorExpired)

// insertEvent records a client or user event.
func (w *writer) insertEvent(ctx context.Context, typ oauth.RevocationType, subject string, before time.Time, at int64) error {
	_, err := w.insertEv.ExecContext(ctx, string(typ), subject, dbTime(before), at)
	return mapErr(err)
}

// RevocationEvents returns up to limit events after cursor, in commit
// order, and the cursor to read from next (limit < 1 reads up to 1000).
// Errors: oauth.ErrCursorExpired (events after cursor were deleted, or
// cursor is not one this store gave out).
func (s *Store) RevocationEvents(ctx context.Context, cursor string, limit int) ([]oauth.RevocationEvent, string, error) {
	c, ok := codec.ParseCursor(cursor)
	if !ok {
		return nil, "", errCursor
	}
	if limit < 1 {
		limit = codec.DefaultFeedLimit
	}
	db, err := s.reader()
	if err != nil {
		return nil, "", err
	}
	// One read transaction: the purge mark and the events are of one
	// snapshot, so a concurrent purge cannot slip between them.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer tx.Rollback()
	var (
		purged int64
		exists bool
	)
	err = tx.QueryRowContext(ctx, `SELECT purged, EXISTS (SELECT 1 FROM revocation_events WHERE seq = ?)
		FROM revocation_feed WHERE id = 1`, c).Scan(&purged, &exists)
	if err != nil {
		return nil, "", mapErr(err)
	}
	// Below the purge mark, events the reader had not seen are gone;
	// above it, a cursor is the seq of an event still kept.
	if c < purged || (c > purged && !exists) {
		return nil, "", errCursor
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, type, subject, before, created_at FROM revocation_events
		WHERE seq > ? ORDER BY seq LIMIT ?`, c, limit)
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer rows.Close()
	var events []oauth.RevocationEvent
	next := c
	for rows.Next() {
		var (
			e          oauth.RevocationEvent
			typ        string
			before, at sql.NullInt64
		)
		if err := rows.Scan(&next, &typ, &e.ID, &before, &at); err != nil {
			return nil, "", mapErr(err)
		}
		e.Cursor, e.Type, e.Before, e.At = codec.FormatCursor(next), oauth.RevocationType(typ), goTime(before), goTime(at)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", mapErr(err)
	}
	return events, codec.FormatCursor(next), nil
}

// RevocationCursor returns the cursor after the last event committed.
func (s *Store) RevocationCursor(ctx context.Context) (string, error) {
	db, err := s.reader()
	if err != nil {
		return "", err
	}
	var c int64
	err = db.QueryRowContext(ctx, `SELECT max(purged, COALESCE((SELECT max(seq) FROM revocation_events), 0))
		FROM revocation_feed WHERE id = 1`).Scan(&c)
	if err != nil {
		return "", mapErr(err)
	}
	return codec.FormatCursor(c), nil
}

// deleteEvents deletes at most limit events recorded before before, oldest
// first, and raises the purge mark to the last one deleted.
func (w *writer) deleteEvents(ctx context.Context, before int64, limit int) (int, error) {
	var (
		last sql.NullInt64
		n    int
	)
	err := w.conn.QueryRowContext(ctx, `SELECT max(seq), count(*) FROM
		(SELECT seq FROM revocation_events WHERE created_at < ? ORDER BY seq LIMIT ?)`, before, limit).Scan(&last, &n)
	if err != nil || n == 0 {
		return 0, mapErr(err)
	}
	// The batch is every event up to last recorded before the bound.
	if _, err := w.conn.ExecContext(ctx, `DELETE FROM revocation_events WHERE seq <= ? AND created_at < ?`, last.Int64, before); err != nil {
		return 0, mapErr(err)
	}
	if _, err := w.conn.ExecContext(ctx, `UPDATE revocation_feed SET purged = max(purged, ?) WHERE id = 1`, last.Int64); err != nil {
		return 0, mapErr(err)
	}
	return n, nil
}
