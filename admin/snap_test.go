package admin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
	"github.com/tokengate/tokengate/store/sqlite"
)

type fixture struct {
	admin  *Admin
	inner  *sqlite.Store // what is stored, unopened
	store  *kek.Store    // what the engine reads
	hasher *secret.Hasher
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	inner, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	k, err := kek.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := kek.New(k)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{inner: inner, store: kek.WrapStore(inner, ring), hasher: secret.NewHasher([]byte("pepper")), now: time.Now()}
	f.admin = New(f.store, f.hasher, nil, func() time.Time { return f.now })
	return f
}

func (f *fixture) get(t *testing.T, id string) *oauth.Client {
	t.Helper()
	c, err := f.store.GetClient(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spec(sig string) ClientSpec {
	s := ClientSpec{Name: "m", Grants: []string{oauth.GrantClientCredentials}, SNAPServiceSignature: sig}
	if sig == oauth.SNAPSignatureAsymmetric || sig == oauth.SNAPSignatureBoth {
		s.PublicKeyPEM = "PEM"
	}
	return s
}

// The secret printed at creation is the one recovered, for symmetric and
// both; for the others only its hash is kept.
func TestCreateClientRecoverableSecret(t *testing.T) {
	f := newFixture(t)
	for sig, recoverable := range map[string]bool{
		oauth.SNAPSignatureSymmetric: true, oauth.SNAPSignatureBoth: true,
		oauth.SNAPSignatureAsymmetric: false, oauth.SNAPSignatureNone: false,
	} {
		c, sec, err := f.admin.CreateClient(t.Context(), spec(sig))
		if err != nil {
			t.Fatalf("%q: %v", sig, err)
		}
		got := f.get(t, c.ID)
		if got.SNAPServiceSignature != sig || len(got.Secrets) != 1 || !bytes.Equal(got.Secrets[0].Hash, f.hasher.Hash(sec)) {
			t.Fatalf("%q: stored %+v", sig, got)
		}
		if recoverable != got.Secrets[0].Recoverable() || recoverable != (string(got.Secrets[0].Plain) == sec) {
			t.Errorf("%q: recoverable %v, plain is the secret %v; want %v", sig, got.Secrets[0].Recoverable(), string(got.Secrets[0].Plain) == sec, recoverable)
		}
		if NeedsRecoverableSecret(got) {
			t.Errorf("%q: a new client needs a recoverable secret", sig)
		}
		raw, _ := f.inner.GetClient(t.Context(), c.ID)
		if recoverable != kek.IsSealed(raw.Secrets[0].Sealed) {
			t.Errorf("%q: stored sealed %v", sig, kek.IsSealed(raw.Secrets[0].Sealed))
		}
	}
}

// Rotation with grace keeps both secrets recoverable, each beside its own
// hash; without grace only the new one is kept.
func TestRotateSecretRecoverable(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	c, first, err := f.admin.CreateClient(ctx, spec(oauth.SNAPSignatureSymmetric))
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.admin.RotateSecret(ctx, c.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := f.get(t, c.ID)
	if len(got.Secrets) != 2 {
		t.Fatalf("%d secrets after a rotation with grace", len(got.Secrets))
	}
	for i, want := range []string{second, first} {
		s := got.Secrets[i]
		if string(s.Plain) != want || !bytes.Equal(s.Hash, f.hasher.Hash(want)) {
			t.Errorf("secret %d: plain matches %v, hash matches %v", i, string(s.Plain) == want, bytes.Equal(s.Hash, f.hasher.Hash(want)))
		}
	}
	if !got.Secrets[0].ExpiresAt.IsZero() || !got.Secrets[1].ExpiresAt.Equal(f.now.Add(time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("expiries %v, %v", got.Secrets[0].ExpiresAt, got.Secrets[1].ExpiresAt)
	}
	if s := got.ServiceSecrets(f.now); len(s) != 2 || string(s[0]) != second || string(s[1]) != first {
		t.Errorf("ServiceSecrets during the grace: %d", len(s))
	}
	if s := got.ServiceSecrets(f.now.Add(2 * time.Hour)); len(s) != 1 || string(s[0]) != second {
		t.Errorf("ServiceSecrets after the grace: %d", len(s))
	}

	third, err := f.admin.RotateSecret(ctx, c.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	got = f.get(t, c.ID)
	if len(got.Secrets) != 1 || string(got.Secrets[0].Plain) != third {
		t.Errorf("after a rotation without grace: %d secrets", len(got.Secrets))
	}
}

// Switching a client to symmetric does not make its secret recoverable
// (it is known only by its hash): the operator is told, and the next
// rotation fixes it. Switching away drops the recoverable copies.
func TestSwitchingSNAPServiceSignature(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	c, _, err := f.admin.CreateClient(ctx, spec(oauth.SNAPSignatureNone))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.admin.UpdateClient(ctx, c.ID, func(c *oauth.Client) error {
		c.SNAPServiceSignature = oauth.SNAPSignatureSymmetric
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := f.get(t, c.ID)
	if !NeedsRecoverableSecret(got) || got.Secrets[0].Recoverable() {
		t.Fatalf("switched to symmetric: needs a recoverable secret %v", NeedsRecoverableSecret(got))
	}
	sec, err := f.admin.RotateSecret(ctx, c.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got = f.get(t, c.ID)
	if NeedsRecoverableSecret(got) || string(got.Secrets[0].Plain) != sec || got.Secrets[1].Recoverable() {
		t.Fatalf("after rotate-secret: needs %v, current recoverable %v, previous recoverable %v",
			NeedsRecoverableSecret(got), got.Secrets[0].Recoverable(), got.Secrets[1].Recoverable())
	}

	// Asymmetric needs the public key; with it, the recoverable copies go.
	err = f.admin.UpdateClient(ctx, c.ID, func(c *oauth.Client) error {
		c.SNAPServiceSignature = oauth.SNAPSignatureAsymmetric
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "public key") {
		t.Fatalf("asymmetric without a key: %v", err)
	}
	if err := f.admin.SetSNAPKey(ctx, c.ID, "PEM"); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, c.ID); !got.Secrets[0].Recoverable() {
		t.Fatal("an unrelated update dropped the recoverable secret")
	}
	if err := f.admin.UpdateClient(ctx, c.ID, func(c *oauth.Client) error {
		c.SNAPServiceSignature = oauth.SNAPSignatureAsymmetric
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	raw, _ := f.inner.GetClient(ctx, c.ID)
	for i, s := range raw.Secrets {
		if s.Recoverable() {
			t.Errorf("secret %d still recoverable once the client is asymmetric", i)
		}
	}
	if NeedsRecoverableSecret(f.get(t, c.ID)) {
		t.Error("an asymmetric client needs a recoverable secret")
	}
}

func TestPartnerIDTaken(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	a, _, err := f.admin.CreateClient(ctx, spec(""))
	if err != nil {
		t.Fatal(err)
	}
	s := spec("")
	s.PartnerID = "NICEPAY-1"
	b, _, err := f.admin.CreateClient(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.admin.CreateClient(ctx, s)
	if !errors.Is(err, oauth.ErrAlreadyExists) || !strings.Contains(err.Error(), "partner_id NICEPAY-1 is already") {
		t.Errorf("a second NICEPAY-1: %v", err)
	}
	err = f.admin.UpdateClient(ctx, b.ID, func(c *oauth.Client) error { c.PartnerID = a.ID; return nil })
	if !errors.Is(err, oauth.ErrAlreadyExists) || !strings.Contains(err.Error(), "partner_id "+a.ID) {
		t.Errorf("another's client ID as partner ID: %v", err)
	}
	if got, err := f.store.GetClientByPartnerID(ctx, "NICEPAY-1"); err != nil || got.ID != b.ID {
		t.Errorf("GetClientByPartnerID(NICEPAY-1) = %v, %v", got, err)
	}
}
