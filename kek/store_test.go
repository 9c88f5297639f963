package kek

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
	"github.com/tokengate/tokengate/token"
)

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// rawColumn reads a column of every row of a table straight from the
// database file, keyed by the row's key.
func rawColumn(t *testing.T, st *sqlite.Store, query string) map[string][]byte {
	t.Helper()
	db, err := sql.Open("sqlite", st.Path()+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newSigningKey(t *testing.T, now time.Time) *oauth.SigningKey {
	t.Helper()
	k, err := token.GenerateKey(oauth.AlgES256, now)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStoreSealsAtRest(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))

	pepper := []byte("pepper-value-0123456789abcdef")
	got, err := st.Setting(ctx, "client_secret_pepper", func() ([]byte, error) { return bytes.Clone(pepper), nil })
	if err != nil || !bytes.Equal(got, pepper) {
		t.Fatalf("Setting = %q, %v", got, err)
	}
	got, err = st.Setting(ctx, "client_secret_pepper", func() ([]byte, error) { return []byte("other"), nil })
	if err != nil || !bytes.Equal(got, pepper) {
		t.Fatalf("Setting again = %q, %v", got, err)
	}
	now := time.Now()
	k := newSigningKey(t, now)
	pem := bytes.Clone(k.PrivateKeyPEM)
	if err := st.CreateSigningKey(ctx, k, time.Hour); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.PrivateKeyPEM, pem) {
		t.Error("CreateSigningKey changed the caller's key")
	}
	keys, err := st.ListSigningKeys(ctx, now)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].PrivateKeyPEM, pem) {
		t.Fatalf("ListSigningKeys = %v, %v; want the key with its PEM in clear", keys, err)
	}
	if _, err := token.NewKeySet(keys); err != nil {
		t.Fatalf("the listed key does not parse: %v", err)
	}

	for what, rows := range map[string]map[string][]byte{
		"settings":     rawColumn(t, inner, `SELECT name, value FROM settings`),
		"signing_keys": rawColumn(t, inner, `SELECT id, private_key FROM signing_keys`),
	} {
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows", what, len(rows))
		}
		for id, v := range rows {
			if !IsSealed(v) {
				t.Errorf("%s %s is stored unsealed", what, id)
			}
			if bytes.Contains(v, pepper) || bytes.Contains(v, []byte("PRIVATE KEY")) || bytes.Contains(v, pem[30:60]) {
				t.Errorf("%s %s holds its value in clear", what, id)
			}
		}
	}
}

func TestStoreRefusesClearValues(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	// Planted directly in the database, under the wrapper's nose.
	if _, err := inner.Setting(ctx, "opaque_token_key", func() ([]byte, error) { return []byte("clear-key"), nil }); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := inner.CreateSigningKey(ctx, newSigningKey(t, now), time.Hour); err != nil {
		t.Fatal(err)
	}

	v, err := st.Setting(ctx, "opaque_token_key", func() ([]byte, error) { return []byte("new"), nil })
	if !errors.Is(err, ErrNotSealed) || v != nil {
		t.Fatalf("Setting of a clear value = %q, %v; want ErrNotSealed", v, err)
	}
	if !strings.Contains(err.Error(), "kek rotate --seal-clear") || !strings.Contains(err.Error(), "opaque_token_key") {
		t.Errorf("error %q does not name the setting and say what to do", err)
	}
	assertNoSecret(t, err.Error(), []byte("clear-key"))
	keys, err := st.ListSigningKeys(ctx, now)
	if !errors.Is(err, ErrNotSealed) || keys != nil {
		t.Fatalf("ListSigningKeys with a clear key = %v, %v; want ErrNotSealed and no keys", keys, err)
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("error %q quotes the key", err)
	}
}

// TestStoreBindsValuesToRows: a sealed value copied to another row — the
// same kind or another — does not open.
func TestStoreBindsValuesToRows(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	for _, name := range []string{"a", "b"} {
		if _, err := st.Setting(ctx, name, func() ([]byte, error) { return []byte("value " + name), nil }); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if err := st.CreateSigningKey(ctx, newSigningKey(t, now), time.Hour); err != nil {
		t.Fatal(err)
	}
	var key []byte
	if _, err := inner.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		if strings.HasPrefix(name, "signing_key:") {
			key = v
		}
		return v, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Setting a takes b's value, b takes the signing key's.
	if _, err := inner.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		switch name {
		case oauth.SettingSecret("a"):
			return raw(t, inner, "b"), nil
		case oauth.SettingSecret("b"):
			return key, nil
		}
		return v, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if v, err := st.Setting(ctx, name, nil); !errors.Is(err, ErrDecrypt) {
			t.Errorf("setting %s holding another row's value: %q, %v; want ErrDecrypt", name, v, err)
		}
	}
	if _, err := st.ListSigningKeys(ctx, now); err != nil {
		t.Errorf("the signing key itself, untouched, no longer opens: %v", err)
	}
}

func raw(t *testing.T, st *sqlite.Store, setting string) []byte {
	t.Helper()
	return rawColumn(t, st, `SELECT name, value FROM settings`)[setting]
}

// fill stores two settings and two signing keys (one retired and no longer
// published) through st and returns the plaintexts by name.
func fill(t *testing.T, st oauth.Store) map[string][]byte {
	t.Helper()
	ctx := t.Context()
	want := map[string][]byte{}
	for _, name := range []string{"client_secret_pepper", "opaque_token_key"} {
		v, err := st.Setting(ctx, name, func() ([]byte, error) { return []byte("value of " + name), nil })
		if err != nil {
			t.Fatal(err)
		}
		want[oauth.SettingSecret(name)] = v
	}
	t0 := time.Now().Add(-time.Hour)
	for _, at := range []time.Time{t0, t0.Add(time.Second)} {
		k := newSigningKey(t, at)
		if err := st.CreateSigningKey(ctx, k, time.Minute); err != nil {
			t.Fatal(err)
		}
		want[oauth.SigningKeySecret(k.ID)] = k.PrivateKeyPEM
	}
	return want
}

// openAll opens every stored value with ring.
func openAll(t *testing.T, st oauth.Store, ring *Keyring) (map[string][]byte, error) {
	t.Helper()
	out := map[string][]byte{}
	var firstErr error
	_, err := st.RewriteSecrets(t.Context(), func(name string, v []byte) ([]byte, error) {
		p, err := ring.Open(name, v)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		out[name] = p
		return v, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, firstErr
}

func TestRotate(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	oldKey, newKey := mustKey(t), mustKey(t)
	want := fill(t, WrapStore(inner, mustRing(t, oldKey)))
	rev, _ := inner.Revision(ctx)

	st := WrapStore(inner, mustRing(t, newKey, oldKey))
	rep, err := st.Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep, RotateReport{KEK: ID(newKey), Values: 4, FromOld: 4}) {
		t.Errorf("report %+v", rep)
	}
	if r, _ := inner.Revision(ctx); r == rev {
		t.Error("rotation did not move the revision")
	}
	// Only the new KEK is needed now.
	got, err := openAll(t, inner, mustRing(t, newKey))
	if err != nil {
		t.Fatalf("after rotation, a value does not open under the new KEK alone: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s changed in rotation", name)
		}
	}
	if _, err := openAll(t, inner, mustRing(t, oldKey)); !errors.Is(err, ErrUnknownKEK) {
		t.Errorf("after rotation the old KEK still opens values: %v", err)
	}

	// Again: everything is current.
	rep, err = WrapStore(inner, mustRing(t, newKey)).Rotate(ctx, false)
	if err != nil || !reflect.DeepEqual(rep, RotateReport{KEK: ID(newKey), Values: 4, Current: 4}) {
		t.Errorf("second rotation: %+v, %v", rep, err)
	}
}

func TestRotateUnknownKEKWritesNothing(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	k1, k2 := mustKey(t), mustKey(t)
	fill(t, WrapStore(inner, mustRing(t, k1)))
	before, _ := openAll(t, inner, mustRing(t, k1))
	rep, err := WrapStore(inner, mustRing(t, k2)).Rotate(ctx, true)
	if !errors.Is(err, ErrUnknownKEK) || !strings.Contains(err.Error(), "old_kek_files") {
		t.Fatalf("Rotate without the KEK the values are under: %+v, %v", rep, err)
	}
	after, err := openAll(t, inner, mustRing(t, k1))
	if err != nil || len(after) != len(before) {
		t.Fatalf("a failed rotation changed the store: %v", err)
	}
}

func TestRotateClearValues(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	k := mustKey(t)
	want := fill(t, inner) // a store from before encryption at rest
	st := WrapStore(inner, mustRing(t, k))
	if _, err := st.Setting(ctx, "opaque_token_key", nil); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("clear setting read through the wrapper: %v", err)
	}

	rep, err := st.Rotate(ctx, false)
	if !errors.Is(err, ErrNotSealed) || len(rep.LeftClear) != 4 || !strings.Contains(err.Error(), "--seal-clear") {
		t.Fatalf("Rotate without --seal-clear on a clear store: %+v, %v", rep, err)
	}
	if got := rawColumn(t, inner, `SELECT name, value FROM settings`); !bytes.Equal(got["opaque_token_key"], want[oauth.SettingSecret("opaque_token_key")]) {
		t.Fatalf("a clear value was changed without --seal-clear")
	}

	rep, err = st.Rotate(ctx, true)
	if err != nil || !reflect.DeepEqual(rep, RotateReport{KEK: ID(k), Values: 4, Sealed: 4}) {
		t.Fatalf("Rotate --seal-clear: %+v, %v", rep, err)
	}
	got, err := openAll(t, inner, mustRing(t, k))
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s changed when sealed", name)
		}
	}
	v, err := st.Setting(ctx, "opaque_token_key", nil)
	if err != nil || !bytes.Equal(v, want[oauth.SettingSecret("opaque_token_key")]) {
		t.Errorf("sealed setting reads %q, %v", v, err)
	}
}

func TestSettingCreateErrorPassesThrough(t *testing.T) {
	st := WrapStore(openSQLite(t), mustRing(t, mustKey(t)))
	errGen := errors.New("no entropy")
	if _, err := st.Setting(context.Background(), "x", func() ([]byte, error) { return nil, errGen }); !errors.Is(err, errGen) {
		t.Fatalf("Setting with a failing create = %v", err)
	}
}
