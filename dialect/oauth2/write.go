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
		WriteError(w, oauth.ServerError())
		return
	}
	writeBody(w, status, b)
}

// WriteError writes e as an RFC 6749 §5.2 error: {"error", "error_description"}
// (never "error_uri"), status e.Status, the no-store headers, and:
//
//   - 401 when e.BasicAuthFailed, whatever e.Status says;
//   - on any 401, WWW-Authenticate: Basic realm="tokengate", charset="UTF-8";
//   - on 405, Allow: POST;
//   - on 413, Connection: close (the rest of the body is left unread).
//
// Characters §5.2 does not allow in error and error_description (anything
// outside %x20-21 / %x23-5B / %x5D-7E) are replaced. A nil e is written as
// server_error.
func WriteError(w http.ResponseWriter, e *oauth.Error) {
	if e == nil {
		e = oauth.ServerError()
	}
	status := e.Status
	if e.BasicAuthFailed {
		status = http.StatusUnauthorized
	}
	if status < 400 || status > 599 {
		status = defaultStatus(e.Code)
	}
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", WWWAuthenticate)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	case http.StatusRequestEntityTooLarge:
		h.Set("Connection", "close")
	}
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

func defaultStatus(code string) int {
	switch code {
	case oauth.CodeInvalidClient:
		return http.StatusUnauthorized
	case oauth.CodeServerError, "":
		return http.StatusInternalServerError
	case oauth.CodeTemporarilyUnavail:
		return http.StatusServiceUnavailable
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
