package engine

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/token"
)

// lookup finds the stored record behind a token value: an opaque token's
// record, or for a JWT its verified claims as a record (with the stored
// revocation state, if any). It returns (nil, nil) for anything that is not
// a token this server issued and can still honour.
func (e *Engine) lookup(ctx context.Context, value string) (*oauth.Token, error) {
	if value == "" {
		return nil, nil
	}
	now := e.cfg.Now()
	if token.LooksOpaque(value) {
		id, _, ok := e.opaque.Check(value)
		if !ok {
			return nil, nil // forged or garbage: no store read
		}
		t, err := e.store.GetToken(ctx, id)
		if errors.Is(err, oauth.ErrNotFound) {
			return nil, nil
		}
		return t, err
	}
	// Signed by one of our keys is what makes a JWT ours; its iss is what
	// the issuer setting was when it was signed (and an admin command may
	// derive a different default issuer than the server it runs beside).
	claims, err := e.keys.Load().Verify(value, "", now)
	if err != nil {
		return nil, nil
	}
	issued := claims.IssuedAt
	if at, ok := token.JTITime(claims.ID, claims.IssuedAt); ok {
		issued = at
	}
	t := &oauth.Token{ID: claims.ID, Kind: oauth.KindAccess, Format: oauth.FormatJWT, ClientID: claims.ClientID,
		Subject: claims.Subject, Scopes: splitScope(claims.Scope), IssuedAt: issued, ExpiresAt: claims.ExpiresAt}
	stored, err := e.store.GetToken(ctx, claims.ID)
	switch {
	case errors.Is(err, oauth.ErrNotFound):
		return t, nil
	case err != nil:
		return nil, err
	}
	t.RevokedAt = stored.RevokedAt
	t.FamilyID = stored.FamilyID
	return t, nil
}

// Introspect answers RFC 7662 for a token value, asked by caller (nil for
// an operator). Expired, revoked, rotated, unknown and forged tokens, tokens
// of disabled or deleted clients and users, tokens issued before their
// client's or user's TokensNotBefore, and JWTs whose lifetime or scope their
// client could never have been issued are inactive. So is a token issued to
// another client unless caller may introspect (RFC 7662 §2.2 lets the
// server say only "active":false to a caller it does not trust with the
// token's details). An error means the store failed (answer 503, never
// "inactive").
func (e *Engine) Introspect(ctx context.Context, caller *oauth.Client, value string) (*oauth.Introspection, error) {
	t, err := e.lookup(ctx, value)
	if err != nil || t == nil {
		return &oauth.Introspection{}, err
	}
	if caller != nil && caller.ID != t.ClientID && !caller.CanIntrospect {
		e.event(ctx, secevent.IntrospectionDenied, caller.ID, "", "introspection of another client's token without permission")
		return &oauth.Introspection{}, nil
	}
	cl, err := e.honoured(ctx, t)
	if err != nil || cl == nil {
		return &oauth.Introspection{}, err
	}
	in := &oauth.Introspection{
		Active:   true,
		Scope:    t.Scopes,
		ClientID: t.ClientID,
		Exp:      t.ExpiresAt.Unix(),
		Iat:      t.IssuedAt.Unix(),
		Sub:      t.Subject,
		Iss:      e.cfg.Issuer,
	}
	if t.Subject != t.ClientID {
		in.Username = t.Subject
	}
	if t.Kind == oauth.KindAccess {
		in.TokenType = "Bearer"
		if t.Format == oauth.FormatJWT {
			in.Aud = e.cfg.Audience
			in.Jti = t.ID
		}
	} else {
		in.TokenType = "refresh_token"
	}
	return in, nil
}

// honoured returns the client of a token found by lookup if the token is
// still honoured now, else nil.
func (e *Engine) honoured(ctx context.Context, t *oauth.Token) (*oauth.Client, error) {
	now := e.cfg.Now()
	if !t.Active(now) || (t.Kind == oauth.KindRefresh && !t.RotatedAt.IsZero()) {
		return nil, nil
	}
	cl, err := e.client(ctx, t.ClientID)
	if err != nil || cl == nil || cl.Disabled || cl.RevokedBefore(t.IssuedAt) {
		return nil, err
	}
	if t.Format == oauth.FormatJWT {
		// A JWT signed with a stolen key could claim anything; claims the
		// engine never issues to this client mark it as forged.
		if t.ExpiresAt.Sub(t.IssuedAt) > e.cfg.MaxAccessTTL {
			e.event(ctx, secevent.JWTPolicyViolation, t.ClientID, "", "a validly signed JWT outlives max_access_ttl: is a signing key leaked?")
			return nil, nil
		}
		for _, s := range t.Scopes {
			if !slices.Contains(cl.Scopes, s) {
				e.event(ctx, secevent.JWTPolicyViolation, t.ClientID, "", "a validly signed JWT carries a scope its client is not (or no longer) allowed")
				return nil, nil
			}
		}
	}
	if t.Subject != t.ClientID {
		u, err := e.user(ctx, t.Subject)
		if err != nil || u == nil || u.Disabled || u.RevokedBefore(t.IssuedAt) {
			return nil, err
		}
	}
	return cl, nil
}

// AccessToken returns the record of an access token value and its client
// if the token is honoured now (introspection would call it active), else
// (nil, nil, nil): for verifiers of the calls tokens are used for. The
// token's client is cached, so a call costs one store read for an opaque
// token or an unrevoked JWT's revocation check. An error means the store
// failed.
func (e *Engine) AccessToken(ctx context.Context, value string) (*oauth.Token, *oauth.Client, error) {
	t, err := e.lookup(ctx, value)
	if err != nil || t == nil || t.Kind != oauth.KindAccess {
		return nil, nil, err
	}
	cl, err := e.honoured(ctx, t)
	if err != nil || cl == nil {
		return nil, nil, err
	}
	return t, cl, nil
}

// ErrNotOwner is returned by Revoke when a client presents another
// client's token (RFC 7009 §2.1: the request is refused).
var ErrNotOwner = errors.New("token was issued to another client")

// Revoke revokes a token (RFC 7009). Revoking a refresh token revokes its
// whole family, including the access tokens issued with it. Unknown,
// invalid and already revoked tokens are not an error (RFC 7009 §2.2);
// found reports whether value was a token of this server at all.
// client is the authenticated caller, or nil for an operator.
func (e *Engine) Revoke(ctx context.Context, client *oauth.Client, value string) (found bool, err error) {
	t, err := e.lookup(ctx, value)
	if err != nil || t == nil {
		return false, err
	}
	now := e.cfg.Now()
	if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
		// Nothing to do (RFC 7009 §2.2), whoever asks: answered before the
		// owner check, so a dead token does not tell another client it was
		// one of ours.
		return true, nil
	}
	if client != nil && client.ID != t.ClientID {
		return true, ErrNotOwner
	}
	clientID := ""
	if client != nil {
		clientID = client.ID
	}
	e.event(ctx, secevent.TokenRevoked, clientID, "", "a token was revoked")
	if t.Kind == oauth.KindRefresh && t.FamilyID != "" {
		return true, e.store.RevokeFamily(ctx, t.FamilyID, now)
	}
	return true, e.store.RevokeToken(ctx, t, now)
}

func splitScope(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}
