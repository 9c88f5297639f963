package oauth

import (
	"errors"
	"net/http"
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
	CauseUnspecified     Cause = iota
	CauseMissingField          // a mandatory parameter or header is absent; Field names it
	CauseMalformedField        // a parameter or header has a bad format; Field names it
	CauseBadRequest            // the request as a whole is unacceptable (method, content type, size, duplicates)
	CauseUnknownClient         // no such client
	CauseBadCredentials        // wrong secret, wrong signature, or no credentials
	CauseNoClientKey           // the dialect needs a registered key and the client has none
	CauseClientDisabled        // the client exists but is disabled
	CauseStaleRequest          // a request timestamp outside the allowed window
	CauseReplay                // a request seen before
	CauseGrantNotAllowed       // the client may not use this grant
	CauseScopeNotAllowed       // a requested scope is not allowed for the client
	CauseBadGrant              // wrong password, unknown/expired/revoked/reused refresh token
	CauseUserDisabled          // the resource owner is disabled
	CauseRateLimited           // too many requests
	CauseUnavailable           // the store or another dependency is unreachable
	CauseTimeout               // a dependency did not answer in time
	CauseInternal              // a server fault
)

// Error is an OAuth error as a value: written to the wire in one place per
// dialect. Description is shown to the client, so it never holds a secret.
type Error struct {
	Code        string // RFC 6749 §5.2 error code
	Description string // human-readable, safe to show to the client
	Status      int    // HTTP status in the RFC 6749 dialect
	Cause       Cause
	Field       string // the parameter or header concerned, if any
	// BasicAuthFailed asks the RFC 6749 dialect for 401 with a Basic
	// WWW-Authenticate challenge (§5.2): the client tried the Authorization
	// header, or sent no credentials at all.
	BasicAuthFailed bool
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
	return &Error{Code: CodeInvalidRequest, Status: http.StatusBadRequest, Cause: CauseMissingField, Field: field,
		Description: "missing required parameter: " + field}
}

func Malformed(field, why string) *Error {
	d := "malformed parameter: " + field
	if why != "" {
		d += " (" + why + ")"
	}
	return &Error{Code: CodeInvalidRequest, Status: http.StatusBadRequest, Cause: CauseMalformedField, Field: field, Description: d}
}

func BadRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Status: http.StatusBadRequest, Cause: CauseBadRequest, Description: desc}
}

func InvalidClient(cause Cause, desc string) *Error {
	return &Error{Code: CodeInvalidClient, Status: http.StatusUnauthorized, Cause: cause, Description: desc}
}

func InvalidGrant(cause Cause, desc string) *Error {
	return &Error{Code: CodeInvalidGrant, Status: http.StatusBadRequest, Cause: cause, Description: desc}
}

func InvalidScope(desc string) *Error {
	return &Error{Code: CodeInvalidScope, Status: http.StatusBadRequest, Cause: CauseScopeNotAllowed, Description: desc}
}

func UnauthorizedClient(desc string) *Error {
	return &Error{Code: CodeUnauthorizedClient, Status: http.StatusBadRequest, Cause: CauseGrantNotAllowed, Description: desc}
}

func UnsupportedGrant(desc string) *Error {
	return &Error{Code: CodeUnsupportedGrantType, Status: http.StatusBadRequest, Cause: CauseMalformedField, Field: "grant_type", Description: desc}
}

func ServerError() *Error {
	return &Error{Code: CodeServerError, Status: http.StatusInternalServerError, Cause: CauseInternal, Description: "internal error"}
}

func Unavailable() *Error {
	return &Error{Code: CodeTemporarilyUnavail, Status: http.StatusServiceUnavailable, Cause: CauseUnavailable,
		Description: "the token store is unavailable, try again shortly"}
}

func Timeout() *Error {
	return &Error{Code: CodeTemporarilyUnavail, Status: http.StatusServiceUnavailable, Cause: CauseTimeout,
		Description: "the token store did not answer in time, try again shortly"}
}

// RateLimited has no RFC 6749 error code of its own; temporarily_unavailable
// with HTTP 429 tells a client to retry later.
func RateLimited() *Error {
	return &Error{Code: CodeTemporarilyUnavail, Status: http.StatusTooManyRequests, Cause: CauseRateLimited,
		Description: "too many token requests for this client, retry later"}
}

// AsError returns err as an *Error if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
