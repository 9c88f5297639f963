package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// The revocation feed on PostgreSQL.
//
// A revocation writes its event in its own transaction (a row of
// revocation_events), so the event commits exactly when the revocation
// does. The hard part is the order readers see them in: nodes write
// concurrently, and a number handed out at INSERT is not commit order (a
// transaction that took 10 may commit after one that took 11, and a reader
// that saw 11 and resumed "after 11" would skip 10 forever).
//
// So an event's place in the feed, pos, is given at COMMIT, by a deferred
// trigger (migration 00008): the committing transaction locks the
// revocation_feed row, adds its events to the counter there and numbers
// them from it, and holds the lock until its commit is visible. pos order
// is therefore commit order, without gaps, and a snapshot that sees an
// event sees every event below it: a read of "pos > cursor" is final, and
// the cursor is the pos of the last event read.
//
// The order depends on nothing but the revocations themselves. (Migration
// 00004 read only below the snapshot's xmin horizon instead; since xids
// are cluster-wide, any transaction left open anywhere on the cluster
// silently held every later revocation back.) The price is that the
// commits of transactions that write events follow one another; the lock
// is taken inside COMMIT, after everything else the transaction did, so it
// is held for one commit and cannot be part of a deadlock, and
// transactions that write no event never take it.
//
// Deleting old events (DeleteExpired) goes in pos order; a trigger records
// the highest pos deleted in revocation_feed.purged_pos: a cursor below it
// has missed events (oauth.ErrCursorExpired).

var errCursor = fmt.Errorf("postgres: %w", oauth.ErrCursorExpired)

// Cursors are codec.FormatCursor of a pos. (Cursors of the "xid.seq"
// form migration 00004 gave out are refused by codec.ParseCursor: their
// subscribers get a reset.)

const (
	// eventsSQL reads, in one statement and so in one snapshot, the purge
	// mark, the last pos given out, and the events after the cursor $1,
	// at most $2.
	eventsSQL = `SELECT f.purged_pos, f.last_pos, e.pos, e.type, e.subject, e.before, e.created_at
	FROM revocation_feed f
	LEFT JOIN LATERAL (
		SELECT pos, type, subject, before, created_at FROM revocation_events
		WHERE pos > $1 ORDER BY pos LIMIT $2
	) e ON true
	WHERE f.id = 1
	ORDER BY e.pos`

	// deleteEventsSQL deletes at most $2 events recorded before $1,
	// oldest first; the purge mark follows (trigger
	// revocation_events_purged, in the same statement).
	deleteEventsSQL = `WITH batch AS (
		SELECT xid, seq FROM revocation_events WHERE created_at < $1
		ORDER BY pos LIMIT $2 FOR UPDATE SKIP LOCKED),
	d AS (DELETE FROM revocation_events e USING batch b WHERE e.xid = b.xid AND e.seq = b.seq RETURNING 1)
	SELECT count(*) FROM d`

	// insertEventSQL records a client or user event: $3 is Before (NULL:
	// the recording time, for a deleted client), $4 the store's clock.
	insertEventSQL = `INSERT INTO revocation_events (type, subject, before, created_at)
		SELECT $1, $2, COALESCE($3::timestamptz, n), n FROM (SELECT COALESCE($4::timestamptz, clock_timestamp()) AS n) t`
)

// insertEvent records a client or user event in tx.
func (s *Store) insertEvent(ctx context.Context, tx pgx.Tx, typ oauth.RevocationType, subject string, before pgtype.Timestamptz) error {
	_, err := tx.Exec(ctx, insertEventSQL, string(typ), subject, before, s.storeNow())
	return err
}

// RevocationEvents returns up to limit events after cursor, in the feed's
// order (commit order), and the cursor to read from next (limit < 1 reads
// up to 1000). An event is readable as soon as its revocation has
// committed. Errors: oauth.ErrCursorExpired (events after cursor were
// deleted, or cursor is not one this store gave out), oauth.ErrUnavailable.
func (s *Store) RevocationEvents(ctx context.Context, cursor string, limit int) ([]oauth.RevocationEvent, string, error) {
	c, ok := codec.ParseCursor(cursor)
	if !ok {
		return nil, "", errCursor
	}
	if limit < 1 {
		limit = codec.DefaultFeedLimit
	}
	pool, err := s.reader()
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rows, err := pool.Query(ctx, eventsSQL, c, limit)
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer rows.Close()
	var (
		events       []oauth.RevocationEvent
		purged, last int64
		next         = c
	)
	for rows.Next() {
		var (
			pos               pgtype.Int8
			typ, subj         pgtype.Text
			before, createdAt pgtype.Timestamptz
		)
		if err := rows.Scan(&purged, &last, &pos, &typ, &subj, &before, &createdAt); err != nil {
			return nil, "", mapErr(err)
		}
		if !pos.Valid {
			continue // no event: the LEFT JOIN's one row
		}
		next = pos.Int64
		events = append(events, oauth.RevocationEvent{Cursor: codec.FormatCursor(next), Type: oauth.RevocationType(typ.String),
			ID: subj.String, Before: goTime(before), At: goTime(createdAt)})
	}
	if err := rows.Err(); err != nil {
		return nil, "", mapErr(err)
	}
	// Positions have no gaps and are deleted from the bottom: below the
	// purge mark, events the reader had not seen are gone; above the last
	// position given out, the cursor is not one of this store's.
	if c < purged || c > last {
		return nil, "", errCursor
	}
	return events, codec.FormatCursor(next), nil
}

// RevocationCursor returns the cursor after the last committed event.
// Errors: oauth.ErrUnavailable.
func (s *Store) RevocationCursor(ctx context.Context) (string, error) {
	pool, err := s.reader()
	if err != nil {
		return "", err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var last int64
	if err := pool.QueryRow(ctx, `SELECT last_pos FROM revocation_feed WHERE id = 1`).Scan(&last); err != nil {
		return "", mapErr(err)
	}
	return codec.FormatCursor(last), nil
}
