package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/store/sqlite"
)

type auditEvent struct {
	Seq   int64 `json:"seq"`
	Actor struct {
		Kind, ID, Name string
	} `json:"actor"`
	Action string `json:"action"`
	Object struct {
		Type, ID string
	} `json:"object"`
	Account string          `json:"account"`
	Before  json.RawMessage `json:"before"`
	After   json.RawMessage `json:"after"`
}

func (e *env) audit(args ...string) []auditEvent {
	e.t.Helper()
	var evs []auditEvent
	out := e.mustRun("", append([]string{"audit", "list", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		e.t.Fatalf("audit list --json: %v in %s", err, out)
	}
	return evs
}

// TestCLIAuditTrail: every change made with the CLI is in the trail with
// the operator's user@host; audit verify passes, and fails once a row is
// changed behind the server's back.
func TestCLIAuditTrail(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "acme", "--grant", "client_credentials", "--scope", "a b")
	e.mustRun("", "client", "update", id, "--name", "acme 2")
	e.mustRun("", "client", "rotate-secret", id, "--grace", "1h", "--json")
	other, _ := e.createClient("--name", "other", "--grant", "client_credentials")
	e.mustRun("", "client", "delete", other)
	e.createUser("alice", "alice's password")

	evs := e.audit()
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.Action)
		if ev.Actor.Kind != "cli" || !strings.Contains(ev.Actor.Name, "@") {
			t.Errorf("event %d actor: %+v", ev.Seq, ev.Actor)
		}
	}
	if got := strings.Join(actions, " "); got != "client.create client.update client.rotate_secret client.create client.delete user.create" {
		t.Fatalf("audit list: %s", got)
	}
	raw := e.mustRun("", "audit", "list", "--json")
	if strings.Contains(raw, secret) || strings.Contains(raw, "argon2") || strings.Contains(raw, "alice's password") {
		t.Fatal("the audit trail shows a secret")
	}
	if got := e.audit("--client", id); len(got) != 3 || string(got[1].Before) == "" || !strings.Contains(string(got[1].After), `"acme 2"`) {
		t.Fatalf("audit list --client: %+v", got)
	}
	if got := e.audit("--since", "1h", "--limit", "2"); len(got) != 2 || got[1].Action != "user.create" {
		t.Fatalf("audit list --since 1h --limit 2: %+v", got)
	}
	if out := e.mustRun("", "audit", "list"); !strings.Contains(out, "client.rotate_secret") || !strings.Contains(out, "cli:") {
		t.Fatalf("audit list:\n%s", out)
	}
	if out := e.mustRun("", "audit", "verify"); !strings.Contains(out, "intact: 6 events") {
		t.Fatalf("audit verify: %q", out)
	}

	// Tampering, through database/sql, as someone with the file would.
	db, err := sql.Open("sqlite", filepath.Join(e.dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DROP TRIGGER audit_events_no_update`, `UPDATE audit_events SET actor_name = 'nobody' WHERE seq = 2`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := e.run("", "audit", "verify")
	if code != 1 || out != "" || !strings.Contains(errOut, "tampered with: first broken link at event 2") {
		t.Fatalf("audit verify after tampering: exit %d, %q, %q", code, out, errOut)
	}
	out, _, code = e.run("", "audit", "verify", "--json")
	var v struct {
		OK       bool  `json:"ok"`
		BrokenAt int64 `json:"broken_at"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &v) != nil || v.OK || v.BrokenAt != 2 {
		t.Fatalf("audit verify --json after tampering: exit %d, %q", code, out)
	}
}

// TestCLIImportExport: merchants imported with their IDs and secrets get
// tokens with them at once; a second import changes nothing; a bad file
// imports nothing and names its records; export writes no secret.
func TestCLIImportExport(t *testing.T) {
	e := start(t, nil)
	file := filepath.Join(t.TempDir(), "clients.json")
	const s1, s2 = "legacy-secret-of-merchant-one-0123456789", "legacy-secret-of-merchant-two-0123456789"
	e.remember(s1, s2)
	writeFile(t, file, fmt.Sprintf(`[
  {"client_id": "legacy-001", "client_secret": %q, "name": "One", "grants": ["client_credentials"],
   "scopes": ["payments"], "access_ttl": "15m"},
  {"client_id": "legacy-002", "client_secret": %q, "name": "Two", "grants": ["client_credentials"],
   "token_format": "jwt"}
]`, s1, s2))
	if out := e.mustRun("", "client", "import", file, "--dry-run"); !strings.Contains(out, "would create 2 clients") {
		t.Fatalf("import --dry-run: %q", out)
	}
	if out := e.mustRun("", "client", "import", file); !strings.Contains(out, "created 2 clients; 0 were registered already") {
		t.Fatalf("import: %q", out)
	}
	cc := url.Values{"grant_type": {"client_credentials"}}
	eventually(t, "imported clients get tokens", func() bool {
		return e.postForm("/oauth/token", cc, "legacy-001", s1).status == 200
	})
	if r := e.token(cc, "legacy-002", s2); strings.Count(r.str("access_token"), ".") != 2 {
		t.Fatalf("legacy-002 should get a JWT: %s", r.body)
	}
	if out := e.mustRun("", "client", "import", file); !strings.Contains(out, "created 0 clients; 2 were registered already, unchanged") {
		t.Fatalf("import again: %q", out)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, bad, `[
  {"client_id": "new-003", "name": "Three", "grants": ["client_credentials"]},
  {"client_id": "legacy-001", "name": "One", "grants": ["client_credentials"], "scopes": ["payments", "refunds"]},
  {"client_id": "new-004", "name": "Four", "grants": ["implicit"]}
]`)
	out, errOut, code := e.run("", "client", "import", bad)
	if code == 0 || out != "" || !strings.Contains(errOut, "record 2, line 3, client_id legacy-001: differs from the registered client in scopes") ||
		!strings.Contains(errOut, "record 3, line 4, client_id new-004: grants: unknown grant") || !strings.Contains(errOut, "nothing was imported") {
		t.Fatalf("a bad file: exit %d, %q, %q", code, out, errOut)
	}
	if _, _, code := e.run("", "client", "show", "new-003"); code == 0 {
		t.Fatal("a good record of a bad file was imported")
	}

	exp := e.mustRun("", "client", "export")
	if strings.Contains(exp, s1) || strings.Contains(exp, `"client_secret":`) || !strings.Contains(exp, `"client_id": "legacy-001"`) {
		t.Fatalf("export: %s", exp)
	}
	writeFile(t, file+".export", exp)
	if out := e.mustRun("", "client", "import", file+".export"); !strings.Contains(out, "2 were registered already, unchanged") {
		t.Fatalf("importing the export: %q", out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCLIBackupAndRestore: a backup taken while tokens are being issued
// restores, as the README says (stop, put the file in place as the data
// directory's database, keep the KEK), to a server that knows the client.
func TestCLIBackupAndRestore(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "kept", "--grant", "client_credentials")
	cc := url.Values{"grant_type": {"client_credentials"}}
	e.token(cc, id, secret)
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		issued atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if r, err := e.try(postFormRequest(e.base+"/oauth/token", cc, id, secret)); err == nil && r.status == 200 {
					issued.Add(1)
				}
			}
		}()
	}
	backup := filepath.Join(t.TempDir(), "tokengate-backup.db")
	out := e.mustRun("", "backup", backup)
	stop.Store(true)
	wg.Wait()
	if !strings.Contains(out, "wrote a consistent copy") || issued.Load() == 0 {
		t.Fatalf("backup: %q, %d tokens issued meanwhile", out, issued.Load())
	}
	if _, errOut, code := e.run("", "backup", backup); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("a backup over an existing file: %q", errOut)
	}
	e.stop()

	restored := t.TempDir()
	if err := os.Rename(backup, filepath.Join(restored, sqlite.FileName)); err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(filepath.Join(e.dir, kek.DataDirFile))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(restored, kek.DataDirFile), string(k))
	r := startIn(t, restored, nil)
	r.remember(secret)
	r.token(cc, id, secret)
	// The backup's own event was appended after the copy was taken.
	if evs := r.audit(); len(evs) != 1 || evs[0].Action != "client.create" {
		t.Fatalf("audit trail of the restored store: %+v", evs)
	}
	r.mustRun("", "audit", "verify")
}

func postFormRequest(u string, form url.Values, id, secret string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return req
}

func TestCLIBackupRefusedOnPostgres(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	e := start(t, withPostgres(dsn))
	_, errOut, code := e.run("", "backup", filepath.Join(t.TempDir(), "b.db"))
	if code == 0 || !strings.Contains(errOut, "pg_dump") {
		t.Fatalf("backup on PostgreSQL: exit %d, %q", code, errOut)
	}
}

// TestCLIAccounts: the first operator is bootstrapped from the CLI, with
// its password from stdin; merchants get limits and own clients.
func TestCLIAccounts(t *testing.T) {
	e := start(t, nil)
	e.remember("the operator's password")
	var op struct{ ID, Email, Role string }
	out := e.mustRun("the operator's password\n", "account", "create", "--email", "ops@example.com", "--role", "operator", "--json")
	if err := json.Unmarshal([]byte(out), &op); err != nil || op.Role != "operator" || op.ID == "" || strings.Contains(out, "password") {
		t.Fatalf("account create: %v, %s", err, out)
	}
	if _, errOut, code := e.run("another password\n", "account", "create", "--email", "OPS@example.com"); code == 0 || !strings.Contains(errOut, "--email: another account has this email") {
		t.Fatalf("a taken email: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.run("short\n", "account", "create", "--email", "m@example.com"); code == 0 || !strings.Contains(errOut, "the password: a password needs at least 8") {
		t.Fatalf("a short password: %q", errOut)
	}
	var m struct {
		ID     string
		Limits struct {
			Grants     []string `json:"grants"`
			MaxClients int      `json:"max_clients"`
			SNAPKeys   bool     `json:"snap_keys"`
		}
	}
	out = e.mustRun("merchant password\n", "account", "create", "--email", "m@example.com", "--limit-grant", "client_credentials",
		"--limit-scope", "payments", "--max-clients", "3", "--snap-keys", "--json")
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Limits.MaxClients != 3 || !m.Limits.SNAPKeys || len(m.Limits.Grants) != 1 {
		t.Fatalf("a merchant: %v, %s", err, out)
	}
	id, _ := e.createClient("--name", "owned", "--grant", "client_credentials", "--owner", m.ID)
	list := e.mustRun("", "client", "list", "--owner", m.ID, "--json")
	if !strings.Contains(list, id) || strings.Count(list, `"client_id"`) != 1 {
		t.Fatalf("client list --owner: %s", list)
	}
	if _, errOut, code := e.run("", "client", "create", "--name", "x", "--grant", "client_credentials", "--owner", "nobody"); code == 0 || !strings.Contains(errOut, "--owner: no account nobody") {
		t.Fatalf("an unknown owner: %q", errOut)
	}
	out = e.mustRun("", "account", "update", m.ID, "--max-clients", "5", "--json")
	if !strings.Contains(out, `"max_clients": 5`) || !strings.Contains(out, `"snap_keys": true`) {
		t.Fatalf("account update --max-clients keeps the other limits: %s", out)
	}
	e.mustRun("", "account", "disable", m.ID)
	if out := e.mustRun("", "account", "list"); !strings.Contains(out, "m@example.com") || !strings.Contains(out, "disabled") {
		t.Fatalf("account list: %s", out)
	}
	if out := e.mustRun("", "account", "show", op.ID); !strings.Contains(out, "role:") || !strings.Contains(out, "operator") {
		t.Fatalf("account show: %s", out)
	}
	e.remember("a new operator password")
	e.mustRun("a new operator password\n", "account", "set-password", op.ID)
	e.mustRun("", "account", "reset-totp", op.ID)
	if evs := e.audit("--account", m.ID); len(evs) != 4 { // created, its client, updated, disabled
		t.Fatalf("audit list --account: %+v", evs)
	}
}
