package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// The service's errors. Every method documents which it returns; test them
// with errors.Is (or errors.As for the typed ones), or ask ErrorCode for
// the kind. Anything else is an internal failure (ErrorCode "internal").
var (
	// ErrNotFound: the object does not exist, or the actor may not see it
	// (a merchant asking for another merchant's client gets this, never
	// ErrForbidden, so it learns nothing about what exists).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change clashes with what exists (a taken email or
	// partner ID, an import record that differs from the stored client).
	// A *ConflictError may say which field.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is unusable; always a *ValidationError.
	ErrInvalid = errors.New("invalid")
	// ErrForbidden: the actor is known but may not do this (a merchant
	// listing users, creating a client beyond its limits).
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthenticated: the context carries no actor (WithActor), or its
	// account is disabled or gone.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrBadCredentials: VerifyLogin refused the email, password or code,
	// without saying which.
	ErrBadCredentials = errors.New("wrong email, password or code")
	// ErrTOTPRequired: VerifyLogin found the password right, and the
	// account needs a TOTP code that was not given.
	ErrTOTPRequired = errors.New("a TOTP code is required")
	// ErrLocked: too many failed sign-ins, or another check of the same
	// email running on this node; always a *LockedError.
	ErrLocked = errors.New("too many failed attempts")
	// ErrUnavailable: the store (or the shared lockout) cannot be reached;
	// retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnsupported: the store cannot do this (Backup on PostgreSQL).
	ErrUnsupported = errors.New("not supported")
)

// ValidationError is an unusable input: Field is the name of the field as
// the admin API and the import format spell it ("scopes", "access_ttl",
// "limits.max_clients"), Message what is wrong with it, for people. It
// matches ErrInvalid with errors.Is.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ConflictError is ErrConflict about one field (Field "" when it is about
// the object as a whole).
type ConflictError struct {
	Field   string
	Message string
}

func (e *ConflictError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// LockedError is ErrLocked with the wait before the next attempt can
// succeed (for a Retry-After header).
type LockedError struct{ RetryAfter time.Duration }

func (e *LockedError) Error() string {
	return fmt.Sprintf("too many failed attempts: try again in %v", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Error codes, one per error kind, for the skins to map to their own
// statuses in one place. The admin HTTP API's suggested statuses are in
// parentheses.
const (
	CodeInvalid         = "invalid"         // ErrInvalid (400)
	CodeNotFound        = "not_found"       // ErrNotFound (404)
	CodeConflict        = "conflict"        // ErrConflict (409)
	CodeForbidden       = "forbidden"       // ErrForbidden (403)
	CodeUnauthenticated = "unauthenticated" // ErrUnauthenticated (401)
	CodeBadCredentials  = "bad_credentials" // ErrBadCredentials (401)
	CodeTOTPRequired    = "totp_required"   // ErrTOTPRequired (401)
	CodeLocked          = "locked"          // ErrLocked (429, Retry-After)
	CodeUnavailable     = "unavailable"     // ErrUnavailable, a timeout (503)
	CodeUnsupported     = "unsupported"     // ErrUnsupported (501)
	CodeInternal        = "internal"        // anything else (500)
)

var codes = []struct {
	err  error
	code string
}{
	{ErrInvalid, CodeInvalid}, {ErrNotFound, CodeNotFound}, {ErrConflict, CodeConflict},
	{ErrForbidden, CodeForbidden}, {ErrUnauthenticated, CodeUnauthenticated},
	{ErrBadCredentials, CodeBadCredentials}, {ErrTOTPRequired, CodeTOTPRequired}, {ErrLocked, CodeLocked},
	{ErrUnavailable, CodeUnavailable}, {context.DeadlineExceeded, CodeUnavailable}, {ErrUnsupported, CodeUnsupported},
}

// ErrorCode returns the code of err's kind ("" for nil): one of the Code
// constants.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// ErrorMessage returns what may be shown to the actor about err: its text;
// for an internal failure only "internal error" (the text may name stored
// values), and for ErrUnavailable only MessageUnavailable (the text may
// name the store's hosts, its driver's errors, the lockout's backend):
// log those instead.
func ErrorMessage(err error) string {
	switch ErrorCode(err) {
	case "":
		return ""
	case CodeInternal:
		return "internal error"
	case CodeUnavailable:
		return MessageUnavailable
	}
	return err.Error()
}

// MessageUnavailable is what ErrorMessage says of any ErrUnavailable.
const MessageUnavailable = "the service is unavailable now: retry shortly"

// storeErr translates a store error about what into the service's
// errors: not found, already exists (a conflict) and unavailable; other
// errors (a kek error saying what to do, an update callback's error) pass
// through as they are.
func storeErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, oauth.ErrNotFound):
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case errors.Is(err, oauth.ErrAlreadyExists):
		return &ConflictError{Message: what + " already exists"}
	case errors.Is(err, oauth.ErrUnavailable):
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	case errors.Is(err, errors.ErrUnsupported):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}
