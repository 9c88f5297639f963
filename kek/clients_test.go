package kek

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// snapClient is a client with a current and an expiring recoverable
// secret and one secret kept only as a hash.
func snapClient(id string) *oauth.Client {
	return &oauth.Client{
		ID: id, Name: "merchant " + id, PartnerID: "P-" + id, SNAPServiceSignature: oauth.SNAPSignatureSymmetric,
		Secrets: []oauth.SecretHash{
			{Hash: []byte("hash-current-" + id), Plain: []byte("the-current-secret-of-" + id)},
			{Hash: []byte("hash-previous-" + id), ExpiresAt: time.Now().Add(time.Hour).Truncate(time.Second), Plain: []byte("the-previous-secret-of-" + id)},
			{Hash: []byte("hash-only-" + id)},
		},
	}
}

// plains returns the Plain of each secret of c.
func plains(c *oauth.Client) []string {
	var out []string
	for _, s := range c.Secrets {
		out = append(out, string(s.Plain))
	}
	return out
}

// assertNoPlaintext fails if any stored secrets column holds a secret of
// want in clear, raw or base64.
func assertNoPlaintext(t *testing.T, raw map[string][]byte, want ...*oauth.Client) {
	t.Helper()
	for _, c := range want {
		for _, s := range c.Secrets {
			if len(s.Plain) == 0 {
				continue
			}
			for id, v := range raw {
				if bytes.Contains(v, s.Plain) || bytes.Contains(v, []byte(base64.StdEncoding.EncodeToString(s.Plain))) {
					t.Errorf("the secrets column of client %s holds a secret of %s in clear", id, c.ID)
				}
			}
		}
	}
}

func TestClientSecretsSealedAtRest(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	c := snapClient("m1")
	// A Sealed value given without Plain is not stored: only what the
	// decorator seals is.
	c.Secrets[2].Sealed = []byte("made up by the caller")
	if err := st.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.Secrets[0].Sealed != nil || string(c.Secrets[0].Plain) != "the-current-secret-of-m1" {
		t.Error("CreateClient changed the caller's client")
	}
	want := []string{"the-current-secret-of-m1", "the-previous-secret-of-m1", ""}

	raw := rawColumn(t, inner, `SELECT id, secrets FROM clients`)
	if len(raw) != 1 {
		t.Fatalf("%d client rows", len(raw))
	}
	assertNoPlaintext(t, raw, snapClient("m1"))
	if bytes.Contains(raw["m1"], []byte("made up")) || bytes.Contains(raw["m1"], []byte(base64.StdEncoding.EncodeToString([]byte("made up by the caller")))) {
		t.Error("a Sealed value given without Plain was stored")
	}
	// What the store holds: sealed envelopes, bound to client and hash.
	stored, err := inner.GetClient(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stored.Secrets {
		if (want[i] != "") != IsSealed(s.Sealed) || s.Plain != nil {
			t.Errorf("stored secret %d: sealed %v, plain %q", i, IsSealed(s.Sealed), s.Plain)
		}
	}

	// Every read opens them.
	got, err := st.GetClient(ctx, "m1")
	if err != nil || !reflect.DeepEqual(plains(got), want) {
		t.Fatalf("GetClient = %q, %v; want %q", plains(got), err, want)
	}
	got, err = st.GetClientByPartnerID(ctx, "P-m1")
	if err != nil || !reflect.DeepEqual(plains(got), want) {
		t.Fatalf("GetClientByPartnerID = %q, %v", plains(got), err)
	}
	list, err := st.ListClients(ctx)
	if err != nil || len(list) != 1 || !reflect.DeepEqual(plains(list[0]), want) {
		t.Fatalf("ListClients = %v, %v", list, err)
	}
	if s := got.ServiceSecrets(time.Now()); len(s) != 2 || string(s[0]) != want[0] || string(s[1]) != want[1] {
		t.Errorf("ServiceSecrets = %q", s)
	}

	// UpdateClient's callback sees them opened, and they are sealed again
	// (a fresh nonce) on the way back.
	var seen []string
	if err := st.UpdateClient(ctx, "m1", func(c *oauth.Client) error {
		seen = plains(c)
		c.Name = "renamed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("UpdateClient's callback saw %q", seen)
	}
	again, err := inner.GetClient(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again.Secrets[0].Sealed, stored.Secrets[0].Sealed) || !IsSealed(again.Secrets[0].Sealed) {
		t.Error("UpdateClient did not seal the secret again")
	}
	if got, err := st.GetClient(ctx, "m1"); err != nil || got.Name != "renamed" || !reflect.DeepEqual(plains(got), want) {
		t.Errorf("after UpdateClient: %v, %q, %v", got, plains(got), err)
	}
	assertNoPlaintext(t, rawColumn(t, inner, `SELECT id, secrets FROM clients`), snapClient("m1"))

	// Dropping Plain drops the sealed value too.
	if err := st.UpdateClient(ctx, "m1", func(c *oauth.Client) error {
		c.Secrets[1].Plain = nil // Sealed is left: it is not what counts
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := inner.GetClient(ctx, "m1"); got.Secrets[1].Sealed != nil {
		t.Error("a secret whose Plain was dropped is still stored sealed")
	}
}

// A sealed secret copied to another client, or beside another hash of the
// same client, does not open; the error names the client and says what to
// do, and holds no secret.
func TestClientSecretsBoundToClientAndHash(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	for _, id := range []string{"a", "b"} {
		if err := st.CreateClient(ctx, snapClient(id)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := inner.GetClient(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	for what, plant := range map[string]func(c *oauth.Client){
		"another client's": func(c *oauth.Client) { c.Secrets[0].Sealed = a.Secrets[0].Sealed },
		"another hash's": func(c *oauth.Client) {
			c.Secrets[0].Sealed, c.Secrets[1].Sealed = c.Secrets[1].Sealed, c.Secrets[0].Sealed
		},
		"in clear":          func(c *oauth.Client) { c.Secrets[0].Sealed = []byte("a secret planted in clear") },
		"a flipped bit":     func(c *oauth.Client) { c.Secrets[0].Sealed[len(c.Secrets[0].Sealed)-1] ^= 1 },
		"a copy for a hash": func(c *oauth.Client) { c.Secrets[2].Sealed = c.Secrets[0].Sealed },
	} {
		t.Run(what, func(t *testing.T) {
			id := "victim-" + strings.ReplaceAll(what, " ", "-")
			if err := st.CreateClient(ctx, snapClient(id)); err != nil {
				t.Fatal(err)
			}
			if err := inner.UpdateClient(ctx, id, func(c *oauth.Client) error { plant(c); return nil }); err != nil {
				t.Fatal(err)
			}
			_, err := st.GetClient(ctx, id)
			if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrNotSealed) {
				t.Fatalf("GetClient with %s sealed secret: %v", what, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "client "+id) || !strings.Contains(msg, "rotate-secret") ||
				strings.Contains(msg, "secret-of") || strings.Contains(msg, "planted") || strings.Contains(msg, "hash-") {
				t.Errorf("error %q: want the client named, the remedy, and no secret or hash", msg)
			}
			if _, err := st.ListClients(ctx); err == nil {
				t.Error("ListClients returned a client whose secret does not open")
			}
			if _, err := st.GetClientByPartnerID(ctx, "P-"+id); err == nil {
				t.Error("GetClientByPartnerID returned a client whose secret does not open")
			}
			if err := inner.DeleteClient(ctx, id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A client whose stored secret does not open can still be updated (an
// operator disabling it); the broken value stays as it was until an
// update drops it, which heals the client.
func TestClientSecretBrokenUpdatable(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	st := WrapStore(inner, mustRing(t, mustKey(t)))
	if err := st.CreateClient(ctx, snapClient("m")); err != nil {
		t.Fatal(err)
	}
	var planted []byte // the current secret's envelope, beside the previous one's hash
	if err := inner.UpdateClient(ctx, "m", func(c *oauth.Client) error {
		planted = bytes.Clone(c.Secrets[0].Sealed)
		c.Secrets[1].Sealed = planted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	if err := st.UpdateClient(ctx, "m", func(c *oauth.Client) error {
		seen = plains(c)
		c.Disabled = true
		return nil
	}); err != nil {
		t.Fatalf("disabling a client with a broken secret: %v", err)
	}
	if !reflect.DeepEqual(seen, []string{"the-current-secret-of-m", "", ""}) {
		t.Errorf("the callback saw %q", seen)
	}
	stored, _ := inner.GetClient(ctx, "m")
	if !stored.Disabled || !bytes.Equal(stored.Secrets[1].Sealed, planted) {
		t.Fatalf("after the update: disabled %v, broken value kept %v", stored.Disabled, bytes.Equal(stored.Secrets[1].Sealed, planted))
	}
	if _, err := st.GetClient(ctx, "m"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("GetClient with the broken value: %v", err)
	}
	// Rotating without grace drops it.
	if err := st.UpdateClient(ctx, "m", func(c *oauth.Client) error {
		c.Secrets = []oauth.SecretHash{{Hash: []byte("new"), Plain: []byte("new secret")}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetClient(ctx, "m"); err != nil || string(got.Secrets[0].Plain) != "new secret" {
		t.Fatalf("after the rotation: %v, %v", got, err)
	}
}

// Rotate re-seals client secrets under the new KEK (kek rotate), with the
// rest of the store, and never seals one stored in clear.
func TestRotateClientSecrets(t *testing.T) {
	ctx := t.Context()
	inner := openSQLite(t)
	oldKey, newKey := mustKey(t), mustKey(t)
	old := WrapStore(inner, mustRing(t, oldKey))
	want := fill(t, old)
	for _, id := range []string{"a", "b"} {
		if err := old.CreateClient(ctx, snapClient(id)); err != nil {
			t.Fatal(err)
		}
	}
	st := WrapStore(inner, mustRing(t, newKey, oldKey))
	rep, err := st.Rotate(ctx, false)
	if err != nil || !reflect.DeepEqual(rep, RotateReport{KEK: ID(newKey), Values: len(want) + 4, FromOld: len(want) + 4}) {
		t.Fatalf("Rotate: %+v, %v", rep, err)
	}
	only := WrapStore(inner, mustRing(t, newKey))
	for _, id := range []string{"a", "b"} {
		got, err := only.GetClient(ctx, id)
		if err != nil || !reflect.DeepEqual(plains(got), plains(snapClient(id))) {
			t.Fatalf("client %s under the new KEK alone: %q, %v", id, plains(got), err)
		}
	}
	if _, err := WrapStore(inner, mustRing(t, oldKey)).GetClient(ctx, "a"); !errors.Is(err, ErrUnknownKEK) || !strings.Contains(err.Error(), "old_kek_files") {
		t.Errorf("the old KEK alone after the rotation: %v", err)
	}
	assertNoPlaintext(t, rawColumn(t, inner, `SELECT id, secrets FROM clients`), snapClient("a"), snapClient("b"))

	// A client secret planted in clear is left so, even with sealClear,
	// and named without its hash.
	if err := inner.UpdateClient(ctx, "b", func(c *oauth.Client) error { c.Secrets[0].Sealed = []byte("planted in clear"); return nil }); err != nil {
		t.Fatal(err)
	}
	rep, err = only.Rotate(ctx, true)
	if !errors.Is(err, ErrNotSealed) || !reflect.DeepEqual(rep.LeftClear, []string{"client b recoverable secret"}) || rep.Sealed != 0 {
		t.Fatalf("Rotate --seal-clear with a client secret in clear: %+v, %v", rep, err)
	}
	if got, _ := inner.GetClient(ctx, "b"); string(got.Secrets[0].Sealed) != "planted in clear" {
		t.Error("the planted client secret was sealed")
	}
	if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte("hash-current-b"))) {
		t.Error("the rotation's error names a secret's hash")
	}
	// A sealed value that does not open stops the rotation, naming the client.
	if err := inner.UpdateClient(ctx, "b", func(c *oauth.Client) error { c.Secrets[0].Sealed = c.Secrets[1].Sealed; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := only.Rotate(ctx, false); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "client b") {
		t.Errorf("Rotate with a client secret that does not open: %v", err)
	}
}
