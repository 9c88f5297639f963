package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

var errNil = errors.New("sqlite: nil argument")

// CreateClient stores a new client. Errors: oauth.ErrAlreadyExists (the
// ID, or the effective partner ID, is taken).
func (s *Store) CreateClient(ctx context.Context, c *oauth.Client) error {
	evs := oauth.AuditFrom(ctx)
	if c == nil {
		return errNil
	}
	args := clientArgs(c)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		if _, err := w.conn.ExecContext(ctx, `INSERT INTO clients (`+clientColumns+`)
			VALUES (`+placeholders(len(args))+`)`, args...); err != nil {
			return mapErr(err)
		}
		return w.adminDone(ctx, evs)
	})
}

// GetClient returns a client by ID. Errors: oauth.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (*oauth.Client, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	return getClient(ctx, db, id)
}

// GetClientByPartnerID returns the client whose effective partner ID
// (PartnerID, or its ID when it has none) is partnerID, through the
// clients_partner_id index. Errors: oauth.ErrNotFound.
func (s *Store) GetClientByPartnerID(ctx context.Context, partnerID string) (*oauth.Client, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	return getClientWhere(ctx, db, partnerIDExpr+` = ?`, partnerID)
}

// ListClients returns all clients ordered by ID (byte order).
func (s *Store) ListClients(ctx context.Context) ([]*oauth.Client, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []*oauth.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, c)
	}
	return out, mapErr(rows.Err())
}

// UpdateClient reads the client, applies update and writes it back, all in
// one write transaction, so no concurrent update (from this or another
// process) is lost. update runs on the store's writer goroutine while the
// database write lock is held: it must be quick and must not call the
// Store's write methods (that would deadlock). It may be called more than
// once if the transaction has to be retried. update must not change the ID.
// Errors: oauth.ErrNotFound, oauth.ErrAlreadyExists (the effective
// partner ID is another client's), or update's error (nothing is written
// then).
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*oauth.Client) error) error {
	evs := oauth.AuditFrom(ctx)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		c, err := getClient(ctx, w.conn, id)
		if err != nil {
			return err
		}
		old := c.TokensNotBefore
		if err := update(c); err != nil {
			return err
		}
		if c.ID != id {
			return fmt.Errorf("sqlite: UpdateClient: update changed the client ID from %q to %q", id, c.ID)
		}
		args := append(clientArgs(c)[1:], id)
		if _, err := w.conn.ExecContext(ctx, `UPDATE clients SET `+clientSet+` WHERE id = ?`, args...); err != nil {
			return mapErr(err)
		}
		if codec.NotBeforeChanged(old, c.TokensNotBefore) {
			if err := w.insertEvent(ctx, oauth.RevokedClient, id, c.TokensNotBefore, s.now().UnixMicro()); err != nil {
				return err
			}
		}
		return w.adminDone(ctx, evs)
	})
}

// DeleteClient removes a client; its tokens stay. It records a client
// revocation event whose Before is the deletion time (by the store's
// clock). Errors: oauth.ErrNotFound.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	evs := oauth.AuditFrom(ctx)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		res, err := w.conn.ExecContext(ctx, `DELETE FROM clients WHERE id = ?`, id)
		if err != nil {
			return mapErr(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return mapErr(err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: client %s: %w", id, oauth.ErrNotFound)
		}
		// No later token of it can exist: everything before now is revoked.
		now := s.now()
		if err := w.insertEvent(ctx, oauth.RevokedClient, id, now, now.UnixMicro()); err != nil {
			return err
		}
		return w.adminDone(ctx, evs)
	})
}

// CreateUser stores a new user. Errors: oauth.ErrAlreadyExists.
func (s *Store) CreateUser(ctx context.Context, u *oauth.User) error {
	evs := oauth.AuditFrom(ctx)
	if u == nil {
		return errNil
	}
	args := userArgs(u)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		if _, err := w.conn.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (`+placeholders(len(args))+`)`, args...); err != nil {
			return mapErr(err)
		}
		return w.adminDone(ctx, evs)
	})
}

// GetUser returns a user by username. Errors: oauth.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, username string) (*oauth.User, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	return getUser(ctx, db, username)
}

// ListUsers returns all users ordered by username (byte order).
func (s *Store) ListUsers(ctx context.Context) ([]*oauth.User, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []*oauth.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, u)
	}
	return out, mapErr(rows.Err())
}

// UpdateUser is UpdateClient for users, with the same caveats about
// update. Errors: oauth.ErrNotFound, or update's error.
func (s *Store) UpdateUser(ctx context.Context, username string, update func(*oauth.User) error) error {
	evs := oauth.AuditFrom(ctx)
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		u, err := getUser(ctx, w.conn, username)
		if err != nil {
			return err
		}
		old := u.TokensNotBefore
		if err := update(u); err != nil {
			return err
		}
		if u.Username != username {
			return fmt.Errorf("sqlite: UpdateUser: update changed the username from %q to %q", username, u.Username)
		}
		args := append(userArgs(u)[1:], username)
		if _, err := w.conn.ExecContext(ctx, `UPDATE users SET `+userSet+` WHERE username = ?`, args...); err != nil {
			return mapErr(err)
		}
		if codec.NotBeforeChanged(old, u.TokensNotBefore) {
			if err := w.insertEvent(ctx, oauth.RevokedUser, username, u.TokensNotBefore, s.now().UnixMicro()); err != nil {
				return err
			}
		}
		return w.adminDone(ctx, evs)
	})
}
