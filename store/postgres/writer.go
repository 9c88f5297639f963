package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokengate/tokengate/oauth"
)

// The group-commit transaction is pipelined. The batcher calls the
// Backend methods one after another and each would cost a round trip
// (BEGIN, and SAVEPOINT/RELEASE around every operation); instead:
//
//   - Begin only takes a pooled connection; BEGIN is sent with the
//     transaction's first statements.
//   - Writes whose outcome the operation does not need (token inserts,
//     revocations) are deferred: queued, and sent in front of the next
//     statement that needs an answer, or in front of COMMIT. Consecutive
//     token inserts merge into one multi-row INSERT. A batch of
//     CreateTokens is thus one round trip: BEGIN, INSERT, COMMIT.
//   - There are no savepoints. Every operation is written so that when it
//     fails it has written nothing (single statements that cannot fail
//     halfway, such as INSERT ... ON CONFLICT ... RETURNING, and
//     conditional UPDATEs whose row count decides the result), so there is
//     nothing to undo. A statement error other than those is a failure of
//     the transaction (PostgreSQL aborts it anyway): the batch fails and
//     the batcher retries each operation alone, where Rollback undoes it.
//     That is also how a deferred insert's ID conflict reaches its caller:
//     retried alone, its COMMIT fails with oauth.ErrAlreadyExists.
//
// Savepoints would also cost a subtransaction per operation, and more than
// 64 in one transaction overflow PostgreSQL's per-backend subtransaction
// cache, which slows every other session's snapshots.

// downHold is how long Begin keeps failing at once after failing to get a
// connection. The batcher retries the operations of a failed batch one by
// one, each with its own Begin; without this, a database that stopped
// answering would cost each of them a connect timeout in turn.
const downHold = 250 * time.Millisecond

// writer is the batcher's Backend. Its methods run on the batcher's writer
// goroutine only.
type writer struct {
	pool      *pgxpool.Pool
	downUntil time.Time
	downErr   error
}

// wtx is one group-commit transaction on one pooled connection.
type wtx struct {
	conn  *pgxpool.Conn
	begun bool // BEGIN has been sent
	queue []deferred
	// err is set once a statement failed or the connection broke: the
	// transaction cannot commit, and every later call returns err.
	err error
	// opWrote records that the running operation has written something,
	// which a failing operation must not have (see RollbackToSavepoint).
	opWrote bool
}

// deferred is a queued statement, or (rows != nil) a merged token insert.
type deferred struct {
	sql  string
	args []any
	rows *tokenRows
}

const beginSQL = `BEGIN ISOLATION LEVEL READ COMMITTED`

var (
	errRolledBack = fmt.Errorf("postgres: transaction rolled back at COMMIT: %w", oauth.ErrUnavailable)
	errNoUndo     = errors.New("postgres: an operation failed after writing; retrying the batch op by op")
)

// Begin takes a connection for the transaction.
func (w *writer) Begin(ctx context.Context) (*wtx, error) {
	if time.Now().Before(w.downUntil) {
		return nil, w.downErr
	}
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		err = mapErr(err)
		if errors.Is(err, oauth.ErrUnavailable) {
			w.downUntil, w.downErr = time.Now().Add(downHold), err
		}
		return nil, err
	}
	w.downUntil, w.downErr = time.Time{}, nil
	return &wtx{conn: conn}, nil
}

// Commit sends the deferred statements and COMMIT in one round trip and
// returns the connection to the pool.
func (w *writer) Commit(ctx context.Context, t *wtx) error {
	if t.err != nil {
		return t.err
	}
	if t.begun || len(t.queue) > 0 {
		var tag pgconn.CommandTag
		err := t.roundTrip(ctx, func(b *pgx.Batch) {
			b.Queue(`COMMIT`).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
		})
		if err != nil {
			return err
		}
		// COMMIT of a failed transaction answers ROLLBACK, not an error.
		if tag.String() != "COMMIT" {
			t.err = errRolledBack
			return t.err
		}
		t.begun = false
	}
	t.release()
	return nil
}

// Rollback abandons the transaction; it is also called after a failed
// Commit. A connection left inside a transaction (ROLLBACK failed) is
// destroyed by the pool on release rather than reused.
func (w *writer) Rollback(ctx context.Context, t *wtx) error {
	if t.conn == nil {
		return nil
	}
	defer t.release()
	t.queue = nil
	if !t.begun || t.conn.Conn().IsClosed() {
		return nil
	}
	_, err := t.conn.Exec(ctx, `ROLLBACK`)
	return mapErr(err)
}

// Savepoint marks the start of an operation; nothing is sent.
func (w *writer) Savepoint(_ context.Context, t *wtx) error {
	t.opWrote = false
	return t.err
}

// ReleaseSavepoint keeps the operation's writes, which need nothing.
func (w *writer) ReleaseSavepoint(_ context.Context, t *wtx) error {
	return t.err
}

// RollbackToSavepoint is called for an operation that failed. Operations
// fail only before writing, so there is nothing to undo; if the
// transaction itself failed, or an operation broke that rule, the error
// makes the batcher retry every operation alone.
func (w *writer) RollbackToSavepoint(_ context.Context, t *wtx) error {
	if t.err != nil {
		return t.err
	}
	if t.opWrote {
		return errNoUndo
	}
	return nil
}

func (t *wtx) release() {
	if t.conn != nil {
		t.conn.Release()
		t.conn = nil
	}
}

// exec queues a statement whose outcome the operation does not need.
func (t *wtx) exec(sql string, args ...any) {
	t.opWrote = true
	t.queue = append(t.queue, deferred{sql: sql, args: args})
}

// insert queues the insertion of rows, merging it with a token insert
// queued just before.
func (t *wtx) insert(rows *tokenRows) {
	if rows.len() == 0 {
		return
	}
	t.opWrote = true
	if n := len(t.queue); n > 0 && t.queue[n-1].rows != nil {
		t.queue[n-1].rows.append(rows)
		return
	}
	merged := &tokenRows{}
	merged.append(rows) // a copy: the operation may run again, on its own
	t.queue = append(t.queue, deferred{rows: merged})
}

// query runs sql after the deferred statements, in the same round trip,
// and calls scan for each row it returns.
func (t *wtx) query(ctx context.Context, scan func(pgx.Rows) error, sql string, args ...any) error {
	return t.roundTrip(ctx, func(b *pgx.Batch) {
		b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				if err := scan(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	})
}

// roundTrip sends BEGIN (the first time), the deferred statements and
// whatever tail queues, as one pipelined batch, and reads all results.
func (t *wtx) roundTrip(ctx context.Context, tail func(*pgx.Batch)) error {
	if t.err != nil {
		return t.err
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(t.queue)+2)}
	if !t.begun {
		b.Queue(beginSQL)
		t.begun = true
	}
	for _, d := range t.queue {
		if d.rows != nil {
			b.Queue(insertTokens, d.rows.args()...)
		} else {
			b.Queue(d.sql, d.args...)
		}
	}
	clear(t.queue)
	t.queue = t.queue[:0]
	tail(b)
	if err := t.conn.SendBatch(ctx, b).Close(); err != nil {
		t.err = mapErr(err)
		return t.err
	}
	return nil
}
