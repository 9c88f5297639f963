package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/oauth"
)

// CreateClients stores new clients all or none, in one transaction.
// Errors: oauth.ErrAlreadyExists (an ID or effective partner ID is taken
// or given twice; nothing is stored).
func (s *Store) CreateClients(ctx context.Context, cs ...*oauth.Client) error {
	rows := make([][]any, len(cs))
	for i, c := range cs {
		if c == nil {
			return errNil
		}
		rows[i] = clientArgs(c)
	}
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for _, args := range rows {
			if _, err := tx.Exec(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES (`+placeholders(len(args))+`)`, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// CreateAccount stores a new account. Errors: oauth.ErrAlreadyExists (the
// ID or the email's key is taken).
func (s *Store) CreateAccount(ctx context.Context, a *oauth.Account) error {
	if a == nil {
		return errNil
	}
	args := accountArgs(a)
	return s.auditedTx(ctx, false, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO accounts (`+accountColumns+`) VALUES (`+placeholders(len(args))+`)`, args...)
		return err
	})
}

// GetAccount returns an account by ID. Errors: oauth.ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, id string) (*oauth.Account, error) {
	return s.getAccountWhere(ctx, `id = $1`, id)
}

// GetAccountByEmail returns the account whose email key is
// oauth.EmailKey(email). Errors: oauth.ErrNotFound.
func (s *Store) GetAccountByEmail(ctx context.Context, email string) (*oauth.Account, error) {
	return s.getAccountWhere(ctx, `email_key = $1`, oauth.EmailKey(email))
}

func (s *Store) getAccountWhere(ctx context.Context, where, arg string) (*oauth.Account, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	a, err := scanAccount(pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE `+where, arg))
	if err != nil {
		return nil, notFound(err, "account")
	}
	return a, nil
}

// ListAccounts returns all accounts ordered by ID (byte order).
func (s *Store) ListAccounts(ctx context.Context) ([]*oauth.Account, error) {
	return list(ctx, s, `SELECT `+accountColumns+` FROM accounts ORDER BY id`, scanAccount)
}

// UpdateAccount reads the account with its row locked, applies update and
// writes it back in one transaction. Errors: oauth.ErrNotFound,
// oauth.ErrAlreadyExists (the email's key is another account's), or
// update's error (nothing is written then).
func (s *Store) UpdateAccount(ctx context.Context, id string, update func(*oauth.Account) error) error {
	return s.auditedTx(ctx, false, func(ctx context.Context, tx pgx.Tx) error {
		a, err := scanAccount(tx.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return notFound(err, "account")
		}
		if err := update(a); err != nil {
			return err
		}
		if a.ID != id {
			return fmt.Errorf("postgres: UpdateAccount: update changed the account ID from %q to %q", id, a.ID)
		}
		_, err = tx.Exec(ctx, `UPDATE accounts SET `+accountSet+` WHERE id = $1`, accountArgs(a)...)
		return err
	})
}

// appendAudit links evs to the chain's head, locked FOR UPDATE for the
// rest of tx (so appends from every node are serialized), inserts them and
// moves the head.
func appendAudit(ctx context.Context, tx pgx.Tx, evs []*oauth.AuditEvent) error {
	if len(evs) == 0 {
		return nil
	}
	var (
		seq  int64
		hash []byte
	)
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&seq, &hash); err != nil {
		return err
	}
	for _, e := range evs {
		if e == nil {
			return errNil
		}
		e.Link(seq, hash)
		if _, err := tx.Exec(ctx, insertAuditSQL, auditArgs(e)...); err != nil {
			return err
		}
		seq, hash = e.Seq, e.Hash
	}
	_, err := tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, seq, hash)
	return err
}

var insertAuditSQL = `INSERT INTO audit_events (` + auditColumns + `) VALUES (` + placeholders(14) + `)`

// AppendAudit appends events to the audit trail in one transaction.
func (s *Store) AppendAudit(ctx context.Context, events ...*oauth.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.auditedTx(oauth.WithAudit(ctx, events...), false, func(context.Context, pgx.Tx) error { return nil })
}

// AuditEvents returns the events q selects.
func (s *Store) AuditEvents(ctx context.Context, q oauth.AuditQuery) ([]*oauth.AuditEvent, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1))
	}
	if q.After > 0 {
		add(`seq > ?`, q.After)
	}
	if q.Before > 0 {
		add(`seq < ?`, q.Before)
	}
	if !q.Since.IsZero() {
		add(`time >= ?`, q.Since)
	}
	if !q.Until.IsZero() {
		add(`time < ?`, q.Until)
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
	args = append(args, q.EffectiveLimit())
	query += ` LIMIT $` + strconv.Itoa(len(args))
	return list(ctx, s, query, scanAudit, args...)
}

// AuditHead returns the chain's head as recorded in audit_head.
func (s *Store) AuditHead(ctx context.Context) (int64, []byte, error) {
	pool, err := s.reader()
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var (
		seq  int64
		hash []byte
	)
	if err := pool.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return 0, nil, mapErr(err)
	}
	return seq, goBytes(hash), nil
}

// errBackup says what to use instead of Backup.
var errBackup = fmt.Errorf("postgres: the store cannot copy a PostgreSQL database; back it up with pg_dump "+
	"(e.g. pg_dump --format=custom --file=tokengate.dump DBNAME) or your provider's snapshots: %w", errors.ErrUnsupported)

// Backup is not supported on PostgreSQL: errors.ErrUnsupported, with a
// message pointing to pg_dump.
func (s *Store) Backup(context.Context, string) error { return errBackup }
