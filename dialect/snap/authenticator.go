package snap

import (
	"context"
	"crypto/rsa"
	"log/slog"
	"sync"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Evidence is what a SNAP access token request proves its client with:
// X-SIGNATURE over client_id|X-TIMESTAMP. DecodeTokenRequest puts it in
// oauth.ClientCredentials.Evidence.
type Evidence struct {
	Timestamp string // X-TIMESTAMP, byte for byte as sent
	Signature []byte // X-SIGNATURE, Base64-decoded
}

// Authenticator is the snap_signature client authentication method: it
// verifies SHA256withRSA signatures with the client's registered public key.
// It is safe for concurrent use.
type Authenticator struct {
	log  *slog.Logger
	keys KeyCache
}

var _ oauth.ClientAuthenticator = (*Authenticator)(nil)

// NewAuthenticator returns the snap_signature authenticator; log receives
// the ID of a client whose registered key cannot be parsed.
func NewAuthenticator(log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{log: log}
}

// Method implements oauth.ClientAuthenticator.
func (a *Authenticator) Method() string { return oauth.AuthSNAPSignature }

// Authenticate implements oauth.ClientAuthenticator. Errors: invalid_client
// with CauseNoClientKey (no usable key registered) or CauseBadCredentials.
func (a *Authenticator) Authenticate(ctx context.Context, creds oauth.ClientCredentials, c *oauth.Client, _ time.Time) *oauth.Error {
	ev, ok := creds.Evidence.(Evidence)
	if !ok || c == nil {
		a.Dummy(creds)
		return oauth.InvalidClient(oauth.CauseBadCredentials, "invalid signature")
	}
	// Every refusal costs one RSA verification, like a wrong signature, so
	// timing does not tell a client without a key from one with a key.
	if c.PublicKeyPEM == "" {
		a.Dummy(creds)
		return oauth.InvalidClient(oauth.CauseNoClientKey, "no public key is registered for the client")
	}
	key, err := a.keys.Get(c.PublicKeyPEM)
	if err != nil {
		a.Dummy(creds)
		a.log.ErrorContext(ctx, "snap: registered public key is unusable", "client_id", c.ID, "err", err)
		return oauth.InvalidClient(oauth.CauseNoClientKey, "the client's registered public key is unusable")
	}
	if !VerifyPKCS1(key, accessTokenStringToSign(creds.ClientID, ev.Timestamp), ev.Signature) {
		return oauth.InvalidClient(oauth.CauseBadCredentials, "invalid signature")
	}
	return nil
}

// Dummy implements oauth.ClientAuthenticator: one RSA-2048 verification.
func (a *Authenticator) Dummy(creds oauth.ClientCredentials) {
	ev, _ := creds.Evidence.(Evidence)
	VerifyPKCS1(dummyKey(), accessTokenStringToSign(creds.ClientID, ev.Timestamp), ev.Signature)
}

// dummyPublicKey is a throwaway RSA-2048 public key (no one holds its
// private key) that Dummy verifies against, costing what a real check costs.
const dummyPublicKey = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzmPOE4tlZeMtCuam0gUk
8p2S6mn/gRKYDyyCp5QrNYcNnZI2fXQc8plOnrA9UYzr8j86B/VLxZxQnJekdD/2
CIKwT9ZE2JcJphWIc7lr9omfF4QrDTcXaC0FJYQe0eH0Q55xgrgCJLdiB3ZTt1rW
Cd0MLRx1zDsOeIjBV5kOrK/9VjbRvQY6pWUevxAOucZB+Nsm3UunkA3jYBSNN162
pL45ruA3X27X0AK5zdmKeWgXVAx/nYbpfixaNr1YbtQR3rcZghuP7hoYTPiTrzOe
/202jdG7rV13NVb6R0C7R6ayqdgYpRB3psNFfInM9cgAoocLHd2NqtSN9MRnPWRM
ZQIDAQAB
-----END PUBLIC KEY-----
`

var dummyKey = sync.OnceValue(func() *rsa.PublicKey {
	k, err := ParsePublicKey([]byte(dummyPublicKey))
	if err != nil {
		panic("snap: dummy key: " + err.Error())
	}
	return k
})

// KeyCache caches parsed public keys, and the failure to parse one, by
// their PEM text: parsing an RSA key costs more than verifying a signature
// with it. The PEM text must come from the store (an administrator
// registered it), never from a request. It is bounded in entries and
// bytes; past a bound it starts over. The zero value is ready, and it is
// safe for concurrent use.
type KeyCache struct {
	mu    sync.RWMutex
	m     map[string]cachedKey
	bytes int
}

const (
	maxKeys     = 4096
	maxKeyBytes = 8 << 20 // PEM text plus the parsed key, approximately
)

type cachedKey struct {
	key *rsa.PublicKey
	err error
}

// Get returns the key of pemText as ParsePublicKey does, parsing it once.
func (c *KeyCache) Get(pemText string) (*rsa.PublicKey, error) {
	c.mu.RLock()
	ck, ok := c.m[pemText]
	c.mu.RUnlock()
	if ok {
		return ck.key, ck.err
	}
	k, err := ParsePublicKey([]byte(pemText))
	n := 2*len(pemText) + 256 // the text, and a parsed modulus of about the DER's size
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxKeys || c.bytes+n > maxKeyBytes {
		c.m = make(map[string]cachedKey)
		c.bytes = 0
	}
	if _, dup := c.m[pemText]; !dup {
		c.m[pemText] = cachedKey{k, err}
		c.bytes += n
	}
	c.mu.Unlock()
	return k, err
}
