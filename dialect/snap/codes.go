package snap

import (
	"net/http"
	"strconv"

	"github.com/tokengate/tokengate/oauth"
)

// serviceCode is SNAP's two-digit service code, the middle of a responseCode.
type serviceCode string

const (
	serviceAccessTokenB2B serviceCode = "73"
	// serviceAccessTokenB2B2C serviceCode = "74" // not implemented yet
)

// ResponseCase is one row of SNAP's response code table, independent of the
// service: responseCode = HTTP status + service code + case code. The
// token endpoint and the verifier of service calls (package snapcall)
// answer from the same rows.
type ResponseCase struct {
	status  int    // HTTP status; also responseCode's first three digits
	code    string // two-digit case code
	message string // responseMessage, or its prefix for the detailed cases
}

var (
	CaseSuccessful       = ResponseCase{http.StatusOK, "00", "Successful"}
	CaseBadRequest       = ResponseCase{http.StatusBadRequest, "00", "Bad Request"}
	CaseInvalidFormat    = ResponseCase{http.StatusBadRequest, "01", "Invalid Field Format"}
	CaseInvalidMandatory = ResponseCase{http.StatusBadRequest, "02", "Invalid Mandatory Field"}
	CaseUnauthorized     = ResponseCase{http.StatusUnauthorized, "00", "Unauthorized"}
	CaseTooManyRequests  = ResponseCase{http.StatusTooManyRequests, "00", "Too Many Requests"}
	CaseGeneralError     = ResponseCase{http.StatusInternalServerError, "00", "General Error"}
	CaseTimeout          = ResponseCase{http.StatusGatewayTimeout, "00", "Timeout"}

	// Rows only service calls use.
	CaseInvalidToken  = ResponseCase{http.StatusUnauthorized, "01", "Invalid Token (B2B)"}
	CaseConflict      = ResponseCase{http.StatusConflict, "00", "Conflict"}
	CaseExternalError = ResponseCase{http.StatusInternalServerError, "02", "External Server Error"}

	// The reason shown in "Unauthorized. [reason]": a fixed phrase per
	// cause, never a value from the request.
	unauthorizedByCause = map[oauth.Cause]string{
		oauth.CauseUnknownClient:      "Unknown client",
		oauth.CauseBadCredentials:     "Invalid signature",
		oauth.CauseNoCredentials:      "Invalid signature",
		oauth.CauseMethodNotAllowed:   "Client not registered for SNAP signatures",
		oauth.CauseEndpointNotAllowed: "Client not registered for this endpoint",
		oauth.CauseNoClientKey:        "No public key registered",
		oauth.CauseClientDisabled:     "Client disabled",
		oauth.CauseStaleRequest:       "Stale timestamp",
		oauth.CauseReplay:             "Replayed request",
		oauth.CauseGrantNotAllowed:    "Grant not allowed",
		oauth.CauseScopeNotAllowed:    "Scope not allowed",
		oauth.CauseBadGrant:           "Invalid grant",
		oauth.CauseUserDisabled:       "User disabled",
	}
	unauthorizedByCode = map[string]string{
		oauth.CodeInvalidClient:      "Invalid client",
		oauth.CodeUnauthorizedClient: "Grant not allowed",
		oauth.CodeInvalidScope:       "Scope not allowed",
		oauth.CodeInvalidGrant:       "Invalid grant",
	}
)

// uniformAuthReason replaces, under the endpoint option
// uniform_auth_errors, every reason for which revealsClient is true.
const uniformAuthReason = "Invalid client credentials"

// revealsClient reports whether e is an authentication failure whose
// reason would tell a caller who has not proved who it is something about
// the client key it sent: that it is unknown, has no usable public key, or
// exists but the signature is wrong. An invalid_client error without a
// Cause counts too, so that a new engine path cannot reopen the leak.
func revealsClient(e *oauth.Error) bool {
	if e == nil {
		return false
	}
	switch e.Cause {
	case oauth.CauseUnknownClient, oauth.CauseBadCredentials, oauth.CauseNoClientKey:
		return true
	case oauth.CauseUnspecified:
		return e.Code == oauth.CodeInvalidClient
	}
	return false
}

// responseCode builds the seven-digit SNAP code for c under service s.
func (c ResponseCase) responseCode(s serviceCode) string {
	return strconv.Itoa(c.status) + string(s) + c.code
}

// snapError is an error response ready for the wire.
type snapError struct {
	status  int
	code    string
	message string
}

// mapError maps an engine or decoder error onto SNAP's table for service s.
// The Cause decides; an error without a known Cause falls back on its OAuth
// code, then on its HTTP status (400 -> x00, 401/403 -> 401, 5xx -> 500).
func mapError(s serviceCode, e *oauth.Error) snapError {
	if e == nil {
		return build(s, CaseGeneralError, "")
	}
	switch e.Cause {
	case oauth.CauseMissingField:
		return build(s, CaseInvalidMandatory, fieldDetail(e.Field))
	case oauth.CauseMalformedField:
		return build(s, CaseInvalidFormat, fieldDetail(e.Field))
	case oauth.CauseBadRequest:
		return build(s, CaseBadRequest, "")
	case oauth.CauseRateLimited:
		return build(s, CaseTooManyRequests, "")
	case oauth.CauseTimeout, oauth.CauseUnavailable, oauth.CauseOverloaded:
		// SNAP has no 503 row. 504 "Timeout" tells a merchant "transient,
		// retry"; 500 "General Error" would suggest a fault in tokengate.
		return build(s, CaseTimeout, "")
	case oauth.CauseInternal:
		return build(s, CaseGeneralError, "")
	}
	if reason, ok := unauthorizedByCause[e.Cause]; ok {
		return build(s, CaseUnauthorized, "["+reason+"]")
	}
	switch e.Code {
	case oauth.CodeInvalidRequest:
		if e.Field != "" {
			return build(s, CaseInvalidFormat, fieldDetail(e.Field))
		}
		return build(s, CaseBadRequest, "")
	case oauth.CodeUnsupportedGrantType:
		return build(s, CaseInvalidFormat, fieldDetail("grantType"))
	case oauth.CodeServerError:
		return build(s, CaseGeneralError, "")
	case oauth.CodeTemporarilyUnavail:
		return build(s, CaseTimeout, "")
	}
	if reason, ok := unauthorizedByCode[e.Code]; ok {
		return build(s, CaseUnauthorized, "["+reason+"]")
	}
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return build(s, CaseUnauthorized, "[Access denied]")
	case e.Status == http.StatusTooManyRequests:
		return build(s, CaseTooManyRequests, "")
	case e.Status == http.StatusGatewayTimeout || e.Status == http.StatusServiceUnavailable:
		return build(s, CaseTimeout, "")
	case e.Status >= 500:
		return build(s, CaseGeneralError, "")
	case e.Status >= 400:
		return build(s, CaseBadRequest, "")
	}
	return build(s, CaseGeneralError, "")
}

func build(s serviceCode, c ResponseCase, detail string) snapError {
	status, code, msg := c.Answer(string(s), detail)
	return snapError{status: status, code: code, message: msg}
}

// Answer is case c's answer for the two-digit service code svc: the HTTP
// status, the responseCode and the responseMessage, with detail after
// the message ("Unauthorized. [Invalid signature]", "Invalid Field Format
// {X-TIMESTAMP}") unless it is "".
func (c ResponseCase) Answer(svc, detail string) (status int, responseCode, responseMessage string) {
	msg := c.message
	switch {
	case detail == "":
	case c == CaseUnauthorized:
		msg += ". " + detail
	default:
		msg += " " + detail
	}
	return c.status, c.responseCode(serviceCode(svc)), msg
}

// snapFieldNames translates the engine's RFC 6749 parameter names into the
// names a SNAP client sent.
var snapFieldNames = map[string]string{
	"grant_type":    "grantType",
	"client_id":     "X-CLIENT-KEY",
	"client_secret": "X-SIGNATURE",
}

func fieldDetail(field string) string {
	if n, ok := snapFieldNames[field]; ok {
		field = n
	}
	if field == "" {
		return ""
	}
	return "{" + field + "}"
}
