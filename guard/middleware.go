package guard

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/tokengate/tokengate/bearer"
)

type ctxKey struct{}

// FromContext returns the Identity the middleware validated for this
// request, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}

// NewContext returns ctx carrying id (for tests of handlers behind the
// middleware).
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Middleware serves next only for requests with a valid access token in
// "Authorization: Bearer" (RFC 6750 §2.1; tokens in the query or body are
// not accepted), with the token's Identity in the request context
// (FromContext). Otherwise it answers as RFC 6750 §3 says: no credentials,
// 401 with `WWW-Authenticate: Bearer realm="..."` alone; a malformed
// request, 400 invalid_request; an invalid, expired or revoked token, 401
// invalid_token; a token that cannot be checked now, 503 with Retry-After.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := g.authenticate(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// Require returns a middleware that serves only requests whose token grants
// every one of scopes, answering 403 insufficient_scope with the scopes in
// the challenge otherwise. Used inside Middleware it reuses the validated
// Identity; on its own it validates the token as Middleware does:
//
//	mux.Handle("POST /refunds", g.Require("payments", "refunds")(refunds))
func (g *Guard) Require(scopes ...string) func(http.Handler) http.Handler {
	need := strings.Join(scopes, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := FromContext(r.Context())
			if id == nil {
				var ok bool
				if id, ok = g.authenticate(w, r); !ok {
					return
				}
				r = r.WithContext(NewContext(r.Context(), id))
			}
			for _, s := range scopes {
				if !id.HasScope(s) {
					bearer.InsufficientScope(need).Write(w, g.cfg.Realm)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// authenticate validates the request's token, answering it if it fails.
func (g *Guard) authenticate(w http.ResponseWriter, r *http.Request) (*Identity, bool) {
	tok, be := bearer.Token(r.Header)
	if be != nil {
		be.Write(w, g.cfg.Realm)
		return nil, false
	}
	id, err := g.Validate(r.Context(), tok)
	if err != nil {
		BearerError(err).Write(w, g.cfg.Realm)
		return nil, false
	}
	return id, true
}

// BearerError is the RFC 6750 answer to an error of Validate: 401
// invalid_token with the reason as error_description, or 503 for
// ErrUnavailable (and anything else).
func BearerError(err error) *bearer.Error {
	var ie *invalidError
	if errors.As(err, &ie) {
		return bearer.InvalidToken(ie.desc)
	}
	if errors.Is(err, ErrInvalidToken) {
		return bearer.InvalidToken("the access token is invalid")
	}
	return bearer.Unavailable()
}
