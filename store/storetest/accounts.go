package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// fullAccount returns an account with every field set (a new value each
// call).
func fullAccount(id string, now time.Time) *oauth.Account {
	return &oauth.Account{
		ID:           id,
		Email:        "Merchant." + id + "@Example.COM",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		TOTPSecret:   []byte{'t', 'g', 'k', 0x01, 0x00, 0xff, '"', '\\'}, // opaque to a store
		TOTPEnabled:  true,
		TOTPRequired: true,
		TOTPLastStep: 58_000_123,
		Role:         oauth.RoleMerchant,
		Disabled:     true,
		Limits: oauth.AccountLimits{
			Grants:     []string{oauth.GrantClientCredentials},
			Scopes:     []string{"payments:read", "refunds"},
			MaxClients: 3,
			SNAPKeys:   true,
		},
		SessionsNotBefore: now.Add(-time.Minute + 321*time.Microsecond),
		CreatedAt:         now.Add(-time.Hour),
		UpdatedAt:         now,
	}
}

func testAccounts(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	requireAllSet(t, fullAccount("x", now))

	a := fullAccount("a2", now)
	noErr(t, s.CreateAccount(ctx, a), "CreateAccount(a2)")
	a.Email, a.Limits.Scopes[0], a.TOTPSecret[0] = "changed@example.com", "changed", 'X' // the store must not keep the caller's value
	got, err := s.GetAccount(ctx, "a2")
	noErr(t, err, "GetAccount(a2)")
	checkEqual(t, "GetAccount(a2)", fullAccount("a2", now), got)

	// By email, whatever its case and surrounding space.
	for _, email := range []string{"merchant.a2@example.com", " MERCHANT.A2@EXAMPLE.COM ", fullAccount("a2", now).Email} {
		got, err = s.GetAccountByEmail(ctx, email)
		noErr(t, err, "GetAccountByEmail(%q)", email)
		checkEqual(t, "GetAccountByEmail", fullAccount("a2", now), got)
	}
	_, err = s.GetAccountByEmail(ctx, "nobody@example.com")
	isErr(t, err, oauth.ErrNotFound, "GetAccountByEmail(unknown)")
	_, err = s.GetAccount(ctx, "nope")
	isErr(t, err, oauth.ErrNotFound, "GetAccount(unknown)")

	// Unique by ID, and by email case-insensitively.
	isErr(t, s.CreateAccount(ctx, &oauth.Account{ID: "a2", Email: "other@example.com"}), oauth.ErrAlreadyExists, "CreateAccount(a2) again")
	isErr(t, s.CreateAccount(ctx, &oauth.Account{ID: "a9", Email: "MERCHANT.a2@example.com"}), oauth.ErrAlreadyExists, "CreateAccount with a2's email in another case")

	// Zero values round-trip as zero.
	minimal := &oauth.Account{ID: "a1", Email: "a1@example.com"}
	noErr(t, s.CreateAccount(ctx, minimal), "CreateAccount(a1)")
	got, err = s.GetAccount(ctx, "a1")
	noErr(t, err, "GetAccount(a1)")
	checkEqual(t, "GetAccount(a1)", minimal, got)

	list, err := s.ListAccounts(ctx)
	noErr(t, err, "ListAccounts")
	if ids := accountIDs(list); fmt.Sprint(ids) != "[a1 a2]" {
		t.Fatalf("ListAccounts = %v, want [a1 a2]", ids)
	}
}

func accountIDs(as []*oauth.Account) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func testUpdateAccount(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	noErr(t, s.CreateAccount(ctx, fullAccount("u1", now)), "CreateAccount(u1)")
	noErr(t, s.CreateAccount(ctx, &oauth.Account{ID: "u2", Email: "u2@example.com"}), "CreateAccount(u2)")

	want := fullAccount("u1", now)
	noErr(t, s.UpdateAccount(ctx, "u1", func(a *oauth.Account) error {
		checkEqual(t, "account given to update", want, a)
		a.Email, a.Disabled, a.Limits.MaxClients, a.TOTPSecret = "New@Example.com", false, 7, nil
		return nil
	}), "UpdateAccount(u1)")
	want.Email, want.Disabled, want.Limits.MaxClients, want.TOTPSecret = "New@Example.com", false, 7, nil
	got, err := s.GetAccount(ctx, "u1")
	noErr(t, err, "GetAccount(u1)")
	checkEqual(t, "GetAccount(u1) after UpdateAccount", want, got)
	if _, err := s.GetAccountByEmail(ctx, "new@example.com"); err != nil {
		t.Fatalf("GetAccountByEmail(new email) after UpdateAccount: %v", err)
	}
	_, err = s.GetAccountByEmail(ctx, fullAccount("u1", now).Email)
	isErr(t, err, oauth.ErrNotFound, "GetAccountByEmail(old email) after UpdateAccount")

	// Another account's email, in any case: refused, nothing written.
	err = s.UpdateAccount(ctx, "u2", func(a *oauth.Account) error { a.Email, a.Role = "NEW@example.COM", oauth.RoleOperator; return nil })
	isErr(t, err, oauth.ErrAlreadyExists, "UpdateAccount(u2) to u1's email")
	got, err = s.GetAccount(ctx, "u2")
	noErr(t, err, "GetAccount(u2)")
	if got.Email != "u2@example.com" || got.Role != "" {
		t.Fatalf("a refused UpdateAccount wrote %v", got)
	}

	errUpdate := errors.New("no")
	isErr(t, s.UpdateAccount(ctx, "u2", func(a *oauth.Account) error { a.Disabled = true; return errUpdate }), errUpdate, "UpdateAccount with a failing update")
	if got, _ = s.GetAccount(ctx, "u2"); got.Disabled {
		t.Fatal("UpdateAccount wrote what a failing update changed")
	}
	isErr(t, s.UpdateAccount(ctx, "nope", func(*oauth.Account) error { return nil }), oauth.ErrNotFound, "UpdateAccount(unknown)")
	if err := s.UpdateAccount(ctx, "u2", func(a *oauth.Account) error { a.ID = "u3"; return nil }); err == nil {
		t.Fatal("UpdateAccount let update change the ID")
	}
}

// testUpdateAccountConcurrent: concurrent updates of one account lose
// nothing.
func testUpdateAccountConcurrent(t *testing.T, s oauth.Store, _ *clock) {
	ctx := ctxTimeout(t)
	noErr(t, s.CreateAccount(ctx, &oauth.Account{ID: "c", Email: "c@example.com"}), "CreateAccount")
	const n = 20
	run(n, func(int) {
		noErr(t, s.UpdateAccount(ctx, "c", func(a *oauth.Account) error { a.TOTPLastStep++; return nil }), "UpdateAccount")
	})
	a, err := s.GetAccount(ctx, "c")
	noErr(t, err, "GetAccount")
	if a.TOTPLastStep != n {
		t.Fatalf("after %d concurrent increments TOTPLastStep = %d", n, a.TOTPLastStep)
	}
}

// testCreateClients: all or none.
func testCreateClients(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	noErr(t, s.CreateClients(ctx, fullClient("i1", now), fullClient("i2", now)), "CreateClients(i1, i2)")
	for _, id := range []string{"i1", "i2"} {
		got, err := s.GetClient(ctx, id)
		noErr(t, err, "GetClient(%s)", id)
		checkEqual(t, "GetClient after CreateClients", fullClient(id, now), got)
	}
	rev, err := s.Revision(ctx)
	noErr(t, err, "Revision")

	// One taken ID, one taken partner ID, or one ID given twice: nothing
	// of the call is stored.
	taken := fullClient("i4", now)
	taken.PartnerID = fullClient("i1", now).PartnerID
	for name, cs := range map[string][]*oauth.Client{
		"a taken ID":         {fullClient("i3", now), fullClient("i2", now)},
		"a taken partner ID": {fullClient("i3", now), taken},
		"an ID twice":        {fullClient("i3", now), {ID: "i5"}, {ID: "i5"}},
	} {
		isErr(t, s.CreateClients(ctx, cs...), oauth.ErrAlreadyExists, "CreateClients with %s", name)
		for _, id := range []string{"i3", "i4", "i5"} {
			_, err := s.GetClient(ctx, id)
			isErr(t, err, oauth.ErrNotFound, "GetClient(%s) after a failed CreateClients with %s", id, name)
		}
	}
	if r, err := s.Revision(ctx); err != nil || r != rev {
		t.Errorf("revision %d (%v) after failed CreateClients, want %d", r, err, rev)
	}
	noErr(t, s.CreateClients(ctx), "CreateClients()")
}
