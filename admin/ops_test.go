package admin_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
)

func TestUsers(t *testing.T) {
	f := newFixture(t)
	u, err := f.svc.CreateUser(f.ctx, "alice", "alice's password")
	if err != nil || u.Username != "alice" || u.Disabled {
		t.Fatalf("CreateUser: %+v, %v", u, err)
	}
	if ev := f.lastEvent(t); ev.Action != "user.create" || bytes.Contains(ev.After, []byte("password")) || bytes.Contains(ev.After, []byte("argon2")) {
		t.Fatalf("user.create event: %s", ev.After)
	}
	var ce *admin.ConflictError
	if _, err := f.svc.CreateUser(f.ctx, "alice", "another password"); !errors.As(err, &ce) || ce.Field != "username" {
		t.Fatalf("a taken username: %v", err)
	}
	var ve *admin.ValidationError
	if _, err := f.svc.CreateUser(f.ctx, "bob", "short"); !errors.As(err, &ve) || ve.Field != "password" {
		t.Fatalf("a short password: %v", err)
	}
	f.clk.Advance(time.Second)
	if u, err = f.svc.SetUserPassword(f.ctx, "alice", "a new password"); err != nil || u.TokensNotBefore == nil {
		t.Fatalf("SetUserPassword: %+v, %v", u, err)
	}
	if u, err = f.svc.SetUserDisabled(f.ctx, "alice", true); err != nil || !u.Disabled {
		t.Fatalf("SetUserDisabled: %+v, %v", u, err)
	}
	at, err := f.svc.RevokeUserTokens(f.ctx, "alice")
	if err != nil || !at.Equal(f.clk.Now()) {
		t.Fatalf("RevokeUserTokens: %v, %v", at, err)
	}
	list, err := f.svc.ListUsers(f.ctx)
	if err != nil || len(list) != 1 || !list[0].Disabled {
		t.Fatalf("ListUsers: %+v, %v", list, err)
	}
	_, err = f.svc.SetUserDisabled(f.ctx, "nobody", true)
	isCode(t, err, admin.CodeNotFound, "SetUserDisabled(nobody)")
	var actions []string
	for _, e := range f.events(t) {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, " "); got != "user.create user.set_password user.disable user.revoke_tokens" {
		t.Fatalf("audit trail: %s", got)
	}
}

func TestSigningKeysAndTokens(t *testing.T) {
	f := newFixture(t)
	keys, err := f.svc.ListSigningKeys(f.ctx)
	if err != nil || len(keys) != 1 || keys[0].State != "current" {
		t.Fatalf("ListSigningKeys: %+v, %v", keys, err)
	}
	old := keys[0].KID
	f.clk.Advance(time.Second)
	k, err := f.svc.RotateSigningKey(f.ctx, "")
	if err != nil || k.Alg != oauth.AlgES256 || k.KID == old || k.SignsFrom == nil || !k.SignsFrom.Equal(k.CreatedAt.Add(3*time.Second)) {
		t.Fatalf("RotateSigningKey: %+v, %v", k, err)
	}
	if ev := f.lastEvent(t); ev.Action != "signing_key.rotate" || ev.ObjectID != k.KID || bytes.Contains(ev.After, []byte("PRIVATE")) {
		t.Fatalf("rotate event: %+v", ev)
	}
	keys, _ = f.svc.ListSigningKeys(f.ctx)
	if len(keys) != 2 || keys[1].KID != old || keys[1].State != "retired" || keys[1].PublishUntil == nil {
		t.Fatalf("after rotation: %+v, %+v", keys[0], keys[1])
	}
	if _, err := f.svc.RotateSigningKey(f.ctx, "HS256"); admin.ErrorCode(err) != admin.CodeInvalid {
		t.Fatalf("an unknown algorithm: %v", err)
	}

	v, sec := f.create(t, f.ctx, spec("tokens"))
	if err := f.eng.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	res, e := f.eng.Token(t.Context(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials,
		Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: v.ClientID, Secret: sec}})
	if e != nil {
		t.Fatal(e)
	}
	in, err := f.svc.IntrospectToken(f.ctx, res.AccessToken)
	if err != nil || !in.Active || in.ClientID != v.ClientID {
		t.Fatalf("IntrospectToken: %+v, %v", in, err)
	}
	if err := f.svc.RevokeToken(f.ctx, res.AccessToken); err != nil {
		t.Fatal(err)
	}
	if in, _ := f.svc.IntrospectToken(f.ctx, res.AccessToken); in.Active {
		t.Fatal("a revoked token is active")
	}
	ev := f.lastEvent(t)
	if ev.Action != "token.revoke" || ev.ObjectType != admin.ObjectClient || ev.ObjectID != v.ClientID || bytes.Contains(ev.After, []byte(res.AccessToken)) {
		t.Fatalf("token.revoke event: %+v %s", ev, ev.After)
	}
	err = f.svc.RevokeToken(f.ctx, "tga_not-a-token")
	isCode(t, err, admin.CodeNotFound, "revoking garbage")
}

func TestCollectGarbageAndKEK(t *testing.T) {
	f := newFixture(t)
	rep, err := f.svc.CollectGarbage(f.ctx)
	if err != nil || rep.Deleted != 0 {
		t.Fatalf("CollectGarbage: %+v, %v", rep, err)
	}
	if ev := f.lastEvent(t); ev.Action != "store.gc" || !bytes.Contains(ev.After, []byte(`"deleted":0`)) {
		t.Fatalf("gc event: %s", ev.After)
	}
	f.create(t, f.ctx, spec("x"))
	r, err := f.svc.RotateKEK(f.ctx, false)
	if err != nil || r.Values == 0 || r.Current != r.Values {
		t.Fatalf("RotateKEK: %+v, %v", r, err)
	}
	if ev := f.lastEvent(t); ev.Action != "store.rotate_kek" || !bytes.Contains(ev.After, []byte(r.KEK)) {
		t.Fatalf("kek event: %+v", ev)
	}
	if v, err := f.svc.VerifyAudit(f.ctx); err != nil || !v.OK {
		t.Fatalf("VerifyAudit: %+v, %v", v, err)
	}
}

// TestBackup: a backup taken through the service opens as a store with
// the same clients and audit trail.
func TestBackup(t *testing.T) {
	f := newFixture(t)
	v, _ := f.create(t, f.ctx, spec("kept"))
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := f.svc.Backup(f.ctx, path); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Backup(f.ctx, path); err == nil {
		t.Fatal("Backup overwrote a file")
	}
	if ev := f.lastEvent(t); ev.Action != "store.backup" {
		t.Fatalf("backup event: %+v", ev)
	}
	dir := t.TempDir()
	if err := os.Rename(path, filepath.Join(dir, sqlite.FileName)); err != nil {
		t.Fatal(err)
	}
	copyStore, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer copyStore.Close()
	if c, err := copyStore.GetClient(t.Context(), v.ClientID); err != nil || c.Name != "kept" {
		t.Fatalf("the client in the backup: %+v, %v", c, err)
	}
	if seq, _, err := copyStore.AuditHead(t.Context()); err != nil || seq != 1 {
		t.Fatalf("the backup's audit head: %d, %v", seq, err)
	}
}

// TestStoreOnlyService: a service without the engine does what needs no
// engine and says ErrUnsupported for the rest.
func TestStoreOnlyService(t *testing.T) {
	f := newFixture(t)
	svc := admin.New(admin.Deps{Store: f.st, Passwords: f.eng.Passwords(), Now: f.clk.Now})
	_, _, err := svc.CreateClient(f.ctx, spec("x"))
	isCode(t, err, admin.CodeUnsupported, "CreateClient without the engine")
	_, err = svc.RotateSigningKey(f.ctx, "")
	isCode(t, err, admin.CodeUnsupported, "RotateSigningKey without the engine")
	if _, err := svc.CollectGarbage(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAccount(f.ctx, admin.AccountSpec{Email: "a@example.com", Password: "password1"}); err != nil {
		t.Fatal(err)
	}
}
