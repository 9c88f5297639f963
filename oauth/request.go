package oauth

import (
	"context"
	"time"
)

// Client authentication methods (RFC 7591 §2 names).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	// AuthDialect means the dialect proves the client's identity itself, for
	// example by a request signature (SNAP BI); see ClientCredentials.Verify.
	AuthDialect = "dialect"
)

// ClientCredentials is the evidence of a client's identity a dialect found
// in a request.
type ClientCredentials struct {
	Method   string // one of the Auth* constants; "" when none was presented
	ClientID string
	Secret   string // client_secret_basic and client_secret_post
	// Verify checks dialect-specific evidence against the registered client,
	// for AuthDialect. It returns nil or an *Error whose Cause says why.
	Verify func(ctx context.Context, c *Client) *Error
}

// EndpointPolicy is what an endpoint's configuration contributes to a grant.
type EndpointPolicy struct {
	DefaultScopes []string      // used when neither the request nor the client names scopes
	AccessTTL     time.Duration // used when the client sets none; 0: server default
}

// TokenRequest is a token endpoint request in dialect-neutral form.
type TokenRequest struct {
	GrantType    string
	Scopes       []string // requested scopes; nil when the request named none
	Username     string   // password grant
	Password     string   // password grant
	RefreshToken string   // refresh_token grant
	Credentials  ClientCredentials
	Policy       EndpointPolicy
	// Nonce, when set, is used up atomically with the issuance (a signed
	// request that must not be honoured twice, as SNAP's X-SIGNATURE).
	Nonce *Nonce
}

// TokenResponse is a successful token endpoint response in dialect-neutral form.
type TokenResponse struct {
	AccessToken  string
	TokenType    string // "Bearer"
	ExpiresIn    int64  // seconds, truthful: ExpiresAt - IssuedAt
	RefreshToken string
	Scopes       []string
	// ScopeChanged is true when the granted scope differs from the request
	// (RFC 6749 §5.1 then requires the scope in the response).
	ScopeChanged bool
	IssuedAt     time.Time
	ExpiresAt    time.Time
	ClientID     string
}

// Introspection is the RFC 7662 §2.2 view of a token.
type Introspection struct {
	Active    bool
	Scope     []string
	ClientID  string
	Username  string
	TokenType string // "Bearer" for access tokens, "refresh_token" for refresh tokens
	Exp       int64
	Iat       int64
	Sub       string
	Aud       []string
	Iss       string
	Jti       string
}
