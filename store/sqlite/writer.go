package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// writer owns the store's single write connection and its prepared
// statements. It is the batcher's transaction type: the batcher's writer
// goroutine is its only user, so it needs no locking.
type writer struct {
	conn *sql.Conn
	lk   *fileLock
	busy time.Duration // how long Begin waits for the lock file

	begin, commit, rollback           *sql.Stmt
	savepoint, release, rollbackTo    *sql.Stmt
	insertToken, insertToken2         *sql.Stmt
	tokenState                        *sql.Stmt
	markRotated, revokeID, revokeFam  *sql.Stmt
	upsertRevoked, useNonce, bumpRev  *sql.Stmt
	deleteNonce                       *sql.Stmt
	insertEv, eventsOfID, eventsOfFam *sql.Stmt
	stmts                             []*sql.Stmt
}

const tokenColumns = `id, kind, format, client_id, subject, scopes, family_id, issued_at, expires_at, revoked_at, rotated_at`

const (
	selectToken = `SELECT ` + tokenColumns + ` FROM tokens`
	tokenValues = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertToken = `INSERT INTO tokens (` + tokenColumns + `) VALUES ` + tokenValues
)

// insertTokensSQL inserts n rows in one statement.
func insertTokensSQL(n int) string {
	return insertToken + strings.Repeat(", "+tokenValues, n-1)
}

func newWriter(ctx context.Context, db *sql.DB, lk *fileLock, busy time.Duration) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	w := &writer{conn: conn, lk: lk, busy: busy}
	prep := []struct {
		dst *(*sql.Stmt)
		sql string
	}{
		{&w.begin, `BEGIN IMMEDIATE`},
		{&w.commit, `COMMIT`},
		{&w.rollback, `ROLLBACK`},
		{&w.savepoint, `SAVEPOINT op`},
		{&w.release, `RELEASE op`},
		{&w.rollbackTo, `ROLLBACK TO op`},
		{&w.insertToken, insertToken},
		{&w.insertToken2, insertTokensSQL(2)},
		// cut: issued before its client's or its user's tokens_not_before.
		{&w.tokenState, `SELECT t.kind, t.family_id, t.expires_at, t.revoked_at, t.rotated_at,
			EXISTS (SELECT 1 FROM clients c WHERE c.id = t.client_id AND c.tokens_not_before > t.issued_at)
			OR EXISTS (SELECT 1 FROM users u WHERE u.username = t.subject AND t.subject <> t.client_id AND u.tokens_not_before > t.issued_at)
			FROM tokens t WHERE t.id = ?`},
		{&w.markRotated, `UPDATE tokens SET rotated_at = ? WHERE id = ?`},
		{&w.revokeID, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`},
		{&w.revokeFam, `UPDATE tokens SET revoked_at = ? WHERE family_id = ? AND family_id <> '' AND revoked_at IS NULL`},
		{&w.upsertRevoked, insertToken + ` ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at WHERE tokens.revoked_at IS NULL`},
		{&w.useNonce, `INSERT INTO nonces (key, expires_at) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at <= ?`},
		{&w.bumpRev, `UPDATE revision SET n = n + 1 WHERE id = 1`},
		{&w.deleteNonce, `DELETE FROM nonces WHERE key = ?`},
		{&w.insertEv, insertEventSQL},
		{&w.eventsOfID, eventsOfIDSQL},
		{&w.eventsOfFam, eventsOfFamilySQL},
	}
	for _, p := range prep {
		st, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, mapErr(err)
		}
		*p.dst = st
		w.stmts = append(w.stmts, st)
	}
	return w, nil
}

func (w *writer) close() error {
	var errs []error
	for _, st := range w.stmts {
		errs = append(errs, st.Close())
	}
	errs = append(errs, w.conn.Close())
	return errors.Join(errs...)
}

// Begin starts BEGIN IMMEDIATE, which takes the database's write lock at
// once (waiting up to busy_timeout for another process) so the
// transaction cannot fail later for lack of it. The lock file is held
// while waiting, so that processes take turns (see fileLock).
func (w *writer) Begin(ctx context.Context) (*writer, error) {
	if err := w.lk.lock(w.busy); err != nil {
		return nil, err
	}
	defer w.lk.unlock()
	_, err := w.begin.ExecContext(ctx)
	if err != nil && strings.Contains(err.Error(), "within a transaction") {
		// A previous ROLLBACK failed and left the connection in a
		// transaction; finish it so the writer is not stuck forever.
		_, _ = w.rollback.ExecContext(ctx)
		_, err = w.begin.ExecContext(ctx)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	return w, nil
}

// Commit commits; with synchronous=FULL the WAL is synced before it returns.
func (w *writer) Commit(ctx context.Context, _ *writer) error {
	_, err := w.commit.ExecContext(ctx)
	return mapErr(err)
}

// Rollback rolls back; SQLite may already have rolled back after an I/O
// error, and then this fails harmlessly.
func (w *writer) Rollback(ctx context.Context, _ *writer) error {
	_, err := w.rollback.ExecContext(ctx)
	return mapErr(err)
}

// Savepoint starts the savepoint of one operation.
func (w *writer) Savepoint(ctx context.Context, _ *writer) error {
	_, err := w.savepoint.ExecContext(ctx)
	return mapErr(err)
}

// ReleaseSavepoint keeps the operation's writes.
func (w *writer) ReleaseSavepoint(ctx context.Context, _ *writer) error {
	_, err := w.release.ExecContext(ctx)
	return mapErr(err)
}

// RollbackToSavepoint undoes the operation's writes. ROLLBACK TO leaves
// the savepoint open, so it is released too.
func (w *writer) RollbackToSavepoint(ctx context.Context, _ *writer) error {
	if _, err := w.rollbackTo.ExecContext(ctx); err != nil {
		return mapErr(err)
	}
	_, err := w.release.ExecContext(ctx)
	return mapErr(err)
}

// bumpRevision marks a change of clients, users or signing keys.
func (w *writer) bumpRevision(ctx context.Context) error {
	_, err := w.bumpRev.ExecContext(ctx)
	return mapErr(err)
}

// adminDone ends the write of an admin object: it appends the audit
// events of the write (oauth.WithAudit) and bumps the revision.
func (w *writer) adminDone(ctx context.Context, evs []*oauth.AuditEvent) error {
	if err := w.appendAudit(ctx, evs); err != nil {
		return err
	}
	return w.bumpRevision(ctx)
}

// appendAudit links evs to the chain's head and inserts them, moving the
// head. The caller holds the write transaction, which serializes appends
// (one writer connection; BEGIN IMMEDIATE across processes).
func (w *writer) appendAudit(ctx context.Context, evs []*oauth.AuditEvent) error {
	if len(evs) == 0 {
		return nil
	}
	var (
		seq  int64
		hash []byte
	)
	if err := w.conn.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return mapErr(err)
	}
	for _, e := range evs {
		if e == nil {
			return errNil
		}
		e.Link(seq, hash)
		args := auditArgs(e)
		if _, err := w.conn.ExecContext(ctx, insertAuditSQL, args...); err != nil {
			return mapErr(err)
		}
		seq, hash = e.Seq, e.Hash
	}
	_, err := w.conn.ExecContext(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, seq, hash)
	return mapErr(err)
}
