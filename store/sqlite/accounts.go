package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// CreateClients stores new clients all or none, in one write operation.
// Errors: oauth.ErrAlreadyExists (an ID or effective partner ID is taken
// or given twice; nothing is stored).
func (s *Store) CreateClients(ctx context.Context, cs ...*oauth.Client) error {
	evs := oauth.AuditFrom(ctx)
	rows := make([][]any, len(cs))
	for i, c := range cs {
		if c == nil {
			return errNil
		}
		rows[i] = clientArgs(c)
	}
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		for _, args := range rows {
			if _, err := w.conn.ExecContext(ctx, `INSERT INTO clients (`+clientColumns+`)
				VALUES (`+placeholders(len(args))+`)`, args...); err != nil {
				return mapErr(err)
			}
		}
		return w.adminDone(ctx, evs)
	})
}

// CreateAccount stores a new account. Errors: oauth.ErrAlreadyExists (the
// ID or the email's key is taken).
func (s *Store) CreateAccount(ctx context.Context, a *oauth.Account) error {
	evs := oauth.AuditFrom(ctx)
	if a == nil {
		return errNil
	}
	args := accountArgs(a)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		if _, err := w.conn.ExecContext(ctx, `INSERT INTO accounts (`+accountColumns+`)
			VALUES (`+placeholders(len(args))+`)`, args...); err != nil {
			return mapErr(err)
		}
		return w.appendAudit(ctx, evs)
	})
}

// GetAccount returns an account by ID. Errors: oauth.ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, id string) (*oauth.Account, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	return getAccountWhere(ctx, db, `id = ?`, id)
}

// GetAccountByEmail returns the account whose email key is
// oauth.EmailKey(email). Errors: oauth.ErrNotFound.
func (s *Store) GetAccountByEmail(ctx context.Context, email string) (*oauth.Account, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	return getAccountWhere(ctx, db, `email_key = ?`, oauth.EmailKey(email))
}

func getAccountWhere(ctx context.Context, q queryer, where, arg string) (*oauth.Account, error) {
	a, err := scanAccount(q.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE `+where, arg))
	if err != nil {
		return nil, notFound(err, "account")
	}
	return a, nil
}

// ListAccounts returns all accounts ordered by ID (byte order).
func (s *Store) ListAccounts(ctx context.Context) ([]*oauth.Account, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY id`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []*oauth.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err())
}

// UpdateAccount is UpdateClient for accounts, with the same caveats about
// update. Errors: oauth.ErrNotFound, oauth.ErrAlreadyExists (the email's
// key is another account's), or update's error.
func (s *Store) UpdateAccount(ctx context.Context, id string, update func(*oauth.Account) error) error {
	evs := oauth.AuditFrom(ctx)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		a, err := getAccountWhere(ctx, w.conn, `id = ?`, id)
		if err != nil {
			return err
		}
		if err := update(a); err != nil {
			return err
		}
		if a.ID != id {
			return fmt.Errorf("sqlite: UpdateAccount: update changed the account ID from %q to %q", id, a.ID)
		}
		args := append(accountArgs(a)[1:], id)
		if _, err := w.conn.ExecContext(ctx, `UPDATE accounts SET `+accountSet+` WHERE id = ?`, args...); err != nil {
			return mapErr(err)
		}
		return w.appendAudit(ctx, evs)
	})
}

var insertAuditSQL = `INSERT INTO audit_events (` + auditColumns + `) VALUES (` + placeholders(14) + `)`

// AppendAudit appends events to the audit trail in one write operation.
func (s *Store) AppendAudit(ctx context.Context, events ...*oauth.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		return w.appendAudit(ctx, events)
	})
}

// AuditEvents returns the events q selects.
func (s *Store) AuditEvents(ctx context.Context, q oauth.AuditQuery) ([]*oauth.AuditEvent, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if q.After > 0 {
		add(`seq > ?`, q.After)
	}
	if q.Before > 0 {
		add(`seq < ?`, q.Before)
	}
	if !q.Since.IsZero() {
		add(`time >= ?`, q.Since.UnixMicro())
	}
	if !q.Until.IsZero() {
		add(`time < ?`, q.Until.UnixMicro())
	}
	if q.ObjectType != "" {
		add(`object_type = ?`, q.ObjectType)
	}
	if q.ObjectID != "" {
		add(`object_id = ?`, q.ObjectID)
	}
	if q.Account != "" {
		add(`account = ?`, q.Account)
	}
	query := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	if q.Desc {
		query += ` ORDER BY seq DESC`
	} else {
		query += ` ORDER BY seq`
	}
	query += ` LIMIT ?`
	args = append(args, q.EffectiveLimit())
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []*oauth.AuditEvent
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// AuditHead returns the chain's head as recorded in audit_head.
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	db, err := s.reader()
	if err != nil {
		return 0, nil, err
	}
	var (
		seq  int64
		hash []byte
	)
	if err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return 0, nil, mapErr(err)
	}
	return seq, goBytes(hash), nil
}

// Backup writes a consistent copy of the database to path with VACUUM
// INTO, on a connection of its own to the store's database (the read
// pool's connections are query-only, which VACUUM INTO refuses): it reads
// one snapshot, which WAL mode lets the writer go on committing beside,
// and writes a compacted database file, not the live file and its WAL.
// path must not exist; it is created with mode 0600 first (VACUUM INTO
// accepts an empty file). Errors: the file exists or cannot be created;
// the database's.
func (s *Store) Backup(ctx context.Context, path string) error {
	if s.closed.Load() {
		return errClosed
	}
	if strings.ContainsRune(path, 0) {
		return fmt.Errorf("sqlite: backup: invalid path")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	db, err := sql.Open("sqlite", backupDSN(s.path, s.busyTimeout))
	if err == nil {
		db.SetMaxOpenConns(1)
		_, err = db.ExecContext(ctx, `VACUUM INTO ?`, path)
		err = errors.Join(err, db.Close())
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("sqlite: backup: %w", mapErr(err))
	}
	return nil
}

// backupDSN is a connection that only reads (Backup runs no write) but,
// unlike the read pool's, may write the VACUUM INTO target.
func backupDSN(path string, busy time.Duration) string {
	return path + "?" + fmt.Sprintf("_pragma=busy_timeout(%d)", busy.Milliseconds())
}
