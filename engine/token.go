package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
	"github.com/tokengate/tokengate/token"
)

// Token runs a token request: authenticate the client, run the grant,
// mint and durably persist the tokens.
func (e *Engine) Token(ctx context.Context, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	if req.GrantType == "" {
		return nil, oauth.Missing("grant_type")
	}
	if !oauth.KnownGrant(req.GrantType) {
		return nil, oauth.UnsupportedGrant("unsupported grant_type")
	}
	cl, ae := e.AuthenticateClient(ctx, req.Credentials)
	if ae != nil {
		return nil, ae
	}
	if !e.limiter.allow(cl.ID) {
		return nil, oauth.RateLimited()
	}
	if !cl.AllowsGrant(req.GrantType) {
		return nil, oauth.UnauthorizedClient("the client is not allowed to use this grant type")
	}
	switch req.GrantType {
	case oauth.GrantClientCredentials:
		return e.clientCredentials(ctx, cl, req)
	case oauth.GrantPassword:
		return e.password(ctx, cl, req)
	default:
		return e.refresh(ctx, cl, req)
	}
}

func (e *Engine) clientCredentials(ctx context.Context, cl *oauth.Client, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	scopes, changed, ae := grantScopes(req.Scopes, req.Policy.DefaultScopes, cl.DefaultScopes, cl.Scopes)
	if ae != nil {
		return nil, ae
	}
	withRefresh := cl.RefreshWithClientCredentials && cl.AllowsGrant(oauth.GrantRefreshToken)
	return e.issue(ctx, issuance{client: cl, subject: cl.ID, scopes: scopes, scopeChanged: changed,
		policy: req.Policy, withRefresh: withRefresh, nonce: req.Nonce})
}

func (e *Engine) password(ctx context.Context, cl *oauth.Client, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	if req.Username == "" {
		return nil, oauth.Missing("username")
	}
	if req.Password == "" {
		return nil, oauth.Missing("password")
	}
	scopes, changed, ae := grantScopes(req.Scopes, req.Policy.DefaultScopes, cl.DefaultScopes, cl.Scopes)
	if ae != nil {
		return nil, ae
	}
	badCredentials := oauth.InvalidGrant(oauth.CauseBadGrant, "invalid resource owner credentials")
	u, err := e.store.GetUser(ctx, req.Username)
	if errors.Is(err, oauth.ErrNotFound) {
		// Spend the same time as a real check so timing does not reveal
		// which usernames exist.
		if err := e.passwords.DummyVerify(ctx, req.Password); err != nil {
			return nil, oauth.Timeout() // as a known user's Verify answers
		}
		return nil, badCredentials
	}
	if err != nil {
		return nil, e.StoreError(ctx, "get user", err)
	}
	ok, err := e.passwords.Verify(ctx, req.Password, u.PasswordHash)
	if err != nil {
		if ctx.Err() != nil {
			return nil, oauth.Timeout()
		}
		e.cfg.Logger.Error("stored password hash unreadable", "user", u.Username, "err", err)
		return nil, oauth.ServerError()
	}
	if !ok {
		return nil, badCredentials
	}
	if u.Disabled {
		return nil, oauth.InvalidGrant(oauth.CauseUserDisabled, "the resource owner is disabled")
	}
	return e.issue(ctx, issuance{client: cl, subject: u.Username, scopes: scopes, scopeChanged: changed,
		policy: req.Policy, withRefresh: cl.AllowsGrant(oauth.GrantRefreshToken), nonce: req.Nonce})
}

// badRefresh is the one answer for every unusable refresh token (RFC 6749
// §5.2 invalid_grant), so the response does not tell which case it was.
func badRefresh() *oauth.Error {
	return oauth.InvalidGrant(oauth.CauseBadGrant, "the refresh token is invalid, expired or revoked")
}

func (e *Engine) refresh(ctx context.Context, cl *oauth.Client, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	if req.RefreshToken == "" {
		return nil, oauth.Missing("refresh_token")
	}
	id, kind, ok := e.opaque.Check(req.RefreshToken)
	if !ok || kind != oauth.KindRefresh {
		return nil, badRefresh()
	}
	old, err := e.store.GetToken(ctx, id)
	if errors.Is(err, oauth.ErrNotFound) {
		return nil, badRefresh()
	}
	if err != nil {
		return nil, e.StoreError(ctx, "get refresh token", err)
	}
	// RFC 6749 §6: the refresh token is bound to the client it was issued to.
	if old.ClientID != cl.ID || old.Kind != oauth.KindRefresh {
		return nil, badRefresh()
	}
	now := e.cfg.Now()
	if !old.RotatedAt.IsZero() {
		// Reuse of a rotated token (RFC 9700 §4.14): the store revokes the
		// whole family. Checked before anything else in the request, so no
		// other error can let a replayed token off without that.
		if ae := e.persist(ctx, issuance{client: cl, rotateFrom: old.ID}, nil); ae != nil {
			return nil, ae
		}
		return nil, badRefresh()
	}
	if !old.Active(now) {
		return nil, badRefresh()
	}
	// RFC 6749 §6: no scope means the original scope; a refresh may narrow
	// the scope, never widen it. What the client is no longer allowed (an
	// operator narrowed its scopes since) is not granted again.
	var scopes []string
	changed := false
	if req.Scopes != nil {
		for _, s := range req.Scopes {
			if !slices.Contains(old.Scopes, s) {
				return nil, oauth.InvalidScope("the requested scope exceeds the scope originally granted")
			}
			if !slices.Contains(cl.Scopes, s) {
				return nil, oauth.InvalidScope("the requested scope is no longer allowed for this client")
			}
		}
		scopes = req.Scopes
	} else {
		for _, s := range old.Scopes {
			if slices.Contains(cl.Scopes, s) {
				scopes = append(scopes, s)
			}
		}
		changed = len(scopes) > 0 || len(old.Scopes) > 0
	}
	if old.Subject != old.ClientID {
		u, err := e.store.GetUser(ctx, old.Subject)
		if errors.Is(err, oauth.ErrNotFound) || (err == nil && u.Disabled) {
			return nil, oauth.InvalidGrant(oauth.CauseUserDisabled, "the resource owner is disabled or removed")
		}
		if err != nil {
			return nil, e.StoreError(ctx, "get user", err)
		}
	}
	// The new refresh token keeps the old one's scope (RFC 6749 §6: it
	// must be identical), whatever this access token was narrowed to.
	return e.issue(ctx, issuance{client: cl, subject: old.Subject, scopes: scopes, scopeChanged: changed,
		refreshScopes: old.Scopes, policy: req.Policy, withRefresh: true, familyID: old.FamilyID, rotateFrom: old.ID,
		nonce: req.Nonce})
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
				return e.nonceError(ctx, err)
			}
		}
		err = e.store.RotateRefreshToken(ctx, is.rotateFrom, e.cfg.Now(), records...)
	case is.nonce != nil:
		if err := e.store.CreateTokensOnce(ctx, *is.nonce, records...); err != nil {
			return e.nonceError(ctx, err)
		}
	case len(records) > 0:
		err = e.store.CreateTokens(ctx, records...)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, oauth.ErrRefreshReused):
		e.cfg.Logger.Warn("refresh token reuse detected; family revoked", "client_id", is.client.ID)
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
	t.ID = secret.NewID(16)
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
// the store's trouble.
func (e *Engine) nonceError(ctx context.Context, err error) *oauth.Error {
	if errors.Is(err, oauth.ErrAlreadyExists) {
		return oauth.InvalidClient(oauth.CauseReplay, "request replayed")
	}
	return e.StoreError(ctx, "use nonce", err)
}
