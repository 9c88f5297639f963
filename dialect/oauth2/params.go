package oauth2

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/internal/reqbody"
	"github.com/tokengate/tokengate/oauth"
)

// MaxBodyBytes is the largest request body ParseParams reads. A larger one
// is answered 413 with an invalid_request body.
const MaxBodyBytes = 64 << 10

// ParseParams reads the POST body of a token, introspection or revocation
// request (application/x-www-form-urlencoded or application/json) into
// single-valued parameters. Parameters sent without a value are left out,
// as RFC 6749 §3.1 says to treat them as omitted.
//
// Errors (all invalid_request): a method other than POST (405, for which
// WriteError adds Allow: POST); a missing or other Content-Type, or a
// charset other than UTF-8; a body over MaxBodyBytes (413); a repeated
// parameter (RFC 6749 §3.2); a body that is not UTF-8, a bad percent-encoding,
// a JSON body jsonx.ReadObject refuses (malformed JSON, invalid UTF-8 or lone
// surrogate escapes, repeated names, data after the object, deep nesting),
// a JSON value that is not a string (except "scope", which may be an array
// of strings, joined with spaces); a control character in a parameter RFC 6749
// Appendix A defines (client_id, client_secret, username, password,
// refresh_token, grant_type) or in RFC 7009's token and token_type_hint;
// credentials or other OAuth parameters in the query string.
func ParseParams(r *http.Request) (map[string]string, *oauth.Error) {
	if r.Method != http.MethodPost {
		return nil, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusMethodNotAllowed,
			Cause: oauth.CauseBadRequest, Description: "the method must be POST"}
	}
	isJSON, e := contentType(r.Header)
	if e != nil {
		return nil, e
	}
	if r.URL != nil && r.URL.RawQuery != "" {
		if e := checkQuery(r.URL.RawQuery); e != nil {
			return nil, e
		}
	}
	if enc := r.Header["Content-Encoding"]; len(enc) > 0 && (len(enc) > 1 || !strings.EqualFold(trimOWS(enc[0]), "identity")) {
		return nil, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Field: "Content-Encoding", Description: "a Content-Encoding is not accepted"}
	}
	body, e := readBody(r)
	if e != nil {
		return nil, e
	}
	m := make(map[string]string, 8)
	if isJSON {
		e = parseJSON(body, m)
	} else {
		e = parseForm(body, m)
	}
	if e != nil {
		return nil, e
	}
	for k, v := range m {
		if checkedParam(k) && !oauth.ValidCredentialText(v) {
			return nil, oauth.Malformed(k, "control character")
		}
	}
	return m, nil
}

// checkedParam reports whether ParseParams checks the character set of
// parameter k: RFC 6749 Appendix A's *UNICODECHARNOCRLF (client_id and
// client_secret are stricter there, VSCHAR, but tokengate accepts UTF-8
// client IDs), also for RFC 7009's token and token_type_hint. Other
// parameters are unknown to tokengate and ignored as RFC 6749 §3.1 requires,
// whatever they hold.
func checkedParam(k string) bool {
	switch k {
	case "grant_type", "client_id", "client_secret", "username", "password", "refresh_token", "token", "token_type_hint":
		return true
	}
	return false
}

// contentType checks the Content-Type header and reports whether it is JSON.
// The media type is case-insensitive; of its parameters only charset is
// looked at, and it must be UTF-8.
func contentType(h http.Header) (isJSON bool, e *oauth.Error) {
	v := h["Content-Type"]
	bad := func(desc string) (bool, *oauth.Error) {
		return false, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Field: "Content-Type", Description: desc}
	}
	switch len(v) {
	case 0:
		return bad("missing Content-Type: use application/x-www-form-urlencoded")
	case 1:
	default:
		return bad("more than one Content-Type header")
	}
	mt, params, _ := strings.Cut(v[0], ";")
	mt = trimOWS(mt)
	switch {
	case strings.EqualFold(mt, "application/x-www-form-urlencoded"):
	case strings.EqualFold(mt, "application/json"):
		isJSON = true
	default:
		return bad("unsupported Content-Type: use application/x-www-form-urlencoded")
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, _ := strings.Cut(p, "=")
		if !strings.EqualFold(trimOWS(name), "charset") {
			continue
		}
		value = trimOWS(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if !strings.EqualFold(value, "utf-8") {
			return bad("unsupported charset: only UTF-8 is accepted")
		}
	}
	return isJSON, nil
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

// credentialParams may not appear in the URL, where they would end up in
// access logs, proxies and browser history (RFC 6749 §2.3.1, §3.2; RFC 6819
// §5.4.2). urlParams are the other OAuth parameters of the endpoints that
// share these rules: they belong in the body too.
var (
	credentialParams = []string{"client_id", "client_secret", "password", "refresh_token", "token",
		"access_token", "client_assertion", "assertion", "code", "code_verifier"}
	urlParams = []string{"grant_type", "scope", "username", "token_type_hint", "client_assertion_type",
		"redirect_uri"}
)

// checkQuery rejects credentials and other OAuth parameters in the query
// string; everything else there is ignored. It splits on ';' as well as '&'
// and, when a name is badly percent-encoded, compares it raw, so that no
// spelling a lenient proxy or log parser would read as a credential slips
// through.
func checkQuery(q string) *oauth.Error {
	misplaced := ""
	for q != "" {
		var pair string
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, ""
		}
		name, _, _ := strings.Cut(pair, "=")
		if dn, ok := formUnescape(name); ok {
			name = dn
		}
		if slices.Contains(credentialParams, name) {
			return &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
				Cause: oauth.CauseBadRequest, Field: name,
				Description: "credentials must not be sent in the URL (" + name + ")"}
		}
		if misplaced == "" && slices.Contains(urlParams, name) {
			misplaced = name
		}
	}
	if misplaced != "" {
		return &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Field: misplaced,
			Description: "parameters must be sent in the request body, not the URL (" + misplaced + ")"}
	}
	return nil
}

// readBody reads at most MaxBodyBytes of r.Body, into a buffer of the
// declared length, and returns it as a string the parsers slice without
// copying.
func readBody(r *http.Request) (string, *oauth.Error) {
	body, err := reqbody.Read(r, MaxBodyBytes)
	switch {
	case errors.Is(err, reqbody.ErrTooLarge):
		return "", tooLarge()
	case err != nil:
		return "", &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Description: "the request body could not be read"}
	}
	return body, nil
}

func tooLarge() *oauth.Error {
	return &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusRequestEntityTooLarge,
		Cause: oauth.CauseBadRequest, Description: "the request body is larger than 64 KiB"}
}

// parseForm parses an application/x-www-form-urlencoded body (WHATWG URL
// §5.1, RFC 6749 Appendix B) into m. Unlike net/url, a raw ';' is data, not
// an error: only '&' separates parameters in this media type. Unlike the
// WHATWG parser, a bad percent-encoding is an error rather than literal
// text, and the decoded names and values must be UTF-8.
func parseForm(s string, m map[string]string) *oauth.Error {
	for s != "" {
		var pair string
		if i := strings.IndexByte(s, '&'); i >= 0 {
			pair, s = s[:i], s[i+1:]
		} else {
			pair, s = s, ""
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		if rawValue == "" {
			continue // no value: omitted (RFC 6749 §3.1)
		}
		name, ok := formUnescape(rawName)
		if !ok || !utf8.ValidString(name) {
			return oauth.BadRequest("malformed form body: bad parameter name encoding")
		}
		if name == "" {
			continue
		}
		value, ok := formUnescape(rawValue)
		if !ok {
			return malformedNamed(name, "bad percent-encoding")
		}
		if !utf8.ValidString(value) {
			return malformedNamed(name, "not UTF-8")
		}
		if _, dup := m[name]; dup {
			return duplicate(name)
		}
		m[name] = value
	}
	return nil
}

// formUnescape decodes '+' and %XX. It returns s itself when there is
// nothing to decode, which is the common case and costs no allocation.
func formUnescape(s string) (string, bool) {
	i := strings.IndexAny(s, "%+")
	if i < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			b = append(b, hi<<4|lo)
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// displayName returns a client-chosen parameter name for an error
// description if it looks like a parameter name, else "". It keeps
// arbitrary text out of descriptions; the length cap (the longest
// registered OAuth parameter name has 21 characters) keeps out a
// 256-bit base64url secret sent where a name belongs.
func displayName(name string) string {
	if len(name) == 0 || len(name) > 32 {
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return ""
		}
	}
	return name
}

func duplicate(name string) *oauth.Error {
	n := displayName(name)
	d := "a parameter is repeated"
	if n != "" {
		d = "parameter repeated: " + n
	}
	return &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
		Cause: oauth.CauseBadRequest, Field: n, Description: d}
}

func malformedNamed(name, why string) *oauth.Error {
	if n := displayName(name); n != "" {
		return oauth.Malformed(n, why)
	}
	return oauth.BadRequest("malformed parameter (" + why + ")")
}

const errJSONSyntax = "malformed JSON body"

// parseJSON reads a JSON object whose members are strings (and "scope"
// may be an array of strings, joined with spaces) into m. The JSON rules
// (UTF-8, surrogates, duplicate names, trailing data, depth) are
// jsonx.ReadObject's, the same for every dialect. Empty names and values
// are left out, as in a form, but only after the duplicate check, so that a
// repeated name is refused whatever its values.
func parseJSON(s string, m map[string]string) *oauth.Error {
	o, err := jsonx.ReadObject(s)
	if err != nil {
		return jsonError(err)
	}
	for name, v := range o.All() {
		val, ok := v.Str()
		if !ok {
			if name != "scope" || v.Kind() != jsonx.KindArray {
				return malformedNamed(name, "must be a string")
			}
			parts, ok := v.StringArray()
			if !ok {
				return oauth.Malformed("scope", "must be a string or an array of strings")
			}
			val = strings.Join(parts, " ")
		}
		if name != "" && val != "" {
			m[name] = val
		}
	}
	return nil
}

// jsonError maps a jsonx.ReadObject error onto this dialect's descriptions.
func jsonError(err error) *oauth.Error {
	switch {
	case errors.Is(err, jsonx.ErrNotObject):
		return oauth.BadRequest("the JSON body must be an object")
	case errors.Is(err, jsonx.ErrTrailingData):
		return oauth.BadRequest("data after the JSON object")
	case errors.Is(err, jsonx.ErrTooDeep):
		return oauth.BadRequest(errJSONSyntax + " (nested too deeply)")
	}
	if dup, ok := errors.AsType[*jsonx.DuplicateKeyError](err); ok {
		if dup.Nested {
			return oauth.BadRequest(errJSONSyntax + " (a name is repeated in a nested object)")
		}
		return duplicate(dup.Key)
	}
	return oauth.BadRequest(errJSONSyntax)
}
