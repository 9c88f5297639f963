package guard

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/tlspolicy"
	"github.com/tokengate/tokengate/token"
)

const maxIntrospectionBytes = 64 << 10

// opaqueIssueMargin: an opaque token's value carries the millisecond it was
// minted, a little after the issue time the server compares with a
// "revoke everything before T" cutoff. Taking the issue time this much
// earlier errs towards refusing a token issued in the instant of a cutoff,
// never towards accepting one the server revoked. (A JWT's jti carries the
// issue time itself, truncated: no margin is needed.)
const opaqueIssueMargin = 10 * time.Millisecond

// introspect asks the server about tok (RFC 7662). Errors wrap
// ErrUnavailable and never contain the token.
func (g *Guard) introspect(ctx context.Context, tok string) (*introspection, error) {
	start := time.Now()
	in, err := g.introspectRequest(ctx, tok)
	if h := g.hooks.Introspected; h != nil {
		h(time.Since(start), err)
	}
	return in, err
}

func (g *Guard) introspectRequest(ctx context.Context, tok string) (*introspection, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.endpoint.introspect, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable("introspection request", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	g.setClientAuth(req)
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		// A *url.Error names the endpoint, not the body: no token in it.
		return nil, unavailable("introspection", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxIntrospectionBytes))
		return nil, unavailable("introspection answered "+resp.Status, nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return nil, unavailable("introspection read", err)
	}
	if len(body) > maxIntrospectionBytes {
		return nil, unavailable("introspection answer too large", nil)
	}
	in, err := parseIntrospection(body)
	if err != nil {
		return nil, unavailable("introspection answer is not RFC 7662 JSON", nil)
	}
	return in, nil
}

// setClientAuth adds client_secret_basic (RFC 6749 §2.3.1: both parts
// form-encoded first).
func (g *Guard) setClientAuth(req *http.Request) {
	req.SetBasicAuth(url.QueryEscape(g.cfg.ClientID), url.QueryEscape(g.cfg.ClientSecret))
}

// checkActive decides an introspection answer at now: active, an access
// token, of this issuer and audience (when it names them), not expired.
func (g *Guard) checkActive(in *introspection, now int64) error {
	switch {
	case !in.Active:
		return ErrInactive
	case in.TokenType != "" && !strings.EqualFold(in.TokenType, "Bearer"):
		return ErrNotAccessToken
	case in.Iss != "" && in.Iss != g.cfg.Issuer:
		return ErrWrongIssuer
	case len(in.Aud) > 0 && !in.Aud.contains(g.cfg.Audience):
		return ErrWrongAudience
	case in.Exp != nil && now >= int64(*in.Exp)+int64(g.cfg.Leeway):
		return ErrExpired
	case in.ClientID == "":
		return ErrInactive // tokengate always names the client of an active token
	}
	return nil
}

// checkOpaque introspects an opaque access token and returns its entry,
// not yet cached, to be used until the earliest of its expiry, CacheTTL
// and its latest possible end (MaxTokenLifetime after issue).
func (g *Guard) checkOpaque(ctx context.Context, tok string) (*entry, error) {
	switch {
	case strings.HasPrefix(tok, token.PrefixRefresh):
		return nil, ErrNotAccessToken
	case !strings.HasPrefix(tok, token.PrefixAccess) || len(tok) != token.OpaqueLen:
		return nil, ErrMalformed
	}
	id := token.ID(tok)
	e := &entry{format: FormatOpaque, idKey: sha256.Sum256([]byte(id)), introspected: true}
	if g.rev.revokedID(&e.idKey) {
		return nil, ErrRevoked
	}
	in, err := g.introspect(ctx, tok)
	if err != nil {
		return nil, err
	}
	now := g.cfg.Now().UnixNano()
	if err := g.checkActive(in, now); err != nil {
		return nil, err
	}
	issued, ok := idTime(id)
	if !ok && in.Iat != nil {
		issued = int64(*in.Iat)
	}
	e.issued = issued
	if ok {
		e.issued -= int64(opaqueIssueMargin)
	}
	e.until = min(now+int64(g.cfg.CacheTTL), issued+int64(g.cfg.MaxTokenLifetime))
	var exp int64
	if in.Exp != nil {
		exp = int64(*in.Exp)
		e.until = min(e.until, exp)
	}
	sub := in.Sub
	if sub == "" {
		sub = in.ClientID
	}
	e.user = sub != in.ClientID
	e.ident = &Identity{ClientID: in.ClientID, Subject: sub, Scopes: strings.Fields(in.Scope), TokenID: id,
		Format: FormatOpaque, IssuedAt: time.Unix(0, issued), ExpiresAt: time.Unix(0, exp)}
	if e.user {
		e.ident.Username = sub
	}
	e.computeSize()
	return e, nil
}

// discover reads the issuer's RFC 8414 metadata: its issuer must be
// Config.Issuer (§3.3), and it names the JWKS and introspection endpoints.
// The feed is at /oauth/revocations under the issuer.
func (g *Guard) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.Issuer+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return unavailable("metadata request", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return unavailable("metadata", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return unavailable("metadata answered "+resp.Status, nil)
	}
	var md struct {
		Issuer     string `json:"issuer"`
		JWKS       string `json:"jwks_uri"`
		Introspect string `json:"introspection_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&md); err != nil {
		return unavailable("metadata is not JSON", nil)
	}
	if md.Issuer != g.cfg.Issuer {
		return errors.New("guard: the metadata's issuer is not Config.Issuer")
	}
	for _, u := range []string{md.JWKS, md.Introspect} {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || (p.Scheme != "https" && !(p.Scheme == "http" && (g.cfg.AllowInsecureHTTP || tlspolicy.Loopback(p.Hostname())))) {
			return errors.New("guard: the metadata lacks a usable jwks_uri or introspection_endpoint")
		}
	}
	g.endpoint = endpoints{jwks: md.JWKS, introspect: md.Introspect, feed: g.cfg.Issuer + "/oauth/revocations"}
	return nil
}
