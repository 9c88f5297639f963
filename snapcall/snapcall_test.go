package snapcall

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/gateway"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/snapsig"
)

// fakeEngine knows one token and the clients.
type fakeEngine struct {
	tokens  map[string]*oauth.Token
	clients map[string]*oauth.Client
	fail    bool
}

func (f *fakeEngine) AccessToken(_ context.Context, v string) (*oauth.Token, *oauth.Client, error) {
	if f.fail {
		return nil, nil, errors.New("down")
	}
	t, ok := f.tokens[v]
	if !ok {
		return nil, nil, nil
	}
	return t, f.clients[t.ClientID], nil
}

func (f *fakeEngine) ClientByPartnerID(_ context.Context, p string) (*oauth.Client, error) {
	for _, c := range f.clients {
		if c.EffectivePartnerID() == p {
			return c, nil
		}
	}
	return nil, oauth.ErrNotFound
}

// memNonces is UseNonce in memory, with expiry by the test's clock.
type memNonces struct {
	mu   sync.Mutex
	now  func() time.Time
	keys map[string]time.Time
}

func (m *memNonces) UseNonce(_ context.Context, key string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[key]; ok && m.now().Before(e) {
		return oauth.ErrAlreadyExists
	}
	m.keys[key] = exp
	return nil
}

type fixture struct {
	v       *Verifier
	engine  *fakeEngine
	nonces  *memNonces
	now     time.Time
	secret  []byte
	priv    *rsa.PrivateKey
	route   *gateway.Route
	tsRoute *gateway.Route // token: none, asymmetric
}

var testKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), secret: []byte("the-merchant-client-secret-0123456789abcdef"), priv: testKey}
	der, _ := x509.MarshalPKIXPublicKey(&f.priv.PublicKey)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	merchant := &oauth.Client{ID: "m-1", PartnerID: "PARTNER1", Scopes: []string{"va"}, SNAPServiceSignature: oauth.SNAPSignatureBoth,
		PublicKeyPEM: pemText, Secrets: []oauth.SecretHash{{Hash: []byte("h"), Plain: f.secret}}}
	other := &oauth.Client{ID: "m-2", SNAPServiceSignature: oauth.SNAPSignatureSymmetric,
		Secrets: []oauth.SecretHash{{Hash: []byte("h2"), Plain: []byte("another-secret")}}}
	f.engine = &fakeEngine{
		tokens: map[string]*oauth.Token{
			"tok-va":    {ClientID: "m-1", Subject: "m-1", Scopes: []string{"va"}},
			"tok-plain": {ClientID: "m-1", Subject: "m-1"},
			"tok-other": {ClientID: "m-2", Subject: "m-2", Scopes: []string{"va"}},
		},
		clients: map[string]*oauth.Client{"m-1": merchant, "m-2": other},
	}
	clock := func() time.Time { return f.now }
	f.nonces = &memNonces{now: clock, keys: map[string]time.Time{}}
	f.v = New(f.engine, f.nonces, Config{Window: 5 * time.Minute, Now: clock})
	f.route = &gateway.Route{GatewayRoute: config.GatewayRoute{Prefix: "/v1.0/transfer-va/", ServiceCode: 27,
		ServiceCodes: map[string]int{"/v1.0/transfer-va/status": 26}, Scopes: []string{"va"}, Signature: "either"}}
	f.tsRoute = &gateway.Route{GatewayRoute: config.GatewayRoute{Prefix: "/v1.0/qr/", ServiceCode: 47, Signature: "asymmetric", Token: "none"}}
	return f
}

// call is a service call the merchant signs; mutate changes it after
// signing (to break it).
type call struct {
	method, path, query, body string
	token, partner, extID     string
	ts                        time.Time
	variant                   string // symmetric | asymmetric
	secret                    []byte
}

func (f *fixture) defaults() call {
	return call{method: "POST", path: "/v1.0/transfer-va/create-va", body: "{ \"amount\" : \"10000.00\",\n \"note\": \"a  b\" }",
		token: "tok-va", partner: "PARTNER1", extID: "ext-1", ts: f.now, variant: "symmetric", secret: f.secret}
}

func (f *fixture) request(_ *testing.T, c call) *gateway.Call {
	ts := c.ts.In(time.FixedZone("WIB", 7*3600)).Format("2006-01-02T15:04:05-07:00")
	min, err := snapsig.Minify([]byte(c.body))
	if err != nil {
		panic(err)
	}
	endpoint := snapsig.EndpointURL(c.path, c.query, "", false)
	var sig string
	if c.variant == "asymmetric" {
		sig, err = snapsig.SignAsymmetric(f.priv, snapsig.AsymmetricString(c.method, endpoint, snapsig.BodyHash(min), ts))
		if err != nil {
			panic(err)
		}
	} else {
		sig = snapsig.SignSymmetric(c.secret, snapsig.SymmetricString(c.method, endpoint, c.token, snapsig.BodyHash(min), ts))
	}
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-TIMESTAMP", ts)
	h.Set("X-SIGNATURE", sig)
	h.Set("X-PARTNER-ID", c.partner)
	h.Set("X-EXTERNAL-ID", c.extID)
	h.Set("CHANNEL-ID", "95221")
	return &gateway.Call{Method: c.method, Path: c.path, RawQuery: c.query, Header: h, Body: []byte(c.body)}
}

func (f *fixture) verify(t *testing.T, r *gateway.Route, gc *gateway.Call) (*gateway.Identity, *Answer) {
	t.Helper()
	id, ref := f.v.Verify(context.Background(), gc, r)
	if ref == nil {
		return id, nil
	}
	return nil, ref.(*Answer)
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	id, a := f.verify(t, f.route, f.request(t, f.defaults()))
	if a != nil {
		t.Fatalf("symmetric call refused: %+v", a)
	}
	if id.ClientID != "m-1" || id.PartnerID != "PARTNER1" || strings.Join(id.Scopes, " ") != "va" {
		t.Errorf("identity %+v", id)
	}
	c := f.defaults()
	c.variant, c.extID = "asymmetric", "ext-2"
	if _, a := f.verify(t, f.route, f.request(t, c)); a != nil {
		t.Errorf("asymmetric call on an either route: %+v", a)
	}
	c = f.defaults()
	c.token, c.variant, c.extID, c.path = "", "asymmetric", "ext-3", "/v1.0/qr/qr-mpm-generate"
	id, a = f.verify(t, f.tsRoute, f.request(t, c))
	if a != nil || id.ClientID != "m-1" {
		t.Errorf("asymmetric call without a token: %+v %+v", id, a)
	}
}

func TestVerifyRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(f *fixture, c *call, g *gateway.Call)
		code   string
		msg    string
	}{
		{"no signature", func(f *fixture, c *call, g *gateway.Call) { g.Header.Del("X-SIGNATURE") }, "4002702", "Invalid Mandatory Field {X-SIGNATURE}"},
		{"no partner", func(f *fixture, c *call, g *gateway.Call) { g.Header.Del("X-PARTNER-ID") }, "4002702", "Invalid Mandatory Field {X-PARTNER-ID}"},
		{"no external id", func(f *fixture, c *call, g *gateway.Call) { g.Header.Del("X-EXTERNAL-ID") }, "4002702", "Invalid Mandatory Field {X-EXTERNAL-ID}"},
		{"no token", func(f *fixture, c *call, g *gateway.Call) { g.Header.Del("Authorization") }, "4002702", "Invalid Mandatory Field {Authorization}"},
		{"bad timestamp", func(f *fixture, c *call, g *gateway.Call) { g.Header.Set("X-TIMESTAMP", "yesterday") }, "4002701", "Invalid Field Format {X-TIMESTAMP}"},
		{"long external id", func(f *fixture, c *call, g *gateway.Call) { g.Header.Set("X-EXTERNAL-ID", strings.Repeat("9", 37)) }, "4002701", "Invalid Field Format {X-EXTERNAL-ID}"},
		{"not JSON", func(f *fixture, c *call, g *gateway.Call) { g.Body = []byte("amount=1") }, "4002701", "Invalid Field Format {body}"},
		{"service code of the path", func(f *fixture, c *call, g *gateway.Call) {
			g.Path = "/v1.0/transfer-va/status"
			g.Header.Del("X-SIGNATURE")
		}, "4002602", "Invalid Mandatory Field {X-SIGNATURE}"},
		{"unknown token", func(f *fixture, c *call, g *gateway.Call) { g.Header.Set("Authorization", "Bearer nope") }, "4012701", "Invalid Token (B2B)"},
		{"another client's partner id", func(f *fixture, c *call, g *gateway.Call) { g.Header.Set("X-PARTNER-ID", "m-2") }, "4012700", "Unauthorized. [X-PARTNER-ID]"},
		{"wrong secret", func(f *fixture, c *call, g *gateway.Call) {
			c.secret = []byte("wrong")
			*g = *f.request(nil, *c)
		}, "4012700", "Unauthorized. [Signature]"},
		{"body changed after signing", func(f *fixture, c *call, g *gateway.Call) { g.Body = []byte(`{"amount":"99999.00","note":"a  b"}`) }, "4012700", "Unauthorized. [Signature]"},
		{"path changed after signing", func(f *fixture, c *call, g *gateway.Call) { g.Path = "/v1.0/transfer-va/delete-va" }, "4012700", "Unauthorized. [Signature]"},
		{"stale timestamp", func(f *fixture, c *call, g *gateway.Call) {
			c.ts = f.now.Add(-6 * time.Minute)
			*g = *f.request(nil, *c)
		}, "4012700", "Unauthorized. [X-TIMESTAMP]"},
		{"scope missing", func(f *fixture, c *call, g *gateway.Call) {
			c.token = "tok-plain"
			*g = *f.request(nil, *c)
		}, "4012700", "Unauthorized. [Scope not allowed]"},
		{"store down", func(f *fixture, c *call, g *gateway.Call) { f.engine.fail = true }, "5042700", "Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			c := f.defaults()
			g := f.request(t, c)
			tc.mutate(f, &c, g)
			_, a := f.verify(t, f.route, g)
			if a == nil || a.ResponseCode != tc.code || a.ResponseMessage != tc.msg || a.Status != atoi3(tc.code) {
				t.Fatalf("got %+v, want %s %q", a, tc.code, tc.msg)
			}
			if len(f.nonces.keys) != 0 {
				t.Error("a refused call spent its X-EXTERNAL-ID")
			}
		})
	}
}

func atoi3(code string) int {
	n := 0
	for _, c := range code[:3] {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestExternalIDOncePerDay: an X-EXTERNAL-ID is spent by the first call
// that passes every check, refused again that day (per partner), and
// accepted again the next calendar day in Asia/Jakarta.
func TestExternalIDOncePerDay(t *testing.T) {
	f := newFixture(t)
	f.now = time.Date(2026, 11, 29, 16, 50, 0, 0, time.UTC) // 23:50 in Jakarta
	c := f.defaults()
	c.ts = f.now
	if _, a := f.verify(t, f.route, f.request(t, c)); a != nil {
		t.Fatal(a)
	}
	if _, a := f.verify(t, f.route, f.request(t, c)); a == nil || a.ResponseCode != "4092700" || a.ResponseMessage != "Conflict" {
		t.Fatalf("reused the same day: %+v", a)
	}
	// Another partner may use the same X-EXTERNAL-ID.
	o := c
	o.token, o.partner, o.secret = "tok-other", "m-2", []byte("another-secret")
	if _, a := f.verify(t, f.route, f.request(t, o)); a != nil {
		t.Errorf("another partner's same X-EXTERNAL-ID: %+v", a)
	}
	// 00:10 in Jakarta, the next day.
	f.now = f.now.Add(20 * time.Minute)
	c.ts = f.now
	if _, a := f.verify(t, f.route, f.request(t, c)); a != nil {
		t.Errorf("the same X-EXTERNAL-ID the next day: %+v", a)
	}
}

func TestExternalIDKeyKeepsToTheEndOfTheDay(t *testing.T) {
	jkt := jakarta()
	local := time.Date(2026, 11, 29, 23, 59, 0, 0, jkt)
	key, exp := externalIDKey("P", "ext", local, 5*time.Minute)
	if !strings.HasPrefix(key, "snapx:20261129:") {
		t.Errorf("key %q does not start with the day", key)
	}
	if want := time.Date(2026, 11, 30, 0, 5, 0, 0, jkt); !exp.Equal(want) {
		t.Errorf("expires %v, want %v", exp, want)
	}
	// The partner's length prefix keeps "a:b"+"c" apart from "a"+"b:c".
	k1, _ := externalIDKey("a:b", "c", local, 0)
	k2, _ := externalIDKey("a", "b:c", local, 0)
	if k1 == k2 {
		t.Error("two different (partner, id) pairs share a key")
	}
}

// TestQueryMustBeSigned: on a route that does not sign the query, a call
// with one is refused (an unsigned query could be changed on the way and
// the upstream would act on it); on a route that signs it, it passes.
func TestQueryMustBeSigned(t *testing.T) {
	f := newFixture(t)
	c := f.defaults()
	g := f.request(t, c)
	g.RawQuery = "amount=99999"
	if _, a := f.verify(t, f.route, g); a == nil || a.ResponseCode != "4002701" || a.ResponseMessage != "Invalid Field Format {query}" {
		t.Errorf("an unsigned query: %+v", a)
	}
	if len(f.nonces.keys) != 0 {
		t.Error("the refused call spent its X-EXTERNAL-ID")
	}
}

// TestSignatureOnce: a captured call sent again with a fresh X-EXTERNAL-ID
// (which the signature does not cover) passes on an ordinary route and is
// refused on a signature_once route.
func TestSignatureOnce(t *testing.T) {
	f := newFixture(t)
	c := f.defaults()
	first := f.request(t, c)
	if _, a := f.verify(t, f.route, first); a != nil {
		t.Fatal(a)
	}
	again := f.request(t, c)
	again.Header = first.Header.Clone()
	again.Header.Set("X-EXTERNAL-ID", "ext-fresh")
	if _, a := f.verify(t, f.route, again); a != nil {
		t.Fatalf("an ordinary route refused a fresh X-EXTERNAL-ID: %+v (the option would be pointless)", a)
	}
	once := *f.route
	once.SignatureOnce = true
	c.extID, c.ts = "ext-3", f.now.Add(time.Second)
	g := f.request(t, c)
	if _, a := f.verify(t, &once, g); a != nil {
		t.Fatal(a)
	}
	g.Header.Set("X-EXTERNAL-ID", "ext-4")
	if _, a := f.verify(t, &once, g); a == nil || a.ResponseCode != "4092700" {
		t.Errorf("signature_once: the same signature under a fresh X-EXTERNAL-ID: %+v", a)
	}
	if _, ok := f.nonces.keys["snapx:20261129:8:PARTNER1:ext-3"]; !ok {
		t.Fatalf("the X-EXTERNAL-ID keys are not spelled as this test expects: %v", f.nonces.keys)
	}
	if _, ok := f.nonces.keys["snapx:20261129:8:PARTNER1:ext-4"]; ok {
		t.Error("the refused call spent its X-EXTERNAL-ID")
	}
}
