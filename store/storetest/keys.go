package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func signingKey(id, alg string, created time.Time) *oauth.SigningKey {
	return &oauth.SigningKey{
		ID:            id,
		Alg:           alg,
		PrivateKeyPEM: []byte("-----BEGIN PRIVATE KEY-----\n" + id + "\x00\xff\n-----END PRIVATE KEY-----\n"),
		CreatedAt:     created,
	}
}

func keyIDs(ks []*oauth.SigningKey) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.ID)
	}
	return out
}

func findKey(t *testing.T, ks []*oauth.SigningKey, id string) *oauth.SigningKey {
	t.Helper()
	for _, k := range ks {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("key %s not listed (listed: %v)", id, keyIDs(ks))
	return nil
}

func testSigningKeys(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	t0 := baseTime()

	es1 := signingKey("es-1", oauth.AlgES256, t0)
	noErr(t, s.CreateSigningKey(ctx, es1, time.Hour), "CreateSigningKey(es-1)")
	keys, err := s.ListSigningKeys(ctx, t0)
	noErr(t, err, "ListSigningKeys")
	if len(keys) != 1 {
		t.Fatalf("ListSigningKeys = %v, want [es-1]", keyIDs(keys))
	}
	checkEqual(t, "es-1", signingKey("es-1", oauth.AlgES256, t0), keys[0])

	rs1 := signingKey("rs-1", oauth.AlgRS256, t0.Add(time.Minute))
	noErr(t, s.CreateSigningKey(ctx, rs1, time.Hour), "CreateSigningKey(rs-1)")
	t2 := t0.Add(2 * time.Minute)
	es2 := signingKey("es-2", oauth.AlgES256, t2)
	noErr(t, s.CreateSigningKey(ctx, es2, time.Hour), "CreateSigningKey(es-2)")

	keys, err = s.ListSigningKeys(ctx, t2.Add(time.Minute))
	noErr(t, err, "ListSigningKeys")
	if ids := keyIDs(keys); !slices.Equal(ids, []string{"es-2", "rs-1", "es-1"}) {
		t.Fatalf("ListSigningKeys = %v, want [es-2 rs-1 es-1] (newest first)", ids)
	}
	// es-2 retired es-1 (same algorithm) and left rs-1 alone.
	wantES1 := signingKey("es-1", oauth.AlgES256, t0)
	wantES1.RetiredAt, wantES1.PublishUntil = t2, t2.Add(time.Hour)
	checkEqual(t, "retired es-1", wantES1, findKey(t, keys, "es-1"))
	checkEqual(t, "rs-1", signingKey("rs-1", oauth.AlgRS256, t0.Add(time.Minute)), findKey(t, keys, "rs-1"))
	checkEqual(t, "es-2", signingKey("es-2", oauth.AlgES256, t2), findKey(t, keys, "es-2"))

	// A retired key is listed while PublishUntil is after now, not at it.
	keys, err = s.ListSigningKeys(ctx, t2.Add(time.Hour-time.Second))
	noErr(t, err, "ListSigningKeys")
	if ids := keyIDs(keys); !slices.Contains(ids, "es-1") {
		t.Fatalf("ListSigningKeys just before es-1's PublishUntil = %v, want es-1 listed", ids)
	}
	keys, err = s.ListSigningKeys(ctx, t2.Add(time.Hour))
	noErr(t, err, "ListSigningKeys")
	if ids := keyIDs(keys); !slices.Equal(ids, []string{"es-2", "rs-1"}) {
		t.Fatalf("ListSigningKeys at es-1's PublishUntil = %v, want [es-2 rs-1]", ids)
	}

	// Rotating again retires es-2 only; es-1 keeps its retirement.
	t3 := t2.Add(time.Minute)
	noErr(t, s.CreateSigningKey(ctx, signingKey("es-3", oauth.AlgES256, t3), 10*time.Minute), "CreateSigningKey(es-3)")
	keys, err = s.ListSigningKeys(ctx, t3)
	noErr(t, err, "ListSigningKeys")
	if ids := keyIDs(keys); !slices.Equal(ids, []string{"es-3", "es-2", "rs-1", "es-1"}) {
		t.Fatalf("ListSigningKeys = %v, want [es-3 es-2 rs-1 es-1]", ids)
	}
	checkEqual(t, "es-1 after a later rotation", wantES1, findKey(t, keys, "es-1"))
	wantES2 := signingKey("es-2", oauth.AlgES256, t2)
	wantES2.RetiredAt, wantES2.PublishUntil = t3, t3.Add(10*time.Minute)
	checkEqual(t, "retired es-2", wantES2, findKey(t, keys, "es-2"))
	current := 0
	for _, k := range keys {
		if k.Alg == oauth.AlgES256 && k.Current() {
			current++
		}
	}
	if current != 1 {
		t.Fatalf("%d current ES256 keys, want 1", current)
	}
}

func testSetting(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	calls := 0
	v, err := s.Setting(ctx, "pepper", func() ([]byte, error) { calls++; return []byte("v1\x00\xff"), nil })
	noErr(t, err, "Setting(pepper)")
	if !bytes.Equal(v, []byte("v1\x00\xff")) || calls != 1 {
		t.Fatalf("Setting(pepper) = %q after %d create calls, want %q after 1", v, calls, "v1\x00\xff")
	}
	v, err = s.Setting(ctx, "pepper", func() ([]byte, error) { calls++; return []byte("v2"), nil })
	noErr(t, err, "Setting(pepper) again")
	if !bytes.Equal(v, []byte("v1\x00\xff")) {
		t.Fatalf("Setting(pepper) again = %q, want the stored %q", v, "v1\x00\xff")
	}
	if calls != 1 {
		t.Fatalf("create called for a setting that exists")
	}

	errGen := errors.New("entropy exhausted")
	_, err = s.Setting(ctx, "key", func() ([]byte, error) { return nil, errGen })
	isErr(t, err, errGen, "Setting with a failing create")
	v, err = s.Setting(ctx, "key", func() ([]byte, error) { return []byte("k"), nil })
	noErr(t, err, "Setting after a failed create")
	if string(v) != "k" {
		t.Fatalf("Setting(key) = %q, want %q (the failed create must store nothing)", v, "k")
	}
}

// testSettingConcurrent: callers racing to create a setting all get one value.
func testSettingConcurrent(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	const n = 10
	vals := make([][]byte, n)
	errs := make([]error, n)
	run(n, func(i int) {
		vals[i], errs[i] = s.Setting(ctx, "race", func() ([]byte, error) {
			return fmt.Appendf(nil, "value-%d", i), nil
		})
	})
	for i := range n {
		noErr(t, errs[i], "Setting #%d", i)
		if !bytes.Equal(vals[i], vals[0]) {
			t.Fatalf("concurrent Setting calls returned %q and %q; all must get the same value", vals[0], vals[i])
		}
	}
	v, err := s.Setting(ctx, "race", func() ([]byte, error) { return []byte("late"), nil })
	noErr(t, err, "Setting after the race")
	if !bytes.Equal(v, vals[0]) {
		t.Fatalf("Setting after the race = %q, want %q", v, vals[0])
	}
}

func testRevision(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := baseTime()
	rev, err := s.Revision(ctx)
	noErr(t, err, "Revision")
	step := func(what string, err error) {
		t.Helper()
		noErr(t, err, "%s", what)
		r, err := s.Revision(ctx)
		noErr(t, err, "Revision")
		if r == rev {
			t.Fatalf("Revision still %d after %s", r, what)
		}
		rev = r
	}
	step("CreateClient", s.CreateClient(ctx, &oauth.Client{ID: "c"}))
	step("UpdateClient", s.UpdateClient(ctx, "c", func(c *oauth.Client) error { c.Name = "n"; return nil }))
	step("DeleteClient", s.DeleteClient(ctx, "c"))
	step("CreateUser", s.CreateUser(ctx, &oauth.User{Username: "u"}))
	step("UpdateUser", s.UpdateUser(ctx, "u", func(u *oauth.User) error { u.Disabled = true; return nil }))
	step("CreateSigningKey", s.CreateSigningKey(ctx, signingKey("k1", oauth.AlgES256, now), time.Hour))
	step("CreateSigningKey (rotation)", s.CreateSigningKey(ctx, signingKey("k2", oauth.AlgES256, now.Add(time.Second)), time.Hour))
}

// secretValues reads every stored secret through RewriteSecrets, writing
// each back unchanged.
func secretValues(t *testing.T, s oauth.Store) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	n, err := s.RewriteSecrets(t.Context(), func(name string, v []byte) ([]byte, error) {
		got[name] = bytes.Clone(v)
		return v, nil
	})
	noErr(t, err, "RewriteSecrets(identity)")
	if n != len(got) {
		t.Fatalf("RewriteSecrets(identity) = %d, but rewrite saw %d values", n, len(got))
	}
	return got
}

// testRewriteSecrets: every setting and every signing key — even one no
// longer published — is rewritten under its name, in place, and the
// revision moves.
func testRewriteSecrets(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	_, err := s.Setting(ctx, "pepper", func() ([]byte, error) { return []byte("p\x00\xff"), nil })
	noErr(t, err, "Setting(pepper)")
	_, err = s.Setting(ctx, "opaque", func() ([]byte, error) { return []byte("o"), nil })
	noErr(t, err, "Setting(opaque)")
	noErr(t, s.CreateSigningKey(ctx, signingKey("es-1", oauth.AlgES256, t0), time.Minute), "CreateSigningKey(es-1)")
	noErr(t, s.CreateSigningKey(ctx, signingKey("es-2", oauth.AlgES256, t0.Add(time.Second)), time.Minute), "CreateSigningKey(es-2)")
	noErr(t, s.CreateSigningKey(ctx, signingKey("rs:1", oauth.AlgRS256, t0), time.Minute), "CreateSigningKey(rs:1)")
	// An account's TOTP secret is a secret value; an account without one
	// has none to rewrite.
	noErr(t, s.CreateAccount(ctx, fullAccount("acc-totp", t0)), "CreateAccount(acc-totp)")
	noErr(t, s.CreateAccount(ctx, &oauth.Account{ID: "acc-none", Email: "none@example.com"}), "CreateAccount(acc-none)")
	rev, err := s.Revision(ctx)
	noErr(t, err, "Revision")

	want := map[string][]byte{
		oauth.SettingSecret("pepper"):       []byte("p\x00\xff"),
		oauth.SettingSecret("opaque"):       []byte("o"),
		oauth.SigningKeySecret("es-1"):      signingKey("es-1", "", t0).PrivateKeyPEM,
		oauth.SigningKeySecret("es-2"):      signingKey("es-2", "", t0).PrivateKeyPEM,
		oauth.SigningKeySecret("rs:1"):      signingKey("rs:1", "", t0).PrivateKeyPEM,
		oauth.AccountTOTPSecret("acc-totp"): fullAccount("acc-totp", t0).TOTPSecret,
	}
	seen := map[string][]byte{}
	n, err := s.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		seen[name] = bytes.Clone(v)
		return append([]byte("new:"+name+":"), v...), nil
	})
	noErr(t, err, "RewriteSecrets")
	if n != len(want) {
		t.Errorf("RewriteSecrets = %d, want %d", n, len(want))
	}
	checkEqual(t, "values given to rewrite", want, seen)
	r, err := s.Revision(ctx)
	noErr(t, err, "Revision")
	if r == rev {
		t.Error("RewriteSecrets left the revision unchanged: servers would not reload their keys")
	}

	for name, v := range want {
		want[name] = append([]byte("new:"+name+":"), v...)
	}
	checkEqual(t, "stored values after RewriteSecrets", want, secretValues(t, s))
	// The rewritten values are what the other methods return.
	v, err := s.Setting(ctx, "pepper", func() ([]byte, error) { return []byte("other"), nil })
	noErr(t, err, "Setting(pepper)")
	if !bytes.Equal(v, want[oauth.SettingSecret("pepper")]) {
		t.Errorf("Setting(pepper) after RewriteSecrets = %q", v)
	}
	keys, err := s.ListSigningKeys(ctx, t0.Add(2*time.Second))
	noErr(t, err, "ListSigningKeys")
	for _, k := range keys {
		if w := want[oauth.SigningKeySecret(k.ID)]; !bytes.Equal(k.PrivateKeyPEM, w) {
			t.Errorf("key %s after RewriteSecrets = %q, want %q", k.ID, k.PrivateKeyPEM, w)
		}
	}
	if len(keys) != 3 {
		t.Errorf("ListSigningKeys = %v: RewriteSecrets must change the values only", keyIDs(keys))
	}
	a, err := s.GetAccount(ctx, "acc-totp")
	noErr(t, err, "GetAccount(acc-totp)")
	if w := want[oauth.AccountTOTPSecret("acc-totp")]; !bytes.Equal(a.TOTPSecret, w) {
		t.Errorf("account TOTP secret after RewriteSecrets = %q, want %q", a.TOTPSecret, w)
	}
}

// testRewriteSecretsFailure: a failing rewrite writes nothing.
func testRewriteSecretsFailure(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	for _, name := range []string{"a", "b", "c"} {
		_, err := s.Setting(ctx, name, func() ([]byte, error) { return []byte(name), nil })
		noErr(t, err, "Setting(%s)", name)
	}
	noErr(t, s.CreateSigningKey(ctx, signingKey("k", oauth.AlgES256, t0), time.Minute), "CreateSigningKey")
	before := secretValues(t, s)
	rev, err := s.Revision(ctx)
	noErr(t, err, "Revision")

	errRewrite := errors.New("cannot decrypt")
	n, err := s.RewriteSecrets(ctx, func(name string, v []byte) ([]byte, error) {
		if name == oauth.SettingSecret("b") {
			return nil, errRewrite
		}
		return []byte("changed"), nil
	})
	isErr(t, err, errRewrite, "RewriteSecrets with a failing rewrite")
	if n != 0 {
		t.Errorf("failed RewriteSecrets = %d, want 0", n)
	}
	if r, err := s.Revision(ctx); err != nil || r != rev {
		t.Errorf("revision %d (%v) after a failed RewriteSecrets, want %d", r, err, rev)
	}
	checkEqual(t, "stored values after a failed RewriteSecrets", before, secretValues(t, s))
}

func testDeleteExpired(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	var expired, live []*oauth.Token
	for range 3 {
		expired = append(expired, tok(oauth.KindAccess, "", now.Add(-2*time.Hour), time.Hour))
	}
	for range 2 {
		live = append(live, tok(oauth.KindRefresh, newID("fam"), now.Add(-2*time.Hour), 3*time.Hour))
	}
	noErr(t, s.CreateTokens(ctx, append(expired, live...)...), "CreateTokens")
	noErr(t, s.UseNonce(ctx, "n-old-1", now.Add(-time.Hour)), "UseNonce")
	noErr(t, s.UseNonce(ctx, "n-old-2", now.Add(-time.Minute)), "UseNonce")
	noErr(t, s.UseNonce(ctx, "n-live", now.Add(time.Hour)), "UseNonce")

	n, err := s.DeleteExpired(ctx, now, 2)
	noErr(t, err, "DeleteExpired(limit 2)")
	if n != 2 {
		t.Fatalf("DeleteExpired(limit 2) = %d, want 2", n)
	}
	n, err = s.DeleteExpired(ctx, now, 100)
	noErr(t, err, "DeleteExpired(limit 100)")
	if n != 3 { // one token and two nonces left
		t.Fatalf("second DeleteExpired = %d, want 3", n)
	}
	n, err = s.DeleteExpired(ctx, now, 100)
	noErr(t, err, "DeleteExpired(nothing left)")
	if n != 0 {
		t.Fatalf("third DeleteExpired = %d, want 0", n)
	}
	for _, tk := range expired {
		requireNoToken(t, s, tk.ID, "after DeleteExpired")
	}
	for _, tk := range live {
		checkEqual(t, "live token after DeleteExpired", tk, getToken(t, s, tk.ID))
	}
	isErr(t, s.UseNonce(ctx, "n-live", now.Add(time.Hour)), oauth.ErrAlreadyExists, "UseNonce(n-live) after DeleteExpired")
}

func testPing(t *testing.T, s oauth.Store, clk *clock) {
	noErr(t, s.Ping(t.Context()), "Ping")
}

// testDeleteExpiredKeys: DeleteExpired also erases retired signing keys
// that are no longer published (PublishUntil before the given time), in
// its limit and its count, after tokens and nonces; a current key is
// never erased, however old.
func testDeleteExpiredKeys(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	t0 := baseTime()
	noErr(t, s.CreateSigningKey(ctx, signingKey("es-1", oauth.AlgES256, t0), time.Hour), "CreateSigningKey(es-1)")
	noErr(t, s.CreateSigningKey(ctx, signingKey("rs-1", oauth.AlgRS256, t0), time.Hour), "CreateSigningKey(rs-1)")
	// es-2 retires es-1 (published until t0+1m+1h), es-3 retires es-2
	// (published until t0+2m+10m).
	noErr(t, s.CreateSigningKey(ctx, signingKey("es-2", oauth.AlgES256, t0.Add(time.Minute)), time.Hour), "CreateSigningKey(es-2)")
	noErr(t, s.CreateSigningKey(ctx, signingKey("es-3", oauth.AlgES256, t0.Add(2*time.Minute)), 10*time.Minute), "CreateSigningKey(es-3)")
	stored := func() []string {
		t.Helper()
		keys, err := s.ListSigningKeys(ctx, t0) // lists every key still stored
		noErr(t, err, "ListSigningKeys")
		return keyIDs(keys)
	}
	if ids := stored(); !slices.Equal(ids, []string{"es-3", "es-2", "rs-1", "es-1"}) {
		t.Fatalf("stored keys = %v, want [es-3 es-2 rs-1 es-1]", ids)
	}

	// At its PublishUntil a key is not yet deleted.
	n, err := s.DeleteExpired(ctx, t0.Add(12*time.Minute), 100)
	noErr(t, err, "DeleteExpired at es-2's PublishUntil")
	if n != 0 {
		t.Fatalf("DeleteExpired at es-2's PublishUntil = %d, want 0", n)
	}

	// Tokens and nonces first, within one limit.
	now := clk.Now()
	noErr(t, s.CreateTokens(ctx, tok(oauth.KindAccess, "", t0.Add(-2*time.Hour), time.Hour)), "CreateTokens(expired)")
	noErr(t, s.UseNonce(ctx, "n-old", now.Add(-time.Hour)), "UseNonce(n-old)")
	rev, err := s.Revision(ctx)
	noErr(t, err, "Revision")
	after := t0.Add(12*time.Minute + time.Millisecond)
	n, err = s.DeleteExpired(ctx, after, 2)
	noErr(t, err, "DeleteExpired(limit 2)")
	if n != 2 {
		t.Fatalf("DeleteExpired(limit 2) = %d, want 2 (the token and the nonce)", n)
	}
	if ids := stored(); !slices.Contains(ids, "es-2") {
		t.Fatalf("stored keys = %v: es-2 was deleted beyond the limit", ids)
	}
	n, err = s.DeleteExpired(ctx, after, 2)
	noErr(t, err, "DeleteExpired")
	if n != 1 {
		t.Fatalf("DeleteExpired after es-2's PublishUntil = %d, want 1", n)
	}
	if ids := stored(); !slices.Equal(ids, []string{"es-3", "rs-1", "es-1"}) {
		t.Fatalf("stored keys = %v, want [es-3 rs-1 es-1]", ids)
	}
	if r, err := s.Revision(ctx); err != nil || r == rev {
		t.Fatalf("Revision = %d, %v after a key was deleted; want a change from %d", r, err, rev)
	}

	// Far in the future only retired keys go: current ones stay.
	far := t0.Add(1000 * time.Hour)
	n, err = s.DeleteExpired(ctx, far, 100)
	noErr(t, err, "DeleteExpired(far)")
	if n != 1 {
		t.Fatalf("DeleteExpired(far) = %d, want 1 (es-1)", n)
	}
	keys, err := s.ListSigningKeys(ctx, far)
	noErr(t, err, "ListSigningKeys")
	if ids := keyIDs(keys); !slices.Equal(ids, []string{"es-3", "rs-1"}) {
		t.Fatalf("keys after DeleteExpired(far) = %v, want the current [es-3 rs-1]", ids)
	}
	n, err = s.DeleteExpired(ctx, far, 100)
	noErr(t, err, "DeleteExpired(far) again")
	if n != 0 {
		t.Fatalf("DeleteExpired(far) again = %d, want 0", n)
	}
}
