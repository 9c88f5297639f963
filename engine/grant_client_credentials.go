package engine

import (
	"context"

	"github.com/tokengate/tokengate/oauth"
)

// clientCredentials runs RFC 6749 §4.4. A refresh token is issued only
// when the client asked for it at registration (§4.4.3 says SHOULD NOT by
// default) and the dialect's response can carry one.
func (e *Engine) clientCredentials(ctx context.Context, cl *oauth.Client, req *oauth.TokenRequest) (*oauth.TokenResponse, *oauth.Error) {
	scopes, changed, ae := grantScopes(req.Scopes, req.Policy.DefaultScopes, cl.DefaultScopes, cl.Scopes)
	if ae != nil {
		return nil, ae
	}
	withRefresh := cl.RefreshWithClientCredentials && cl.AllowsGrant(oauth.GrantRefreshToken) && !req.NoRefreshToken
	return e.issue(ctx, issuance{client: cl, subject: cl.ID, scopes: scopes, scopeChanged: changed,
		policy: req.Policy, withRefresh: withRefresh, nonce: req.Nonce})
}
