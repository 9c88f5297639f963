// Package neox implements the NeoX token envelope: a JSON request
// {"grant_type","client_id","client_secret","scope"} and responses that
// carry {"code","message"} beside (or instead of) the token fields. On
// success code is 1 and message "SUCCESS"; on error code repeats the HTTP
// status.
package neox

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/internal/reqbody"
	"github.com/tokengate/tokengate/oauth"
)

const (
	maxBodyBytes    = 64 << 10
	successCode     = 1
	successMessage  = "SUCCESS"
	bearerTokenType = "bearer" // NeoX spells it in lower case
)

// Options are the endpoint options New accepts.
type Options struct {
	// DefaultScope is a space-delimited scope list granted when a request
	// names none, for example "disbursement".
	DefaultScope string `yaml:"default_scope"`
}

type neox struct {
	defaultScopes []string
}

var (
	_ dialect.Factory         = New
	_ dialect.PolicyDefaulter = (*neox)(nil)
)

// New is the dialect.Factory of the NeoX envelope. Options: default_scope
// (see Options); unknown options are refused.
func New(options map[string]any, deps dialect.Deps) (dialect.Dialect, error) {
	var o Options
	if err := dialect.DecodeOptions(options, &o); err != nil {
		return nil, fmt.Errorf("neox: %w", err)
	}
	scopes, ok := parseScope(o.DefaultScope)
	if !ok {
		return nil, fmt.Errorf("neox: options: default_scope %q is not a space-delimited list of RFC 6749 scope tokens", o.DefaultScope)
	}
	return &neox{defaultScopes: scopes}, nil
}

// PolicyDefaults returns default_scope as the endpoint's default scopes.
func (d *neox) PolicyDefaults() oauth.EndpointPolicy {
	return oauth.EndpointPolicy{DefaultScopes: append([]string(nil), d.defaultScopes...)}
}

// DecodeTokenRequest reads a POST with an application/json body of string
// members. grant_type, client_id and client_secret are required; scope is
// optional. Unknown members are ignored; duplicate members are refused.
func (d *neox) DecodeTokenRequest(r *http.Request) (*oauth.TokenRequest, *oauth.Error) {
	if r.Method != http.MethodPost {
		return nil, oauth.BadRequest("method must be POST")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, oauth.BadRequest("Content-Type must be application/json")
	}
	if r.ContentLength > maxBodyBytes || r.Body == nil {
		return nil, oauth.BadRequest("request body must be a JSON object of at most 64 KiB")
	}
	body, err := reqbody.Read(r, maxBodyBytes)
	if errors.Is(err, reqbody.ErrTooLarge) {
		return nil, oauth.BadRequest("request body must be a JSON object of at most 64 KiB")
	}
	if err != nil {
		return nil, oauth.BadRequest("cannot read request body")
	}
	members, err := jsonx.ReadObject(body)
	if err != nil {
		if dup, ok := errors.AsType[*jsonx.DuplicateKeyError](err); ok {
			if !dup.Nested && isKnownField(dup.Key) {
				return nil, oauth.BadRequest("duplicate field: " + dup.Key)
			}
			return nil, oauth.BadRequest("duplicate field in request body")
		}
		return nil, oauth.BadRequest("request body must be a JSON object")
	}

	grant, e := stringField(members, "grant_type", true)
	if e != nil {
		return nil, e
	}
	if grant != oauth.GrantClientCredentials {
		return nil, oauth.UnsupportedGrant("unsupported grant_type: only client_credentials")
	}
	clientID, e := stringField(members, "client_id", true)
	if e != nil {
		return nil, e
	}
	if len(clientID) > oauth.MaxClientIDLen {
		return nil, oauth.Malformed("client_id", "too long")
	}
	if !oauth.ValidCredentialText(clientID) {
		return nil, oauth.Malformed("client_id", "control character")
	}
	secret, e := stringField(members, "client_secret", true)
	if e != nil {
		return nil, e
	}
	if len(secret) > oauth.MaxClientSecretLen {
		return nil, oauth.Malformed("client_secret", "too long")
	}
	if !oauth.ValidCredentialText(secret) {
		return nil, oauth.Malformed("client_secret", "control character")
	}
	scope, e := stringField(members, "scope", false)
	if e != nil {
		return nil, e
	}
	scopes, ok := parseScope(scope)
	if !ok {
		return nil, oauth.Malformed("scope", "not a space-delimited list of scope tokens")
	}
	return &oauth.TokenRequest{
		GrantType: oauth.GrantClientCredentials,
		Scopes:    scopes,
		Credentials: oauth.ClientCredentials{
			Method:   oauth.AuthSecretPost,
			ClientID: clientID,
			Secret:   secret,
		},
		NoRefreshToken: true, // NeoX's response has no refresh token
	}, nil
}

func isKnownField(name string) bool {
	switch name {
	case "grant_type", "client_id", "client_secret", "scope":
		return true
	}
	return false
}

// stringField returns a string member. Absent, null and "" count as
// missing; any other non-string value is malformed.
func stringField(members jsonx.Object, name string, required bool) (string, *oauth.Error) {
	v, ok := members.Get(name)
	if !ok || v.IsNull() {
		if required {
			return "", oauth.Missing(name)
		}
		return "", nil
	}
	s, ok := v.Str()
	if !ok {
		return "", oauth.Malformed(name, "must be a string")
	}
	if s == "" && required {
		return "", oauth.Missing(name)
	}
	return s, nil
}

// parseScope splits a space-delimited scope (RFC 6749 §3.3). It returns
// nil for an empty scope and false if a token has a character §3.3 forbids.
func parseScope(s string) ([]string, bool) {
	tokens := strings.Split(s, " ")
	var scopes []string
	for _, t := range tokens {
		if t == "" {
			continue
		}
		for i := 0; i < len(t); i++ {
			if c := t[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return nil, false
			}
		}
		scopes = append(scopes, t)
	}
	return scopes, true
}

type tokenBody struct {
	Code        int    `json:"code"`
	Message     string `json:"message"`
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// WriteToken writes 200 {"code":1,"message":"SUCCESS","access_token",
// "token_type":"bearer","expires_in":N}.
func (d *neox) WriteToken(w http.ResponseWriter, r *http.Request, resp *oauth.TokenResponse) {
	writeJSON(w, http.StatusOK, tokenBody{
		Code:        successCode,
		Message:     successMessage,
		AccessToken: resp.AccessToken,
		TokenType:   bearerTokenType,
		ExpiresIn:   resp.ExpiresIn,
	})
}

// AuthMethods implements dialect.AuthMethoder: the secret in the JSON body.
func (d *neox) AuthMethods() []string { return []string{oauth.AuthSecretPost} }

// WriteError writes {"code":<status>,"message":...} with that HTTP status.
func (d *neox) WriteError(w http.ResponseWriter, r *http.Request, e *oauth.Error) {
	status, msg := mapError(e)
	if r != nil && r.Method != http.MethodPost && e != nil && e.Cause == oauth.CauseBadRequest {
		w.Header().Set("Allow", http.MethodPost)
	}
	dialect.SetRetryAfter(w.Header(), e)
	writeJSON(w, status, errorBody{Code: status, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen with these types
		status = http.StatusInternalServerError
		body = []byte(`{"code":500,"message":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	dialect.NoStore(h)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Fixed messages. Unknown client and wrong secret share one so that the
// endpoint does not tell which client IDs exist.
const (
	msgBadCredentials = "invalid client credentials"
	msgClientDisabled = "client disabled"
	msgGrantNotAllow  = "grant type not allowed for this client"
	msgScopeNotAllow  = "scope not allowed"
	msgInvalidGrant   = "invalid grant"
	msgRateLimited    = "too many requests"
	msgInternal       = "internal error"
	msgUnavailable    = "service temporarily unavailable, try again shortly"
	msgBadRequest     = "bad request"
)

// mapError maps an engine or decoder error onto NeoX's statuses: 400, 401,
// 403, 429, 500, 503. The Cause decides; an error without a known Cause
// falls back on its OAuth code, then on its HTTP status.
func mapError(e *oauth.Error) (int, string) {
	if e == nil {
		return http.StatusInternalServerError, msgInternal
	}
	if e.Code == oauth.CodeUnsupportedGrantType {
		return http.StatusBadRequest, "unsupported grant_type: only client_credentials"
	}
	switch e.Cause {
	case oauth.CauseMissingField:
		if e.Field != "" {
			return http.StatusBadRequest, "missing field: " + e.Field
		}
		return http.StatusBadRequest, msgBadRequest
	case oauth.CauseMalformedField:
		if e.Field != "" {
			return http.StatusBadRequest, "malformed field: " + e.Field
		}
		return http.StatusBadRequest, msgBadRequest
	case oauth.CauseBadRequest:
		if e.Description != "" {
			return http.StatusBadRequest, e.Description // safe to show, by oauth.Error's contract
		}
		return http.StatusBadRequest, msgBadRequest
	case oauth.CauseUnknownClient, oauth.CauseBadCredentials, oauth.CauseNoClientKey, oauth.CauseNoCredentials,
		oauth.CauseStaleRequest, oauth.CauseReplay, oauth.CauseMethodNotAllowed, oauth.CauseEndpointNotAllowed:
		return http.StatusUnauthorized, msgBadCredentials
	case oauth.CauseClientDisabled:
		return http.StatusForbidden, msgClientDisabled
	case oauth.CauseGrantNotAllowed:
		return http.StatusForbidden, msgGrantNotAllow
	case oauth.CauseScopeNotAllowed:
		return http.StatusForbidden, msgScopeNotAllow
	case oauth.CauseBadGrant, oauth.CauseUserDisabled, oauth.CauseUserLocked:
		return http.StatusBadRequest, msgInvalidGrant
	case oauth.CauseRateLimited:
		return http.StatusTooManyRequests, msgRateLimited
	case oauth.CauseUnavailable, oauth.CauseTimeout, oauth.CauseOverloaded:
		return http.StatusServiceUnavailable, msgUnavailable
	case oauth.CauseInternal:
		return http.StatusInternalServerError, msgInternal
	}
	switch e.Code {
	case oauth.CodeInvalidRequest:
		return http.StatusBadRequest, msgBadRequest
	case oauth.CodeInvalidClient:
		return http.StatusUnauthorized, msgBadCredentials
	case oauth.CodeUnauthorizedClient:
		return http.StatusForbidden, msgGrantNotAllow
	case oauth.CodeInvalidScope:
		return http.StatusForbidden, msgScopeNotAllow
	case oauth.CodeInvalidGrant:
		return http.StatusBadRequest, msgInvalidGrant
	case oauth.CodeTemporarilyUnavail:
		return http.StatusServiceUnavailable, msgUnavailable
	case oauth.CodeServerError:
		return http.StatusInternalServerError, msgInternal
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		return http.StatusUnauthorized, msgBadCredentials
	case e.Status == http.StatusForbidden:
		return http.StatusForbidden, "forbidden"
	case e.Status == http.StatusTooManyRequests:
		return http.StatusTooManyRequests, msgRateLimited
	case e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout:
		return http.StatusServiceUnavailable, msgUnavailable
	case e.Status >= 500:
		return http.StatusInternalServerError, msgInternal
	case e.Status >= 400:
		return http.StatusBadRequest, msgBadRequest
	}
	return http.StatusInternalServerError, msgInternal
}
