package snap

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// signedCreds is what DecodeTokenRequest hands the engine for a request
// signed with key for clientID at ts.
func signedCreds(t testing.TB, key *rsa.PrivateKey, clientID, ts string) oauth.ClientCredentials {
	t.Helper()
	sig, err := Sign(key, clientID, ts)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := decodeSignature(sig)
	if !ok {
		t.Fatal("Sign's output does not decode")
	}
	return oauth.ClientCredentials{Method: oauth.AuthSNAPSignature, ClientID: clientID, Evidence: Evidence{Timestamp: ts, Signature: raw}}
}

func TestAuthenticatorMethod(t *testing.T) {
	var a oauth.ClientAuthenticator = NewAuthenticator(nil)
	if a.Method() != oauth.AuthSNAPSignature {
		t.Fatalf("Method() = %q", a.Method())
	}
}

func TestAuthenticatorValidSignature(t *testing.T) {
	a := NewAuthenticator(nil)
	pub := &clientKey().PublicKey
	creds := signedCreds(t, clientKey(), testClientID, ts0)
	for name, p := range map[string]string{
		"spki":  spkiPEM(t, pub),
		"pkcs1": pkcs1PEM(pub),
		"cert":  certPEM(t, clientKey(), pub),
	} {
		c := &oauth.Client{ID: testClientID, PublicKeyPEM: p}
		// Twice: the second time with the parsed key from the cache.
		for range 2 {
			if e := a.Authenticate(context.Background(), creds, c, t0); e != nil {
				t.Errorf("%s: %v", name, e)
			}
		}
	}
	// Unpadded Base64 decodes to the same bytes, which verify.
	sig, _ := Sign(clientKey(), testClientID, ts0)
	raw, ok := decodeSignature(strings.TrimRight(sig, "="))
	if !ok {
		t.Fatal("unpadded signature refused")
	}
	creds.Evidence = Evidence{Timestamp: ts0, Signature: raw}
	if e := a.Authenticate(context.Background(), creds, &oauth.Client{ID: testClientID, PublicKeyPEM: spkiPEM(t, pub)}, t0); e != nil {
		t.Errorf("unpadded: %v", e)
	}
}

func TestAuthenticatorBadCredentials(t *testing.T) {
	a := NewAuthenticator(nil)
	client := &oauth.Client{ID: testClientID, PublicKeyPEM: spkiPEM(t, &clientKey().PublicKey)}
	good := signedCreds(t, clientKey(), testClientID, ts0)
	ev := good.Evidence.(Evidence)
	with := func(edit func(c *oauth.ClientCredentials)) oauth.ClientCredentials {
		c := good
		edit(&c)
		return c
	}
	for name, c := range map[string]struct {
		creds  oauth.ClientCredentials
		client *oauth.Client
	}{
		"signed by another key": {signedCreds(t, otherKey(), testClientID, ts0), client},
		"signed for another id": {with(func(c *oauth.ClientCredentials) { c.ClientID = "someone-else" }), client},
		"another timestamp": {with(func(c *oauth.ClientCredentials) {
			c.Evidence = Evidence{Timestamp: "2024-12-31T10:11:41+07:00", Signature: ev.Signature}
		}), client},
		"same instant, other text": {with(func(c *oauth.ClientCredentials) {
			c.Evidence = Evidence{Timestamp: "2024-12-31T03:11:40Z", Signature: ev.Signature}
		}), client},
		"truncated signature": {with(func(c *oauth.ClientCredentials) {
			c.Evidence = Evidence{Timestamp: ts0, Signature: ev.Signature[:len(ev.Signature)-1]}
		}), client},
		"flipped bit": {with(func(c *oauth.ClientCredentials) {
			s := bytes.Clone(ev.Signature)
			s[10] ^= 1
			c.Evidence = Evidence{Timestamp: ts0, Signature: s}
		}), client},
		"empty signature":          {with(func(c *oauth.ClientCredentials) { c.Evidence = Evidence{Timestamp: ts0} }), client},
		"no evidence":              {with(func(c *oauth.ClientCredentials) { c.Evidence = nil }), client},
		"evidence of another type": {with(func(c *oauth.ClientCredentials) { e := ev; c.Evidence = &e }), client},
		"a secret instead":         {with(func(c *oauth.ClientCredentials) { c.Evidence = nil; c.Secret = "s3cret" }), client},
		"no client":                {good, nil},
	} {
		e := a.Authenticate(context.Background(), c.creds, c.client, t0)
		if e == nil || e.Code != oauth.CodeInvalidClient || e.Cause != oauth.CauseBadCredentials {
			t.Errorf("%s: %+v", name, e)
		}
	}
}

func TestAuthenticatorNoUsableKey(t *testing.T) {
	var logged bytes.Buffer
	a := NewAuthenticator(slog.New(slog.NewTextHandler(&logged, nil)))
	creds := signedCreds(t, clientKey(), testClientID, ts0)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(otherKey())}))

	e := a.Authenticate(context.Background(), creds, &oauth.Client{ID: testClientID}, t0)
	if e == nil || e.Code != oauth.CodeInvalidClient || e.Cause != oauth.CauseNoClientKey {
		t.Errorf("no key: %+v", e)
	}
	if logged.Len() != 0 {
		t.Errorf("a client without a key is not a fault to log: %s", logged.String())
	}

	for name, p := range map[string]string{
		"garbage":         "garbage",
		"EC key":          spkiPEM(t, &ecKey().PublicKey),
		"RSA-1024":        spkiPEM(t, &weakKey().PublicKey),
		"private key":     privPEM,
		"truncated PEM":   spkiPEM(t, &clientKey().PublicKey)[:100],
		"whitespace only": " \n",
	} {
		logged.Reset()
		e := a.Authenticate(context.Background(), creds, &oauth.Client{ID: testClientID, PublicKeyPEM: p}, t0)
		if e == nil || e.Code != oauth.CodeInvalidClient || e.Cause != oauth.CauseNoClientKey {
			t.Errorf("%s: %+v", name, e)
			continue
		}
		// The operator learns which client's key is broken, never the key.
		if !strings.Contains(logged.String(), "client_id="+testClientID) {
			t.Errorf("%s: log %q does not name the client", name, logged.String())
		}
		if name == "private key" && strings.Contains(logged.String(), strings.Split(privPEM, "\n")[1][:32]) {
			t.Errorf("private key material logged: %s", logged.String())
		}
		if strings.Contains(e.Description, p) {
			t.Errorf("%s: description %q carries the key", name, e.Description)
		}
	}
}

// Dummy spends what a failed check costs whatever it is given, and never
// panics: the engine calls it for unknown clients, with any evidence.
func TestAuthenticatorDummy(t *testing.T) {
	a := NewAuthenticator(nil)
	for _, c := range []oauth.ClientCredentials{
		{},
		{Method: oauth.AuthSNAPSignature, ClientID: "nobody"},
		{Method: oauth.AuthSNAPSignature, ClientID: "nobody", Evidence: Evidence{}},
		{Method: oauth.AuthSNAPSignature, ClientID: "nobody", Evidence: &Evidence{Timestamp: ts0}},
		{Method: oauth.AuthSNAPSignature, ClientID: strings.Repeat("n", oauth.MaxClientIDLen), Evidence: "not evidence"},
		{Method: oauth.AuthSNAPSignature, ClientID: "nobody", Evidence: Evidence{Timestamp: ts0, Signature: make([]byte, 4096)}},
		signedCreds(t, clientKey(), testClientID, ts0),
	} {
		a.Dummy(c)
	}
	if k := dummyKey(); k.N.BitLen() != 2048 {
		t.Errorf("dummy key is %d bits; a real check is 2048", k.N.BitLen())
	}
}

// One Authenticator serves every request at once; run with -race.
func TestAuthenticatorConcurrent(t *testing.T) {
	a := NewAuthenticator(nil)
	type tc struct {
		client    *oauth.Client
		good, bad oauth.ClientCredentials
	}
	cases := []tc{
		{&oauth.Client{ID: testClientID, PublicKeyPEM: spkiPEM(t, &clientKey().PublicKey)},
			signedCreds(t, clientKey(), testClientID, ts0), signedCreds(t, otherKey(), testClientID, ts0)},
		{&oauth.Client{ID: testClientID, PublicKeyPEM: pkcs1PEM(&otherKey().PublicKey)},
			signedCreds(t, otherKey(), testClientID, ts0), signedCreds(t, clientKey(), testClientID, ts0)},
	}
	var wg sync.WaitGroup
	for i := range 8 {
		c := cases[i%len(cases)]
		wg.Go(func() {
			for range 10 {
				if e := a.Authenticate(context.Background(), c.good, c.client, t0); e != nil {
					t.Errorf("good: %v", e)
					return
				}
				if e := a.Authenticate(context.Background(), c.bad, c.client, t0); e == nil || e.Cause != oauth.CauseBadCredentials {
					t.Errorf("bad: %v", e)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestAuthenticatorRefusalsCostAVerification: a client without a usable key
// costs an RSA verification like a wrong signature, so with
// uniform_auth_errors the timing does not tell a secret-only client ID
// (known) from an unknown one. An RSA-2048 verification is tens of
// microseconds, a refusal without one well under a microsecond, so the
// medians are far apart if a path skips it. (A signature of the wrong
// length fails fast in crypto/rsa whatever the key, on every path alike.)
func TestAuthenticatorRefusalsCostAVerification(t *testing.T) {
	a := NewAuthenticator(nil)
	ctx := context.Background()
	creds := signedCreds(t, clientKey(), testClientID, ts0)
	wrong := signedCreds(t, otherKey(), testClientID, ts0)
	withKey := &oauth.Client{ID: testClientID, PublicKeyPEM: spkiPEM(t, &clientKey().PublicKey)}
	// The fastest of several runs: preemption on a busy machine only ever
	// adds time, so the minimum is the cost of the path itself.
	median := func(f func()) time.Duration {
		var d []time.Duration
		for range 31 {
			start := time.Now()
			f()
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		return d[0]
	}
	badSig := median(func() { a.Authenticate(ctx, wrong, withKey, t0) })
	for name, f := range map[string]func(){
		"no key":       func() { a.Authenticate(ctx, creds, &oauth.Client{ID: testClientID}, t0) },
		"unusable key": func() { a.Authenticate(ctx, creds, &oauth.Client{ID: testClientID, PublicKeyPEM: "garbage"}, t0) },
		"dummy":        func() { a.Dummy(creds) },
	} {
		if got := median(f); got < badSig/3 {
			t.Errorf("%s: median %v against %v for a wrong signature: it skips the RSA verification", name, got, badSig)
		}
	}
}
