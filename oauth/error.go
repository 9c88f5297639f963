package oauth

import (
	"errors"
	"time"
)

// RFC 6749 §5.2 error codes, plus RFC 6749 §4.1.2.1's server_error and
// temporarily_unavailable, used by tokengate at the token endpoint too.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeUnsupportedTokenType = "unsupported_token_type" // RFC 7009 §2.2.1
	CodeServerError          = "server_error"
	CodeTemporarilyUnavail   = "temporarily_unavailable"
)

// Cause refines an error for dialects that distinguish more cases than
// RFC 6749 does (SNAP BI's case codes, NeoX's 401/403 split).
type Cause int

const (
	CauseUnspecified        Cause = iota
	CauseMissingField             // a mandatory parameter or header is absent; Field names it
	CauseMalformedField           // a parameter or header has a bad format; Field names it
	CauseBadRequest               // the request as a whole is unacceptable (method, content type, size, duplicates)
	CauseUnknownClient            // no such client
	CauseBadCredentials           // wrong secret or wrong signature
	CauseNoCredentials            // the request carries no client authentication at all
	CauseMethodNotAllowed         // the client may not authenticate with the method it used
	CauseEndpointNotAllowed       // the client may not use this token endpoint
	CauseNoClientKey              // the dialect needs a registered key and the client has none
	CauseClientDisabled           // the client exists but is disabled
	CauseStaleRequest             // a request timestamp outside the allowed window
	CauseReplay                   // a request seen before
	CauseGrantNotAllowed          // the client may not use this grant
	CauseScopeNotAllowed          // a requested scope is not allowed for the client
	CauseBadGrant                 // wrong password, unknown/expired/revoked/reused refresh token
	CauseUserDisabled             // the resource owner is disabled
	CauseUserLocked               // too many wrong passwords for the username: locked for a while
	CauseRateLimited              // too many requests
	CauseOverloaded               // the server is at capacity for this kind of work (a full queue)
	CauseUnavailable              // the store or another dependency is unreachable
	CauseTimeout                  // a dependency did not answer in time
	CauseInternal                 // a server fault
)

// Error is an OAuth error as a value: what went wrong (Code, Cause, Field),
// never how a wire format says it. Each dialect alone maps it to an HTTP
// status, headers and body. Description is shown to the client, so it never
// holds a secret.
type Error struct {
	Code        string // RFC 6749 §5.2 error code
	Description string // human-readable, safe to show to the client
	Cause       Cause
	Field       string // the parameter or header concerned, if any
	// RetryAfter, when positive, is how long the client should wait before
	// trying again (rate limits, a full queue, an unreachable store).
	RetryAfter time.Duration
	// Status is set only by a dialect for an error of its own wire format
	// (the RFC 6749 dialect's 405 and 413); the engine never sets it.
	Status int
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Constructors for the common cases. Descriptions are fixed or name only
// fields, never values, so no secret can reach a client through them.

func Missing(field string) *Error {
	return &Error{Code: CodeInvalidRequest, Cause: CauseMissingField, Field: field,
		Description: "missing required parameter: " + field}
}

func Malformed(field, why string) *Error {
	d := "malformed parameter: " + field
	if why != "" {
		d += " (" + why + ")"
	}
	return &Error{Code: CodeInvalidRequest, Cause: CauseMalformedField, Field: field, Description: d}
}

func BadRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Cause: CauseBadRequest, Description: desc}
}

func InvalidClient(cause Cause, desc string) *Error {
	return &Error{Code: CodeInvalidClient, Cause: cause, Description: desc}
}

func InvalidGrant(cause Cause, desc string) *Error {
	return &Error{Code: CodeInvalidGrant, Cause: cause, Description: desc}
}

func InvalidScope(desc string) *Error {
	return &Error{Code: CodeInvalidScope, Cause: CauseScopeNotAllowed, Description: desc}
}

func UnauthorizedClient(desc string) *Error {
	return &Error{Code: CodeUnauthorizedClient, Cause: CauseGrantNotAllowed, Description: desc}
}

func UnsupportedGrant(desc string) *Error {
	return &Error{Code: CodeUnsupportedGrantType, Cause: CauseMalformedField, Field: "grant_type", Description: desc}
}

func ServerError() *Error {
	return &Error{Code: CodeServerError, Cause: CauseInternal, Description: "internal error"}
}

// Unavailable: the store cannot be reached; a retry after a second may work.
func Unavailable() *Error {
	return &Error{Code: CodeTemporarilyUnavail, Cause: CauseUnavailable, RetryAfter: time.Second,
		Description: "the token store is unavailable, try again shortly"}
}

func Timeout() *Error {
	return &Error{Code: CodeTemporarilyUnavail, Cause: CauseTimeout, RetryAfter: time.Second,
		Description: "the token store did not answer in time, try again shortly"}
}

// RateLimited has no RFC 6749 error code of its own; temporarily_unavailable
// (HTTP 429 in the RFC 6749 dialect) tells a client to retry after wait.
func RateLimited(desc string, wait time.Duration) *Error {
	return &Error{Code: CodeTemporarilyUnavail, Cause: CauseRateLimited, RetryAfter: wait, Description: desc}
}

// Overloaded: a bounded queue is full; the client may retry after wait.
func Overloaded(desc string, wait time.Duration) *Error {
	return &Error{Code: CodeTemporarilyUnavail, Cause: CauseOverloaded, RetryAfter: wait, Description: desc}
}

// AsError returns err as an *Error if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
