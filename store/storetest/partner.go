package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tokengate/tokengate/oauth"
)

// testClientPartnerIDs: GetClientByPartnerID finds a client by its
// effective partner ID (PartnerID, or its ID when it has none), and no two
// clients share one, however the clash comes about.
func testClientPartnerIDs(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	byPartner := func(pid, wantID string) {
		t.Helper()
		c, err := s.GetClientByPartnerID(ctx, pid)
		if wantID == "" {
			isErr(t, err, oauth.ErrNotFound, "GetClientByPartnerID(%q)", pid)
			return
		}
		noErr(t, err, "GetClientByPartnerID(%q)", pid)
		if c.ID != wantID {
			t.Fatalf("GetClientByPartnerID(%q) = client %s, want %s", pid, c.ID, wantID)
		}
	}

	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "a"}), "CreateClient(a)")
	b := fullClient("b", now)
	b.PartnerID = "P-B"
	noErr(t, s.CreateClient(ctx, b), "CreateClient(b)")
	byPartner("a", "a")   // no partner ID: the client ID
	byPartner("P-B", "b") // the partner ID
	byPartner("b", "")    // a client with a partner ID is not found by its ID
	byPartner("p-b", "")  // bytewise
	byPartner("missing", "")
	for _, odd := range []string{"", "a\x00b", "\xff\xfe", "\xed\xa0\x80"} {
		byPartner(odd, "")
	}
	// The whole record, as GetClient returns it.
	got, err := s.GetClientByPartnerID(ctx, "P-B")
	noErr(t, err, "GetClientByPartnerID(P-B)")
	checkEqual(t, "GetClientByPartnerID(P-B)", b, got)

	// Clashes, on create and on update: nothing is written.
	for _, c := range []*oauth.Client{
		{ID: "c", PartnerID: "P-B"}, // another's partner ID
		{ID: "c", PartnerID: "a"},   // another's client ID
		{ID: "P-B"},                 // an ID that is another's partner ID
	} {
		isErr(t, s.CreateClient(ctx, c), oauth.ErrAlreadyExists, "CreateClient(%s, partner %q)", c.ID, c.PartnerID)
		_, err := s.GetClient(ctx, c.ID)
		isErr(t, err, oauth.ErrNotFound, "GetClient(%s) after a refused create", c.ID)
	}
	for _, u := range []struct{ id, pid string }{{"a", "P-B"}, {"b", "a"}} {
		err := s.UpdateClient(ctx, u.id, func(c *oauth.Client) error { c.PartnerID, c.Name = u.pid, "not written"; return nil })
		isErr(t, err, oauth.ErrAlreadyExists, "UpdateClient(%s, partner %q)", u.id, u.pid)
	}
	got, err = s.GetClient(ctx, "a")
	noErr(t, err, "GetClient(a)")
	if got.PartnerID != "" || got.Name != "" {
		t.Fatalf("a refused update was written: %+v", got)
	}
	got, err = s.GetClient(ctx, "b")
	noErr(t, err, "GetClient(b)")
	checkEqual(t, "GetClient(b) after a refused update", b, got)
	byPartner("a", "a")
	byPartner("P-B", "b")

	// A partner ID equal to the client's own ID is no clash.
	noErr(t, s.UpdateClient(ctx, "a", func(c *oauth.Client) error { c.PartnerID = "a"; return nil }), "UpdateClient(a, partner a)")
	byPartner("a", "a")
	// Moving a partner ID: the old one is free at once.
	noErr(t, s.UpdateClient(ctx, "b", func(c *oauth.Client) error { c.PartnerID = "P-B2"; return nil }), "UpdateClient(b, partner P-B2)")
	byPartner("P-B", "")
	byPartner("P-B2", "b")
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "c", PartnerID: "P-B"}), "CreateClient(c, partner P-B) once free")
	byPartner("P-B", "c")
	// Back to no partner ID: the client ID again.
	noErr(t, s.UpdateClient(ctx, "b", func(c *oauth.Client) error { c.PartnerID = ""; return nil }), "UpdateClient(b, no partner)")
	byPartner("b", "b")
	byPartner("P-B2", "")
	// Deleting frees it.
	noErr(t, s.DeleteClient(ctx, "c"), "DeleteClient(c)")
	byPartner("P-B", "")
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "P-B"}), "CreateClient(P-B) once free")
	byPartner("P-B", "P-B")
}

// testRewriteClientSecrets: RewriteSecrets passes every client's sealed
// secrets, under oauth.ClientSecretSecret, and writes back what rewrite
// returns in place, leaving the hashes, the expiries, the secrets without
// a sealed value and the rest of the client as they were; a failing
// rewrite writes nothing.
func testRewriteClientSecrets(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	now := baseTime()
	_, err := s.Setting(ctx, "pepper", func() ([]byte, error) { return []byte("p"), nil })
	noErr(t, err, "Setting(pepper)")
	rotating := fullClient("rotating", now) // secrets: expiring (no sealed), current (sealed)
	rotating.Secrets[0].Sealed = []byte("sealed-old")
	plain := fullClient("plain", now)
	plain.PartnerID = ""
	for i := range plain.Secrets {
		plain.Secrets[i].Sealed = nil
	}
	one := &oauth.Client{ID: "one", Secrets: []oauth.SecretHash{{Hash: []byte("h1"), Sealed: []byte("sealed-1")}}}
	for _, c := range []*oauth.Client{rotating, plain, one} {
		noErr(t, s.CreateClient(ctx, c), "CreateClient(%s)", c.ID)
	}

	want := map[string][]byte{
		oauth.SettingSecret("pepper"):                                  []byte("p"),
		oauth.ClientSecretSecret("rotating", rotating.Secrets[0].Hash): []byte("sealed-old"),
		oauth.ClientSecretSecret("rotating", rotating.Secrets[1].Hash): rotating.Secrets[1].Sealed,
		oauth.ClientSecretSecret("one", []byte("h1")):                  []byte("sealed-1"),
	}
	checkEqual(t, "stored secret values", want, secretValues(t, s))

	errRewrite := errors.New("cannot decrypt")
	_, err = s.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		if name == oauth.ClientSecretSecret("one", []byte("h1")) {
			return nil, errRewrite
		}
		return []byte("changed"), nil
	})
	isErr(t, err, errRewrite, "RewriteSecrets failing on a client secret")
	checkEqual(t, "stored values after a failed RewriteSecrets", want, secretValues(t, s))

	n, err := s.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		return append([]byte("new:"), v...), nil
	})
	noErr(t, err, "RewriteSecrets")
	if n != len(want) {
		t.Errorf("RewriteSecrets = %d, want %d", n, len(want))
	}
	for name, v := range want {
		want[name] = append([]byte("new:"), v...)
	}
	checkEqual(t, "stored values after RewriteSecrets", want, secretValues(t, s))

	// Only the sealed values changed.
	rotating.Secrets[0].Sealed = []byte("new:sealed-old")
	rotating.Secrets[1].Sealed = append([]byte("new:"), rotating.Secrets[1].Sealed...)
	one.Secrets[0].Sealed = []byte("new:sealed-1")
	for _, c := range []*oauth.Client{rotating, plain, one} {
		got, err := s.GetClient(ctx, c.ID)
		noErr(t, err, "GetClient(%s)", c.ID)
		checkEqual(t, "GetClient("+c.ID+") after RewriteSecrets", c, got)
	}
	got, err := s.GetClientByPartnerID(ctx, rotating.PartnerID)
	noErr(t, err, "GetClientByPartnerID")
	if !bytes.Equal(got.Secrets[1].Sealed, rotating.Secrets[1].Sealed) {
		t.Errorf("GetClientByPartnerID after RewriteSecrets: sealed %q", got.Secrets[1].Sealed)
	}
}
