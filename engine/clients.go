package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/tokengate/tokengate/oauth"
)

// clientCache keeps clients in memory between revision changes, so a token
// request authenticates without a store read. Unknown IDs are remembered
// too, in a set of their own, so a flood of made-up client IDs costs one
// read each per revision and cannot push the real clients out.
//
// Ordering: Refresh reads the store's revision before it invalidates, and
// a load records the generation before it reads the store; a load that
// overlaps an invalidation is therefore not cached.
type clientCache struct {
	store   oauth.Store
	mu      sync.RWMutex
	gen     uint64
	known   map[string]*oauth.Client
	unknown map[string]struct{}
}

// Bounds on the cache; past one, that map is cleared rather than grown,
// which only costs store reads.
const (
	maxCachedClients = 100_000
	maxUnknownIDs    = 10_000
)

func newClientCache(s oauth.Store) *clientCache {
	return &clientCache{store: s, known: make(map[string]*oauth.Client), unknown: make(map[string]struct{})}
}

func (c *clientCache) invalidate() {
	c.mu.Lock()
	c.gen++
	c.known = make(map[string]*oauth.Client)
	c.unknown = make(map[string]struct{})
	c.mu.Unlock()
}

// get returns the client, or oauth.ErrNotFound.
func (c *clientCache) get(ctx context.Context, id string) (*oauth.Client, error) {
	c.mu.RLock()
	cl, ok := c.known[id]
	_, isUnknown := c.unknown[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return cl, nil
	}
	if isUnknown {
		return nil, oauth.ErrNotFound
	}
	cl, err := c.store.GetClient(ctx, id)
	if err != nil && !errors.Is(err, oauth.ErrNotFound) {
		return nil, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if cl != nil {
			if len(c.known) >= maxCachedClients {
				c.known = make(map[string]*oauth.Client)
			}
			c.known[id] = cl
		} else {
			if len(c.unknown) >= maxUnknownIDs {
				c.unknown = make(map[string]struct{})
			}
			c.unknown[id] = struct{}{}
		}
	}
	c.mu.Unlock()
	if cl == nil {
		return nil, oauth.ErrNotFound
	}
	return cl, nil
}

// authFailed is the one answer for an unknown client and a wrong secret, so
// the response does not tell which client IDs exist.
func authFailed(creds oauth.ClientCredentials, cause oauth.Cause) *oauth.Error {
	return challenge(creds, oauth.InvalidClient(cause, "client authentication failed"))
}

// challenge sets the RFC 6749 §5.2 status of an invalid_client error: 401
// with a Basic challenge when the client tried Basic or sent no credentials,
// 400 when its body credentials failed (RFC 7235 allows no 401 without a
// challenge, and a Basic challenge would be wrong for body credentials).
func challenge(creds oauth.ClientCredentials, e *oauth.Error) *oauth.Error {
	if creds.Method == oauth.AuthSecretBasic || creds.Method == "" {
		e.Status, e.BasicAuthFailed = 401, true
	} else {
		e.Status = 400
	}
	return e
}

// AuthenticateClient checks the client's credentials and that it is enabled.
func (e *Engine) AuthenticateClient(ctx context.Context, creds oauth.ClientCredentials) (*oauth.Client, *oauth.Error) {
	if creds.Method == "" || creds.ClientID == "" {
		return nil, challenge(creds, oauth.InvalidClient(oauth.CauseBadCredentials, "client authentication required"))
	}
	cl, err := e.clients.get(ctx, creds.ClientID)
	if errors.Is(err, oauth.ErrNotFound) {
		return nil, authFailed(creds, oauth.CauseUnknownClient)
	}
	if err != nil {
		return nil, e.StoreError(ctx, "get client", err)
	}
	switch creds.Method {
	case oauth.AuthSecretBasic, oauth.AuthSecretPost:
		if creds.Secret == "" || !e.secrets.Verify(creds.Secret, cl.Secrets, e.cfg.Now()) {
			return nil, authFailed(creds, oauth.CauseBadCredentials)
		}
	case oauth.AuthDialect:
		if creds.Verify == nil {
			return nil, oauth.ServerError()
		}
		if ae := creds.Verify(ctx, cl); ae != nil {
			return nil, ae
		}
	default:
		return nil, authFailed(creds, oauth.CauseBadCredentials)
	}
	// Checked only after the credentials, so an unauthenticated caller
	// learns nothing about a client's state.
	if cl.Disabled {
		return nil, challenge(creds, oauth.InvalidClient(oauth.CauseClientDisabled, "client is disabled"))
	}
	return cl, nil
}

// clientUsable reports whether tokens of client id may still be honoured:
// it exists and is enabled.
func (e *Engine) clientUsable(ctx context.Context, id string) (bool, error) {
	cl, err := e.clients.get(ctx, id)
	if errors.Is(err, oauth.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !cl.Disabled, nil
}
