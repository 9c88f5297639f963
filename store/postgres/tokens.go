package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/batch"
)

// Token writes go through the group-commit batcher (see writer.go): they
// return once the transaction holding them has committed. If ctx ends
// first they return at once, and the write may still commit.

const (
	// rotateSQL claims the refresh token: of concurrent claims, on any
	// number of nodes, one updates the row and the others wait for its
	// commit and then find rotated_at set (READ COMMITTED rechecks the
	// WHERE clause on the new row version).
	rotateSQL = `UPDATE tokens t SET rotated_at = $2
		WHERE id = $1 AND kind = 'refresh' AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $2
		AND NOT ` + cutByNotBefore + `
		RETURNING 1`
	// cutByNotBefore is true for a token t issued before its client's or
	// its user's tokens_not_before (revoke-all, disable, password change).
	cutByNotBefore = `(EXISTS (SELECT 1 FROM clients c WHERE c.id = t.client_id AND c.tokens_not_before > t.issued_at)
		OR EXISTS (SELECT 1 FROM users u WHERE u.username = t.subject AND t.subject <> t.client_id AND u.tokens_not_before > t.issued_at))`
	// tokenStateSQL reads a token that could not be claimed. It locks the
	// row, so a revocation of it in flight on another node is waited for
	// and seen (a grace-window retry of a token being revoked is refused).
	tokenStateSQL = `SELECT kind, family_id, expires_at, revoked_at, rotated_at, ` + cutByNotBefore + ` FROM tokens t WHERE id = $1
		FOR NO KEY UPDATE OF t`
	// The revocations record a feed event for each row they change (none
	// for a token already revoked), in the same statement: $3 (or $12) is
	// the store's clock, see eventNow.
	revokeIDSQL = `WITH r AS (UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id)
		` + tokenEventsFromR + eventNow3
	revokeFamSQL = `WITH r AS (UPDATE tokens SET revoked_at = $1 WHERE family_id = $2 AND family_id <> '' AND revoked_at IS NULL RETURNING id)
		` + tokenEventsFromR + eventNow3
	upsertRevoked = `WITH r AS (INSERT INTO tokens (` + tokenColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at WHERE tokens.revoked_at IS NULL RETURNING id)
		` + tokenEventsFromR + `COALESCE($12::timestamptz, clock_timestamp()) FROM r`
	tokenEventsFromR = `INSERT INTO revocation_events (type, subject, created_at) SELECT 'token', id, `
	eventNow3        = `COALESCE($3::timestamptz, clock_timestamp()) FROM r`
	// useNonceSQL returns a row when the key was free or its record had
	// expired at $3, the store's clock, or by the database's clock when $3
	// is NULL (Options.Now unset).
	useNonceSQL = `INSERT INTO nonces (key, expires_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
		WHERE nonces.expires_at <= COALESCE($3::timestamptz, clock_timestamp())
		RETURNING 1`
)

// CreateTokens durably stores tokens, all or none.
// Errors: oauth.ErrAlreadyExists if an ID is taken (also within tokens).
func (s *Store) CreateTokens(ctx context.Context, tokens ...*oauth.Token) error {
	if len(tokens) == 0 {
		return nil
	}
	rows, err := newTokenRows(tokens)
	if err != nil {
		return err
	}
	return s.do(ctx, func(_ context.Context, t *wtx) error {
		t.insert(rows)
		return nil
	})
}

// GetToken returns a token record by ID, whatever its state.
// Errors: oauth.ErrNotFound.
func (s *Store) GetToken(ctx context.Context, id string) (*oauth.Token, error) {
	pool, err := s.reader()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	t, err := scanToken(pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if err != nil {
		return nil, notFound(err, "token")
	}
	return t, nil
}

// RotateRefreshToken marks oldID rotated at now and stores replacements,
// in one transaction; exactly one of concurrent calls for the same oldID,
// on any number of nodes, rotates it.
//
// Outcomes, in the SQLite store's order: oauth.ErrNotFound (no such token,
// or not a refresh token). If it was rotated less than grace before now
// (grace > 0), the call is a retry or a concurrent duplicate:
// oauth.ErrTokenInactive if it is revoked or expired at now (nothing
// written), else the replacements are stored beside the first rotation's
// and RotatedAt stays as it was. If it was rotated at least grace before
// now: oauth.ErrRefreshReused — the old token and every token of its
// family are revoked at now, and that revocation commits although the
// call fails. Not rotated: oauth.ErrTokenInactive if it is revoked or
// expired at now (nothing written). A replacement whose ID is taken fails
// the call with oauth.ErrAlreadyExists and nothing is written.
func (s *Store) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, grace time.Duration, replacements ...*oauth.Token) error {
	rows, err := newTokenRows(replacements)
	if err != nil {
		return err
	}
	at, evAt := dbTime(now), s.storeNow()
	return s.do(ctx, func(ctx context.Context, t *wtx) error {
		claimed := false
		if err := t.query(ctx, func(pgx.Rows) error { claimed = true; return nil }, rotateSQL, oldID, at); err != nil {
			return err
		}
		if claimed {
			t.opWrote = true
			t.insert(rows)
			return nil
		}
		var (
			found, cut                bool
			kind, family              string
			expires, revoked, rotated pgtype.Timestamptz
		)
		err := t.query(ctx, func(r pgx.Rows) error {
			found = true
			return r.Scan(&kind, &family, &expires, &revoked, &rotated, &cut)
		}, tokenStateSQL, oldID)
		if err != nil {
			return err
		}
		if !found || kind != string(oauth.KindRefresh) {
			return fmt.Errorf("postgres: refresh token: %w", oauth.ErrNotFound)
		}
		if cut {
			return fmt.Errorf("postgres: %w", oauth.ErrTokenInactive)
		}
		if rotated.Valid && (grace <= 0 || !now.Before(rotated.Time.Add(grace))) {
			t.exec(revokeIDSQL, at, oldID, evAt)
			if family != "" {
				t.exec(revokeFamSQL, at, family, evAt)
			}
			return batch.Keep(fmt.Errorf("postgres: %w", oauth.ErrRefreshReused))
		}
		if rotated.Valid && !revoked.Valid && expires.Valid && expires.Time.After(now) {
			t.insert(rows) // within the grace window
			return nil
		}
		// Revoked, expired, or without expiry.
		return fmt.Errorf("postgres: %w", oauth.ErrTokenInactive)
	})
}

// RevokeToken durably marks t.ID revoked at now, or inserts t as a revoked
// record if no token t.ID exists (a stateless JWT), and records a
// revocation event in the same statement. A token already revoked keeps
// its first RevokedAt and gets no second event.
func (s *Store) RevokeToken(ctx context.Context, tok *oauth.Token, now time.Time) error {
	if tok == nil {
		return errNil
	}
	args := append(tokenArgs(tok), s.storeNow())
	args[9] = dbTime(now) // revoked_at
	return s.do(ctx, func(_ context.Context, t *wtx) error {
		t.exec(upsertRevoked, args...)
		return nil
	})
}

// RevokeFamily durably revokes every token whose FamilyID is familyID,
// with a revocation event for each token it revokes. An empty familyID
// revokes nothing: "" means "no family".
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	if familyID == "" {
		return nil
	}
	at, evAt := dbTime(now), s.storeNow()
	return s.do(ctx, func(_ context.Context, t *wtx) error {
		t.exec(revokeFamSQL, at, familyID, evAt)
		return nil
	})
}

// UseNonce records key until expiresAt. A recorded key counts as expired
// once the store's clock (Options.Now, else the database's) reaches its
// expiresAt.
// Errors: oauth.ErrAlreadyExists if key is recorded and not expired.
func (s *Store) UseNonce(ctx context.Context, key string, expiresAt time.Time) error {
	now := s.storeNow()
	return s.do(ctx, func(ctx context.Context, t *wtx) error {
		return t.consumeNonce(ctx, key, expiresAt, now)
	})
}

// storeNow is the store's clock, by which nonce expiry is judged and
// revocation events are dated: Options.Now, or NULL for the database's
// clock (see eventNow).
func (s *Store) storeNow() pgtype.Timestamptz {
	if s.now == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: s.now(), Valid: true}
}

// CreateTokensOnce uses up the nonce and stores the tokens in one
// transaction; a used nonce stores nothing. Nonce expiry is judged as in
// UseNonce.
func (s *Store) CreateTokensOnce(ctx context.Context, n oauth.Nonce, tokens ...*oauth.Token) error {
	now := s.storeNow()
	var rows *tokenRows
	if len(tokens) > 0 {
		var err error
		if rows, err = newTokenRows(tokens); err != nil {
			return err
		}
	}
	return s.do(ctx, func(ctx context.Context, t *wtx) error {
		if err := t.consumeNonce(ctx, n.Key, n.ExpiresAt, now); err != nil {
			return err
		}
		if rows != nil {
			t.insert(rows)
		}
		return nil
	})
}

func (t *wtx) consumeNonce(ctx context.Context, key string, expiresAt time.Time, now pgtype.Timestamptz) error {
	// Never NULL: a zero expiresAt records a key that has already expired.
	exp := pgtype.Timestamptz{Time: expiresAt, Valid: true}
	used := false
	if err := t.query(ctx, func(pgx.Rows) error { used = true; return nil }, useNonceSQL, key, exp, now); err != nil {
		return err
	}
	if !used {
		return fmt.Errorf("postgres: nonce: %w", oauth.ErrAlreadyExists)
	}
	t.opWrote = true
	return nil
}

// DeleteExpired deletes at most limit tokens, nonces, portal sessions
// and retired signing keys (in that order) whose expiry — for a key, its PublishUntil — is
// before the given time, then revocation events recorded before it minus
// Options.FeedRetention, oldest first, and returns how many it deleted. A current key
// is never deleted; deleting keys bumps the revision in the same
// statement. Each table is purged by one short statement that skips rows
// other transactions hold locked; call it repeatedly to purge a backlog.
func (s *Store) DeleteExpired(ctx context.Context, before time.Time, limit int) (int, error) {
	pool, err := s.reader()
	if err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	b := dbTime(before)
	deleted := 0
	for _, q := range []string{
		`WITH d AS (DELETE FROM tokens WHERE id IN
			(SELECT id FROM tokens WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
		SELECT count(*) FROM d`,
		`WITH d AS (DELETE FROM nonces WHERE key IN
			(SELECT key FROM nonces WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
		SELECT count(*) FROM d`,
		`WITH d AS (DELETE FROM portal_sessions WHERE id IN
			(SELECT id FROM portal_sessions WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
		SELECT count(*) FROM d`,
		`WITH d AS (DELETE FROM idempotency WHERE key IN
			(SELECT key FROM idempotency WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
		SELECT count(*) FROM d`,
		`WITH d AS (DELETE FROM signing_keys WHERE id IN
			(SELECT id FROM signing_keys WHERE retired_at IS NOT NULL AND publish_until < $1
			 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1),
		bump AS (UPDATE revision SET n = n + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM d))
		SELECT count(*) FROM d`,
	} {
		if deleted >= limit {
			break
		}
		var n int64
		if err := pool.QueryRow(ctx, q, b, limit-deleted).Scan(&n); err != nil {
			return deleted, mapErr(err)
		}
		deleted += int(n)
	}
	if deleted < limit {
		var n int64
		if err := pool.QueryRow(ctx, deleteEventsSQL, dbTime(before.Add(-s.retention)), limit-deleted).Scan(&n); err != nil {
			return deleted, mapErr(err)
		}
		deleted += int(n)
	}
	return deleted, nil
}
