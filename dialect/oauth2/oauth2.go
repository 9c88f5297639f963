// Package oauth2 is the RFC 6749 wire format of the token endpoint: a POST
// with a form (or, for clients that insist, JSON) body, client
// authentication by HTTP Basic (client_secret_basic) or by body parameters
// (client_secret_post), and the §5.1/§5.2 JSON success and error bodies.
//
// Besides the dialect (New), it exports the request parsing and response
// writing helpers the server reuses for the RFC 7662 introspection and
// RFC 7009 revocation endpoints, so all three endpoints share one set of
// rules.
//
// Decisions where the RFCs leave room:
//
//   - A body over 64 KiB is answered 413 with an invalid_request body.
//   - The query string is never read as a source of parameters. A query
//     parameter that carries a credential (client_id, client_secret,
//     password, refresh_token, token, …) is rejected ("credentials must not
//     be sent in the URL"), as is any other OAuth parameter name there
//     (grant_type, scope, username, …), so that a client sending parameters
//     in the URL gets a clear error instead of a misleading "missing
//     grant_type". Other query parameters are ignored: RFC 6749 §3.2 allows
//     the endpoint URI itself to carry a query component.
//   - The success response always carries "expires_in" (RFC 6749 only
//     recommends it; every seed relies on it) and carries "scope" whenever
//     a scope was granted, as seeds 002 and 003 do; when the granted scope
//     differs from the request and is empty, it carries "scope":"" (§5.1
//     requires the member then).
//   - A scope value is split on runs of spaces, repeated scope tokens are
//     dropped (first occurrence kept), and a value of only spaces is no
//     scope at all; a character outside scope-token is invalid_scope.
//   - Every 401 carries WWW-Authenticate: Basic (RFC 9110 §15.5.2 requires
//     the header on any 401, not only after a failed Basic attempt).
package oauth2

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/oauth"
)

// Options are the endpoint options of the oauth2 dialect.
type Options struct {
	// CreatedAt adds "created_at" (UNIX seconds of issuance) to success
	// responses, as Doorkeeper-based servers do (seed 002).
	CreatedAt bool `yaml:"created_at"`
	// TokenType is the spelling of token_type in success responses:
	// "Bearer" (the default) or "bearer" (Spring Security OAuth legacy,
	// seed 003).
	TokenType string `yaml:"token_type"`
}

var _ dialect.Factory = New

// New is a dialect.Factory for the RFC 6749 dialect. Unknown option keys and
// a token_type other than "Bearer" or "bearer" are configuration errors.
func New(options map[string]any, deps dialect.Deps) (dialect.Dialect, error) {
	var o Options
	if err := dialect.DecodeOptions(options, &o); err != nil {
		return nil, err
	}
	switch o.TokenType {
	case "":
		o.TokenType = "Bearer"
	case "Bearer", "bearer":
	default:
		return nil, errors.New(`options: token_type must be "Bearer" or "bearer"`)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &rfc6749{createdAt: o.CreatedAt, tokenType: o.TokenType, now: now}, nil
}

// rfc6749 implements dialect.Dialect; it is immutable after New and so safe
// for concurrent use.
type rfc6749 struct {
	createdAt bool
	tokenType string
	now       func() time.Time
}

// DecodeTokenRequest implements dialect.Dialect.
func (d *rfc6749) DecodeTokenRequest(r *http.Request) (*oauth.TokenRequest, *oauth.Error) {
	return decodeTokenRequest(r)
}

func decodeTokenRequest(r *http.Request) (*oauth.TokenRequest, *oauth.Error) {
	p, e := ParseParams(r)
	if e != nil {
		return nil, e
	}
	creds, e := ClientCredentials(r, p)
	if e != nil {
		return nil, e
	}
	gt := p["grant_type"]
	if gt == "" {
		return nil, oauth.Missing("grant_type")
	}
	if !oauth.KnownGrant(gt) {
		return nil, oauth.UnsupportedGrant("unsupported grant_type (supported: client_credentials, password, refresh_token)")
	}
	req := &oauth.TokenRequest{GrantType: gt, Credentials: creds}
	// Only the parameters of the requested grant reach the engine, so a
	// stray password or refresh token is never handled further.
	switch gt {
	case oauth.GrantPassword:
		if req.Username = p["username"]; req.Username == "" {
			return nil, oauth.Missing("username")
		}
		if req.Password = p["password"]; req.Password == "" {
			return nil, oauth.Missing("password")
		}
	case oauth.GrantRefreshToken:
		if req.RefreshToken = p["refresh_token"]; req.RefreshToken == "" {
			return nil, oauth.Missing("refresh_token")
		}
	}
	if req.Scopes, e = parseScope(p["scope"]); e != nil {
		return nil, e
	}
	return req, nil
}

// WriteToken implements dialect.Dialect.
func (d *rfc6749) WriteToken(w http.ResponseWriter, _ *http.Request, resp *oauth.TokenResponse) {
	if resp == nil {
		WriteError(w, nil, oauth.ServerError())
		return
	}
	bp := getBuf()
	*bp = d.appendToken((*bp)[:0], resp)
	writeBody(w, http.StatusOK, *bp)
	putBuf(bp)
}

// WriteError implements dialect.Dialect.
func (d *rfc6749) WriteError(w http.ResponseWriter, r *http.Request, e *oauth.Error) {
	WriteError(w, r, e)
}

// AuthMethods implements dialect.AuthMethoder.
func (d *rfc6749) AuthMethods() []string {
	return []string{oauth.AuthSecretBasic, oauth.AuthSecretPost}
}

// appendToken appends the RFC 6749 §5.1 body for resp.
func (d *rfc6749) appendToken(b []byte, resp *oauth.TokenResponse) []byte {
	b = append(b, `{"access_token":`...)
	b = jsonx.AppendString(b, resp.AccessToken)
	b = append(b, `,"token_type":`...)
	// The engine says "Bearer"; the endpoint decides the spelling. Another
	// token type (none exists yet) is passed through as the engine names it.
	if tt := resp.TokenType; tt == "" || strings.EqualFold(tt, "bearer") {
		b = append(b, '"')
		b = append(b, d.tokenType...)
		b = append(b, '"')
	} else {
		b = jsonx.AppendString(b, tt)
	}
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, resp.ExpiresIn, 10)
	if resp.RefreshToken != "" {
		b = append(b, `,"refresh_token":`...)
		b = jsonx.AppendString(b, resp.RefreshToken)
	}
	if len(resp.Scopes) > 0 || resp.ScopeChanged {
		b = append(b, `,"scope":"`...)
		for i, s := range resp.Scopes {
			if i > 0 {
				b = append(b, ' ')
			}
			b = jsonx.AppendStringContent(b, s)
		}
		b = append(b, '"')
	}
	if d.createdAt {
		at := resp.IssuedAt
		if at.IsZero() {
			at = d.now()
		}
		b = append(b, `,"created_at":`...)
		b = strconv.AppendInt(b, at.Unix(), 10)
	}
	return append(b, '}')
}

// parseScope splits an RFC 6749 §3.3 scope value. It is tolerant of runs of
// spaces (and leading or trailing ones) and drops repeated scope tokens,
// keeping the first occurrence's order. It returns nil when s names no
// scope. A character outside scope-token (%x21 / %x23-5B / %x5D-7E) is
// invalid_scope.
func parseScope(s string) ([]string, *oauth.Error) {
	n := 0
	inToken := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			inToken = false
			continue
		}
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return nil, &oauth.Error{Code: oauth.CodeInvalidScope, Status: http.StatusBadRequest,
				Cause: oauth.CauseMalformedField, Field: "scope",
				Description: "malformed scope: scope tokens are printable ASCII characters other than double quote and backslash, separated by spaces"}
		}
		if !inToken {
			n++
			inToken = true
		}
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]string, 0, n)
	var seen map[string]struct{}
	if n > 16 {
		seen = make(map[string]struct{}, n)
	}
	for f := range strings.FieldsFuncSeq(s, isSpace) {
		if seen != nil {
			if _, dup := seen[f]; dup {
				continue
			}
			seen[f] = struct{}{}
		} else if slices.Contains(out, f) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

func isSpace(r rune) bool { return r == ' ' }
