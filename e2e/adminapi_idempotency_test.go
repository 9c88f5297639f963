package e2e

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/store/sqlite"
)

// storedResponses reads the idempotency table as someone with the
// database file and no KEK would.
func (e *env) storedResponses() map[string][]byte {
	e.t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(e.dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT key, response FROM idempotency`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			e.t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

func (e *env) clientsNamed(op *apiClient, name string) []any {
	e.t.Helper()
	var out []any
	for _, c := range op.call("GET", "/admin/v1/clients?name="+url.QueryEscape(name), nil).want(e.t, 200).obj["clients"].([]any) {
		if c.(map[string]any)["name"] == name {
			out = append(out, c)
		}
	}
	return out
}

// TestAdminAPIIdempotency: a create or a rotation retried with the same
// Idempotency-Key is done once and answered with the first response (the
// same secret), which is kept sealed at rest; the same key with another
// request is a 422 problem; keys are per caller; a failed request is not
// kept; a retry while the first runs is a 409 problem; a kept response
// lasts a day.
func TestAdminAPIIdempotency(t *testing.T) {
	clk := newClock()
	e := startClock(t, clk, withAdminAPI())
	op, _ := e.operator("ops")
	spec := map[string]any{"name": "Acme", "grants": []string{"client_credentials"}}

	first := op.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", "create-acme-1").want(t, 201)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a first response says it is replayed")
	}
	retry := op.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", "create-acme-1").want(t, 201)
	if !bytes.Equal(retry.body, first.body) || retry.header.Get("Idempotent-Replayed") != "true" ||
		retry.header.Get("Location") != first.header.Get("Location") || retry.header.Get("Content-Type") != "application/json" {
		t.Fatalf("the retry got another answer:\n%s\n%s", first.body, retry.body)
	}
	// The quoted form of the same key is the same key.
	op.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", `"create-acme-1"`).want(t, 201)
	if n := len(e.clientsNamed(op, "Acme")); n != 1 {
		t.Fatalf("%d clients named Acme after retries, want 1", n)
	}
	id, secret := first.obj["client"].(map[string]any)["client_id"].(string), first.str("client_secret")
	if !e.tokenWorks(id, secret) {
		t.Fatal("the replayed secret does not work")
	}

	// The same key with another body, or on another route: 422.
	op.call("POST", "/admin/v1/clients", map[string]any{"name": "Acme 2", "grants": []string{"client_credentials"}},
		"Idempotency-Key", "create-acme-1").wantProblem(t, 422, "idempotency_key_reused", "Idempotency-Key")
	op.call("POST", "/admin/v1/users", map[string]any{"username": "u", "password": "a password"},
		"Idempotency-Key", "create-acme-1").wantProblem(t, 422, "idempotency_key_reused")
	op.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", strings.Repeat("k", 256)).wantProblem(t, 400, "invalid", "Idempotency-Key")

	// Keys are per caller: another operator's same key is its own request.
	op2, _ := e.operator("ops2")
	other := op2.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", "create-acme-1").want(t, 201)
	if other.header.Get("Idempotent-Replayed") != "" || bytes.Equal(other.body, first.body) {
		t.Fatal("another caller got the first caller's response")
	}
	if n := len(e.clientsNamed(op, "Acme")); n != 2 {
		t.Fatalf("%d clients named Acme, want 2", n)
	}

	// A rotation retried: one rotation, the same new secret.
	rot := op.call("POST", "/admin/v1/clients/"+id+"/rotate-secret", map[string]any{"grace": "1h"}, "Idempotency-Key", "rotate-1").want(t, 200)
	rot2 := op.call("POST", "/admin/v1/clients/"+id+"/rotate-secret", map[string]any{"grace": "1h"}, "Idempotency-Key", "rotate-1").want(t, 200)
	newSecret := rot.str("client_secret")
	if !bytes.Equal(rot.body, rot2.body) || rot2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("rotation retry: %s / %s", rot.body, rot2.body)
	}
	eventually(t, "the rotated secret works", func() bool { return e.tokenWorks(id, newSecret) })
	if !e.tokenWorks(id, secret) {
		t.Fatal("the secret before the one rotation stopped: the rotation ran twice")
	}
	evs := op.call("GET", "/admin/v1/audit-events?client_id="+id, nil).want(t, 200).obj["events"].([]any)
	rotations := 0
	for _, ev := range evs {
		if ev.(map[string]any)["action"] == "client.rotate_secret" {
			rotations++
		}
	}
	if rotations != 1 {
		t.Fatalf("%d rotations recorded, want 1", rotations)
	}
	// Signing-key rotation, user and account creation and imports honour
	// keys too.
	k1 := op.call("POST", "/admin/v1/signing-keys/rotate", nil, "Idempotency-Key", "key-1").want(t, 200)
	k2 := op.call("POST", "/admin/v1/signing-keys/rotate", nil, "Idempotency-Key", "key-1").want(t, 200)
	if k1.str("kid") != k2.str("kid") || len(op.call("GET", "/admin/v1/signing-keys", nil).want(t, 200).obj["keys"].([]any)) != 2 {
		t.Fatalf("a retried key rotation: %s / %s", k1.body, k2.body)
	}
	for _, c := range []struct {
		path string
		body any
	}{
		{"/admin/v1/users", map[string]any{"username": "alice", "password": "alice's password"}},
		{"/admin/v1/accounts", map[string]any{"email": "m@example.com", "password": "a merchant password"}},
		{"/admin/v1/client-imports", []map[string]any{{"client_id": "imp-1", "name": "imp", "grants": []string{"client_credentials"}}}},
	} {
		a := op.call("POST", c.path, c.body, "Idempotency-Key", "k"+c.path)
		b := op.call("POST", c.path, c.body, "Idempotency-Key", "k"+c.path)
		if a.status/100 != 2 || !bytes.Equal(a.body, b.body) || b.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s retried: %d %s / %d %s", c.path, a.status, a.body, b.status, b.body)
		}
	}

	// A failed request is not kept: the same key then runs a corrected
	// request.
	op.call("POST", "/admin/v1/clients", map[string]any{"name": "Broken"}, "Idempotency-Key", "fix-me").wantProblem(t, 400, "invalid", "grants")
	op.call("POST", "/admin/v1/clients", map[string]any{"name": "Fixed", "grants": []string{"client_credentials"}},
		"Idempotency-Key", "fix-me").want(t, 201)

	// At rest, no kept response shows a secret, and each is sealed under
	// the KEK; nor does the store keep the keys themselves.
	stored := e.storedResponses()
	if len(stored) < 8 {
		t.Fatalf("%d responses kept", len(stored))
	}
	for k, v := range stored {
		if !kek.IsSealed(v) || bytes.Contains(v, []byte(secret)) || bytes.Contains(v, []byte(newSecret)) || strings.Contains(k, "create-acme") {
			t.Fatalf("the kept response %s is not sealed, or its key is in clear", k)
		}
	}

	// Concurrent retries: one runs, the others wait (409) or get its
	// response; one client.
	race := map[string]any{"name": "Raced", "grants": []string{"client_credentials"}}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
		ids   = map[string]bool{}
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := op.call("POST", "/admin/v1/clients", race, "Idempotency-Key", "race-1")
			mu.Lock()
			defer mu.Unlock()
			codes[r.status]++
			switch r.status {
			case 201:
				ids[r.obj["client"].(map[string]any)["client_id"].(string)] = true
			case 409:
				if r.header.Get("Retry-After") == "" || r.obj["code"] != "idempotency_in_progress" {
					t.Errorf("409 without Retry-After or code: %s", r.body)
				}
			default:
				t.Errorf("a concurrent retry: %d %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if len(ids) != 1 || codes[201]+codes[409] != 8 || len(e.clientsNamed(op, "Raced")) != 1 {
		t.Fatalf("concurrent retries: statuses %v, clients %v", codes, ids)
	}

	// A day later the key is free again: it runs anew.
	clk.Advance(25 * time.Hour)
	op, _ = e.operator("ops-tomorrow") // yesterday's token has expired
	op3 := op.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", "create-acme-1").want(t, 201)
	if op3.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a response was replayed after a day")
	}
}

// TestAdminAPIIdempotencyAcrossNodes: a create sent to one node and
// retried on another (two nodes, one PostgreSQL) is done once; the kept
// response is sealed in the database.
func TestAdminAPIIdempotencyAcrossNodes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	a := start(t, withPostgres(dsn, withAdminAPI()))
	b := start(t, withPostgres(dsn, withAdminAPI()))
	opA, _ := a.operator("ops")
	opB := &apiClient{e: b, token: opA.token}
	b.remember(opA.token)
	spec := map[string]any{"name": "Across", "grants": []string{"client_credentials"}}
	r1 := opA.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", "across-1").want(t, 201)
	r2 := opB.call("POST", "/admin/v1/clients", spec, "Idempotency-Key", "across-1").want(t, 201)
	if !bytes.Equal(r1.body, r2.body) || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("node B answered the retry itself:\n%s\n%s", r1.body, r2.body)
	}
	if n := len(b.clientsNamed(opB, "Across")); n != 1 {
		t.Fatalf("%d clients after a retry on another node", n)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var resp []byte
	if err := conn.QueryRow(t.Context(), `SELECT response FROM idempotency`).Scan(&resp); err != nil {
		t.Fatal(err)
	}
	if !kek.IsSealed(resp) || bytes.Contains(resp, []byte(r1.str("client_secret"))) {
		t.Fatal("the kept response is not sealed in PostgreSQL")
	}
}

// An idempotent request is kept with its fingerprint (a hash of its
// method, path, query and body) for a day. The body of POST
// /admin/v1/accounts holds the new account's password (that of /users a
// user's, that of /client-imports merchants' client secrets): an unkeyed
// hash there would let anyone with a copy of the database, without the
// KEK, test password guesses at SHA-256 speed where the account's own
// hash is argon2id. The fingerprint is keyed with a key derived from the
// pepper, which the database keeps only sealed.
func TestAdminAPIIdempotencyFingerprintKeepsNoPasswordHash(t *testing.T) {
	e := start(t, withAdminAPI())
	op, _ := e.operator("ops")
	const weak = "Summer2025!"
	e.remember(weak)
	body := map[string]any{"email": "finance@merchant.example", "password": weak, "role": "merchant"}
	op.call("POST", "/admin/v1/accounts", body, "Idempotency-Key", "acct-1").want(t, 201)

	// A copy of the database, read without the KEK.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, sqlite.FileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var fps [][]byte
	rows, err := db.Query(`SELECT fingerprint FROM idempotency`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var fp []byte
		if err := rows.Scan(&fp); err != nil {
			t.Fatal(err)
		}
		fps = append(fps, fp)
	}
	rows.Close()
	if len(fps) == 0 {
		t.Fatal("no idempotency record was kept")
	}
	var email string
	if err := db.QueryRow(`SELECT email FROM accounts`).Scan(&email); err != nil {
		t.Fatal(err)
	}
	fingerprint := func(method, path, query, body string) []byte {
		h := sha256.New()
		for _, s := range []string{method, path, query, body} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		return h.Sum(nil)
	}
	for _, guess := range []string{"password", "123456", "Winter2024!", "Spring2025!", "Summer2025!", "Autumn2025!"} {
		b, _ := json.Marshal(map[string]any{"email": email, "password": guess, "role": "merchant"})
		for _, fp := range [][]byte{fingerprint("POST", "/admin/v1/accounts", "", string(b)), sha256Of(b)} {
			for _, stored := range fps {
				if bytes.Equal(stored, fp) {
					t.Errorf("the account's password %q was recovered from the idempotency table by unkeyed SHA-256 guesses", guess)
				}
			}
		}
	}
	// A retry is still recognised: the fingerprint's key does not change.
	if r := op.call("POST", "/admin/v1/accounts", body, "Idempotency-Key", "acct-1").want(t, 201); r.header.Get("Idempotent-Replayed") != "true" {
		t.Error("the retry was not replayed")
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
