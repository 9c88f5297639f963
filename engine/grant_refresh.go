package engine

import (
	"context"
	"errors"
	"slices"

	"github.com/tokengate/tokengate/oauth"
)

// badRefresh is the one answer for every unusable refresh token (RFC 6749
// §5.2 invalid_grant), so the response does not tell which case it was.
func badRefresh() *oauth.Error {
	return oauth.InvalidGrant(oauth.CauseBadGrant, "the refresh token is invalid, expired or revoked")
}

// refresh runs RFC 6749 §6 with rotation: each refresh token is exchanged
// once for a new pair of the same family. Presented again after its
// rotation, it revokes the family (RFC 9700 §4.14), unless it comes from
// the same client within RefreshReuseGrace of the rotation: a retry after a
// lost reply, or one of several concurrent requests, then gets a new pair
// of the family too.
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
	if old.ClientID != cl.ID || old.Kind != oauth.KindRefresh || cl.RevokedBefore(old.IssuedAt) {
		return nil, badRefresh()
	}
	now := e.cfg.Now()
	if !old.RotatedAt.IsZero() && !now.Before(old.RotatedAt.Add(e.cfg.RefreshReuseGrace)) {
		// Reuse of a rotated token: the store revokes the whole family.
		// Checked before anything else in the request, so no other error
		// can let a replayed token off without that.
		if ae := e.persist(ctx, issuance{client: cl, rotateFrom: old.ID}, nil); ae != nil {
			return nil, ae
		}
		return nil, badRefresh()
	}
	if !old.Active(now) {
		return nil, badRefresh()
	}
	scopes, changed, ae := refreshScopes(req.Scopes, old.Scopes, cl.Scopes)
	if ae != nil {
		return nil, ae
	}
	if old.Subject != old.ClientID {
		u, err := e.user(ctx, old.Subject)
		if err != nil {
			return nil, e.StoreError(ctx, "get user", err)
		}
		if u == nil || u.Disabled {
			return nil, oauth.InvalidGrant(oauth.CauseUserDisabled, "the resource owner is disabled or removed")
		}
		if u.RevokedBefore(old.IssuedAt) {
			return nil, badRefresh()
		}
	}
	// The new refresh token keeps the old one's scope (RFC 6749 §6: it
	// must be identical), whatever this access token was narrowed to.
	return e.issue(ctx, issuance{client: cl, subject: old.Subject, scopes: scopes, scopeChanged: changed,
		refreshScopes: old.Scopes, policy: req.Policy, withRefresh: true, familyID: old.FamilyID, rotateFrom: old.ID,
		nonce: req.Nonce})
}

// refreshScopes decides a refresh's scope (RFC 6749 §6): no scope means the
// original scope; a refresh may narrow the scope, never widen it, even to
// scopes the client is allowed. What the client is no longer allowed (an
// operator narrowed its scopes since) is not granted again.
func refreshScopes(requested, original, allowed []string) (scopes []string, changed bool, ae *oauth.Error) {
	if requested != nil {
		for _, s := range requested {
			if !slices.Contains(original, s) {
				return nil, false, oauth.InvalidScope("the requested scope exceeds the scope originally granted")
			}
			if !slices.Contains(allowed, s) {
				return nil, false, oauth.InvalidScope("the requested scope is no longer allowed for this client")
			}
		}
		return requested, false, nil
	}
	for _, s := range original {
		if slices.Contains(allowed, s) {
			scopes = append(scopes, s)
		}
	}
	return scopes, len(scopes) > 0 || len(original) > 0, nil
}
