// Package snapclient is the merchant side of SNAP BI: a TokenSource that
// fetches and renews B2B access tokens (service 73) and a Transport (an
// http.RoundTripper) that adds every service-call header and signs each
// call, symmetrically (HMAC-SHA512 with the client secret) or
// asymmetrically (SHA256withRSA with the private key).
//
//	ts, err := snapclient.NewTokenSource(snapclient.TokenConfig{
//		URL:        "https://api.example.com/v1.0/access-token/b2b",
//		ClientID:   clientID,
//		PrivateKey: key,
//	})
//	client := &http.Client{Transport: &snapclient.Transport{
//		Tokens: ts, Variant: snapclient.Symmetric, ClientSecret: secret, PartnerID: clientID,
//	}}
//	resp, err := client.Post("https://api.example.com/v1.0/transfer-va/create-va", "application/json", body)
package snapclient

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
)

// DefaultRenewBefore is how long before its expiry a token is renewed
// unless TokenConfig.RenewBefore says otherwise.
const DefaultRenewBefore = time.Minute

// maxResponse bounds what is read of a token response.
const maxResponse = 64 << 10

// TokenConfig configures a TokenSource.
type TokenConfig struct {
	// URL is the B2B access token endpoint, for example
	// https://api.example.com/v1.0/access-token/b2b.
	URL string
	// ClientID is sent as X-CLIENT-KEY and signed with X-TIMESTAMP.
	ClientID string
	// PrivateKey signs the token request; the provider holds its public key.
	PrivateKey *rsa.PrivateKey
	// HTTPClient sends the token request (nil: http.DefaultClient). It must
	// not use a Transport of this package that needs this TokenSource.
	HTTPClient *http.Client
	// RenewBefore is how long before expiry a token is renewed (0:
	// DefaultRenewBefore). It is capped at half the token's lifetime.
	RenewBefore time.Duration
	// Now is the clock (nil: time.Now). X-TIMESTAMP is formatted from it.
	Now func() time.Time
	// Location is the time zone X-TIMESTAMP is written in (nil: the one of
	// Now's times). Some providers require +07:00 (Asia/Jakarta).
	Location *time.Location
}

// TokenSource fetches a SNAP B2B access token and caches it until it is
// due for renewal. It is safe for concurrent use: at most one token
// request is in flight. Callers that have no usable token wait for it;
// while the cached token is due for renewal but not yet expired, one caller
// renews it and the others keep using the cached token, as does that caller
// if the renewal fails.
type TokenSource struct {
	cfg   TokenConfig
	fetch chan struct{} // holds a value while a token request is in flight

	mu        sync.Mutex
	token     string
	renewAt   time.Time
	expiresAt time.Time
}

// NewTokenSource checks cfg and returns a TokenSource. It returns an error
// when URL, ClientID or PrivateKey is missing or RenewBefore is negative.
func NewTokenSource(cfg TokenConfig) (*TokenSource, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("snapclient: TokenConfig.URL is empty")
	case cfg.ClientID == "":
		return nil, errors.New("snapclient: TokenConfig.ClientID is empty")
	case cfg.PrivateKey == nil:
		return nil, errors.New("snapclient: TokenConfig.PrivateKey is nil")
	case cfg.RenewBefore < 0:
		return nil, errors.New("snapclient: TokenConfig.RenewBefore is negative")
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &TokenSource{cfg: cfg, fetch: make(chan struct{}, 1)}, nil
}

// TokenError is a token request the provider refused or answered with
// something other than a token.
type TokenError struct {
	StatusCode      int    // HTTP status
	ResponseCode    string // SNAP responseCode, e.g. "4017300"; "" if none
	ResponseMessage string // SNAP responseMessage; "" if none
}

func (e *TokenError) Error() string {
	msg := fmt.Sprintf("snapclient: token request failed: HTTP %d", e.StatusCode)
	if e.ResponseCode != "" || e.ResponseMessage != "" {
		msg += ": " + strings.TrimSpace(e.ResponseCode+" "+e.ResponseMessage)
	}
	return msg
}

// Token returns an access token: the cached one while it is not due for
// renewal, otherwise a fresh one. It returns ctx's error if ctx ends while
// waiting for another caller's request, a *TokenError if the provider
// refuses, and other errors for transport failures or a response without a
// token or lifetime. Errors never contain the token or the key.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	tok, renewAt, expiresAt := s.token, s.renewAt, s.expiresAt
	s.mu.Unlock()
	switch {
	case tok != "" && now.Before(renewAt):
		return tok, nil
	case tok != "" && now.Before(expiresAt):
		// Due for renewal: renew unless someone else is; never wait.
		select {
		case s.fetch <- struct{}{}:
		default:
			return tok, nil
		}
	default:
		select {
		case s.fetch <- struct{}{}:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	defer func() { <-s.fetch }()

	// Another caller may have fetched while this one waited.
	s.mu.Lock()
	tok, renewAt, expiresAt = s.token, s.renewAt, s.expiresAt
	s.mu.Unlock()
	if now = s.cfg.Now(); tok != "" && now.Before(renewAt) {
		return tok, nil
	}
	fresh, lifetime, err := s.request(ctx, now)
	if err != nil {
		if tok != "" && s.cfg.Now().Before(expiresAt) {
			return tok, nil // renewal failed; the old token still works
		}
		return "", err
	}
	margin := min(s.cfg.RenewBefore, lifetime/2)
	s.mu.Lock()
	s.token, s.expiresAt, s.renewAt = fresh, now.Add(lifetime), now.Add(lifetime-margin)
	s.mu.Unlock()
	return fresh, nil
}

// Invalidate forgets token if it is the cached one, so that the next Token
// call requests a new one. Transport calls it when the provider answers
// that the token is invalid or unknown (revoked, or the provider lost it).
func (s *TokenSource) Invalidate(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token != "" && token == s.token {
		s.token, s.renewAt, s.expiresAt = "", time.Time{}, time.Time{}
	}
}

// tokenBody is what a B2B token request sends.
const tokenBody = `{"grantType":"client_credentials","additionalInfo":{}}`

// request asks the provider for a token; now is the clock reading the
// lifetime counts from (taken before sending, so expiry is never late).
func (s *TokenSource) request(ctx context.Context, now time.Time) (string, time.Duration, error) {
	if s.cfg.Location != nil {
		now = now.In(s.cfg.Location)
	}
	ts := snap.Timestamp(now)
	sig, err := snap.Sign(s.cfg.PrivateKey, s.cfg.ClientID, ts)
	if err != nil {
		return "", 0, fmt.Errorf("snapclient: sign token request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, strings.NewReader(tokenBody))
	if err != nil {
		return "", 0, fmt.Errorf("snapclient: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(snap.HeaderTimestamp, ts)
	req.Header.Set(snap.HeaderClientKey, s.cfg.ClientID)
	req.Header.Set(snap.HeaderSignature, sig)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("snapclient: token request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", 0, fmt.Errorf("snapclient: read token response: %w", err)
	}
	var body struct {
		ResponseCode    string          `json:"responseCode"`
		ResponseMessage string          `json:"responseMessage"`
		AccessToken     string          `json:"accessToken"`
		ExpiresIn       json.RawMessage `json:"expiresIn"`
	}
	jsonErr := json.Unmarshal(raw, &body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body.ResponseCode, "200") || body.AccessToken == "" {
		return "", 0, &TokenError{StatusCode: resp.StatusCode, ResponseCode: body.ResponseCode, ResponseMessage: body.ResponseMessage}
	}
	if jsonErr != nil {
		return "", 0, fmt.Errorf("snapclient: token response is not JSON: %w", jsonErr)
	}
	lifetime, ok := expiresIn(body.ExpiresIn)
	if !ok {
		return "", 0, errors.New("snapclient: token response has no valid expiresIn")
	}
	return body.AccessToken, lifetime, nil
}

// expiresIn reads SNAP's expiresIn: seconds as a string ("900", most
// providers) or a number (some).
func expiresIn(raw json.RawMessage) (time.Duration, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 1 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		raw = []byte(s)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n <= 0 || n > 366*24*3600 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
