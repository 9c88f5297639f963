// Package bearer is RFC 6750 on the resource side: reading an access token
// from a request and answering one that does not do, with the
// WWW-Authenticate challenge the RFC specifies. The gateway's bearer routes
// and the resource-server guard both use it.
package bearer

import (
	"net/http"
	"strings"
)

// RFC 6750 §3.1 error codes.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
)

// maxTokenLen bounds a presented token: longer than any token tokengate
// issues (an RS256 JWT with a long scope is a few KiB).
const maxTokenLen = 16 << 10

// Error is an RFC 6750 §3 answer. An empty Code is a request without any
// credentials: §3.1 says to answer it with the challenge alone.
type Error struct {
	Code        string
	Description string // fixed text, never request data
	Scope       string // insufficient_scope: the scope the resource needs
	Status      int    // 400, 401 or 403 (§3.1), or 503 when the check could not be made
}

// Missing is the answer to a request without credentials (§3.1: no error
// code).
func Missing() *Error { return &Error{Status: http.StatusUnauthorized} }

// InvalidRequest is a malformed request (§3.1): 400.
func InvalidRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Description: desc, Status: http.StatusBadRequest}
}

// InvalidToken is an expired, revoked, malformed or unknown token: 401.
func InvalidToken(desc string) *Error {
	return &Error{Code: CodeInvalidToken, Description: desc, Status: http.StatusUnauthorized}
}

// InsufficientScope is a valid token without the scope the resource needs:
// 403, with the needed scope in the challenge.
func InsufficientScope(scope string) *Error {
	return &Error{Code: CodeInsufficientScope, Description: "the access token does not grant the scope this resource needs",
		Scope: scope, Status: http.StatusForbidden}
}

// Unavailable is a token that could not be checked (the authorization
// server or its store is unreachable): 503 with Retry-After, never a
// guessed answer.
func Unavailable() *Error {
	return &Error{Code: "temporarily_unavailable", Description: "the access token cannot be checked now, retry shortly",
		Status: http.StatusServiceUnavailable}
}

// Token returns the access token of an "Authorization: Bearer" header
// (RFC 6750 §2.1; the scheme is case-insensitive, RFC 9110 §11.1). A request
// without an Authorization header is Missing; another scheme is Missing too
// (the resource does not accept it, so it is as if no credentials came); a
// header sent twice, or a token that is not a b64token, is InvalidRequest.
// Tokens in the body or the query (§2.2, §2.3) are not accepted.
func Token(h http.Header) (string, *Error) {
	vs := h["Authorization"]
	switch len(vs) {
	case 0:
		return "", Missing()
	case 1:
	default:
		return "", InvalidRequest("more than one Authorization header")
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(vs[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", Missing()
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > maxTokenLen || !B64Token(tok) {
		return "", InvalidRequest("the Authorization header does not hold a bearer token")
	}
	return tok, nil
}

// B64Token reports whether s is RFC 6750 §2.1's b64token: 1*( ALPHA /
// DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func B64Token(s string) bool {
	i := 0
	for ; i < len(s) && b64char[s[i]]; i++ {
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// b64char is the set of b64token's characters before its padding. A table:
// every request's token is scanned, and a JWT is ~500 bytes, where a chain
// of comparisons per byte cost the guard's middleware ~0.4 µs a request.
var b64char = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// Write answers e: the status, WWW-Authenticate: Bearer realm="..." with
// error, error_description and scope as RFC 6750 §3 shows them (see
// Challenge), and a small JSON body with the same error (for clients that
// read bodies).
func (e *Error) Write(w http.ResponseWriter, realm string) {
	h := w.Header()
	if c := e.Challenge(realm); c != "" {
		h.Set("WWW-Authenticate", c)
	}
	if e.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	if e.Code == "" {
		w.Write([]byte(`{"error":"unauthorized","error_description":"an access token is required"}`))
		return
	}
	w.Write([]byte(`{"error":"` + e.Code + `","error_description":"` + quoted(e.Description) + `"}`))
}

// Challenge is the WWW-Authenticate value RFC 6750 §3 gives e: Bearer
// realm="..." with error, error_description and scope; "" for a status
// that carries no challenge (503). For a resource that writes its own
// error bodies (the admin API's problem details).
func (e *Error) Challenge(realm string) string {
	if e.Status != http.StatusUnauthorized && e.Status != http.StatusForbidden && e.Status != http.StatusBadRequest {
		return ""
	}
	var b strings.Builder
	b.WriteString(`Bearer realm="`)
	b.WriteString(quoted(realm))
	b.WriteByte('"')
	if e.Code != "" {
		b.WriteString(`, error="`)
		b.WriteString(e.Code)
		b.WriteByte('"')
		if e.Description != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(quoted(e.Description))
			b.WriteByte('"')
		}
		if e.Scope != "" {
			b.WriteString(`, scope="`)
			b.WriteString(quoted(e.Scope))
			b.WriteByte('"')
		}
	}
	return b.String()
}

// quoted makes s safe inside a quoted-string and a JSON string: the
// characters RFC 6750 §3 allows in error_description (%x20-21 / %x23-5B /
// %x5D-7E), anything else replaced.
func quoted(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}
