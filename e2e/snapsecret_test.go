package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cli"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/oauth"
)

// TestSNAPIdenticalConcurrentRequests: the instances of one merchant ask
// for a token at once, in the same X-TIMESTAMP, so with byte-identical
// signatures. Without replay_protection each gets its own valid token;
// with it, one does and the others are refused as replays.
func TestSNAPIdenticalConcurrentRequests(t *testing.T) {
	e := start(t, snapEndpoints)
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, _ := e.createClient("--name", "several instances", "--grant", "client_credentials", "--snap-public-key", pub)
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	body := `{"grantType":"client_credentials","additionalInfo":{}}`
	const n = 5
	burst := func(path string) []*response {
		ts := snap.Timestamp(time.Now()) // to the second, as SDKs format it
		sig, err := snap.Sign(key, id, ts)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]*response, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				out[i] = e.snapRequest(path, id, ts, sig, body)
			})
		}
		close(start)
		wg.Wait()
		return out
	}

	var tokens []string
	for i, r := range burst("/nicepay/v1.0/access-token/b2b") {
		if r.status != 200 || r.str("responseCode") != "2007300" {
			t.Fatalf("request %d without replay_protection: %d %s", i, r.status, r.body)
		}
		tok := r.str("accessToken")
		if slices.Contains(tokens, tok) {
			t.Fatalf("request %d got a token another request got", i)
		}
		tokens = append(tokens, tok)
	}
	for i, tok := range tokens {
		if in := e.introspect(tok, rsID, rsSecret); in.json["active"] != true || in.str("client_id") != id {
			t.Errorf("token %d: %s", i, in.body)
		}
	}

	ok, replayed := 0, 0
	for i, r := range burst("/v1.0/access-token/b2b") {
		switch {
		case r.status == 200:
			ok++
		case r.status == 401 && r.str("responseCode") == "4017300" && r.str("responseMessage") == "Unauthorized. [Replayed request]":
			replayed++
		default:
			t.Errorf("request %d with replay_protection: %d %s", i, r.status, r.body)
		}
	}
	if ok != 1 || replayed != n-1 {
		t.Errorf("with replay_protection: %d succeeded and %d were refused as replays, want 1 and %d", ok, replayed, n-1)
	}
}

// storedClientSecrets returns every sealed client secret in the database
// file, by its name (oauth.ClientSecretSecret), and every secrets column.
func storedClientSecrets(t *testing.T, dir string) (sealed map[string][]byte, columns []string) {
	t.Helper()
	rows, err := openDB(t, dir).Query(`SELECT id, secrets FROM clients`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sealed = map[string][]byte{}
	for rows.Next() {
		var id, col string
		if err := rows.Scan(&id, &col); err != nil {
			t.Fatal(err)
		}
		columns = append(columns, col)
		var l []struct {
			Hash   []byte `json:"hash"`
			Sealed []byte `json:"sealed"`
		}
		if err := json.Unmarshal([]byte(col), &l); err != nil {
			t.Fatal(err)
		}
		for _, s := range l {
			if len(s.Sealed) > 0 {
				sealed[oauth.ClientSecretSecret(id, s.Hash)] = s.Sealed
			}
		}
	}
	return sealed, columns
}

// TestSNAPRecoverableSecrets: a client registered through the CLI for
// symmetric SNAP service signatures has the secret printed at its
// creation recoverable by the engine (what a service-call verifier
// uses), and never in clear at rest; a rotation with grace keeps both
// secrets recoverable; an existing client switched to symmetric is told
// to rotate; kek rotate re-seals the secrets under the new KEK, and they
// stay recoverable.
func TestSNAPRecoverableSecrets(t *testing.T) {
	dir, keys := t.TempDir(), t.TempDir()
	oldFile, newFile := filepath.Join(keys, "old.hex"), filepath.Join(keys, "new.hex")
	for _, f := range []string{oldFile, newFile} {
		var out, errb bytes.Buffer
		if code := cli.Run([]string{"kek", "generate", f}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}, nil); code != 0 {
			t.Fatalf("kek generate: %s", errb.String())
		}
	}
	e := startIn(t, dir, func(c *config.Config) { c.Secrets.KEKFile = oldFile })
	ctx := t.Context()

	id, first := e.createClient("--name", "symmetric merchant", "--grant", "client_credentials",
		"--snap-service-signature", "symmetric", "--partner-id", "NICEPAY-01")
	// recovered reads the client's service secrets through the engine of
	// the running server, once it has seen the latest change.
	recovered := func(e *env, want ...string) {
		t.Helper()
		var got []string
		eventually(t, "the server sees the client's secrets", func() bool {
			cl, err := e.node.Engine.ClientByPartnerID(ctx, "NICEPAY-01")
			if err != nil {
				t.Fatalf("ClientByPartnerID: %v", err)
			}
			got = got[:0]
			for _, s := range cl.ServiceSecrets(time.Now()) {
				got = append(got, string(s))
			}
			return slices.Equal(got, want)
		})
		byPartner, err := e.node.Engine.ClientByPartnerID(ctx, "NICEPAY-01")
		if err != nil || byPartner.ID != id {
			t.Fatalf("ClientByPartnerID(NICEPAY-01) = %v, %v", byPartner, err)
		}
	}
	recovered(e, first)
	// The hash still authenticates the client as before.
	cc := url.Values{"grant_type": {"client_credentials"}}
	e.token(cc, id, first)

	show := e.mustRun("", "client", "show", id)
	for _, want := range []string{"symmetric", "NICEPAY-01", "current (recoverable: yes)"} {
		if !strings.Contains(show, want) {
			t.Errorf("client show lacks %q:\n%s", want, show)
		}
	}
	var view struct {
		Signature string `json:"snap_service_signature"`
		PartnerID string `json:"partner_id"`
		Secrets   []struct {
			State       string `json:"state"`
			Recoverable bool   `json:"recoverable"`
		} `json:"secrets"`
		Notes []string `json:"notes"`
	}
	out := e.mustRun("", "client", "show", "--json", id)
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatal(err)
	}
	if view.Signature != "symmetric" || view.PartnerID != "NICEPAY-01" || len(view.Secrets) != 1 ||
		view.Secrets[0].State != "current" || !view.Secrets[0].Recoverable || len(view.Notes) != 0 {
		t.Errorf("client show --json: %s", out)
	}
	for _, o := range []string{show, out, e.mustRun("", "client", "list", "--json")} {
		if strings.Contains(o, first) || strings.Contains(o, base64.StdEncoding.EncodeToString([]byte(first))) {
			t.Fatal("the CLI shows a recoverable secret")
		}
	}

	// Rotation with grace: both recoverable, aligned with their hashes.
	var rotated map[string]string
	if err := json.Unmarshal([]byte(e.mustRun("", "client", "rotate-secret", "--grace", "1h", "--json", id)), &rotated); err != nil {
		t.Fatal(err)
	}
	second := rotated["client_secret"]
	e.remember(second)
	recovered(e, second, first)
	for _, sec := range []string{first, second} {
		e.token(cc, id, sec)
	}
	if show := e.mustRun("", "client", "show", id); strings.Count(show, "(recoverable: yes)") != 2 {
		t.Errorf("client show after rotate-secret --grace:\n%s", show)
	}

	// An existing client switched to symmetric has a secret known only by
	// its hash: the operator is told to rotate it.
	other, _ := e.createClient("--name", "was plain", "--grant", "client_credentials")
	_, errOut, code := e.run("", "client", "update", other, "--snap-service-signature", "both")
	if code == 0 || !strings.Contains(errOut, "public key") {
		t.Errorf("asymmetric without a SNAP public key: exit %d, %q", code, errOut)
	}
	_, errOut, code = e.run("", "client", "update", other, "--partner-id", "NICEPAY-01")
	if code == 0 || !strings.Contains(errOut, "--partner-id: NICEPAY-01 is already") {
		t.Errorf("a taken partner ID: exit %d, %q", code, errOut)
	}
	_, errOut, code = e.run("", "client", "update", other, "--partner-id", strings.Repeat("P", 37))
	if code == 0 || !strings.Contains(errOut, "--partner-id: must be 1 to 36") {
		t.Errorf("a partner ID too long: exit %d, %q", code, errOut)
	}
	e.mustRun("", "client", "update", other, "--snap-service-signature", "none")
	out = e.mustRun("", "client", "update", other, "--snap-service-signature", "symmetric")
	const note = "the secret of this client is not recoverable; run client rotate-secret to give it one the SNAP signatures can use"
	if !strings.Contains(out, note) || !strings.Contains(out, "current (recoverable: no)") {
		t.Errorf("enabling symmetric on a client with an unrecoverable secret:\n%s", out)
	}
	if show := e.mustRun("", "client", "show", other); !strings.Contains(show, note) {
		t.Errorf("client show of a client with an unrecoverable secret:\n%s", show)
	}
	if err := json.Unmarshal([]byte(e.mustRun("", "client", "rotate-secret", "--json", other)), &rotated); err != nil {
		t.Fatal(err)
	}
	otherSecret := rotated["client_secret"]
	e.remember(otherSecret)
	if show := e.mustRun("", "client", "show", other); strings.Contains(show, note) || !strings.Contains(show, "current (recoverable: yes)") {
		t.Errorf("client show after rotate-secret:\n%s", show)
	}

	// At rest: sealed, bound to client and hash, nothing in clear.
	sealed, columns := storedClientSecrets(t, dir)
	if len(sealed) != 3 {
		t.Fatalf("%d sealed client secrets stored, want 3 (two of the first client, one of the other)", len(sealed))
	}
	for _, col := range columns {
		for _, sec := range []string{first, second, otherSecret} {
			if strings.Contains(col, sec) || strings.Contains(col, base64.StdEncoding.EncodeToString([]byte(sec))) {
				t.Fatal("a client secret is stored in clear")
			}
		}
	}
	opens := func(k []byte) int {
		ring, err := kek.New(k)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for name, v := range sealed {
			if _, err := ring.Open(name, v); err == nil {
				n++
			}
		}
		return n
	}
	if n := opens(mustReadKEK(t, oldFile)); n != 3 {
		t.Fatalf("%d of 3 client secrets open under the KEK in use", n)
	}
	e.stop()

	// kek rotate: the client secrets move to the new KEK with the rest.
	e = startIn(t, dir, func(c *config.Config) { c.Secrets.KEKFile, c.Secrets.OldKEKFiles = newFile, []string{oldFile} })
	recovered(e, second, first)
	var rep kek.RotateReport
	if err := json.Unmarshal([]byte(e.mustRun("", "kek", "rotate", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	// The pepper, the opaque-token key, the signing key and 3 client secrets.
	if rep.Values != 6 || rep.FromOld != 6 || len(rep.LeftClear) != 0 {
		t.Errorf("kek rotate report %+v", rep)
	}
	e.stop()
	e = startIn(t, dir, func(c *config.Config) { c.Secrets.KEKFile = newFile })
	recovered(e, second, first)
	e.token(cc, id, second)
	sealed, _ = storedClientSecrets(t, dir)
	if len(sealed) != 3 || opens(mustReadKEK(t, oldFile)) != 0 || opens(mustReadKEK(t, newFile)) != 3 {
		t.Errorf("after kek rotate: %d sealed, %d open under the old KEK, %d under the new",
			len(sealed), opens(mustReadKEK(t, oldFile)), opens(mustReadKEK(t, newFile)))
	}
}
