package engine

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
)

// lookupCounter counts the client reads of both kinds.
type lookupCounter struct {
	oauth.Store
	byID, byPartner atomic.Int64
}

func (s *lookupCounter) GetClient(ctx context.Context, id string) (*oauth.Client, error) {
	s.byID.Add(1)
	return s.Store.GetClient(ctx, id)
}

func (s *lookupCounter) GetClientByPartnerID(ctx context.Context, pid string) (*oauth.Client, error) {
	s.byPartner.Add(1)
	return s.Store.GetClientByPartnerID(ctx, pid)
}

// newSealedFixture is an engine on a SQLite store behind kek.Store, as
// every node runs, with the admin service on it.
func newSealedFixture(t *testing.T) (*Engine, *admin.Service, *lookupCounter) {
	t.Helper()
	ctx := t.Context()
	raw, err := sqlite.Open(ctx, t.TempDir())
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
	st := &lookupCounter{Store: kek.WrapStore(raw, ring)}
	eng, err := New(ctx, st, Config{Issuer: "https://issuer.test"})
	if err != nil {
		t.Fatal(err)
	}
	return eng, newAdmin(st, eng, nil), st
}

// A client without a partner ID is found by its client ID, with its
// recoverable secrets, through the cache; rotations and disables are seen
// at the next refresh.
func TestClientByPartnerIDServiceSecrets(t *testing.T) {
	eng, adm, st := newSealedFixture(t)
	ctx := t.Context()
	c, sec, err := adm.CreateClient(opCtx(ctx), admin.ClientSpec{Name: "m", Grants: []string{oauth.GrantClientCredentials},
		SNAPServiceSignature: oauth.SNAPSignatureSymmetric})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := eng.ClientByPartnerID(ctx, c.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		if s := got.ServiceSecrets(time.Now()); len(s) != 1 || string(s[0]) != sec {
			t.Fatalf("ServiceSecrets: %d secrets, first is the client's secret: %v", len(s), len(s) > 0 && string(s[0]) == sec)
		}
	}
	if n := st.byPartner.Load(); n != 1 {
		t.Errorf("3 lookups read the store %d times, want 1 (cached)", n)
	}

	// A rotation is seen at the next refresh, with both secrets during the grace.
	rot, err := adm.RotateSecret(opCtx(ctx), c.ClientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	next := rot.ClientSecret
	if err := eng.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := eng.ClientByPartnerID(ctx, c.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.ServiceSecrets(time.Now()); len(s) != 2 || string(s[0]) != next || string(s[1]) != sec {
		t.Errorf("after rotate-secret with grace: %d secrets", len(s))
	}
	// Disabled clients are returned as they are: the verifier refuses them.
	if _, err := adm.SetClientDisabled(opCtx(ctx), c.ClientID, true); err != nil {
		t.Fatal(err)
	}
	eng.Refresh(ctx)
	if got, err := eng.ClientByPartnerID(ctx, c.ClientID); err != nil || !got.Disabled {
		t.Errorf("disabled client: %+v, %v", got, err)
	}

	before := st.byPartner.Load()
	for _, id := range []string{"missing", "", "a\x00b", strings.Repeat("x", oauth.MaxClientIDLen+1)} {
		if _, err := eng.ClientByPartnerID(ctx, id); !errors.Is(err, oauth.ErrNotFound) {
			t.Errorf("ClientByPartnerID(%q): %v", id, err)
		}
	}
	if n := st.byPartner.Load() - before; n != 1 {
		t.Errorf("unknown and impossible IDs read the store %d times, want 1 (only the possible one)", n)
	}
}

func TestClientByPartnerID(t *testing.T) {
	eng, adm, st := newSealedFixture(t)
	ctx := t.Context()
	plain, _, err := adm.CreateClient(opCtx(ctx), admin.ClientSpec{Name: "a", Grants: []string{oauth.GrantClientCredentials}})
	if err != nil {
		t.Fatal(err)
	}
	partner, sec, err := adm.CreateClient(opCtx(ctx), admin.ClientSpec{Name: "b", Grants: []string{oauth.GrantClientCredentials},
		SNAPServiceSignature: oauth.SNAPSignatureBoth, SNAPPublicKey: rsaPublicPEM(t), PartnerID: "NICEPAY-01"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := eng.ClientByPartnerID(ctx, "NICEPAY-01")
		if err != nil || got.ID != partner.ClientID {
			t.Fatalf("ClientByPartnerID(NICEPAY-01) = %v, %v", got, err)
		}
		if s := got.ServiceSecrets(time.Now()); len(s) != 1 || string(s[0]) != sec {
			t.Fatal("the partner's recoverable secret is not the one created")
		}
		if got, err := eng.ClientByPartnerID(ctx, plain.ClientID); err != nil || got.ID != plain.ClientID {
			t.Fatalf("ClientByPartnerID(its client ID) = %v, %v", got, err)
		}
	}
	if n := st.byPartner.Load(); n != 2 {
		t.Errorf("4 lookups of 2 partners read the store %d times, want 2 (cached)", n)
	}
	if _, err := eng.ClientByPartnerID(ctx, partner.ClientID); !errors.Is(err, oauth.ErrNotFound) {
		t.Errorf("a client with a partner ID found by its client ID: %v", err)
	}

	// A changed partner ID is seen at the next refresh.
	if _, err := adm.UpdateClient(opCtx(ctx), partner.ClientID, admin.ClientPatch{PartnerID: new("NICEPAY-02")}); err != nil {
		t.Fatal(err)
	}
	if err := eng.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.ClientByPartnerID(ctx, "NICEPAY-01"); !errors.Is(err, oauth.ErrNotFound) {
		t.Errorf("the old partner ID after the change: %v", err)
	}
	if got, err := eng.ClientByPartnerID(ctx, "NICEPAY-02"); err != nil || got.ID != partner.ClientID {
		t.Errorf("the new partner ID: %v, %v", got, err)
	}
	before := st.byPartner.Load()
	if _, err := eng.ClientByPartnerID(ctx, "bad\nid"); !errors.Is(err, oauth.ErrNotFound) {
		t.Errorf("an impossible partner ID: %v", err)
	}
	if st.byPartner.Load() != before {
		t.Error("an impossible partner ID was looked up")
	}
}

// newAdmin is the admin service on st and eng, on clock now (nil: the
// real one).
func newAdmin(st oauth.Store, eng *Engine, now func() time.Time) *admin.Service {
	return admin.New(admin.Deps{Store: st, Secrets: eng.Secrets(), Passwords: eng.Passwords(), Engine: eng, Now: now})
}

// opCtx is ctx with an operator acting, as the admin service needs.
func opCtx(ctx context.Context) context.Context {
	return admin.WithActor(ctx, admin.Actor{Kind: admin.ActorCLI, ID: "test@host", Name: "test@host", Role: admin.RoleOperator})
}

// rsaPublicPEM is a new RSA-2048 public key in PEM, as a merchant
// registers for SNAP.
func rsaPublicPEM(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
