package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// The revocation feed on PostgreSQL.
//
// A revocation writes its event in its own transaction (a row of
// revocation_events), so the event commits exactly when the revocation
// does. The hard part is the order readers see them in. Nodes write
// concurrently, and a sequence is handed out at INSERT, not at COMMIT: a
// transaction that took seq 10 may commit after one that took 11, and a
// reader that saw 11 and resumed "after 11" would skip 10 forever.
//
// So each event also stores its transaction's ID, xid (pg_current_xact_id,
// a 64-bit xid8 that never wraps), and the feed's order is (xid, seq). A
// read returns only events whose xid is below the xmin of its own snapshot
// (pg_snapshot_xmin(pg_current_snapshot())): every transaction below xmin
// has ended, committed or aborted, and no transaction can be given an xid
// below it any more (xids are handed out in increasing order, and xmin is
// the oldest one still running), so the set of events below xmin is final.
// Events of a transaction still running, and every event after it in
// (xid, seq) order, wait for a later read, when xmin has passed it. The
// cursor is the (xid, seq) of the last event read: a read from it returns
// what is above it and below the new xmin, and since nothing can appear
// below the old xmin later, a reader following cursors gets every event
// exactly once, in the same order as every other reader.
//
// The cost: an event is held back while any transaction that began
// writing before it is still running — on the whole cluster, since xids
// are cluster-wide. tokengate's own transactions are short (bounded by
// Options.Timeout); a long-running transaction of another application, or
// a session left idle in a transaction, delays the feed until it ends. The
// pool therefore sets idle_in_transaction_session_timeout on its sessions
// (see poolConfig), so that a node cut off mid-transaction cannot hold the
// feed back for longer than that.
//
// Deleting old events (DeleteExpired) goes in (xid, seq) order and
// records the last position deleted in revocation_feed: a cursor below it
// has missed events (oauth.ErrCursorExpired).

// position is a place in the feed: the (xid, seq) of an event, or of the
// last event deleted.
type position struct {
	xid uint64
	seq int64
}

func (p position) less(q position) bool {
	return p.xid < q.xid || (p.xid == q.xid && p.seq < q.seq)
}

// String is the cursor: "xid.seq" in canonical decimal.
func (p position) String() string {
	return strconv.FormatUint(p.xid, 10) + "." + strconv.FormatInt(p.seq, 10)
}

// xidText is the xid as the text the queries cast to xid8.
func (p position) xidText() string { return strconv.FormatUint(p.xid, 10) }

var errCursor = fmt.Errorf("postgres: %w", oauth.ErrCursorExpired)

// parseCursor reads a cursor in the canonical form String writes.
func parseCursor(c string) (position, bool) {
	if len(c) == 0 || len(c) > codec.MaxCursorLen {
		return position{}, false
	}
	x, s, ok := strings.Cut(c, ".")
	if !ok {
		return position{}, false
	}
	xid, err := strconv.ParseUint(x, 10, 64)
	if err != nil || strconv.FormatUint(xid, 10) != x {
		return position{}, false
	}
	seq, err := strconv.ParseInt(s, 10, 64)
	if err != nil || seq < 0 || strconv.FormatInt(seq, 10) != s {
		return position{}, false
	}
	return position{xid, seq}, true
}

func parsePosition(xid string, seq int64) (position, error) {
	x, err := strconv.ParseUint(xid, 10, 64)
	if err != nil {
		return position{}, fmt.Errorf("postgres: revocation event xid %q: %w", xid, err)
	}
	return position{x, seq}, nil
}

const (
	// horizon is the xmin of the statement's snapshot: the events below it
	// are final (see above).
	horizon = `pg_snapshot_xmin(pg_current_snapshot())`

	// eventsSQL reads, in one statement and so in one snapshot, the purge
	// mark, whether the cursor's event is kept, and the final events after
	// the cursor. $1, $2: the cursor; $3: the limit.
	eventsSQL = `SELECT f.purged_xid::text, f.purged_seq,
		EXISTS (SELECT 1 FROM revocation_events WHERE xid = $1::text::xid8 AND seq = $2 AND xid < ` + horizon + `),
		e.xid::text, e.seq, e.type, e.subject, e.before, e.created_at
	FROM revocation_feed f
	LEFT JOIN LATERAL (
		SELECT xid, seq, type, subject, before, created_at FROM revocation_events
		WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < ` + horizon + `
		ORDER BY xid, seq LIMIT $3
	) e ON true
	WHERE f.id = 1
	ORDER BY e.xid, e.seq`

	// lastEventSQL reads the purge mark and the last final event.
	lastEventSQL = `SELECT f.purged_xid::text, f.purged_seq, e.xid::text, e.seq
	FROM revocation_feed f
	LEFT JOIN LATERAL (
		SELECT xid, seq FROM revocation_events WHERE xid < ` + horizon + `
		ORDER BY xid DESC, seq DESC LIMIT 1
	) e ON true
	WHERE f.id = 1`

	// deleteEventsSQL deletes at most $2 final events recorded before $1,
	// oldest first, and raises the purge mark to the last one deleted, in
	// one statement (readers see both or neither).
	deleteEventsSQL = `WITH batch AS (
		SELECT xid, seq FROM revocation_events
		WHERE created_at < $1 AND xid < ` + horizon + `
		ORDER BY xid, seq LIMIT $2 FOR UPDATE SKIP LOCKED),
	d AS (DELETE FROM revocation_events e USING batch b WHERE e.xid = b.xid AND e.seq = b.seq
		RETURNING e.xid, e.seq),
	last AS (SELECT xid, seq FROM d ORDER BY xid DESC, seq DESC LIMIT 1),
	mark AS (UPDATE revocation_feed f SET purged_xid = last.xid, purged_seq = last.seq FROM last
		WHERE f.id = 1 AND (last.xid, last.seq) > (f.purged_xid, f.purged_seq))
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
// order, and the cursor to read from next (limit < 1 reads up to 1000).
// Events of transactions still running are held back, with every event
// after them (see the comment at the top of this file).
// Errors: oauth.ErrCursorExpired (events after cursor were deleted, or
// cursor is not one this store gave out), oauth.ErrUnavailable.
func (s *Store) RevocationEvents(ctx context.Context, cursor string, limit int) ([]oauth.RevocationEvent, string, error) {
	c, ok := parseCursor(cursor)
	if !ok {
		return nil, "", errCursor
	}
	if limit < 1 {
		limit = 1000
	}
	pool, err := s.reader()
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rows, err := pool.Query(ctx, eventsSQL, c.xidText(), c.seq, limit)
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer rows.Close()
	var (
		events []oauth.RevocationEvent
		purged position
		exists bool
		next   = c
	)
	for rows.Next() {
		var (
			purgedXID         string
			evXID, typ, subj  pgtype.Text
			evSeq             pgtype.Int8
			before, createdAt pgtype.Timestamptz
		)
		if err := rows.Scan(&purgedXID, &purged.seq, &exists, &evXID, &evSeq, &typ, &subj, &before, &createdAt); err != nil {
			return nil, "", mapErr(err)
		}
		if purged, err = parsePosition(purgedXID, purged.seq); err != nil {
			return nil, "", err
		}
		if !evXID.Valid {
			continue // no event: the LEFT JOIN's one row
		}
		if next, err = parsePosition(evXID.String, evSeq.Int64); err != nil {
			return nil, "", err
		}
		events = append(events, oauth.RevocationEvent{Cursor: next.String(), Type: oauth.RevocationType(typ.String),
			ID: subj.String, Before: goTime(before), At: goTime(createdAt)})
	}
	if err := rows.Err(); err != nil {
		return nil, "", mapErr(err)
	}
	// Below the purge mark, events the reader had not seen are gone; above
	// it, a cursor is the position of an event still kept.
	if c.less(purged) || (purged.less(c) && !exists) {
		return nil, "", errCursor
	}
	return events, next.String(), nil
}

// RevocationCursor returns the cursor after the last final event (see
// RevocationEvents). Errors: oauth.ErrUnavailable.
func (s *Store) RevocationCursor(ctx context.Context) (string, error) {
	pool, err := s.reader()
	if err != nil {
		return "", err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var (
		purgedXID string
		purgedSeq int64
		lastXID   pgtype.Text
		lastSeq   pgtype.Int8
	)
	if err := pool.QueryRow(ctx, lastEventSQL).Scan(&purgedXID, &purgedSeq, &lastXID, &lastSeq); err != nil {
		return "", mapErr(err)
	}
	p, err := parsePosition(purgedXID, purgedSeq)
	if err != nil {
		return "", err
	}
	if lastXID.Valid {
		last, err := parsePosition(lastXID.String, lastSeq.Int64)
		if err != nil {
			return "", err
		}
		if p.less(last) {
			p = last
		}
	}
	return p.String(), nil
}

// idleInTransactionTimeout is the idle_in_transaction_session_timeout the
// pool's sessions get when the DSN sets none: a session whose node stopped
// talking in the middle of a transaction is ended by the server, so its
// transaction does not hold the revocation feed back (nor its locks).
func idleInTransactionTimeout(storeTimeout time.Duration) string {
	return strconv.FormatInt((2*storeTimeout + 5*time.Second).Milliseconds(), 10)
}
