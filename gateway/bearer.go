package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/bearer"
	"github.com/tokengate/tokengate/oauth"
)

// Tokens finds what an access token value stands for: its record and its
// client if the token is honoured now, (nil, nil, nil) if not; an error
// only when the store failed. The engine implements it.
type Tokens interface {
	AccessToken(ctx context.Context, value string) (*oauth.Token, *oauth.Client, error)
}

// BearerVerifier verifies the calls of `auth: bearer` routes: an RFC 6750
// access token of this server, honoured now (the engine's own check, so a
// revocation is refused on the next call on every node), holding every
// scope of the route.
type BearerVerifier struct {
	Tokens Tokens
	Realm  string // the WWW-Authenticate realm; "" means "tokengate"
}

var _ Verifier = (*BearerVerifier)(nil)

func (v *BearerVerifier) realm() string {
	if v.Realm == "" {
		return "tokengate"
	}
	return v.Realm
}

// Verify implements Verifier.
func (v *BearerVerifier) Verify(ctx context.Context, c *Call, r *Route) (*Identity, Refusal) {
	value, e := bearer.Token(c.Header)
	if e != nil {
		return nil, v.refusal(e)
	}
	t, _, err := v.Tokens.AccessToken(ctx, value)
	switch {
	case err != nil:
		return nil, v.refusal(bearer.Unavailable())
	case t == nil:
		return nil, v.refusal(bearer.InvalidToken("the access token is invalid, expired or revoked"))
	}
	for _, s := range r.Scopes {
		if !slices.Contains(t.Scopes, s) {
			return nil, v.refusal(bearer.InsufficientScope(strings.Join(r.Scopes, " ")))
		}
	}
	return &Identity{ClientID: t.ClientID, Subject: t.Subject, Scopes: t.Scopes}, nil
}

// Failure implements Verifier: plain HTTP statuses with a JSON error.
func (v *BearerVerifier) Failure(_ *Route, _ string, f Failure) Refusal {
	switch f {
	case BodyTooLarge:
		return plainRefusal{http.StatusRequestEntityTooLarge, "request_too_large", "the request body is too large"}
	case BodyUnreadable:
		return plainRefusal{http.StatusBadRequest, "invalid_request", "the request body could not be read"}
	case BadRequest:
		return plainRefusal{http.StatusBadRequest, "invalid_request", "the request path, protocol upgrade or trailers are not accepted"}
	case UpstreamTimeout:
		return plainRefusal{http.StatusGatewayTimeout, "upstream_timeout", "the service did not answer in time"}
	case ReadersBusy:
		return plainRefusal{http.StatusServiceUnavailable, "overloaded", "too many requests in progress, retry shortly"}
	default:
		return plainRefusal{http.StatusBadGateway, "upstream_unavailable", "the service cannot be reached"}
	}
}

func (v *BearerVerifier) refusal(e *bearer.Error) Refusal {
	return bearerRefusal{e: e, realm: v.realm()}
}

type bearerRefusal struct {
	e     *bearer.Error
	realm string
}

func (b bearerRefusal) Write(w http.ResponseWriter) { b.e.Write(w, b.realm) }
func (b bearerRefusal) Result() string {
	if b.e.Code == "" {
		return "no_token"
	}
	return b.e.Code
}

// plainRefusal is a JSON error with a status, for failures of the gateway
// itself on bearer routes.
type plainRefusal struct {
	status      int
	code, about string
}

func (p plainRefusal) Write(w http.ResponseWriter) {
	if p.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.status)
	w.Write([]byte(`{"error":"` + p.code + `","error_description":"` + p.about + `"}`))
}
func (p plainRefusal) Result() string { return p.code }
