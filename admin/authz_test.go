package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

var merchantLimits = admin.AccountLimits{
	Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"payments", "refunds"}, MaxClients: 2, SNAPKeys: true,
}

// TestMerchantsSeeOnlyTheirOwnClients: merchant A cannot list, show,
// update, rotate, revoke, disable, delete or key merchant B's clients (it
// is told they do not exist), nor see their audit events; an operator can
// do all of it.
func TestMerchantsSeeOnlyTheirOwnClients(t *testing.T) {
	f := newFixture(t)
	ctxA, accA := f.merchant(t, "a@example.com", merchantLimits)
	ctxB, accB := f.merchant(t, "b@example.com", merchantLimits)
	a, _ := f.create(t, ctxA, spec("A's client"))
	b, secB := f.create(t, ctxB, spec("B's client"))
	op, _ := f.create(t, f.ctx, spec("operator's client"))
	if a.OwnerAccount != accA.ID || b.OwnerAccount != accB.ID || op.OwnerAccount != "" {
		t.Fatalf("owners: %s %s %q", a.OwnerAccount, b.OwnerAccount, op.OwnerAccount)
	}

	page, err := f.svc.ListClients(ctxA, admin.ClientQuery{})
	if err != nil || len(page.Clients) != 1 || page.Clients[0].ClientID != a.ClientID {
		t.Fatalf("A lists %+v, %v; want only its own", page, err)
	}
	if page, _ := f.svc.ListClients(ctxA, admin.ClientQuery{OwnerAccount: accB.ID}); len(page.Clients) != 0 {
		t.Fatal("A lists B's clients by asking for B's account")
	}
	_, pub := rsaKey(t, 2048)
	for _, id := range []string{b.ClientID, op.ClientID} {
		for name, call := range map[string]func() error{
			"GetClient":          func() error { _, err := f.svc.GetClient(ctxA, id); return err },
			"UpdateClient":       func() error { _, err := f.svc.UpdateClient(ctxA, id, admin.ClientPatch{Name: new("mine")}); return err },
			"RotateSecret":       func() error { _, err := f.svc.RotateSecret(ctxA, id, 0); return err },
			"RevokeClientTokens": func() error { _, err := f.svc.RevokeClientTokens(ctxA, id); return err },
			"SetClientDisabled":  func() error { _, err := f.svc.SetClientDisabled(ctxA, id, true); return err },
			"SetSNAPKey":         func() error { _, err := f.svc.SetSNAPKey(ctxA, id, []byte(pub)); return err },
			"DeleteClient":       func() error { return f.svc.DeleteClient(ctxA, id) },
		} {
			err := call()
			isCode(t, err, admin.CodeNotFound, "A: "+name+" of another's client")
			// The same answer as for a client that does not exist.
			if !strings.Contains(err.Error(), "client "+id+": not found") {
				t.Errorf("A: %s: %v", name, err)
			}
		}
	}
	// Nothing of B's changed: its secret still works, its name is its own.
	if got := f.stored(t, b.ClientID); got.Name != "B's client" || got.Disabled || !got.TokensNotBefore.Before(got.CreatedAt) || got.PublicKeyPEM != "" {
		t.Fatalf("B's client after A's attempts: %+v", got)
	}
	if !f.authenticates(t, b.ClientID, secB) {
		t.Fatal("B's secret stopped working")
	}

	// Each sees the audit events of its own clients only.
	for ctx, own := range map[context.Context]string{ctxA: accA.ID, ctxB: accB.ID} {
		page, err := f.svc.ListAudit(ctx, admin.AuditQuery{})
		if err != nil || len(page.Events) == 0 {
			t.Fatalf("ListAudit: %v, %v", page, err)
		}
		for _, e := range page.Events {
			if e.Account != own {
				t.Fatalf("a merchant sees event %d of account %q", e.Seq, e.Account)
			}
		}
		if p, _ := f.svc.ListAudit(ctx, admin.AuditQuery{ClientID: op.ClientID}); len(p.Events) != 0 {
			t.Fatal("a merchant sees the events of the operator's client")
		}
	}

	// A merchant manages its own.
	if _, err := f.svc.UpdateClient(ctxA, a.ClientID, admin.ClientPatch{Name: new("renamed")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetSNAPKey(ctxA, a.ClientID, []byte(pub)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RotateSecret(ctxA, a.ClientID, time.Minute); err != nil {
		t.Fatal(err)
	}
	ev := f.lastEvent(t)
	if ev.ActorKind != admin.ActorPortal || ev.ActorID != accA.ID || ev.ActorName != "a@example.com" || ev.Remote != "198.51.100.7" || ev.Account != accA.ID {
		t.Fatalf("a merchant's event: %+v", ev)
	}
	// The operator can touch anyone's.
	if _, err := f.svc.UpdateClient(f.ctx, b.ClientID, admin.ClientPatch{Name: new("by the operator")}); err != nil {
		t.Fatal(err)
	}
	if page, _ := f.svc.ListClients(f.ctx, admin.ClientQuery{}); len(page.Clients) != 3 {
		t.Fatalf("the operator lists %d clients, want 3", len(page.Clients))
	}
}

// TestMerchantLimits: a merchant creates and changes clients only within
// what its account allows, and never sets what only operators set.
func TestMerchantLimits(t *testing.T) {
	f := newFixture(t)
	ctx, acc := f.merchant(t, "m@example.com", merchantLimits)
	var ve *admin.ValidationError
	for field, s := range map[string]admin.ClientSpec{
		"grants":         {Name: "x", Grants: []string{oauth.GrantPassword}},
		"scopes":         {Name: "x", Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"admin"}},
		"can_introspect": {Name: "x", Grants: []string{oauth.GrantClientCredentials}, CanIntrospect: true},
		"partner_id":     {Name: "x", Grants: []string{oauth.GrantClientCredentials}, PartnerID: "P-1"},
		"owner_account":  {Name: "x", Grants: []string{oauth.GrantClientCredentials}, OwnerAccount: "someone-else"},
	} {
		_, _, err := f.svc.CreateClient(ctx, s)
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("a merchant creating a client with %s: %v", field, err)
		}
	}
	a, _ := f.create(t, ctx, spec("one"))
	f.create(t, ctx, spec("two"))
	_, _, err := f.svc.CreateClient(ctx, spec("three"))
	isCode(t, err, admin.CodeForbidden, "a merchant over max_clients")
	for field, p := range map[string]admin.ClientPatch{
		"scopes":         {Scopes: &[]string{"payments", "admin"}},
		"grants":         {Grants: &[]string{oauth.GrantRefreshToken}},
		"can_introspect": {CanIntrospect: new(true)},
		"partner_id":     {PartnerID: new("P-1")},
		"owner_account":  {OwnerAccount: new("")},
	} {
		_, err := f.svc.UpdateClient(ctx, a.ClientID, p)
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("a merchant patching %s: %v", field, err)
		}
	}
	if got := f.stored(t, a.ClientID); len(got.Scopes) != 2 || got.CanIntrospect || got.OwnerAccount != acc.ID {
		t.Fatalf("refused patches changed the client: %+v", got)
	}
	// Without snap_keys: no SNAP key, no SNAP service signature.
	noSNAP := merchantLimits
	noSNAP.SNAPKeys = false
	ctx2, _ := f.merchant(t, "nosnap@example.com", noSNAP)
	_, pub := rsaKey(t, 2048)
	s := spec("snap")
	s.SNAPPublicKey = pub
	_, _, err = f.svc.CreateClient(ctx2, s)
	isCode(t, err, admin.CodeForbidden, "a merchant without snap_keys creating a client with a key")
	c, _ := f.create(t, ctx2, spec("plain"))
	_, err = f.svc.SetSNAPKey(ctx2, c.ClientID, []byte(pub))
	isCode(t, err, admin.CodeForbidden, "a merchant without snap_keys setting a key")
	_, err = f.svc.UpdateClient(ctx2, c.ClientID, admin.ClientPatch{SNAPServiceSignature: new("symmetric")})
	isCode(t, err, admin.CodeForbidden, "a merchant without snap_keys setting a SNAP service signature")
}

// TestActorResolution: no actor, an unknown kind, a merchant without an
// account, or a disabled account is refused; an account acts with its
// stored role, whatever the actor claims.
func TestActorResolution(t *testing.T) {
	f := newFixture(t)
	bg := t.Context()
	_, err := f.svc.ListClients(bg, admin.ClientQuery{})
	isCode(t, err, admin.CodeUnauthenticated, "no actor")
	for name, a := range map[string]admin.Actor{
		"unknown kind":                {Kind: "telnet", ID: "x", Role: admin.RoleOperator},
		"no ID":                       {Kind: admin.ActorAPI, Role: admin.RoleOperator},
		"merchant without an account": {Kind: admin.ActorAPI, ID: "x", Role: admin.RoleMerchant},
		"missing account":             {Kind: admin.ActorPortal, ID: "x", Account: "no-such-account", Role: admin.RoleOperator},
	} {
		_, err := f.svc.ListClients(admin.WithActor(bg, a), admin.ClientQuery{})
		isCode(t, err, admin.CodeUnauthenticated, name)
	}
	ctx, acc := f.merchant(t, "m@example.com", merchantLimits)
	// The portal's Actor claims operator; the stored role says merchant.
	claim := admin.AccountActor(admin.ActorPortal, acc, "")
	claim.Role = admin.RoleOperator
	_, err = f.svc.ListUsers(admin.WithActor(bg, claim))
	isCode(t, err, admin.CodeForbidden, "a merchant's actor claiming operator")
	// A session that began before the account's password changed is over.
	session := admin.AccountActor(admin.ActorPortal, acc, "")
	session.SessionStart = f.clk.Now()
	sctx := admin.WithActor(bg, session)
	if _, err := f.svc.ListClients(sctx, admin.ClientQuery{}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Second)
	if _, err := f.svc.SetAccountPassword(f.ctx, acc.ID, "a new password"); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.ListClients(sctx, admin.ClientQuery{})
	isCode(t, err, admin.CodeUnauthenticated, "a session older than a password change")
	session.SessionStart = f.clk.Now()
	if _, err := f.svc.ListClients(admin.WithActor(bg, session), admin.ClientQuery{}); err != nil {
		t.Fatalf("a session begun after the change: %v", err)
	}

	if _, err := f.svc.SetAccountDisabled(f.ctx, acc.ID, true); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.ListClients(ctx, admin.ClientQuery{})
	isCode(t, err, admin.CodeUnauthenticated, "a disabled account")
}

// TestOperatorOnly: what only operators may do.
func TestOperatorOnly(t *testing.T) {
	f := newFixture(t)
	ctx, acc := f.merchant(t, "m@example.com", merchantLimits)
	f.merchant(t, "o@example.com", merchantLimits)
	for name, call := range map[string]func() error{
		"CreateUser":       func() error { _, err := f.svc.CreateUser(ctx, "u", "password1"); return err },
		"ListUsers":        func() error { _, err := f.svc.ListUsers(ctx); return err },
		"SetUserPassword":  func() error { _, err := f.svc.SetUserPassword(ctx, "u", "password1"); return err },
		"SetUserDisabled":  func() error { _, err := f.svc.SetUserDisabled(ctx, "u", true); return err },
		"RevokeUserTokens": func() error { _, err := f.svc.RevokeUserTokens(ctx, "u"); return err },
		"ListSigningKeys":  func() error { _, err := f.svc.ListSigningKeys(ctx); return err },
		"RotateSigningKey": func() error { _, err := f.svc.RotateSigningKey(ctx, ""); return err },
		"IntrospectToken":  func() error { _, err := f.svc.IntrospectToken(ctx, "x"); return err },
		"RevokeToken":      func() error { return f.svc.RevokeToken(ctx, "x") },
		"CollectGarbage":   func() error { _, err := f.svc.CollectGarbage(ctx); return err },
		"RotateKEK":        func() error { _, err := f.svc.RotateKEK(ctx, false); return err },
		"Backup":           func() error { return f.svc.Backup(ctx, t.TempDir()+"/b.db") },
		"ImportClients": func() error {
			_, err := f.svc.ImportClients(ctx, strings.NewReader("[]"), admin.ImportOptions{})
			return err
		},
		"ExportClients": func() error { _, err := f.svc.ExportClients(ctx); return err },
		"VerifyAudit":   func() error { _, err := f.svc.VerifyAudit(ctx); return err },
		"CreateAccount": func() error {
			_, err := f.svc.CreateAccount(ctx, admin.AccountSpec{Email: "x@example.com", Password: "password1"})
			return err
		},
		"ListAccounts": func() error { _, err := f.svc.ListAccounts(ctx); return err },
		"UpdateAccount": func() error {
			_, err := f.svc.UpdateAccount(ctx, acc.ID, admin.AccountPatch{Role: new(admin.RoleOperator)})
			return err
		},
		"SetAccountDisabled": func() error { _, err := f.svc.SetAccountDisabled(ctx, acc.ID, false); return err },
		"ResetTOTP":          func() error { _, err := f.svc.ResetTOTP(ctx, acc.ID); return err },
	} {
		isCode(t, call(), admin.CodeForbidden, "a merchant: "+name)
	}
	// Its own account it may read and give a new password; another's it
	// cannot even see.
	if _, err := f.svc.GetAccount(ctx, acc.ID); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.GetAccount(ctx, accountID(t, f, "o@example.com"))
	isCode(t, err, admin.CodeNotFound, "a merchant reading another account")
	_, err = f.svc.SetAccountPassword(ctx, accountID(t, f, "o@example.com"), "new password")
	isCode(t, err, admin.CodeNotFound, "a merchant setting another account's password")
	if _, err := f.svc.SetAccountPassword(ctx, acc.ID, "a new password"); err != nil {
		t.Fatal(err)
	}
}

func accountID(t *testing.T, f *fixture, email string) string {
	t.Helper()
	a, err := f.st.GetAccountByEmail(t.Context(), email)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}
