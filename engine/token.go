package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/secret"
	"github.com/tokengate/tokengate/token"
)

// grantHandler runs one grant type for an authenticated client that is
// allowed to use it.
type grantHandler func(ctx context.Context, cl *oauth.Client, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error)

// registerGrants builds the grant registry; a new grant is one file with
// its handler and one line here.
func (e *Engine) registerGrants() {
	e.grants = map[string]grantHandler{
		oauth.GrantClientCredentials: e.clientCredentials,
		oauth.GrantPassword:          e.password,
		oauth.GrantRefreshToken:      e.refresh,
	}
}

// Token runs a token request: authenticate the client, check its rate
// limit and grant, run the grant, mint and durably persist the tokens.
func (e *Engine) Token(ctx context.Context, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	if req.GrantType == "" {
		return nil, oauth.Missing("grant_type")
	}
	handle, ok := e.grants[req.GrantType]
	if !ok {
		return nil, oauth.UnsupportedGrant("unsupported grant_type")
	}
	cl, ae := e.AuthenticateClient(ctx, req.Credentials, req.Endpoint)
	if ae != nil {
		return nil, ae
	}
	d, err := e.cfg.RateLimiter.Allow(ctx, cl.ID)
	if err != nil {
		// The limiter's own fallback failed too: serving beats refusing.
		e.cfg.Logger.Warn("rate limiter failed; request allowed", "err", err)
	} else if !d.Allowed {
		e.event(ctx, secevent.RateLimited, cl.ID, "", "token requests over the client's rate limit")
		return nil, oauth.RateLimited("too many token requests for this client, retry later", d.RetryAfter)
	}
	if !cl.AllowsGrant(req.GrantType) {
		return nil, oauth.UnauthorizedClient("the client is not allowed to use this grant type")
	}
	return handle(ctx, cl, req)
}

// grantScopes decides the granted scope: the request's if it names one,
// else the endpoint's default, else the client's default. Every granted
// scope must be allowed for the client.
func grantScopes(requested, endpointDefault, clientDefault, allowed []string) ([]string, bool, *oauth.Error) {
	granted := requested
	if granted == nil {
		granted = endpointDefault
		if len(granted) == 0 {
			granted = clientDefault
		}
	}
	for _, s := range granted {
		if !slices.Contains(allowed, s) {
			return nil, false, oauth.InvalidScope("the requested scope is not allowed for this client")
		}
	}
	changed := requested == nil && len(granted) > 0
	return granted, changed, nil
}

type issuance struct {
	client       *oauth.Client
	subject      string
	scopes       []string
	scopeChanged bool
	policy       oauth.EndpointPolicy
	withRefresh  bool
	familyID     string // continue this family; "" starts a new one when withRefresh
	rotateFrom   string // the refresh token ID being exchanged, if any
	// refreshScopes is the new refresh token's scope when it differs from
	// the access token's (a narrowed refresh); nil means scopes.
	refreshScopes []string
	// nonce, if any, is used up in the transaction that stores the tokens.
	nonce *oauth.Nonce
}

func (e *Engine) accessTTL(cl *oauth.Client, p oauth.EndpointPolicy) time.Duration {
	ttl := e.cfg.DefaultAccessTTL
	switch {
	case cl.AccessTTL > 0:
		ttl = cl.AccessTTL
	case p.AccessTTL > 0:
		ttl = p.AccessTTL
	}
	return min(ttl, e.cfg.MaxAccessTTL)
}

func (e *Engine) issue(ctx context.Context, is issuance) (*oauth.TokenResponse, *oauth.Error) {
	now := e.cfg.Now()
	ttl := e.accessTTL(is.client, is.policy)
	resp := &oauth.TokenResponse{
		TokenType:    "Bearer",
		ExpiresIn:    int64(ttl / time.Second),
		Scopes:       is.scopes,
		ScopeChanged: is.scopeChanged,
		IssuedAt:     now,
		ExpiresAt:    now.Add(ttl),
		ClientID:     is.client.ID,
	}
	familyID := is.familyID
	if is.withRefresh && familyID == "" {
		familyID = secret.NewID(16)
	}
	records := make([]*oauth.Token, 0, 2)

	format := is.client.TokenFormat
	if format == "" {
		format = e.cfg.DefaultFormat
	}
	access := &oauth.Token{Kind: oauth.KindAccess, Format: format, ClientID: is.client.ID, Subject: is.subject,
		Scopes: is.scopes, FamilyID: familyID, IssuedAt: now, ExpiresAt: resp.ExpiresAt}
	if format == oauth.FormatJWT {
		value, ae := e.signJWT(ctx, is.client, access)
		if ae != nil {
			return nil, ae
		}
		resp.AccessToken = value
		// A stateless JWT needs no record to be valid; one in a refresh
		// family is stored so revoking the family reaches it.
		if familyID != "" {
			records = append(records, access)
		}
	} else {
		value, id, err := e.opaque.Mint(oauth.KindAccess)
		if err != nil {
			e.cfg.Logger.Error("mint access token", "err", err)
			return nil, oauth.ServerError()
		}
		access.ID = id
		resp.AccessToken = value
		records = append(records, access)
	}
	if is.withRefresh {
		value, id, err := e.opaque.Mint(oauth.KindRefresh)
		if err != nil {
			e.cfg.Logger.Error("mint refresh token", "err", err)
			return nil, oauth.ServerError()
		}
		resp.RefreshToken = value
		refreshScopes := is.scopes
		if is.refreshScopes != nil {
			refreshScopes = is.refreshScopes
		}
		records = append(records, &oauth.Token{ID: id, Kind: oauth.KindRefresh, Format: oauth.FormatOpaque,
			ClientID: is.client.ID, Subject: is.subject, Scopes: refreshScopes, FamilyID: familyID,
			IssuedAt: now, ExpiresAt: now.Add(e.cfg.RefreshTTL)})
	}
	if ae := e.persist(ctx, is, records); ae != nil {
		return nil, ae
	}
	return resp, nil
}

// persist durably stores the records of an issuance, rotating the refresh
// token it exchanges, if any.
func (e *Engine) persist(ctx context.Context, is issuance, records []*oauth.Token) *oauth.Error {
	var err error
	switch {
	case is.rotateFrom != "":
		if is.nonce != nil {
			// No dialect signs refresh requests today; were one to, the
			// nonce is spent first rather than atomically.
			if err := e.store.UseNonce(ctx, is.nonce.Key, is.nonce.ExpiresAt); err != nil {
				return e.nonceError(ctx, is.client.ID, err)
			}
		}
		err = e.store.RotateRefreshToken(ctx, is.rotateFrom, e.cfg.Now(), e.cfg.RefreshReuseGrace, records...)
	case is.nonce != nil:
		if err := e.store.CreateTokensOnce(ctx, *is.nonce, records...); err != nil {
			return e.nonceError(ctx, is.client.ID, err)
		}
	case len(records) > 0:
		err = e.store.CreateTokens(ctx, records...)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, oauth.ErrRefreshReused):
		e.event(ctx, secevent.RefreshReuse, is.client.ID, "", "a rotated refresh token was presented again; its family is revoked")
		return badRefresh()
	case errors.Is(err, oauth.ErrTokenInactive), errors.Is(err, oauth.ErrNotFound):
		return badRefresh()
	default:
		return e.StoreError(ctx, "persist tokens", err)
	}
}

func (e *Engine) signJWT(ctx context.Context, cl *oauth.Client, t *oauth.Token) (string, *oauth.Error) {
	alg := cl.SigningAlg
	if alg == "" {
		alg = e.cfg.DefaultAlg
	}
	ks := e.keys.Load()
	if !ks.Has(alg) {
		var err error
		if ks, err = e.firstKey(ctx, alg); err != nil {
			return "", e.StoreError(ctx, "create signing key", err)
		}
	}
	t.ID = token.NewJTI(t.IssuedAt)
	value, err := ks.Sign(alg, &token.Claims{
		Issuer:    e.cfg.Issuer,
		Subject:   t.Subject,
		Audience:  e.cfg.Audience,
		ClientID:  t.ClientID,
		Scope:     strings.Join(t.Scopes, " "),
		ID:        t.ID,
		IssuedAt:  t.IssuedAt,
		ExpiresAt: t.ExpiresAt,
	})
	if err != nil {
		e.cfg.Logger.Error("sign access token", "alg", alg, "err", err)
		return "", oauth.ServerError()
	}
	return value, nil
}

// firstKey makes the first key for alg, once however many requests need it
// at the same moment. Several nodes may still race here; a loser's key is
// retired at once and stays published.
func (e *Engine) firstKey(ctx context.Context, alg string) (*token.KeySet, error) {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if ks := e.keys.Load(); ks.Has(alg) {
		return ks, nil
	}
	if _, err := e.RotateKey(ctx, alg); err != nil {
		return nil, err
	}
	return e.keys.Load(), nil
}

// nonceError answers a failure to use up a request's nonce: a replay, or
// the store's trouble. clientID is the authenticated client whose signed
// request it was.
func (e *Engine) nonceError(ctx context.Context, clientID string, err error) *oauth.Error {
	if errors.Is(err, oauth.ErrAlreadyExists) {
		e.event(ctx, secevent.SnapReplay, clientID, "", "a signed request was replayed")
		return oauth.InvalidClient(oauth.CauseReplay, "request replayed")
	}
	return e.StoreError(ctx, "use nonce", err)
}
