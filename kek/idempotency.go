package kek

import (
	"context"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Idempotency records' responses (oauth.IdempotencyRecord.Response) may
// hold a secret shown once (the admin API's new client secrets): they are
// sealed on every write, bound to the record's key
// (oauth.IdempotencySecret), and opened on every read. A stored response
// that is in clear or does not open is an error, never a response to
// replay.

// idempotencySecretPrefix starts the name of every recorded response.
const idempotencySecretPrefix = "idempotency:"

// ClaimIdempotency is the store's, with the response of the record it
// returns opened. Errors: the store's, or an error wrapping ErrNotSealed,
// ErrUnknownKEK or ErrDecrypt (the record cannot be replayed).
func (s *Store) ClaimIdempotency(ctx context.Context, r *oauth.IdempotencyRecord) (*oauth.IdempotencyRecord, error) {
	var cp *oauth.IdempotencyRecord
	if r != nil {
		c := *r
		c.Response = nil // a pending record has none
		cp = &c
	}
	got, err := s.Store.ClaimIdempotency(ctx, cp)
	if err != nil || got == nil || len(got.Response) == 0 {
		return got, err
	}
	p, err := s.ring.Open(oauth.IdempotencySecret(got.Key), got.Response)
	if err != nil {
		return nil, openError("idempotency record", err)
	}
	got.Response = p
	return got, nil
}

// CompleteIdempotency stores the response sealed. Errors: the store's.
func (s *Store) CompleteIdempotency(ctx context.Context, key, claim string, status int, response []byte, expiresAt time.Time) error {
	var sealed []byte
	if len(response) > 0 {
		var err error
		if sealed, err = s.ring.Seal(oauth.IdempotencySecret(key), response); err != nil {
			return err
		}
	}
	return s.Store.CompleteIdempotency(ctx, key, claim, status, sealed, expiresAt)
}
