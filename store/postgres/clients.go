package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// adminTx runs fn in its own transaction for a client, user or signing-key
// change. It first bumps the revision: the change and the bump commit
// together, and the revision row's lock serializes such changes across
// nodes (so two nodes rotating signing keys at once cannot both find the
// same current key). After fn it appends ctx's audit events
// (oauth.WithAudit) in the same transaction.
func (s *Store) adminTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return s.auditedTx(ctx, true, fn)
}

// auditedTx runs fn in its own transaction, bumping the revision first
// if bump is set, and appends ctx's audit events after fn.
func (s *Store) auditedTx(ctx context.Context, bump bool, fn func(ctx context.Context, tx pgx.Tx) error) error {
	evs := oauth.AuditFrom(ctx)
	pool, err := s.reader()
	if err != nil {
		return err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if bump {
			if _, err := tx.Exec(ctx, `UPDATE revision SET n = n + 1 WHERE id = 1`); err != nil {
				return err
			}
		}
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return appendAudit(ctx, tx, evs)
	})
	return mapErr(err)
}

// CreateClient stores a new client. Errors: oauth.ErrAlreadyExists (the
// ID, or the effective partner ID, is taken).
func (s *Store) CreateClient(ctx context.Context, c *oauth.Client) error {
	if c == nil {
		return errNil
	}
	args := clientArgs(c)
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES (`+placeholders(len(args))+`)`, args...)
		return err
	})
}

// GetClient returns a client by ID. Errors: oauth.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (*oauth.Client, error) {
	return s.getClientWhere(ctx, `id = $1`, id)
}

// GetClientByPartnerID returns the client whose effective partner ID
// (PartnerID, or its ID when it has none) is partnerID, through the
// clients_partner_id index. Errors: oauth.ErrNotFound.
func (s *Store) GetClientByPartnerID(ctx context.Context, partnerID string) (*oauth.Client, error) {
	return s.getClientWhere(ctx, partnerIDExpr+` = $1`, partnerID)
}

// getClientWhere reads the client matching where (with one argument).
func (s *Store) getClientWhere(ctx context.Context, where, arg string) (*oauth.Client, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	c, err := scanClient(pool.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE `+where, arg))
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) || unstorableKey(err) {
			// A miss decodes a typical record too: see codec.TypicalClient.
			scanClient(typicalClientRow)
		}
		return nil, notFound(err, "client")
	}
	return c, nil
}

// typicalClientRow is codec.TypicalClient's columns as a pgx.Row.
var typicalClientRow = columnsRow(clientArgs(codec.TypicalClient()))

// columnsRow scans fixed column values into the types scanClient uses,
// copying as pgx does.
type columnsRow []any

func (r columnsRow) Scan(dest ...any) error {
	if len(dest) != len(r) {
		return fmt.Errorf("postgres: %d columns scanned into %d values", len(r), len(dest))
	}
	for i, d := range dest {
		switch d := d.(type) {
		case *string:
			s, _ := r[i].(string)
			*d = strings.Clone(s)
		case *[]byte:
			b, _ := r[i].([]byte)
			*d = bytes.Clone(b)
		case *[]string:
			l, _ := r[i].([]string)
			*d = slices.Clone(l)
		case *int64:
			*d, _ = r[i].(int64)
		case *bool:
			*d, _ = r[i].(bool)
		case *pgtype.Timestamptz:
			*d, _ = r[i].(pgtype.Timestamptz)
		default:
			return fmt.Errorf("postgres: cannot scan into %T", d)
		}
	}
	return nil
}

// ListClients returns all clients ordered by ID (byte order).
func (s *Store) ListClients(ctx context.Context) ([]*oauth.Client, error) {
	return list(ctx, s, `SELECT `+clientColumns+` FROM clients ORDER BY id`, scanClient)
}

// list runs a query on the pool and scans every row.
func list[T any](ctx context.Context, s *Store, sql string, scan func(pgx.Row) (*T, error), args ...any) ([]*T, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, v)
	}
	return out, mapErr(rows.Err())
}

// UpdateClient reads the client with its row locked, applies update and
// writes it back in one transaction, so no concurrent update (from this
// or another node) is lost. update runs while the lock is held: it must
// be quick. It is called once; it must not change the ID.
// Errors: oauth.ErrNotFound, oauth.ErrAlreadyExists (the effective partner
// ID is another client's), or update's error (nothing is written then).
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*oauth.Client) error) error {
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		c, err := scanClient(tx.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return notFound(err, "client "+id)
		}
		old := c.TokensNotBefore
		if err := update(c); err != nil {
			return err
		}
		if c.ID != id {
			return fmt.Errorf("postgres: UpdateClient: update changed the client ID from %q to %q", id, c.ID)
		}
		if _, err = tx.Exec(ctx, `UPDATE clients SET `+clientSet+` WHERE id = $1`, clientArgs(c)...); err != nil {
			return err
		}
		if codec.NotBeforeChanged(old, c.TokensNotBefore) {
			return s.insertEvent(ctx, tx, oauth.RevokedClient, id, dbTime(c.TokensNotBefore))
		}
		return nil
	})
}

// DeleteClient removes a client; its tokens stay. It records a client
// revocation event whose Before is the deletion time (by the store's
// clock). Errors: oauth.ErrNotFound.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: client %s: %w", id, oauth.ErrNotFound)
		}
		// No later token of it can exist: everything before now is revoked.
		return s.insertEvent(ctx, tx, oauth.RevokedClient, id, pgtype.Timestamptz{})
	})
}

// CreateUser stores a new user. Errors: oauth.ErrAlreadyExists.
func (s *Store) CreateUser(ctx context.Context, u *oauth.User) error {
	if u == nil {
		return errNil
	}
	args := userArgs(u)
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (`+userColumns+`) VALUES (`+placeholders(len(args))+`)`, args...)
		return err
	})
}

// GetUser returns a user by username. Errors: oauth.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, username string) (*oauth.User, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	u, err := scanUser(pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, username))
	if err != nil {
		return nil, notFound(err, "user "+username)
	}
	return u, nil
}

// ListUsers returns all users ordered by username (byte order).
func (s *Store) ListUsers(ctx context.Context) ([]*oauth.User, error) {
	return list(ctx, s, `SELECT `+userColumns+` FROM users ORDER BY username`, scanUser)
}

// UpdateUser is UpdateClient for users, with the same caveats about
// update. Errors: oauth.ErrNotFound, or update's error.
func (s *Store) UpdateUser(ctx context.Context, username string, update func(*oauth.User) error) error {
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1 FOR UPDATE`, username))
		if err != nil {
			return notFound(err, "user "+username)
		}
		old := u.TokensNotBefore
		if err := update(u); err != nil {
			return err
		}
		if u.Username != username {
			return fmt.Errorf("postgres: UpdateUser: update changed the username from %q to %q", username, u.Username)
		}
		if _, err = tx.Exec(ctx, `UPDATE users SET `+userSet+` WHERE username = $1`, userArgs(u)...); err != nil {
			return err
		}
		if codec.NotBeforeChanged(old, u.TokensNotBefore) {
			return s.insertEvent(ctx, tx, oauth.RevokedUser, username, dbTime(u.TokensNotBefore))
		}
		return nil
	})
}
