package adminapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tokengate/tokengate/admin"
)

// Problem is an RFC 9457 problem details document, the body of every
// error the admin API answers (Content-Type application/problem+json).
type Problem struct {
	// Type identifies the kind of problem: ProblemBase followed by Code,
	// a URI reference (relative to the API) whose document describes it.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	// Detail says what went wrong with this request, for people. It never
	// holds a secret or an internal error's text.
	Detail string `json:"detail"`
	// Code is the kind of problem as a word (an extension member): one of
	// the admin service's error codes (admin.CodeInvalid, ...) or the
	// API's own (CodeTooLarge, ...).
	Code string `json:"code"`
	// Errors name the fields at fault, for a validation problem.
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError is one field at fault. Field is the field's name as the
// request spells it (a JSON member, "limits.max_clients", a query
// parameter or a header); "" for the request as a whole.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Record, Line and ClientID locate a bad record of a client import.
	Record   int    `json:"record,omitempty"`
	Line     int    `json:"line,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// ProblemBase is what every problem type URI starts with; the API serves
// a description of each at it (GET /admin/v1/problems/{code}).
const ProblemBase = "/admin/v1/problems/"

// The API's own problem codes, besides the admin service's.
const (
	CodeMethodNotAllowed     = "method_not_allowed"     // 405
	CodeTooLarge             = "too_large"              // 413
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	// CodeIdempotencyInProgress: a request with the same Idempotency-Key
	// is still running (409, Retry-After).
	CodeIdempotencyInProgress = "idempotency_in_progress"
	// CodeIdempotencyKeyReused: the Idempotency-Key was used for another
	// request (422).
	CodeIdempotencyKeyReused = "idempotency_key_reused"
)

// problemType describes one problem code.
type problemType struct {
	Status      int
	Title       string
	Description string
}

// problemTypes maps every code to its status: the one place admin
// service errors become HTTP statuses.
var problemTypes = map[string]problemType{
	admin.CodeInvalid: {http.StatusBadRequest, "Invalid request",
		"The request is unusable as sent: errors names each field at fault. Correct it before sending it again."},
	admin.CodeUnauthenticated: {http.StatusUnauthorized, "Unauthenticated",
		"The request carries no usable credentials: send an access token of a client holding the tokengate:admin scope " +
			"(Authorization: Bearer), or a client certificate the admin listener trusts. WWW-Authenticate says more."},
	admin.CodeBadCredentials: {http.StatusUnauthorized, "Wrong credentials",
		"The email, password or code given is wrong."},
	admin.CodeTOTPRequired: {http.StatusUnauthorized, "Second factor required",
		"The password was right and the account also needs a TOTP code."},
	admin.CodeForbidden: {http.StatusForbidden, "Forbidden",
		"The caller is authenticated but may not do this (an access token without the tokengate:admin scope, an action beyond a limit)."},
	admin.CodeNotFound: {http.StatusNotFound, "Not found",
		"No such object, or no such route."},
	CodeMethodNotAllowed: {http.StatusMethodNotAllowed, "Method not allowed",
		"The route exists but not with this method: the Allow header lists those it has."},
	admin.CodeConflict: {http.StatusConflict, "Conflict",
		"The change clashes with what exists (a taken partner ID, username or email); errors may name the field."},
	CodeIdempotencyInProgress: {http.StatusConflict, "Request in progress",
		"A request with the same Idempotency-Key is still being processed: retry after Retry-After to get its response."},
	CodeTooLarge: {http.StatusRequestEntityTooLarge, "Request too large",
		"The request body is larger than this route accepts."},
	CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type",
		"This route takes a JSON body (Content-Type: application/json)."},
	CodeIdempotencyKeyReused: {http.StatusUnprocessableEntity, "Idempotency key reused",
		"The Idempotency-Key was already used for a different request (method, path or body): " +
			"use a new key for a new request."},
	admin.CodeLocked: {http.StatusTooManyRequests, "Locked",
		"Too many failed attempts: retry after Retry-After."},
	admin.CodeInternal: {http.StatusInternalServerError, "Internal error",
		"The server failed; the failure is in its log. The request may be retried."},
	admin.CodeUnsupported: {http.StatusNotImplemented, "Not supported",
		"This server cannot do this (for example, a backup of a PostgreSQL store)."},
	admin.CodeUnavailable: {http.StatusServiceUnavailable, "Unavailable",
		"The store cannot be reached now: retry after Retry-After."},
}

// newProblem returns the problem of code with detail.
func newProblem(code, detail string) *Problem {
	pt, ok := problemTypes[code]
	if !ok {
		code, pt = admin.CodeInternal, problemTypes[admin.CodeInternal]
	}
	if detail == "" {
		detail = pt.Title
	}
	return &Problem{Type: ProblemBase + code, Title: pt.Title, Status: pt.Status, Detail: detail, Code: code}
}

// problemOf maps an error of the admin service (or of the API itself) to
// its problem. The text of an internal error or of the service's
// ErrUnavailable is never shown (admin.ErrorMessage): it goes to the log
// (logged reports whether it should).
func problemOf(err error) (p *Problem, logged bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.problem(), false
	}
	code := admin.ErrorCode(err)
	p = newProblem(code, admin.ErrorMessage(err))
	var (
		ve  *admin.ValidationError
		ce  *admin.ConflictError
		ies admin.ImportErrors
	)
	switch {
	case errors.As(err, &ies):
		p.Detail = "nothing was imported: " + plural(len(ies), "record is", "records are") + " unusable (see errors)"
		for _, ie := range ies {
			fe := FieldError{Record: ie.Record, Line: ie.Line, ClientID: ie.ClientID, Message: ie.Err.Error()}
			if errors.As(ie.Err, &ve) {
				fe.Field, fe.Message = ve.Field, ve.Message
			} else if errors.As(ie.Err, &ce) {
				fe.Field, fe.Message = ce.Field, ce.Message
			}
			p.Errors = append(p.Errors, fe)
		}
	case errors.As(err, &ve):
		p.Errors = []FieldError{{Field: ve.Field, Message: ve.Message}}
	case errors.As(err, &ce) && ce.Field != "":
		p.Errors = []FieldError{{Field: ce.Field, Message: ce.Message}}
	}
	return p, code == admin.CodeInternal || code == admin.CodeUnavailable
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// apiError is a problem found by the API itself (a body it cannot read,
// a bad query parameter, an Idempotency-Key reused), with the fields at
// fault.
type apiError struct {
	code, detail string
	fields       []FieldError
	retryAfter   time.Duration
	header       http.Header // extra headers (Allow, WWW-Authenticate)
}

func (e *apiError) Error() string { return e.detail }

func (e *apiError) problem() *Problem {
	p := newProblem(e.code, e.detail)
	p.Errors = e.fields
	return p
}

// invalidField is a validation problem about one field.
func invalidField(field, message string) *apiError {
	return &apiError{code: admin.CodeInvalid, detail: fieldDetail(field, message),
		fields: []FieldError{{Field: field, Message: message}}}
}

func fieldDetail(field, message string) string {
	if field == "" {
		return message
	}
	return field + ": " + message
}

// writeProblem answers with p.
func writeProblem(w http.ResponseWriter, p *Problem, h http.Header, retryAfter time.Duration) {
	for k, vs := range h {
		w.Header()[k] = vs
	}
	if p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests || retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((retryAfter+time.Second-1)/time.Second))))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	b, _ := json.Marshal(p) // cannot fail: strings and ints
	w.Write(append(b, '\n'))
}
