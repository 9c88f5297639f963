package oauth

import "time"

// Session is a signed-in portal session, kept in the store so that every
// node behind a load balancer knows it and a sign-out or an expiry ends it
// everywhere.
type Session struct {
	// ID is what the store knows the session by: the portal stores a hash
	// of the secret value its cookie carries, never the value itself, so a
	// copy of the store holds no session anyone can use.
	ID string
	// Account is the ID of the account signed in.
	Account string
	// CreatedAt is when the session began: the account's
	// SessionsNotBefore ends sessions that began before it.
	CreatedAt time.Time
	// LastSeenAt is when the session was last used (as the portal last
	// recorded it: it records use at most about once a minute).
	LastSeenAt time.Time
	// ExpiresAt is when the session ends if it is not used again: the
	// earlier of its idle and its absolute timeout. Store.DeleteExpired
	// deletes it after.
	ExpiresAt time.Time
}
