package engine

import (
	"context"
	"slices"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// registerAuthenticators builds the registry of client authentication
// methods: the client-secret methods, which need the engine's hasher, and
// those the server adds (e.g. SNAP signatures). A later registration of a
// method replaces an earlier one.
func (e *Engine) registerAuthenticators(extra []oauth.ClientAuthenticator) {
	dummy := []oauth.SecretHash{{Hash: e.secrets.Hash(secret.NewID(32))}}
	e.auth = make(map[string]oauth.ClientAuthenticator)
	for _, a := range []oauth.ClientAuthenticator{
		&secretAuthenticator{method: oauth.AuthSecretBasic, hasher: e.secrets, dummy: dummy},
		&secretAuthenticator{method: oauth.AuthSecretPost, hasher: e.secrets, dummy: dummy},
	} {
		e.auth[a.Method()] = a
	}
	for _, a := range extra {
		e.auth[a.Method()] = a
	}
}

// AuthMethods lists the registered client authentication methods, sorted.
func (e *Engine) AuthMethods() []string {
	var m []string
	for name := range e.auth {
		m = append(m, name)
	}
	slices.Sort(m)
	return m
}

// secretAuthenticator is client_secret_basic or client_secret_post: the
// two differ only in where the dialect found the secret.
type secretAuthenticator struct {
	method string
	hasher *secret.Hasher
	dummy  []oauth.SecretHash
}

func (a *secretAuthenticator) Method() string { return a.method }

func (a *secretAuthenticator) Authenticate(_ context.Context, creds oauth.ClientCredentials, c *oauth.Client, now time.Time) *oauth.Error {
	if creds.Secret == "" || !a.hasher.Verify(creds.Secret, c.Secrets, now) {
		return authFailed(oauth.CauseBadCredentials)
	}
	return nil
}

func (a *secretAuthenticator) Dummy(creds oauth.ClientCredentials) {
	a.hasher.Verify(creds.Secret, a.dummy, time.Time{})
}
