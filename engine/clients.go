package engine

import (
	"context"
	"errors"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
)

// failedChecks is how many credential checks every failed client
// authentication costs, whichever way it failed (see AuthenticateClient).
const failedChecks = 2

// AuthenticateClient decides who the client is: it checks the credentials
// with the authenticator of their method, then that the client may use
// that method and the endpoint at path ("" for the introspection and
// revocation endpoints, which every client may call), and that it is
// enabled. Errors are invalid_client with a Cause (CauseNoCredentials,
// CauseUnknownClient, CauseBadCredentials, CauseNoClientKey,
// CauseMethodNotAllowed, CauseEndpointNotAllowed, CauseClientDisabled), or
// the store's unavailability. The wire status is the dialect's business.
//
// Every failure costs the same: one store read and failedChecks credential
// checks, so timing does not tell a never-seen client ID from a known
// client with a wrong secret. A cached client whose check fails is read
// again (its secret or key may have just changed on another node) and
// checked again; an unknown ID spends the difference on dummy checks.
func (e *Engine) AuthenticateClient(ctx context.Context, creds oauth.ClientCredentials, path string) (*oauth.Client, *oauth.Error) {
	cl, ae := e.authenticateClient(ctx, creds, path)
	if ae != nil {
		e.authEvent(ctx, creds, ae)
	}
	return cl, ae
}

// authEvent records a failed client authentication.
func (e *Engine) authEvent(ctx context.Context, creds oauth.ClientCredentials, ae *oauth.Error) {
	t := secevent.ClientAuthFailed
	switch {
	case ae.Cause == oauth.CauseMethodNotAllowed:
		t = secevent.AuthMethodNotAllowed
	case ae.Cause == oauth.CauseEndpointNotAllowed:
		t = secevent.EndpointNotAllowed
	case ae.Code != oauth.CodeInvalidClient:
		return // the store failed: not a security event
	case creds.Method == oauth.AuthSNAPSignature:
		t = secevent.SnapSignatureFailed
	}
	// An unknown client ID is not logged: it may be a secret sent in the
	// wrong field.
	id := creds.ClientID
	if ae.Cause == oauth.CauseUnknownClient || ae.Cause == oauth.CauseNoCredentials {
		id = ""
	}
	e.event(ctx, t, id, "", causeReason[ae.Cause])
}

// causeReason is the fixed reason phrase of a security event.
var causeReason = map[oauth.Cause]string{
	oauth.CauseNoCredentials:      "no credentials",
	oauth.CauseUnknownClient:      "unknown client",
	oauth.CauseBadCredentials:     "bad credentials",
	oauth.CauseNoClientKey:        "no usable public key registered",
	oauth.CauseMethodNotAllowed:   "authentication method not allowed for the client",
	oauth.CauseEndpointNotAllowed: "token endpoint not allowed for the client",
	oauth.CauseClientDisabled:     "client disabled",
}

func (e *Engine) authenticateClient(ctx context.Context, creds oauth.ClientCredentials, path string) (*oauth.Client, *oauth.Error) {
	if creds.Method == "" || creds.ClientID == "" {
		return nil, oauth.InvalidClient(oauth.CauseNoCredentials, "client authentication required")
	}
	auth, ok := e.auth[creds.Method]
	if !ok {
		return nil, oauth.InvalidClient(oauth.CauseMethodNotAllowed, "unsupported client authentication method")
	}
	if len(creds.ClientID) > oauth.MaxClientIDLen {
		// Dialects refuse these before; no such client can exist.
		return nil, authFailed(oauth.CauseUnknownClient)
	}
	now := e.cfg.Now()
	cl, gen, cached := e.clients.get(creds.ClientID)
	checks := 0
	if cached {
		if auth.Authenticate(ctx, creds, cl, now) == nil {
			return e.authorizeClient(cl, creds.Method, path)
		}
		checks++
	}
	fresh, err := e.store.GetClient(ctx, creds.ClientID)
	if errors.Is(err, oauth.ErrNotFound) {
		for ; checks < failedChecks; checks++ {
			auth.Dummy(creds)
		}
		return nil, authFailed(oauth.CauseUnknownClient)
	}
	if err != nil {
		return nil, e.StoreError(ctx, "get client", err)
	}
	e.clients.put(gen, fresh.ID, fresh)
	ae := auth.Authenticate(ctx, creds, fresh, now)
	checks++
	if ae != nil {
		for ; checks < failedChecks; checks++ {
			auth.Dummy(creds)
		}
		return nil, ae
	}
	return e.authorizeClient(fresh, creds.Method, path)
}

// authorizeClient checks what an authenticated client may do. It runs only
// after the credentials, so an unauthenticated caller learns nothing about
// a client's settings or state.
func (e *Engine) authorizeClient(cl *oauth.Client, method, path string) (*oauth.Client, *oauth.Error) {
	if !cl.AllowsAuthMethod(method) {
		return nil, oauth.InvalidClient(oauth.CauseMethodNotAllowed,
			"the client is not registered for this client authentication method")
	}
	if path != "" && !cl.AllowsEndpoint(path) {
		return nil, oauth.InvalidClient(oauth.CauseEndpointNotAllowed, "the client is not registered for this token endpoint")
	}
	if cl.Disabled {
		return nil, oauth.InvalidClient(oauth.CauseClientDisabled, "client is disabled")
	}
	return cl, nil
}

// authFailed is the one answer for an unknown client and bad credentials,
// so the response does not tell which client IDs exist.
func authFailed(cause oauth.Cause) *oauth.Error {
	return oauth.InvalidClient(cause, "client authentication failed")
}

// client returns the client with id, from the cache or the store; nil if
// there is none.
func (e *Engine) client(ctx context.Context, id string) (*oauth.Client, error) {
	cl, gen, ok := e.clients.get(id)
	if ok {
		return cl, nil
	}
	cl, err := e.store.GetClient(ctx, id)
	if errors.Is(err, oauth.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.clients.put(gen, cl.ID, cl)
	return cl, nil
}

// user returns the user with username, from the cache or the store; nil if
// there is none.
func (e *Engine) user(ctx context.Context, username string) (*oauth.User, error) {
	u, gen, ok := e.users.get(username)
	if ok {
		return u, nil
	}
	u, err := e.store.GetUser(ctx, username)
	if errors.Is(err, oauth.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.users.put(gen, u.Username, u)
	return u, nil
}
