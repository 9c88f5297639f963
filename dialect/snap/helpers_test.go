package snap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

// Keys are generated once per test binary: RSA key generation is slow.
var (
	clientKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	otherKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	weakKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
	ecKey     = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func spkiPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func pkcs1PEM(pub *rsa.PublicKey) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}))
}

// certPEM makes a self-signed certificate for key.
func certPEM(t testing.TB, key any, pub any) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "normaltest"},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), // expired on purpose: the key is pinned
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// t0 is the server's clock in the tests: 2024-12-31T10:11:40+07:00, the
// seed's sample timestamp.
var (
	wib = time.FixedZone("WIB", 7*3600)
	t0  = time.Date(2024, 12, 31, 10, 11, 40, 0, wib)
)

const (
	testClientID = "normaltest"
	ts0          = "2024-12-31T10:11:40+07:00"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// memNonces is an in-memory nonce store honouring expiry.
type memNonces struct {
	mu   sync.Mutex
	now  func() time.Time
	m    map[string]time.Time
	err  error // returned by every call when set
	last time.Time
}

func newMemNonces(now func() time.Time) *memNonces {
	return &memNonces{now: now, m: map[string]time.Time{}}
}

func (s *memNonces) UseNonce(ctx context.Context, key string, expiresAt time.Time) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.m[key]; ok && s.now().Before(exp) {
		return oauth.ErrAlreadyExists
	}
	s.m[key] = expiresAt
	s.last = expiresAt
	return nil
}

// fakeEngine does what the engine does around a dialect, in the same order:
// the credentials' method, look the client up (Dummy for an unknown one),
// the snap_signature Authenticator, then what an authenticated client may
// do (method, endpoint, disabled), grant, then an injected failure (scope,
// rate limit, store...), then mint.
type fakeEngine struct {
	clients map[string]*oauth.Client
	inject  *oauth.Error
	nonces  *memNonces     // where the real engine's store uses up req.Nonce
	auth    *Authenticator // nil: a fresh one per request
	now     func() time.Time
}

func (en *fakeEngine) serve(d dialect.Dialect, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req, e := d.DecodeTokenRequest(r)
	if e == nil {
		req.Endpoint = r.URL.Path // as the server does
		e = en.issue(r.Context(), req)
	}
	if e != nil {
		d.WriteError(w, r, e)
		return w
	}
	d.WriteToken(w, r, &oauth.TokenResponse{
		AccessToken: "xy8DUzzavV9bwDxxrxCB89tsuvk4mf4kx4lgfe4acrvxr7xderhbe1",
		TokenType:   "Bearer",
		ExpiresIn:   900,
		ClientID:    req.Credentials.ClientID,
	})
	return w
}

func (en *fakeEngine) issue(ctx context.Context, req *oauth.TokenRequest) *oauth.Error {
	creds := req.Credentials
	if creds.Method == "" || creds.ClientID == "" {
		return oauth.InvalidClient(oauth.CauseNoCredentials, "client authentication required")
	}
	if creds.Method != oauth.AuthSNAPSignature {
		return oauth.InvalidClient(oauth.CauseMethodNotAllowed, "unsupported client authentication method")
	}
	auth := en.auth
	if auth == nil {
		auth = NewAuthenticator(nil)
	}
	now := time.Now
	if en.now != nil {
		now = en.now
	}
	c := en.clients[creds.ClientID]
	if c == nil {
		auth.Dummy(creds)
		return oauth.InvalidClient(oauth.CauseUnknownClient, "client authentication failed")
	}
	if e := auth.Authenticate(ctx, creds, c, now()); e != nil {
		return e
	}
	if !c.AllowsAuthMethod(creds.Method) {
		return oauth.InvalidClient(oauth.CauseMethodNotAllowed, "the client is not registered for this client authentication method")
	}
	if req.Endpoint != "" && !c.AllowsEndpoint(req.Endpoint) {
		return oauth.InvalidClient(oauth.CauseEndpointNotAllowed, "the client is not registered for this token endpoint")
	}
	if c.Disabled {
		return oauth.InvalidClient(oauth.CauseClientDisabled, "client disabled")
	}
	if !c.AllowsGrant(req.GrantType) {
		return oauth.UnauthorizedClient("grant not allowed")
	}
	if en.inject != nil {
		return en.inject
	}
	// The engine uses the nonce up with the token, as the last step.
	if req.Nonce != nil && en.nonces != nil {
		switch err := en.nonces.UseNonce(ctx, req.Nonce.Key, req.Nonce.ExpiresAt); {
		case errors.Is(err, oauth.ErrAlreadyExists):
			return oauth.InvalidClient(oauth.CauseReplay, "request replayed")
		case errors.Is(err, context.DeadlineExceeded):
			return oauth.Timeout()
		case err != nil:
			return oauth.Unavailable()
		}
	}
	return nil
}

// snapRequest builds a signed SNAP access token request; edit adjusts
// headers before it is returned.
func snapRequest(t testing.TB, key *rsa.PrivateKey, clientID, ts, body string, edit func(h http.Header)) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1.0/access-token/b2b", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderClientKey, clientID)
	sig, err := Sign(key, clientID, ts)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set(HeaderSignature, sig)
	if edit != nil {
		edit(r.Header)
	}
	return r
}

const okBody = `{"grantType":"client_credentials","additionalInfo":{}}`

// decodeBody parses a JSON response body into a map.
func decodeBody(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("response body %q: %v", w.Body.String(), err)
	}
	return m
}
