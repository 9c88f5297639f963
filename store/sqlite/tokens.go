package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/batch"
)

// CreateTokens durably stores tokens, all or none: it returns once the
// group-committed transaction holding them is synced to disk.
// Errors: oauth.ErrAlreadyExists if an ID is taken (also within tokens).
func (s *Store) CreateTokens(ctx context.Context, tokens ...*oauth.Token) error {
	if len(tokens) == 0 {
		return nil
	}
	args, err := tokensArgs(tokens)
	if err != nil {
		return err
	}
	// One statement, so all or none without a savepoint.
	return s.doAtomic(ctx, func(ctx context.Context, w *writer) error {
		return cleanConflict(w.insertTokens(ctx, args))
	})
}

func tokensArgs(tokens []*oauth.Token) ([][]any, error) {
	args := make([][]any, len(tokens))
	for i, t := range tokens {
		if t == nil {
			return nil, errNil
		}
		args[i] = tokenArgs(t)
	}
	return args, nil
}

// insertTokens inserts the rows in one statement: SQLite applies a
// statement atomically, so a conflict on any row inserts none.
func (w *writer) insertTokens(ctx context.Context, args [][]any) error {
	var err error
	switch len(args) {
	case 0:
		return nil
	case 1:
		_, err = w.insertToken.ExecContext(ctx, args[0]...)
	case 2: // an access token with its refresh token
		_, err = w.insertToken2.ExecContext(ctx, append(args[0][:len(args[0]):len(args[0])], args[1]...)...)
	default:
		flat := make([]any, 0, len(args)*len(args[0]))
		for _, a := range args {
			flat = append(flat, a...)
		}
		_, err = w.conn.ExecContext(ctx, insertTokensSQL(len(args)), flat...)
	}
	return mapErr(err)
}

// GetToken returns a token record by ID, whatever its state.
// Errors: oauth.ErrNotFound.
func (s *Store) GetToken(ctx context.Context, id string) (*oauth.Token, error) {
	if _, err := s.reader(); err != nil {
		return nil, err
	}
	t, err := scanToken(s.getTok.QueryRowContext(ctx, id))
	if err != nil {
		return nil, notFound(err, "token")
	}
	return t, nil
}

// RotateRefreshToken marks oldID rotated at now and stores replacements,
// in one transaction. Because all writes are serialized (one writer
// goroutine here, SQLite's write lock across processes), exactly one of
// concurrent calls for the same oldID finds it unrotated.
//
// Checks, in order: oauth.ErrNotFound (no such token, or not a refresh
// token). If it was rotated less than grace before now (grace > 0), the
// call is a retry or a concurrent duplicate: oauth.ErrTokenInactive if it
// is revoked or expired at now (nothing written), else the replacements
// are stored beside the first rotation's and RotatedAt stays as it was.
// If it was rotated at least grace before now: oauth.ErrRefreshReused —
// the old token and every token of its family are revoked at now and that
// revocation commits although the call fails. Not rotated:
// oauth.ErrTokenInactive if it is revoked or expired at now (nothing
// written). A replacement whose ID is taken fails the call with
// oauth.ErrAlreadyExists and nothing is written.
func (s *Store) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, grace time.Duration, replacements ...*oauth.Token) error {
	args, err := tokensArgs(replacements)
	if err != nil {
		return err
	}
	nowUS, at := now.UnixMicro(), s.now().UnixMicro()
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		var (
			kind, family              string
			expires, revoked, rotated sql.NullInt64
			cut                       bool
		)
		err := w.tokenState.QueryRowContext(ctx, oldID).Scan(&kind, &family, &expires, &revoked, &rotated, &cut)
		if err != nil {
			return notFound(err, "refresh token")
		}
		if kind != string(oauth.KindRefresh) {
			return fmt.Errorf("sqlite: %w: not a refresh token", oauth.ErrNotFound)
		}
		if cut {
			return fmt.Errorf("sqlite: %w", oauth.ErrTokenInactive)
		}
		inactive := revoked.Valid || !expires.Valid || expires.Int64 <= nowUS
		if rotated.Valid {
			if grace <= 0 || nowUS >= rotated.Int64+grace.Microseconds() {
				if err := w.revokeTokenFamily(ctx, oldID, family, nowUS, at); err != nil {
					return err
				}
				return batch.Keep(fmt.Errorf("sqlite: %w", oauth.ErrRefreshReused))
			}
			if inactive {
				return fmt.Errorf("sqlite: %w", oauth.ErrTokenInactive)
			}
			return w.insertTokens(ctx, args)
		}
		if inactive {
			return fmt.Errorf("sqlite: %w", oauth.ErrTokenInactive)
		}
		if _, err := w.markRotated.ExecContext(ctx, nowUS, oldID); err != nil {
			return mapErr(err)
		}
		return w.insertTokens(ctx, args)
	})
}

// revokeTokenFamily revokes token id and its family at nowUS, with an
// event (recorded at at) for each token it revokes.
func (w *writer) revokeTokenFamily(ctx context.Context, id, family string, nowUS, at int64) error {
	if _, err := w.eventsOfID.ExecContext(ctx, at, id); err != nil {
		return mapErr(err)
	}
	if _, err := w.revokeID.ExecContext(ctx, nowUS, id); err != nil {
		return mapErr(err)
	}
	if family == "" {
		return nil
	}
	return w.revokeFamily(ctx, family, nowUS, at)
}

// revokeFamily revokes every unrevoked token of family, with an event for
// each: the event insert selects exactly the rows the update changes.
func (w *writer) revokeFamily(ctx context.Context, family string, nowUS, at int64) error {
	if _, err := w.eventsOfFam.ExecContext(ctx, at, family); err != nil {
		return mapErr(err)
	}
	_, err := w.revokeFam.ExecContext(ctx, nowUS, family)
	return mapErr(err)
}

// RevokeToken durably marks t.ID revoked at now, or inserts t as a revoked
// record if no token t.ID exists (a stateless JWT), and records a
// revocation event in the same transaction. A token already revoked keeps
// its first RevokedAt and gets no second event.
func (s *Store) RevokeToken(ctx context.Context, t *oauth.Token, now time.Time) error {
	if t == nil {
		return errNil
	}
	args := tokenArgs(t)
	args[9] = now.UnixMicro() // revoked_at
	at := s.now().UnixMicro()
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		res, err := w.upsertRevoked.ExecContext(ctx, args...)
		if err != nil {
			return mapErr(err)
		}
		// The upsert changes no row when the token was already revoked.
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return mapErr(err)
		}
		return w.insertEvent(ctx, oauth.RevokedToken, t.ID, time.Time{}, at)
	})
}

// RevokeFamily durably revokes every token whose FamilyID is familyID,
// recording an event for each token it revokes in the same transaction.
// An empty familyID revokes nothing: "" means "no family", and tokens
// without one are not related to each other.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	if familyID == "" {
		return nil
	}
	nowUS, at := now.UnixMicro(), s.now().UnixMicro()
	return s.do(ctx, func(ctx context.Context, w *writer) error {
		return w.revokeFamily(ctx, familyID, nowUS, at)
	})
}

// UseNonce records key until expiresAt. A recorded key counts as expired
// once the store's clock (WithClock) reaches its expiresAt; oauth.Store
// passes no "now" here, so processes sharing the file should have synced
// clocks.
// Errors: oauth.ErrAlreadyExists if key is recorded and not expired.
func (s *Store) UseNonce(ctx context.Context, key string, expiresAt time.Time) error {
	exp, now := expiresAt.UnixMicro(), s.now().UnixMicro()
	// One statement (an upsert that writes nothing when the key is in
	// use), so no savepoint: this runs for every SNAP service call.
	return s.doAtomic(ctx, func(ctx context.Context, w *writer) error {
		return cleanConflict(w.consumeNonce(ctx, key, exp, now))
	})
}

// CreateTokensOnce uses up the nonce and stores the tokens in one
// transaction; a used nonce stores nothing. Nonce expiry is judged as in
// UseNonce.
func (s *Store) CreateTokensOnce(ctx context.Context, n oauth.Nonce, tokens ...*oauth.Token) error {
	args, err := tokensArgs(tokens)
	if err != nil {
		return err
	}
	exp, now := n.ExpiresAt.UnixMicro(), s.now().UnixMicro()
	// No savepoint (this runs for every signed request): the nonce upsert
	// writes nothing when it fails, and a failed insert is undone by hand.
	return s.doAtomic(ctx, func(ctx context.Context, w *writer) error {
		if err := w.consumeNonce(ctx, n.Key, exp, now); err != nil {
			return cleanConflict(err)
		}
		if err := w.insertTokens(ctx, args); err != nil {
			if !errors.Is(err, oauth.ErrAlreadyExists) {
				return err // the batch fails and is retried op by op
			}
			if _, derr := w.deleteNonce.ExecContext(ctx, n.Key); derr != nil {
				return mapErr(derr) // not clean: the batch is retried op by op
			}
			return batch.Clean(err)
		}
		return nil
	})
}

// cleanConflict marks a unique conflict as a clean refusal (nothing
// written, the transaction intact); anything else may have ended the
// transaction and must fail the batch.
func cleanConflict(err error) error {
	if errors.Is(err, oauth.ErrAlreadyExists) {
		return batch.Clean(err)
	}
	return err
}

func (w *writer) consumeNonce(ctx context.Context, key string, exp, now int64) error {
	res, err := w.useNonce.ExecContext(ctx, key, exp, now)
	if err != nil {
		return mapErr(err)
	}
	// The upsert changes no row when the key exists and is unexpired.
	if n, err := res.RowsAffected(); err != nil {
		return mapErr(err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: nonce: %w", oauth.ErrAlreadyExists)
	}
	return nil
}

// DeleteExpired deletes at most limit tokens, nonces, portal sessions
// and retired signing keys (in that order) whose expiry — for a key, its
// PublishUntil — is before the given time, then revocation events recorded before it minus
// the feed retention (WithFeedRetention), oldest first, and returns how
// many it deleted. A current key is never deleted. Deleting a key bumps
// the revision. Call it repeatedly to purge a backlog in short
// transactions.
func (s *Store) DeleteExpired(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	b, evb := before.UnixMicro(), before.Add(-s.retention).UnixMicro()
	var deleted int
	err := s.do(ctx, func(ctx context.Context, w *writer) error {
		deleted = 0
		for _, q := range []struct {
			sql  string
			keys bool
		}{
			{sql: `DELETE FROM tokens WHERE id IN (SELECT id FROM tokens WHERE expires_at < ? LIMIT ?)`},
			{sql: `DELETE FROM nonces WHERE key IN (SELECT key FROM nonces WHERE expires_at < ? LIMIT ?)`},
			{sql: `DELETE FROM portal_sessions WHERE id IN (SELECT id FROM portal_sessions WHERE expires_at < ? LIMIT ?)`},
			{sql: `DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency WHERE expires_at < ? LIMIT ?)`},
			{sql: `DELETE FROM signing_keys WHERE id IN (SELECT id FROM signing_keys
				WHERE retired_at IS NOT NULL AND publish_until < ? LIMIT ?)`, keys: true},
		} {
			if deleted >= limit {
				break
			}
			res, err := w.conn.ExecContext(ctx, q.sql, b, limit-deleted)
			if err != nil {
				return mapErr(err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return mapErr(err)
			}
			deleted += int(n)
			if q.keys && n > 0 {
				if err := w.bumpRevision(ctx); err != nil {
					return err
				}
			}
		}
		if deleted < limit {
			n, err := w.deleteEvents(ctx, evb, limit-deleted)
			if err != nil {
				return err
			}
			deleted += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}
