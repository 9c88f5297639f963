package kek

import (
	"bytes"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
)

// execRaw runs a statement on the database file directly, as someone
// with write access to it and no KEK would.
func execRaw(t *testing.T, st *sqlite.Store, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", st.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatal(err)
	}
}

func TestAccountTOTPSealedAtRest(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	secret := []byte("12345678901234567890")
	a := &oauth.Account{ID: "a1", Email: "a1@example.com", TOTPSecret: bytes.Clone(secret)}
	if err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.TOTPSecret, secret) {
		t.Fatal("CreateAccount changed the caller's account")
	}
	if err := st.CreateAccount(ctx, &oauth.Account{ID: "a2", Email: "a2@example.com"}); err != nil {
		t.Fatal(err)
	}
	raw := rawColumn(t, inner, `SELECT id, totp_secret FROM accounts`)
	if bytes.Contains(raw["a1"], secret) || !IsSealed(raw["a1"]) || len(raw["a2"]) != 0 {
		t.Fatalf("stored TOTP secrets: %q", raw)
	}
	check := func(what string, got *oauth.Account, err error) {
		t.Helper()
		if err != nil || !bytes.Equal(got.TOTPSecret, secret) {
			t.Fatalf("%s: %v, %v", what, got, err)
		}
	}
	got, err := st.GetAccount(ctx, "a1")
	check("GetAccount", got, err)
	got, err = st.GetAccountByEmail(ctx, "A1@example.com")
	check("GetAccountByEmail", got, err)
	list, err := st.ListAccounts(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListAccounts: %v, %v", list, err)
	}
	check("ListAccounts", list[0], nil)
	if err := st.UpdateAccount(ctx, "a1", func(x *oauth.Account) error {
		if !bytes.Equal(x.TOTPSecret, secret) {
			t.Error("UpdateAccount gave update the sealed secret")
		}
		x.Disabled = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err = st.GetAccount(ctx, "a1")
	check("GetAccount after UpdateAccount", got, err)
	if after := rawColumn(t, inner, `SELECT id, totp_secret FROM accounts`); bytes.Contains(after["a1"], secret) || !IsSealed(after["a1"]) {
		t.Fatal("UpdateAccount stored the TOTP secret in clear")
	}

	// Moved to another account's row, it does not open; planted in clear,
	// it is refused.
	execRaw(t, inner, `UPDATE accounts SET totp_secret = ? WHERE id = 'a2'`, raw["a1"])
	if _, err := st.GetAccount(ctx, "a2"); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "account a2") {
		t.Fatalf("a TOTP secret moved to another account: %v", err)
	}
	if err := st.UpdateAccount(ctx, "a2", func(*oauth.Account) error { return nil }); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("UpdateAccount of an account whose secret does not open: %v", err)
	}
	execRaw(t, inner, `UPDATE accounts SET totp_secret = ? WHERE id = 'a2'`, secret)
	if _, err := st.GetAccount(ctx, "a2"); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("a TOTP secret planted in clear: %v", err)
	}
	_, err = st.ListAccounts(ctx)
	if !errors.Is(err, ErrNotSealed) {
		t.Fatalf("ListAccounts with a TOTP secret planted in clear: %v", err)
	}
	if strings.Contains(err.Error(), string(secret)) {
		t.Fatal("the error carries the secret")
	}
}

func TestRotateAccountSecrets(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	oldKey, newKey := mustKey(t), mustKey(t)
	secret := []byte("12345678901234567890")
	if err := WrapStore(inner, mustRing(t, oldKey)).CreateAccount(ctx, &oauth.Account{ID: "a1", Email: "a1@example.com", TOTPSecret: secret}); err != nil {
		t.Fatal(err)
	}
	st := WrapStore(inner, mustRing(t, newKey, oldKey))
	rep, err := st.Rotate(ctx, false)
	if err != nil || rep.FromOld != 1 || rep.Values != 1 {
		t.Fatalf("Rotate: %+v, %v", rep, err)
	}
	got, err := WrapStore(inner, mustRing(t, newKey)).GetAccount(ctx, "a1")
	if err != nil || !bytes.Equal(got.TOTPSecret, secret) {
		t.Fatalf("after rotation: %v, %v", got, err)
	}
	// A TOTP secret in clear was planted: never sealed, even with --seal-clear.
	execRaw(t, inner, `UPDATE accounts SET totp_secret = ? WHERE id = 'a1'`, secret)
	rep, err = st.Rotate(ctx, true)
	if !errors.Is(err, ErrNotSealed) || len(rep.LeftClear) != 1 || !strings.Contains(rep.LeftClear[0], "a1") {
		t.Fatalf("Rotate --seal-clear with a planted TOTP secret: %+v, %v", rep, err)
	}
	if raw := rawColumn(t, inner, `SELECT id, totp_secret FROM accounts`); !bytes.Equal(raw["a1"], secret) {
		t.Fatal("Rotate sealed a planted TOTP secret")
	}
}

func TestCreateClientsSealed(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	c1, c2 := snapClient("m1"), snapClient("m2")
	if err := st.CreateClients(ctx, c1, c2); err != nil {
		t.Fatal(err)
	}
	if len(c1.Secrets[0].Sealed) != 0 {
		t.Fatal("CreateClients changed the caller's client")
	}
	assertNoPlaintext(t, rawColumn(t, inner, `SELECT id, secrets FROM clients`), c1, c2)
	for _, want := range []*oauth.Client{c1, c2} {
		got, err := st.GetClient(ctx, want.ID)
		if err != nil || strings.Join(plains(got), ",") != strings.Join(plains(want), ",") {
			t.Fatalf("GetClient(%s) after CreateClients: %v, %v", want.ID, plains(got), err)
		}
	}
}
