package oauth2

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/oauth"
)

// ClientCredentials extracts the client authentication of a request whose
// parameters ParseParams returned:
//
//   - client_secret_basic (RFC 6749 §2.3.1): "Authorization: Basic" with
//     base64(formencode(client_id) ":" formencode(client_secret)); both
//     parts are form-decoded after base64 decoding. A client_id in the body
//     is allowed only if it is the same.
//   - client_secret_post: client_id and client_secret in the body.
//   - neither: Method "" (the engine answers invalid_client), with the
//     body's client_id, if any, for the audit trail.
//
// A client_id longer than oauth.MaxClientIDLen or a client_secret longer
// than oauth.MaxClientSecretLen is refused here, wherever it was sent, so it
// never reaches a lookup or a cache.
//
// Errors: invalid_client (401 with WWW-Authenticate from WriteError) for a
// malformed Basic header (bad base64, no colon, empty client ID, bad
// encoding, a client ID or secret over its bound), and for any other
// authentication scheme; invalid_request (malformed client_id or
// client_secret) for a body client_id or client_secret over its bound;
// invalid_request for an Authorization header together with client_secret
// in the body (RFC 6749 §2.3: one method only), for a body client_id that
// differs from the Basic one, for several Authorization headers, and for
// client_secret without client_id.
func ClientCredentials(r *http.Request, params map[string]string) (oauth.ClientCredentials, *oauth.Error) {
	if len(params["client_id"]) > oauth.MaxClientIDLen {
		return oauth.ClientCredentials{}, oauth.Malformed("client_id", tooLongID)
	}
	if len(params["client_secret"]) > oauth.MaxClientSecretLen {
		return oauth.ClientCredentials{}, oauth.Malformed("client_secret", tooLongSecret)
	}
	auth := r.Header["Authorization"]
	switch len(auth) {
	case 0:
		id, secret := params["client_id"], params["client_secret"]
		if secret == "" {
			return oauth.ClientCredentials{ClientID: id}, nil
		}
		if id == "" {
			return oauth.ClientCredentials{}, oauth.Missing("client_id")
		}
		return oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: id, Secret: secret}, nil
	case 1:
	default:
		return oauth.ClientCredentials{}, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Field: "Authorization", Description: "more than one Authorization header"}
	}
	if _, ok := params["client_secret"]; ok {
		return oauth.ClientCredentials{}, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Field: "client_secret",
			Description: "more than one client authentication method: use either the Authorization header or client_secret in the body"}
	}
	id, secret, e := parseBasic(auth[0])
	if e != nil {
		return oauth.ClientCredentials{}, e
	}
	if bodyID, ok := params["client_id"]; ok && bodyID != id {
		return oauth.ClientCredentials{}, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest,
			Cause: oauth.CauseBadRequest, Field: "client_id",
			Description: "client_id in the body differs from the one in the Authorization header"}
	}
	return oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: id, Secret: secret}, nil
}

var (
	tooLongID     = "longer than " + strconv.Itoa(oauth.MaxClientIDLen) + " bytes"
	tooLongSecret = "longer than " + strconv.Itoa(oauth.MaxClientSecretLen) + " bytes"
)

// maxBasicCredentials is the longest base64 text of Basic credentials that
// can decode to a client ID and secret within their bounds: each may be
// form-encoded (up to 3 bytes per byte), plus the colon.
const maxBasicCredentials = (3*(oauth.MaxClientIDLen+oauth.MaxClientSecretLen) + 1 + 2) / 3 * 4

// parseBasic decodes an Authorization header value as RFC 6749 §2.3.1
// client_secret_basic. The scheme name is case-insensitive (RFC 9110
// §11.1); the base64 must be the padded standard alphabet (RFC 7617).
func parseBasic(h string) (id, secret string, e *oauth.Error) {
	h = trimOWS(h)
	scheme, cred, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", basicFailed(oauth.CauseBadCredentials,
			"unsupported authentication scheme: use Basic or client_secret_post")
	}
	cred = strings.TrimLeft(cred, " ")
	if cred == "" {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: empty")
	}
	if len(cred) > maxBasicCredentials {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: too long")
	}
	var arr [192]byte
	raw, err := base64.StdEncoding.AppendDecode(arr[:0], []byte(cred))
	if err != nil {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: bad base64")
	}
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: no colon")
	}
	id, ok1 := formUnescape(string(raw[:i]))
	secret, ok2 := formUnescape(string(raw[i+1:]))
	if !ok1 || !ok2 {
		return "", "", basicFailed(oauth.CauseMalformedField,
			"malformed Basic credentials: bad form encoding of the client ID or secret (RFC 6749 section 2.3.1)")
	}
	if id == "" {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: empty client ID")
	}
	if len(id) > oauth.MaxClientIDLen {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: client ID "+tooLongID)
	}
	if len(secret) > oauth.MaxClientSecretLen {
		return "", "", basicFailed(oauth.CauseMalformedField, "malformed Basic credentials: client secret "+tooLongSecret)
	}
	if !oauth.ValidCredentialText(id) || !oauth.ValidCredentialText(secret) { // RFC 6749 Appendix A *UNICODECHARNOCRLF
		return "", "", basicFailed(oauth.CauseMalformedField,
			"malformed Basic credentials: the client ID and secret must be UTF-8 without control characters")
	}
	return id, secret, nil
}

// basicFailed is an invalid_client for a bad Authorization header;
// WriteError answers it 401 with the Basic challenge, as it does every
// invalid_client of a request that carried that header.
func basicFailed(cause oauth.Cause, desc string) *oauth.Error {
	return &oauth.Error{Code: oauth.CodeInvalidClient, Cause: cause, Field: "Authorization", Description: desc}
}
