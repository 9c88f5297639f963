package adminapi

import (
	"context"
	"net/http"
	"slices"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/bearer"
	"github.com/tokengate/tokengate/oauth"
)

// Scope is the scope a client's access token must hold (and the client
// must still be allowed) to call the admin API.
const Scope = admin.OperatorScope

// Realm is the WWW-Authenticate realm of the admin API's challenges.
const Realm = "tokengate-admin"

// CertActorPrefix starts the actor ID of a caller authenticated by a
// client certificate: "cert:" and the certificate's subject common name
// (a client ID cannot contain ':', so the two kinds of callers never
// share an ID).
const CertActorPrefix = "cert:"

// Tokens finds what an access token value stands for: its record and
// its client if the token is honoured now, (nil, nil, nil) if not; an
// error only when the store failed. The engine implements it
// (engine.AccessToken), so a revoked token, a disabled client and a
// client whose tokens were revoked are refused on the next call.
type Tokens interface {
	AccessToken(ctx context.Context, value string) (*oauth.Token, *oauth.Client, error)
}

// authenticate returns the actor r's credentials stand for. An
// Authorization header, if present, decides: a bearer access token of
// this server, honoured now, holding Scope, whose client still holds
// Scope and is owned by no merchant account. Without one, a client certificate verified against the admin
// listener's client CA (the TLS handshake verified it) authenticates an
// operator named by its subject common name. Errors: *apiError (401 with
// an RFC 6750 challenge, 403 insufficient_scope, 503 when the token could
// not be checked).
func (a *API) authenticate(ctx context.Context, r *http.Request) (admin.Actor, error) {
	if _, ok := r.Header["Authorization"]; ok || r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return a.bearerActor(ctx, r)
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	if cn == "" {
		return admin.Actor{}, &apiError{code: admin.CodeUnauthenticated,
			detail: "the client certificate has no subject common name to name the operator by"}
	}
	return admin.Actor{Kind: admin.ActorAPI, ID: CertActorPrefix + cn, Name: cn, Remote: r.RemoteAddr, Role: admin.RoleOperator}, nil
}

func (a *API) bearerActor(ctx context.Context, r *http.Request) (admin.Actor, error) {
	value, be := bearer.Token(r.Header)
	if be != nil {
		if be.Code == "" {
			be.Description = "an access token (Authorization: Bearer) or a client certificate is required"
		}
		return admin.Actor{}, challenge(be)
	}
	t, cl, err := a.tokens.AccessToken(ctx, value)
	switch {
	case err != nil:
		a.log.Warn("admin API: an access token could not be checked", "err", err)
		return admin.Actor{}, &apiError{code: admin.CodeUnavailable, detail: "the access token cannot be checked now, retry shortly"}
	case t == nil:
		return admin.Actor{}, challenge(bearer.InvalidToken("the access token is invalid, expired or revoked"))
	case !slices.Contains(t.Scopes, Scope) || !slices.Contains(cl.Scopes, Scope):
		// The client's own scopes are checked too: taking the scope away
		// from a client ends its admin access at once, even with opaque
		// tokens issued before.
		return admin.Actor{}, challenge(bearer.InsufficientScope(Scope))
	case cl.OwnerAccount != "":
		// A merchant's client acts for the merchant, never as an
		// operator, even if its scopes (within limits an operator set)
		// include this one: the API acts as operator only.
		return admin.Actor{}, &apiError{code: admin.CodeForbidden,
			detail: "a client owned by a merchant account cannot call the admin API"}
	}
	return admin.Actor{Kind: admin.ActorAPI, ID: cl.ID, Name: cl.Name, Remote: r.RemoteAddr, Role: admin.RoleOperator}, nil
}

// challenge is the problem of an RFC 6750 refusal, with its
// WWW-Authenticate header.
func challenge(be *bearer.Error) *apiError {
	code := admin.CodeUnauthenticated
	switch be.Status {
	case http.StatusForbidden:
		code = admin.CodeForbidden
	case http.StatusBadRequest:
		code = admin.CodeInvalid
	}
	e := &apiError{code: code, detail: be.Description, header: http.Header{}}
	if code == admin.CodeInvalid {
		e.fields = []FieldError{{Field: "Authorization", Message: be.Description}}
	}
	if c := be.Challenge(Realm); c != "" {
		e.header.Set("WWW-Authenticate", c)
	}
	return e
}
