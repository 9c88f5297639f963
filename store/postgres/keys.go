package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// CreateSigningKey stores k and, in the same transaction, retires the
// current key of k.Alg (RetiredAt = k.CreatedAt, PublishUntil =
// k.CreatedAt + publishFor). k.CreatedAt must be set.
// Errors: oauth.ErrAlreadyExists if k.ID is taken (nothing is retired then).
func (s *Store) CreateSigningKey(ctx context.Context, k *oauth.SigningKey, publishFor time.Duration) error {
	if k == nil {
		return errNil
	}
	if k.CreatedAt.IsZero() {
		return errors.New("postgres: CreateSigningKey: CreatedAt is zero")
	}
	retired, until := dbTime(k.CreatedAt), dbTime(k.CreatedAt.Add(publishFor))
	args := []any{k.ID, k.Alg, dbBytes(k.PrivateKeyPEM), dbTime(k.CreatedAt), dbTime(k.RetiredAt), dbTime(k.PublishUntil)}
	return s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retired_at = $1, publish_until = $2
			WHERE alg = $3 AND retired_at IS NULL`, retired, until, k.Alg); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO signing_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`, args...)
		return err
	})
}

// ListSigningKeys returns current keys and retired keys whose PublishUntil
// is after now, newest (by CreatedAt) first.
func (s *Store) ListSigningKeys(ctx context.Context, now time.Time) ([]*oauth.SigningKey, error) {
	return list(ctx, s, `SELECT `+keyColumns+` FROM signing_keys
		WHERE retired_at IS NULL OR publish_until > $1
		ORDER BY created_at DESC, id DESC`, scanKey, dbTime(now))
}

// Setting returns the named setting, creating it with create() if absent.
// create runs outside any transaction (it may be slow, e.g. generating a
// key); when several callers or nodes race, each may call create, but the
// first value stored wins and every caller returns that one.
func (s *Store) Setting(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	const get = `SELECT value FROM settings WHERE name = $1`
	v, err := s.settingQuery(ctx, func(ctx context.Context, v *[]byte) error {
		return pool.QueryRow(ctx, get, name).Scan(v)
	})
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, mapErr(err)
	}
	nv, err := create()
	if err != nil {
		return nil, err
	}
	// INSERT ... DO NOTHING returns once any conflicting insert has
	// committed, so the SELECT after it sees the value that won.
	v, err = s.settingQuery(ctx, func(ctx context.Context, v *[]byte) error {
		if _, err := pool.Exec(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO NOTHING`, name, dbBytes(nv)); err != nil {
			return err
		}
		return pool.QueryRow(ctx, get, name).Scan(v)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: setting %s: %w", name, mapErr(err))
	}
	return v, nil
}

// settingQuery runs f under the call timeout; create() does not count.
func (s *Store) settingQuery(ctx context.Context, f func(ctx context.Context, v *[]byte) error) ([]byte, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var v []byte
	if err := f(ctx, &v); err != nil {
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Revision returns a counter bumped by every client, user and signing-key
// change, on any node.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	pool, err := s.reader()
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT n FROM revision WHERE id = 1`).Scan(&n); err != nil {
		return 0, mapErr(err)
	}
	return n, nil
}

// RewriteSecrets rewrites every setting, every signing key's private key,
// every account's TOTP secret, every recorded idempotent response and
// every client's sealed secrets (see oauth.Store) in one transaction,
// bumping the revision. The rows
// are locked while rewrite runs, and the revision row's lock (see adminTx)
// keeps signing keys from being created meanwhile.
func (s *Store) RewriteSecrets(ctx context.Context, rewrite func(name string, value []byte) ([]byte, error)) (int, error) {
	var n int
	err := s.adminTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
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
			{`SELECT name, value FROM settings ORDER BY name FOR UPDATE`,
				`UPDATE settings SET value = $1 WHERE name = $2`, oauth.SettingSecret},
			{`SELECT id, private_key FROM signing_keys ORDER BY id FOR UPDATE`,
				`UPDATE signing_keys SET private_key = $1 WHERE id = $2`, oauth.SigningKeySecret},
			{`SELECT id, totp_secret FROM accounts WHERE length(totp_secret) > 0 ORDER BY id FOR UPDATE`,
				`UPDATE accounts SET totp_secret = $1 WHERE id = $2`, oauth.AccountTOTPSecret},
			{`SELECT key, response FROM idempotency WHERE length(response) > 0 ORDER BY key FOR UPDATE`,
				`UPDATE idempotency SET response = $1 WHERE key = $2`, oauth.IdempotencySecret},
		} {
			rows, err := tx.Query(ctx, q.query)
			if err != nil {
				return err
			}
			for rows.Next() {
				r := row{update: q.update}
				if err := rows.Scan(&r.key, &r.value); err != nil {
					rows.Close()
					return err
				}
				r.name = q.name(r.key)
				all = append(all, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		type clientRow struct {
			id      string
			secrets []byte
		}
		var clients []clientRow
		rows, err := tx.Query(ctx, `SELECT id, secrets FROM clients ORDER BY id FOR UPDATE`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var c clientRow
			if err := rows.Scan(&c.id, &c.secrets); err != nil {
				rows.Close()
				return err
			}
			clients = append(clients, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range all {
			v, err := rewrite(all[i].name, all[i].value)
			if err != nil {
				return err
			}
			all[i].value = dbBytes(v)
		}
		n = len(all)
		var changed []clientRow
		for _, c := range clients {
			out, k, err := codec.RewriteSealed(c.id, c.secrets, rewrite)
			if err != nil {
				return fmt.Errorf("client %s: %w", c.id, err)
			}
			if k > 0 {
				changed = append(changed, clientRow{id: c.id, secrets: out})
				n += k
			}
		}
		for _, r := range all {
			if _, err := tx.Exec(ctx, r.update, r.value, r.key); err != nil {
				return err
			}
		}
		for _, c := range changed {
			if _, err := tx.Exec(ctx, `UPDATE clients SET secrets = $1 WHERE id = $2`, c.secrets, c.id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
