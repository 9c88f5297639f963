package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// CreateSigningKey stores k and, in the same transaction, retires the
// current key of k.Alg (RetiredAt = k.CreatedAt, PublishUntil =
// k.CreatedAt + publishFor). k.CreatedAt must be set.
// Errors: oauth.ErrAlreadyExists if k.ID is taken (nothing is retired then).
func (s *Store) CreateSigningKey(ctx context.Context, k *oauth.SigningKey, publishFor time.Duration) error {
	evs := oauth.AuditFrom(ctx)
	if k == nil {
		return errNil
	}
	if k.CreatedAt.IsZero() {
		return errors.New("sqlite: CreateSigningKey: CreatedAt is zero")
	}
	retired, until := k.CreatedAt.UnixMicro(), k.CreatedAt.Add(publishFor).UnixMicro()
	args := []any{k.ID, k.Alg, dbBytes(k.PrivateKeyPEM), dbTime(k.CreatedAt), dbTime(k.RetiredAt), dbTime(k.PublishUntil)}
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		if _, err := w.conn.ExecContext(ctx, `UPDATE signing_keys SET retired_at = ?, publish_until = ?
			WHERE alg = ? AND retired_at IS NULL`, retired, until, k.Alg); err != nil {
			return mapErr(err)
		}
		if _, err := w.conn.ExecContext(ctx, `INSERT INTO signing_keys (`+keyColumns+`)
			VALUES (?, ?, ?, ?, ?, ?)`, args...); err != nil {
			return mapErr(err)
		}
		return w.adminDone(ctx, evs)
	})
}

// ListSigningKeys returns current keys and retired keys whose PublishUntil
// is after now, newest (by CreatedAt) first.
func (s *Store) ListSigningKeys(ctx context.Context, now time.Time) ([]*oauth.SigningKey, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT `+keyColumns+` FROM signing_keys
		WHERE retired_at IS NULL OR publish_until > ?
		ORDER BY created_at DESC, id DESC`, now.UnixMicro())
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []*oauth.SigningKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}

// Setting returns the named setting, creating it with create() if absent.
// create runs outside any transaction (it may be slow, e.g. generating a
// key); when several callers or processes race, each may call create, but
// the first value stored wins and every caller returns that one.
func (s *Store) Setting(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	db, err := s.reader()
	if err != nil {
		return nil, err
	}
	var v []byte
	err = db.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, mapErr(err)
	}
	nv, err := create()
	if err != nil {
		return nil, err
	}
	nv = dbBytes(nv)
	var stored []byte
	err = s.do(ctx, func(ctx context.Context, w *writer) error {
		if _, err := w.conn.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
			ON CONFLICT (name) DO NOTHING`, name, nv); err != nil {
			return mapErr(err)
		}
		return mapErr(w.conn.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&stored))
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: setting %s: %w", name, err)
	}
	return stored, nil
}

// Revision returns a counter bumped by every client, user and signing-key
// change, by this or any other process.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	db, err := s.reader()
	if err != nil {
		return 0, err
	}
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT n FROM revision WHERE id = 1`).Scan(&n); err != nil {
		return 0, mapErr(err)
	}
	return n, nil
}

// RewriteSecrets rewrites every setting, every signing key's private key,
// every account's TOTP secret, every recorded idempotent response and
// every client's sealed secrets (see oauth.Store) in one transaction
// of the writer, bumping the revision. rewrite runs on the writer goroutine, so it must be quick.
func (s *Store) RewriteSecrets(ctx context.Context, rewrite func(name string, value []byte) ([]byte, error)) (int, error) {
	evs := oauth.AuditFrom(ctx)
	var n int
	err := s.do(ctx, func(ctx context.Context, w *writer) error {
		n = 0
		type row struct {
			update, key, name string
			value             []byte
		}
		var all []row
		for _, q := range []struct {
			query, update string
			name          func(string) string
		}{
			{`SELECT name, value FROM settings ORDER BY name`,
				`UPDATE settings SET value = ? WHERE name = ?`, oauth.SettingSecret},
			{`SELECT id, private_key FROM signing_keys ORDER BY id`,
				`UPDATE signing_keys SET private_key = ? WHERE id = ?`, oauth.SigningKeySecret},
			{`SELECT id, totp_secret FROM accounts WHERE length(totp_secret) > 0 ORDER BY id`,
				`UPDATE accounts SET totp_secret = ? WHERE id = ?`, oauth.AccountTOTPSecret},
			{`SELECT key, response FROM idempotency WHERE length(response) > 0 ORDER BY key`,
				`UPDATE idempotency SET response = ? WHERE key = ?`, oauth.IdempotencySecret},
		} {
			rows, err := w.conn.QueryContext(ctx, q.query)
			if err != nil {
				return mapErr(err)
			}
			for rows.Next() {
				r := row{update: q.update}
				if err := rows.Scan(&r.key, &r.value); err != nil {
					rows.Close()
					return mapErr(err)
				}
				r.name = q.name(r.key)
				all = append(all, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return mapErr(err)
			}
		}
		clients, err := clientSecrets(ctx, w.conn)
		if err != nil {
			return err
		}
		// Every value is rewritten before anything is written, so a failing
		// rewrite leaves nothing to undo.
		for i := range all {
			v, err := rewrite(all[i].name, goBytes(all[i].value))
			if err != nil {
				return err
			}
			all[i].value = dbBytes(v)
		}
		n = len(all)
		var changed []clientSecretsRow
		for _, c := range clients {
			out, k, err := codec.RewriteSealed(c.id, []byte(c.secrets), rewrite)
			if err != nil {
				return fmt.Errorf("client %s: %w", c.id, err)
			}
			if k > 0 {
				changed = append(changed, clientSecretsRow{id: c.id, secrets: string(out)})
				n += k
			}
		}
		for _, r := range all {
			if _, err := w.conn.ExecContext(ctx, r.update, r.value, r.key); err != nil {
				return mapErr(err)
			}
		}
		for _, c := range changed {
			if _, err := w.conn.ExecContext(ctx, `UPDATE clients SET secrets = ? WHERE id = ?`, c.secrets, c.id); err != nil {
				return mapErr(err)
			}
		}
		return w.adminDone(ctx, evs)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

type clientSecretsRow struct{ id, secrets string }

// clientSecrets reads every client's secrets column.
func clientSecrets(ctx context.Context, q queryer) ([]clientSecretsRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, secrets FROM clients ORDER BY id`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []clientSecretsRow
	for rows.Next() {
		var r clientSecretsRow
		if err := rows.Scan(&r.id, &r.secrets); err != nil {
			return nil, mapErr(err)
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err())
}
