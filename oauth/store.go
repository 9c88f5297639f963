package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"time"
)

// Store errors. Every Store method documents which of these it returns;
// any other error means the store itself failed (and wraps ErrUnavailable
// when the backend could not be reached).
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	// ErrTokenInactive: the token exists but is expired, revoked, or (for a
	// refresh token) already rotated without reuse detection applying.
	ErrTokenInactive = errors.New("token inactive")
	// ErrRefreshReused: a refresh token that had already been rotated was
	// presented again; the store has revoked its whole family.
	ErrRefreshReused = errors.New("refresh token reused")
	// ErrUnavailable: the backend cannot be reached (connection refused,
	// timeout). Callers answer 503, not 500.
	ErrUnavailable = errors.New("store unavailable")
)

// Store is tokengate's persistence. Implementations are safe for concurrent
// use by many goroutines and by several processes on the same data
// (the admin CLI writes while the server runs; several nodes share PostgreSQL).
//
// Writes that make a token valid (CreateTokens, RotateRefreshToken) are durable
// when they return nil: implementations batch concurrent calls into one
// transaction (group commit) rather than skipping the sync.
type Store interface {
	// CreateClient stores a new client. Each SecretHash's Sealed is stored
	// as opaque bytes; Plain is never stored. Errors: ErrAlreadyExists (the
	// ID is taken, or the client's EffectivePartnerID is another client's).
	CreateClient(ctx context.Context, c *Client) error
	// GetClient returns a client by ID. A miss costs what a hit costs (it
	// decodes a typical record too), so timing does not tell which client
	// IDs exist. Errors: ErrNotFound.
	GetClient(ctx context.Context, id string) (*Client, error)
	// GetClientByPartnerID returns the client whose EffectivePartnerID is
	// partnerID (its PartnerID, or its ID when it has none), with one
	// indexed read; a miss costs what a hit costs, as in GetClient.
	// Errors: ErrNotFound.
	GetClientByPartnerID(ctx context.Context, partnerID string) (*Client, error)
	// ListClients returns all clients ordered by ID.
	ListClients(ctx context.Context) ([]*Client, error)
	// UpdateClient applies update to the stored client atomically (no update
	// between the read and the write is lost). If update returns an error,
	// nothing is written and that error is returned. Errors: ErrNotFound;
	// ErrAlreadyExists (the updated EffectivePartnerID is another
	// client's; nothing is written).
	UpdateClient(ctx context.Context, id string, update func(*Client) error) error
	// DeleteClient removes a client and revokes nothing else (its tokens
	// become useless because the client no longer authenticates, and
	// introspection reports tokens of unknown clients inactive); it
	// records a RevokedClient event for the feed (see RevocationEvents).
	// Errors: ErrNotFound.
	DeleteClient(ctx context.Context, id string) error

	// CreateClients stores new clients all or none, in one transaction
	// (an import). Errors: ErrAlreadyExists (an ID or an effective partner
	// ID is taken, or given twice; nothing is stored).
	CreateClients(ctx context.Context, cs ...*Client) error

	// CreateUser stores a new user. Errors: ErrAlreadyExists.
	CreateUser(ctx context.Context, u *User) error
	// GetUser returns a user by username. Errors: ErrNotFound.
	GetUser(ctx context.Context, username string) (*User, error)
	// ListUsers returns all users ordered by username.
	ListUsers(ctx context.Context) ([]*User, error)
	// UpdateUser is UpdateClient for users. Errors: ErrNotFound.
	UpdateUser(ctx context.Context, username string, update func(*User) error) error

	// CreateAccount stores a new portal account. Its TOTPSecret is stored
	// as opaque bytes. Errors: ErrAlreadyExists (the ID is taken, or
	// another account has the same EmailKey).
	CreateAccount(ctx context.Context, a *Account) error
	// GetAccount returns an account by ID. Errors: ErrNotFound.
	GetAccount(ctx context.Context, id string) (*Account, error)
	// GetAccountByEmail returns the account whose EmailKey is
	// EmailKey(email). Errors: ErrNotFound.
	GetAccountByEmail(ctx context.Context, email string) (*Account, error)
	// ListAccounts returns all accounts ordered by ID.
	ListAccounts(ctx context.Context) ([]*Account, error)
	// UpdateAccount is UpdateClient for accounts; update must not change
	// the ID. Errors: ErrNotFound; ErrAlreadyExists (the updated email's
	// EmailKey is another account's; nothing is written).
	UpdateAccount(ctx context.Context, id string, update func(*Account) error) error

	// CreateSession stores a new portal session. Errors: ErrAlreadyExists
	// (the ID is taken).
	CreateSession(ctx context.Context, s *Session) error
	// GetSession returns a session by ID, expired or not (the caller
	// judges expiry by its own clock and timeouts). Errors: ErrNotFound.
	GetSession(ctx context.Context, id string) (*Session, error)
	// TouchSession records that session id was used at lastSeen and now
	// ends at expiresAt. Errors: ErrNotFound.
	TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error
	// DeleteSession removes a session (a sign-out); removing one that does
	// not exist is not an error.
	DeleteSession(ctx context.Context, id string) error

	// AppendAudit appends events to the audit trail, in order, in one
	// transaction, setting each one's Seq, PrevHash and Hash (see
	// AuditEvent.Link); Time must be set. Appends are serialized across
	// every process sharing the store, so the chain never forks. See
	// WithAudit for appending in the transaction of a change.
	AppendAudit(ctx context.Context, events ...*AuditEvent) error
	// AuditEvents returns the events q selects, by Seq, oldest first
	// unless q.Desc, at most q.EffectiveLimit() of them.
	AuditEvents(ctx context.Context, q AuditQuery) ([]*AuditEvent, error)
	// AuditHead returns the Seq and Hash of the last event appended (0
	// and nil when there is none), as the store recorded them apart from
	// the events: a verifier compares it with the last event it read, so
	// events removed from the end are noticed too.
	AuditHead(ctx context.Context) (seq int64, hash []byte, err error)

	// ClaimIdempotency stores r as a pending record (its Status 0 and its
	// Response nil are stored as such) unless a record with r.Key exists
	// whose ExpiresAt is after r.CreatedAt: then it stores nothing and
	// returns that record (with its Fingerprint, Status and Response, for
	// the caller to answer a retry with). An expired record is replaced.
	// Of concurrent claims of one key, on any node, exactly one stores
	// its record. It returns nil when r was stored. Errors: none besides
	// the store's failing.
	ClaimIdempotency(ctx context.Context, r *IdempotencyRecord) (*IdempotencyRecord, error)
	// CompleteIdempotency records the response of the pending record key
	// held by claim: its status (not 0), its response and its new expiry.
	// Errors: ErrNotFound (no pending record of key held by claim: it
	// expired and was claimed again, or released).
	CompleteIdempotency(ctx context.Context, key, claim string, status int, response []byte, expiresAt time.Time) error
	// ReleaseIdempotency deletes the pending record key held by claim (its
	// request failed in a way a retry may do again); when there is none,
	// it does nothing.
	ReleaseIdempotency(ctx context.Context, key, claim string) error

	// CreateTokens durably stores newly issued tokens, all or none.
	// Errors: ErrAlreadyExists if an ID is taken.
	CreateTokens(ctx context.Context, tokens ...*Token) error
	// CreateTokensOnce is CreateTokens that also uses up a one-time value,
	// in the same transaction: a request is spent only if its tokens are
	// issued, and replayed on another node it is refused. tokens may be
	// empty (a stateless JWT). Errors: ErrAlreadyExists if the nonce was
	// used before and has not expired (nothing is stored), or an ID is taken.
	CreateTokensOnce(ctx context.Context, nonce Nonce, tokens ...*Token) error
	// GetToken returns a token record by ID, whatever its state.
	// Errors: ErrNotFound.
	GetToken(ctx context.Context, id string) (*Token, error)
	// RotateRefreshToken atomically marks the refresh token oldID rotated at
	// now and stores the tokens that replace it. Exactly one of any number of
	// concurrent calls for the same oldID rotates it. A call that finds it
	// already rotated less than grace ago (and neither revoked nor expired)
	// stores its replacements too, beside the winner's, and succeeds: a
	// retry after a lost reply, or a concurrent duplicate, gets a valid pair
	// of the same family (RFC 9700 §4.14's grace period); grace 0 disables it.
	// Errors: ErrNotFound; ErrTokenInactive (expired, revoked, or issued
	// before its client's or its user's TokensNotBefore, read in the same
	// transaction, so a refresh racing a revoke-all on another node cannot
	// outlive it — nothing is written); ErrRefreshReused (rotated at least
	// grace ago — the store has durably revoked every token of the family
	// before returning).
	RotateRefreshToken(ctx context.Context, oldID string, now time.Time, grace time.Duration, replacements ...*Token) error
	// RevokeToken durably marks t.ID revoked at now, inserting t as a
	// revoked record if it was never stored (a stateless JWT). Revoking an
	// already revoked token is not an error.
	RevokeToken(ctx context.Context, t *Token, now time.Time) error
	// RevokeFamily durably revokes every token whose FamilyID is familyID.
	RevokeFamily(ctx context.Context, familyID string, now time.Time) error

	// UseNonce records a one-time value (for example a request signature)
	// until expiresAt. Errors: ErrAlreadyExists if it was recorded before and
	// has not expired — on every node sharing the store.
	UseNonce(ctx context.Context, key string, expiresAt time.Time) error

	// CreateSigningKey stores a new current key and, in the same
	// transaction, retires the previous current key of the same algorithm
	// (RetiredAt = k.CreatedAt, PublishUntil = k.CreatedAt + publishFor).
	CreateSigningKey(ctx context.Context, k *SigningKey, publishFor time.Duration) error
	// ListSigningKeys returns current keys and retired keys whose
	// PublishUntil is after now, newest first.
	ListSigningKeys(ctx context.Context, now time.Time) ([]*SigningKey, error)

	// Setting returns the named server setting, creating it with create()
	// if absent; concurrent callers (several nodes) all get the same value.
	Setting(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)

	// RewriteSecrets passes every stored secret value — each setting, the
	// private key of each signing key, current, retired or no longer
	// published, the Sealed value of each client secret that has one, the
	// TOTP secret of each account that has one, and the response of each
	// idempotency record that has one — to rewrite with the value's name
	// (SettingSecret, SigningKeySecret, ClientSecretSecret,
	// AccountTOTPSecret, IdempotencySecret), and stores what rewrite
	// returns in its place. It
	// runs in one write transaction that also bumps the revision; if
	// rewrite fails, nothing is written and its error is returned. rewrite
	// may be called more than once for a value (a store may run the
	// transaction again), so it must not count calls. Returns how many
	// values were rewritten. It is how the values are re-encrypted under a
	// new key-encryption key (see package kek).
	RewriteSecrets(ctx context.Context, rewrite func(name string, value []byte) ([]byte, error)) (int, error)

	// Revision returns a number that changes whenever a client, user,
	// signing key or stored secret changes; servers poll it to invalidate
	// their caches.
	Revision(ctx context.Context) (int64, error)

	// RevocationEvents returns up to limit revocation events that follow
	// cursor, in the order they committed, with the cursor to read from
	// next (the last event's Cursor, or cursor itself — normalized — when
	// there is none yet). Revocations write their event in their own
	// transaction (RevokeToken and RevokeFamily: one RevokedToken event per
	// token they revoked, none for a token already revoked;
	// RotateRefreshToken's reuse path likewise; UpdateClient and UpdateUser
	// when TokensNotBefore changes to a non-zero instant; DeleteClient: a
	// RevokedClient event whose Before is the deletion time).
	//
	// Guarantees, across every process sharing the store: a reader that
	// starts from a cursor and always reads again from the returned one
	// gets every committed event after it exactly once, in one order that
	// all readers share; an event is returned only once every event
	// before it in that order is final (an event of a transaction still
	// running is held back until it ends, along with the events after it).
	// Cursors are opaque strings of at most 64 printable ASCII characters.
	// Errors: ErrCursorExpired (events after cursor were deleted, see
	// DeleteExpired, or the store never gave out cursor).
	RevocationEvents(ctx context.Context, cursor string, limit int) (events []RevocationEvent, next string, err error)
	// RevocationCursor returns the cursor after the last event that
	// RevocationEvents can return now: reading from it returns only later
	// revocations.
	RevocationCursor(ctx context.Context) (string, error)

	// DeleteExpired deletes at most limit token records, nonces, portal
	// sessions, idempotency records and retired signing keys that expired
	// (for keys: stopped being published) before the given time, and
	// revocation events recorded before that time minus the store's feed
	// retention (DefaultFeedRetention unless the store was opened with
	// another), returning how many it deleted. A key
	// no longer published can verify no token still valid, so it is
	// erased. A cursor of a deleted event, or before one, is expired.
	// Audit events are never deleted.
	DeleteExpired(ctx context.Context, before time.Time, limit int) (int, error)

	// Counts returns how many token records and nonces are stored, expired
	// or not. It scans: for operations and tests, not the request path.
	Counts(ctx context.Context) (StoreCounts, error)

	// Backup writes a consistent copy of the whole store to a new file at
	// path (mode 0600) while the store is in use: a snapshot, not a copy
	// of files being written. Secret values stay sealed in the copy (it
	// needs the same key-encryption key to be used). Errors: an error
	// wrapping errors.ErrUnsupported when the backend has its own tools
	// for this (PostgreSQL: pg_dump); the file exists already; the store's.
	Backup(ctx context.Context, path string) error

	// Ping reports whether the backend is reachable. Errors: ErrUnavailable.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// SettingSecret is the name RewriteSecrets gives the setting called name,
// and the associated data that binds its encrypted value to its row.
func SettingSecret(name string) string { return "setting:" + name }

// SigningKeySecret is the name RewriteSecrets gives the private key of
// the signing key id, and the associated data that binds its encrypted
// value to its row.
func SigningKeySecret(id string) string { return "signing_key:" + id }

// ClientSecretSecret is the name RewriteSecrets gives the recoverable
// secret (SecretHash.Sealed) of client clientID whose hash is hash, and the
// associated data that binds its encrypted value to that client and that
// hash: a sealed secret moved to another client, or beside another hash,
// does not open.
func ClientSecretSecret(clientID string, hash []byte) string {
	return "client_secret:" + clientID + ":" + base64.StdEncoding.EncodeToString(hash)
}

// StoreCounts is what Store.Counts reports.
type StoreCounts struct {
	Tokens int64 `json:"tokens"`
	Nonces int64 `json:"nonces"`
}

// Nonce is a one-time value, kept until it expires.
type Nonce struct {
	Key       string
	ExpiresAt time.Time
}

// DeleteAllExpired calls st.DeleteExpired until nothing expired before
// now() is left, batch rows at a time, pausing between batches so token
// issuance is never starved of the store's writer; it returns how many
// rows it deleted. Errors: the store's, or ctx's.
func DeleteAllExpired(ctx context.Context, st Store, batch int, now func() time.Time) (int, error) {
	total := 0
	for {
		n, err := st.DeleteExpired(ctx, now(), batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
