package oauth

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Client authentication methods. The first two are RFC 7591 §2 names.
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	// AuthSNAPSignature is SNAP BI's X-SIGNATURE: SHA256withRSA over
	// client_id|X-TIMESTAMP with the client's registered public key.
	AuthSNAPSignature = "snap_signature"
)

// ClientCredentials is the evidence of a client's identity a dialect found
// in a request.
type ClientCredentials struct {
	Method   string // an authentication method name; "" when none was presented
	ClientID string
	Secret   string // client_secret_basic and client_secret_post
	// Evidence is method-specific proof for the method's
	// ClientAuthenticator (for example a SNAP signature and its timestamp).
	Evidence any
}

// ClientAuthenticator checks one client authentication method, as
// ory/fosite's ClientAuthenticationStrategy does. The engine keeps them in a
// registry by Method; a client lists the methods it may use. Implementations
// are safe for concurrent use.
type ClientAuthenticator interface {
	// Method is the name clients are registered with (Client.AuthMethods).
	Method() string
	// Authenticate checks creds against the registered client c at now. It
	// returns nil, or an invalid_client *Error whose Cause says why
	// (CauseBadCredentials, CauseNoClientKey).
	Authenticate(ctx context.Context, creds ClientCredentials, c *Client, now time.Time) *Error
	// Dummy costs what a failed Authenticate costs, so an unknown client
	// ID is answered in the same time as a known one with bad credentials.
	Dummy(creds ClientCredentials)
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
	// Endpoint is the path of the token endpoint the request came to; a
	// client may be restricted to some (Client.Endpoints).
	Endpoint string
	// NoRefreshToken: the dialect's response cannot carry a refresh token
	// (SNAP, NeoX), so none is issued or stored.
	NoRefreshToken bool
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

// MarshalJSON writes the RFC 7662 §2.2 response: only "active": false for a
// token that is not active, and the scope as one space-separated string.
func (in Introspection) MarshalJSON() ([]byte, error) {
	if !in.Active {
		return []byte(`{"active":false}`), nil
	}
	return json.Marshal(struct {
		Active    bool     `json:"active"`
		Scope     string   `json:"scope,omitempty"`
		ClientID  string   `json:"client_id,omitempty"`
		Username  string   `json:"username,omitempty"`
		TokenType string   `json:"token_type,omitempty"`
		Exp       int64    `json:"exp,omitempty"`
		Iat       int64    `json:"iat,omitempty"`
		Sub       string   `json:"sub,omitempty"`
		Aud       []string `json:"aud,omitempty"`
		Iss       string   `json:"iss,omitempty"`
		Jti       string   `json:"jti,omitempty"`
	}{true, strings.Join(in.Scope, " "), in.ClientID, in.Username, in.TokenType, in.Exp, in.Iat, in.Sub, in.Aud, in.Iss, in.Jti})
}
