package e2e

import (
	"bytes"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cli"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
	"github.com/tokengate/tokengate/token"
)

// openDB opens the embedded store's database file directly, as someone
// with access to the disk would.
func openDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// storedSecrets returns every settings value and signing-key private key
// as stored in the database file, by name.
func storedSecrets(t *testing.T, db *sql.DB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, q := range []struct {
		sql  string
		name func(string) string
	}{
		{`SELECT name, value FROM settings`, oauth.SettingSecret},
		{`SELECT id, private_key FROM signing_keys`, oauth.SigningKeySecret},
	} {
		rows, err := db.Query(q.sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k string
			var v []byte
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			out[q.name(k)] = v
		}
		rows.Close()
	}
	return out
}

// TestSecretsEncryptedAtRest: what the database file holds of the signing
// keys, the pepper and the opaque-token key is encrypted; a signing key
// planted in clear by someone who can write the database is not used to
// accept tokens, by the running server nor by a new process.
func TestSecretsEncryptedAtRest(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "a", "--token-format", "jwt")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	tok := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret).str("access_token")
	if strings.Count(tok, ".") != 2 || !e.active(tok, rsID, rsSecret) {
		t.Fatalf("no active JWT to start with: %q", tok)
	}

	db := openDB(t, e.dir)
	stored := storedSecrets(t, db)
	for _, name := range []string{oauth.SettingSecret("client_secret_pepper"), oauth.SettingSecret("opaque_token_key")} {
		if _, ok := stored[name]; !ok {
			t.Errorf("%s not stored (stored: %d values)", name, len(stored))
		}
	}
	keys := 0
	for name, v := range stored {
		if !kek.IsSealed(v) {
			t.Errorf("%s is stored unencrypted", name)
		}
		if bytes.Contains(v, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a PEM private key in clear", name)
		}
		if strings.HasPrefix(name, "signing_key:") {
			keys++
		}
	}
	if keys == 0 {
		t.Fatal("no signing key stored")
	}

	// Plant a signing key in clear, published for ten years, and tell the
	// server its keys changed, as an attacker with write access would.
	now := time.Now()
	planted, err := token.GenerateKey(oauth.AlgES256, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO signing_keys (id, alg, private_key, created_at, retired_at, publish_until)
		VALUES (?, ?, ?, ?, ?, ?)`, planted.ID, planted.Alg, planted.PrivateKeyPEM,
		now.UnixMicro(), now.UnixMicro(), now.AddDate(10, 0, 0).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE revision SET n = n + 1 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	forger, err := token.NewKeySet([]*oauth.SigningKey{planted})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := forger.Sign(oauth.AlgES256, &token.Claims{
		Issuer: "http://tokengate.test", Subject: id, Audience: []string{"http://tokengate.test"}, ClientID: id,
		Scope: "a", ID: "forged-jti", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.remember(forged)

	// The server reloads its keys within a second of the revision moving:
	// either it takes the planted key (the bug) or it logs why it did not.
	eventually(t, "the server reloads its keys", func() bool {
		return strings.Contains(e.logs.String(), "signing key "+planted.ID) || e.active(forged, rsID, rsSecret)
	})
	if e.active(forged, rsID, rsSecret) {
		t.Fatal("a JWT signed with a key planted in clear in the database introspects active")
	}
	if !e.active(tok, rsID, rsSecret) {
		t.Error("the server dropped its own keys on meeting the planted one")
	}
	if set := e.jwks(); len(set.Key(planted.ID)) != 0 {
		t.Error("the planted key is published in the JWKS")
	}

	// A new process refuses to start on it, and says why.
	_, errOut, code := e.run("", "key", "list")
	if code == 0 || !strings.Contains(errOut, planted.ID) || !strings.Contains(errOut, "not encrypted") {
		t.Errorf("key list on a store with a planted clear key: exit %d, %q", code, errOut)
	}
	// Rotation does not launder it either, unless told to.
	if _, errOut, code := e.run("", "kek", "rotate"); code == 0 || !strings.Contains(errOut, planted.ID) {
		t.Errorf("kek rotate with a clear key: exit %d, %q", code, errOut)
	}
	if v := storedSecrets(t, db)[oauth.SigningKeySecret(planted.ID)]; kek.IsSealed(v) {
		t.Error("kek rotate without --seal-clear encrypted the planted key")
	}
}

// TestKEKRotation runs the documented no-downtime procedure: (1) restart
// with the new KEK as secrets.kek_file and the old one in
// secrets.old_kek_files, (2) tokengate kek rotate, (3) restart with the new
// KEK alone. Tokens and client secrets issued under the old KEK stay
// valid throughout, and the old KEK no longer opens anything.
func TestKEKRotation(t *testing.T) {
	dir, keys := t.TempDir(), t.TempDir()
	oldFile, newFile := filepath.Join(keys, "old.hex"), filepath.Join(keys, "new.hex")
	for _, f := range []string{oldFile, newFile} {
		var out, errb bytes.Buffer
		if code := cli.Run([]string{"kek", "generate", f}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}, nil); code != 0 {
			t.Fatalf("kek generate: %s", errb.String())
		}
		if strings.Contains(out.String(), readKEK(t, f)) {
			t.Fatal("kek generate printed the key")
		}
	}

	e := startIn(t, dir, func(c *config.Config) { c.Secrets.KEKFile = oldFile })
	jwtID, jwtSecret := e.createClient("--name", "j", "--grant", "client_credentials", "--token-format", "jwt")
	opID, opSecret := e.createClient("--name", "o", "--grant", "client_credentials")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	cc := url.Values{"grant_type": {"client_credentials"}}
	jwt := e.token(cc, jwtID, jwtSecret).str("access_token")
	opaque := e.token(cc, opID, opSecret).str("access_token")
	e.stop()

	check := func(e *env, when string) {
		t.Helper()
		if !e.active(jwt, rsID, rsSecret) {
			t.Errorf("%s: the JWT issued under the old KEK is inactive", when)
		}
		if !e.active(opaque, rsID, rsSecret) {
			t.Errorf("%s: the opaque token issued under the old KEK is inactive", when)
		}
		for _, c := range [][2]string{{jwtID, jwtSecret}, {opID, opSecret}} {
			if r := e.postForm("/oauth/token", cc, c[0], c[1]); r.status != 200 {
				t.Errorf("%s: a client secret from before: %d %s", when, r.status, r.body)
			}
		}
	}

	// (1)
	e = startIn(t, dir, func(c *config.Config) { c.Secrets.KEKFile, c.Secrets.OldKEKFiles = newFile, []string{oldFile} })
	check(e, "with both KEKs")
	// (2)
	var rep kek.RotateReport
	out := e.mustRun("", "kek", "rotate", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("kek rotate --json: %v in %q", err, out)
	}
	// The pepper, the opaque-token key and the one signing key.
	if rep.KEK != kek.ID(mustReadKEK(t, newFile)) || rep.Values != 3 || rep.FromOld != 3 || rep.Sealed != 0 || len(rep.LeftClear) != 0 {
		t.Errorf("kek rotate report %+v", rep)
	}
	check(e, "after kek rotate, before the restart")
	e.stop()

	// (3)
	e = startIn(t, dir, func(c *config.Config) { c.Secrets.KEKFile = newFile })
	check(e, "with the new KEK alone")
	e.verifyJWT(jwt)               // its key is still published
	e.mustRun("", "key", "rotate") // a key made now is sealed under the new KEK
	old := mustReadKEK(t, oldFile)
	for name, v := range storedSecrets(t, openDB(t, dir)) {
		ring, err := kek.New(old)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ring.Open(name, v); err == nil {
			t.Errorf("%s still opens under the old KEK", name)
		}
	}
	// A process with only the old KEK can no longer read the store.
	e.cliEnv = []string{"TOKENGATE_SECRETS_KEK_FILE=" + oldFile}
	if _, errOut, code := e.run("", "key", "list"); code == 0 || !strings.Contains(errOut, "old_kek_files") {
		t.Errorf("key list with the retired KEK only: exit %d, %q", code, errOut)
	}
}

func readKEK(t *testing.T, path string) string {
	t.Helper()
	k := mustReadKEK(t, path)
	return hex.EncodeToString(k)
}

func mustReadKEK(t *testing.T, path string) []byte {
	t.Helper()
	k, err := kek.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
