package admin_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/engine"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// fixture is the admin service on a sealed SQLite store with a real
// engine, everything on one fake clock.
type fixture struct {
	svc *admin.Service
	raw *sqlite.Store // what is stored, unopened
	st  *kek.Store
	eng *engine.Engine
	clk *clock
	ctx context.Context // an operator at the CLI
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := t.Context()
	clk := &clock{now: time.Now().Truncate(time.Second)}
	raw, err := sqlite.Open(ctx, t.TempDir(), sqlite.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	k, err := kek.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := kek.New(k)
	if err != nil {
		t.Fatal(err)
	}
	st := kek.WrapStore(raw, ring)
	eng, err := engine.New(ctx, st, engine.Config{Issuer: "https://issuer.test", Now: clk.Now, PasswordHashConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	svc := admin.New(admin.Deps{
		Store: st, Secrets: eng.Secrets(), Passwords: eng.Passwords(), Engine: eng, Now: clk.Now,
		Lockout: limit.NewMemoryLockout(limit.DefaultPolicy, clk.Now), DefaultAlg: oauth.AlgES256,
		KeyActivationDelay: 3 * time.Second,
	})
	return &fixture{svc: svc, raw: raw, st: st, eng: eng, clk: clk, ctx: admin.WithActor(ctx, operatorActor)}
}

var operatorActor = admin.Actor{Kind: admin.ActorCLI, ID: "root@host", Name: "root@host", Role: admin.RoleOperator}

// merchant creates a merchant account with limits and returns the context
// of that merchant acting through the portal.
func (f *fixture) merchant(t testing.TB, email string, limits admin.AccountLimits) (context.Context, *admin.AccountView) {
	t.Helper()
	v, err := f.svc.CreateAccount(f.ctx, admin.AccountSpec{Email: email, Password: "merchant password", Role: admin.RoleMerchant, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	return admin.WithActor(t.Context(), admin.AccountActor(admin.ActorPortal, v, "198.51.100.7")), v
}

// spec is a valid client spec.
func spec(name string) admin.ClientSpec {
	return admin.ClientSpec{Name: name, Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"payments", "refunds"}}
}

func (f *fixture) create(t testing.TB, ctx context.Context, s admin.ClientSpec) (*admin.ClientView, string) {
	t.Helper()
	v, sec, err := f.svc.CreateClient(ctx, s)
	if err != nil {
		t.Fatalf("CreateClient(%s): %v", s.Name, err)
	}
	return v, sec
}

// stored returns a client as the store holds it, secrets opened.
func (f *fixture) stored(t testing.TB, id string) *oauth.Client {
	t.Helper()
	c, err := f.st.GetClient(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// events returns the whole audit trail.
func (f *fixture) events(t testing.TB) []*oauth.AuditEvent {
	t.Helper()
	evs, err := f.st.AuditEvents(t.Context(), oauth.AuditQuery{Limit: oauth.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// lastEvent is the newest audit event.
func (f *fixture) lastEvent(t testing.TB) *oauth.AuditEvent {
	t.Helper()
	evs := f.events(t)
	if len(evs) == 0 {
		t.Fatal("no audit event")
	}
	return evs[len(evs)-1]
}

// isCode fails the test unless err's code is code.
func isCode(t testing.TB, err error, code, what string) {
	t.Helper()
	if got := admin.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// rsaKey is a new RSA key of bits and its public key in PEM.
func rsaKey(t testing.TB, bits int) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// authenticates reports whether the engine accepts sec for client id.
func (f *fixture) authenticates(t testing.TB, id, sec string) bool {
	t.Helper()
	if err := f.eng.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, e := f.eng.AuthenticateClient(t.Context(), oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: id, Secret: sec}, "")
	return e == nil
}

func jsonString(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
