package oauth

import (
	"errors"
	"time"
)

// ErrCursorExpired is returned by Store.RevocationEvents for a cursor the
// store cannot resume from: events after it have been deleted (it is
// older than the retention), or the store never gave it out (another
// store's, or garbage). The reader may have missed revocations: it must
// forget whatever it derived from earlier events and start again from
// Store.RevocationCursor.
var ErrCursorExpired = errors.New("revocation cursor expired or unknown")

// RevocationType says what a RevocationEvent revokes.
type RevocationType string

// Revocation event types.
const (
	// RevokedToken: one token, by its storage ID (token.ID of an opaque
	// value; a JWT's jti).
	RevokedToken RevocationType = "token"
	// RevokedClient: every token of the client issued before Before
	// (revoke-all, disable, enable, or the client's deletion).
	RevokedClient RevocationType = "client"
	// RevokedUser: every token of the user (as subject, other than its
	// client's own) issued before Before.
	RevokedUser RevocationType = "user"
)

// RevocationEvent is one entry of the revocation feed: a revocation that
// has committed. Stores write it in the transaction of the revocation it
// describes, so it exists exactly when the revocation does.
type RevocationEvent struct {
	// Cursor is the position just after this event: reading from it
	// returns the events that follow. Two reads see the same event with
	// the same Cursor.
	Cursor string
	Type   RevocationType
	// ID is the token's storage ID (RevokedToken), the client ID
	// (RevokedClient) or the username (RevokedUser).
	ID string
	// Before: tokens issued before it are revoked (RevokedClient,
	// RevokedUser); zero for RevokedToken.
	Before time.Time
	// At is when the store recorded the event, by the store's clock; it
	// is what retention counts from.
	At time.Time
}

// DefaultFeedRetention is how long stores keep revocation events unless
// told otherwise.
const DefaultFeedRetention = 24 * time.Hour
