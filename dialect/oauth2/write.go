package oauth2

import (
	"encoding/json"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

// ContentTypeJSON is the Content-Type of every body this package writes.
const ContentTypeJSON = "application/json;charset=UTF-8"

// WWWAuthenticate is the challenge sent with every 401 (RFC 7617).
const WWWAuthenticate = `Basic realm="tokengate", charset="UTF-8"`

// WriteJSON writes v, encoded with encoding/json, with status, the RFC 6749
// §5.1 no-store headers and Content-Type application/json;charset=UTF-8.
// It is meant for the introspection and revocation answers; if v cannot be
// encoded it writes a server_error instead.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, nil, oauth.ServerError())
		return
	}
	writeBody(w, status, b)
}

// WriteError writes e as an RFC 6749 §5.2 error: {"error", "error_description"}
// (never "error_uri"), the no-store headers, Retry-After when e says how
// long to wait, and the status this dialect gives e (see Status). A 401
// carries WWW-Authenticate: Basic realm="tokengate", charset="UTF-8"; a 405
// Allow: POST; a 413 Connection: close (the rest of the body is left
// unread). Characters §5.2 does not allow in error and error_description
// (anything outside %x20-21 / %x23-5B / %x5D-7E) are replaced. A nil e is
// written as server_error. r is the request answered (nil is allowed).
func WriteError(w http.ResponseWriter, r *http.Request, e *oauth.Error) {
	if e == nil {
		e = oauth.ServerError()
	}
	status := Status(r, e)
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", WWWAuthenticate)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	case http.StatusRequestEntityTooLarge:
		h.Set("Connection", "close")
	}
	dialect.SetRetryAfter(h, e)
	code := e.Code
	if code == "" {
		code = oauth.CodeServerError
		if status < 500 {
			code = oauth.CodeInvalidRequest
		}
	}
	bp := getBuf()
	b := append((*bp)[:0], `{"error":"`...)
	b = appendErrorChars(b, code)
	if e.Description != "" {
		b = append(b, `","error_description":"`...)
		b = appendErrorChars(b, e.Description)
	}
	b = append(b, `"}`...)
	writeBody(w, status, b)
	*bp = b
	putBuf(bp)
}

// Status is the HTTP status of e in RFC 6749's dialect, answering r:
//
//   - invalid_client: 401 (with a Basic challenge) when the client tried the
//     Authorization header or sent no credentials at all; 400 when its body
//     credentials failed (RFC 6749 §5.2; RFC 7235 allows no 401 without a
//     challenge, and a Basic challenge would be wrong for body credentials);
//   - temporarily_unavailable: 429 when rate limited, else 503;
//   - server_error: 500; every other code: 400;
//   - a Status this package set for an error of its own (405, 413) wins.
func Status(r *http.Request, e *oauth.Error) int {
	if e.Status >= 400 && e.Status <= 599 {
		return e.Status
	}
	switch e.Code {
	case oauth.CodeInvalidClient:
		if e.Cause == oauth.CauseNoCredentials || (r != nil && len(r.Header["Authorization"]) > 0) {
			return http.StatusUnauthorized
		}
		return http.StatusBadRequest
	case oauth.CodeTemporarilyUnavail:
		if e.Cause == oauth.CauseRateLimited {
			return http.StatusTooManyRequests
		}
		return http.StatusServiceUnavailable
	case oauth.CodeServerError, "":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	dialect.NoStore(h)
	h.Set("Content-Type", ContentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b) // a write error means the client went away; nothing to tell it
}

// appendErrorChars appends s restricted to RFC 6749 §5.2's character set
// for error and error_description, which needs no JSON escaping: a double
// quote becomes an apostrophe, a backslash a slash, and any other byte or
// rune outside the set a question mark.
func appendErrorChars(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\'')
		case c == '\\':
			b = append(b, '/')
		case 0x20 <= c && c <= 0x7e:
			b = append(b, c)
		case c < utf8.RuneSelf:
			b = append(b, '?')
		default:
			_, n := utf8.DecodeRuneInString(s[i:])
			b = append(b, '?')
			i += n
			continue
		}
		i++
	}
	return b
}

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		bufPool.Put(bp)
	}
}
