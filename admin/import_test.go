package admin_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

// importFile is an import file of the records, one object per few lines
// (json.MarshalIndent), so line numbers are meaningful.
func importFile(t *testing.T, recs ...any) string {
	t.Helper()
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) importString(t *testing.T, file string, opts admin.ImportOptions) (*admin.ImportReport, error) {
	t.Helper()
	return f.svc.ImportClients(f.ctx, strings.NewReader(file), opts)
}

func TestImport(t *testing.T) {
	f := newFixture(t)
	_, acc := f.merchant(t, "Merchant@example.com", merchantLimits)
	_, pub := rsaKey(t, 2048)
	recs := []any{
		map[string]any{"client_id": "legacy-001", "client_secret": "the-legacy-secret-of-merchant-one-0123456789", "name": "One",
			"grants": []string{"client_credentials"}, "scopes": []string{"payments", "refunds"}, "default_scopes": []string{"payments"},
			"access_ttl": "15m", "token_format": "jwt", "signing_alg": "ES256", "endpoints": []string{"/oauth/token"},
			"owner_account": "merchant@EXAMPLE.com"},
		map[string]any{"client_id": "snap-002", "client_secret": "the-legacy-secret-of-snap-two-0123456789", "name": "Two",
			"grants": []string{"client_credentials"}, "access_ttl": 900, "snap_public_key": pub, "snap_service_signature": "both",
			"partner_id": "NICEPAY-02", "auth_methods": []string{"snap_signature", "client_secret_basic"}},
		map[string]any{"client_id": "keyonly-003", "name": "Three", "grants": []string{"client_credentials"}, "snap_public_key": pub, "disabled": true},
		map[string]any{"client_id": "short-004", "client_secret": "shortpw1", "name": "Four", "grants": []string{"client_credentials"}},
	}
	file := importFile(t, recs...)

	// A dry run changes nothing.
	rep, err := f.importString(t, file, admin.ImportOptions{DryRun: true})
	if err != nil || len(rep.Created) != 4 || !rep.DryRun {
		t.Fatalf("dry run: %+v, %v", rep, err)
	}
	if p, _ := f.svc.ListClients(f.ctx, admin.ClientQuery{}); len(p.Clients) != 0 {
		t.Fatal("a dry run created clients")
	}

	rep, err = f.importString(t, file, admin.ImportOptions{})
	if err != nil || strings.Join(rep.Created, " ") != "legacy-001 snap-002 keyonly-003 short-004" || len(rep.Unchanged) != 0 {
		t.Fatalf("import: %+v, %v", rep, err)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "short-004 has a short secret") {
		t.Errorf("notes: %q", rep.Notes)
	}
	// The merchants keep their credentials.
	if !f.authenticates(t, "legacy-001", "the-legacy-secret-of-merchant-one-0123456789") ||
		!f.authenticates(t, "snap-002", "the-legacy-secret-of-snap-two-0123456789") || !f.authenticates(t, "short-004", "shortpw1") {
		t.Fatal("an imported secret does not authenticate")
	}
	one := f.stored(t, "legacy-001")
	if one.OwnerAccount != acc.ID || one.AccessTTL.String() != "15m0s" || one.TokenFormat != oauth.FormatJWT || one.Secrets[0].Plain != nil {
		t.Fatalf("legacy-001: %+v", one)
	}
	two := f.stored(t, "snap-002")
	if string(two.Secrets[0].Plain) != "the-legacy-secret-of-snap-two-0123456789" || two.PartnerID != "NICEPAY-02" || two.AccessTTL.Seconds() != 900 {
		t.Fatalf("snap-002: the recoverable secret or settings: %+v", two)
	}
	if three := f.stored(t, "keyonly-003"); len(three.Secrets) != 0 || !three.Disabled || three.PublicKeyPEM != pub {
		t.Fatalf("keyonly-003: %+v", three)
	}
	var imported int
	for _, e := range f.events(t) {
		if e.Action == "client.import" {
			imported++
			if bytes.Contains(e.After, []byte("legacy-secret")) {
				t.Fatal("an imported secret is in the audit trail")
			}
		}
	}
	if imported != 4 {
		t.Errorf("%d client.import events, want 4", imported)
	}

	// Again: nothing changes, and the report says so.
	n := len(f.events(t))
	rep, err = f.importString(t, file, admin.ImportOptions{})
	if err != nil || len(rep.Created) != 0 || len(rep.Unchanged) != 4 {
		t.Fatalf("importing the same file again: %+v, %v", rep, err)
	}
	if len(f.events(t)) != n {
		t.Fatal("an import that changed nothing left audit events")
	}

	// The export is the same format without secrets, and importing it
	// changes nothing either.
	exp, err := f.svc.ExportClients(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(exp)
	if bytes.Contains(b, []byte(`"client_secret":`)) || bytes.Contains(b, []byte("legacy-secret")) {
		t.Fatalf("the export holds a secret: %s", b)
	}
	if rep, err := f.importString(t, string(b), admin.ImportOptions{}); err != nil || len(rep.Unchanged) != 4 || len(rep.Created) != 0 {
		t.Fatalf("importing the export: %+v, %v", rep, err)
	}
	if ev := f.lastEvent(t); ev.Action != "client.export" {
		t.Fatalf("the export was not audited: %+v", ev)
	}
	// Into a fresh store, the export registers the same clients.
	g := newFixture(t)
	g.merchant(t, "merchant@example.com", merchantLimits)
	fixed := strings.ReplaceAll(string(b), acc.ID, "merchant@example.com") // accounts have new IDs there
	if rep, err := g.importString(t, fixed, admin.ImportOptions{}); err != nil || len(rep.Created) != 4 {
		t.Fatalf("the export into a fresh store: %+v, %v", rep, err)
	}
	for _, id := range []string{"legacy-001", "snap-002", "keyonly-003"} {
		a, b := admin.NewClientView(f.stored(t, id)), admin.NewClientView(g.stored(t, id))
		// Times, owners' IDs and secrets differ by design.
		for _, v := range []*admin.ClientView{a, b} {
			v.CreatedAt, v.UpdatedAt, v.OwnerAccount, v.Secrets, v.Notes = time.Time{}, time.Time{}, "", nil, nil
		}
		if ja, jb := jsonString(t, a), jsonString(t, b); ja != jb {
			t.Errorf("%s differs after export and import:\n%s\n%s", id, ja, jb)
		}
	}
}

// TestImportRefusesAndAppliesNothing: any bad record, reported by
// position and line, and nothing of the file is applied.
func TestImportRefusesAndAppliesNothing(t *testing.T) {
	f := newFixture(t)
	good := func(id string) map[string]any {
		return map[string]any{"client_id": id, "client_secret": "a-good-long-secret-for-" + id + "-0123456789", "name": id, "grants": []string{"client_credentials"}}
	}
	with := func(id string, k string, v any) map[string]any {
		r := good(id)
		r[k] = v
		return r
	}
	// One already registered, differently.
	if rep, err := f.importString(t, importFile(t, good("existing")), admin.ImportOptions{}); err != nil || len(rep.Created) != 1 {
		t.Fatal(rep, err)
	}
	for name, c := range map[string]struct {
		recs  []any
		field string
		pos   int
		want  string
	}{
		"an unknown grant":        {[]any{good("a"), with("b", "grants", []string{"implicit"}), good("c")}, "grants", 2, "unknown grant"},
		"an unknown field":        {[]any{good("a"), with("b", "colour", "blue")}, "colour", 2, "unknown field"},
		"a wrong type":            {[]any{with("a", "scopes", "payments")}, "scopes", 1, "wrong type"},
		"a bad duration":          {[]any{good("a"), good("b"), with("c", "access_ttl", "soon")}, "access_ttl", 3, "not a duration"},
		"a bad SNAP key":          {[]any{with("a", "snap_public_key", "not a key")}, "snap_public_key", 1, "PEM"},
		"a short secret":          {[]any{with("a", "client_secret", "short")}, "client_secret", 1, "8 to 1024"},
		"a bad client ID":         {[]any{with("a", "client_id", "has:colon")}, "client_id", 1, "without ':'"},
		"a client ID of ..":       {[]any{good("a"), with("b", "client_id", "..")}, "client_id", 2, `must not be ".."`},
		"a client ID of .":        {[]any{with("a", "client_id", ".")}, "client_id", 1, `must not be "."`},
		"an unknown owner":        {[]any{with("a", "owner_account", "nobody@example.com")}, "owner_account", 1, "no account"},
		"an ID twice":             {[]any{good("a"), good("b"), good("a")}, "client_id", 3, "of record 1 too"},
		"a differing client":      {[]any{good("a"), with("existing", "scopes", []string{"more"})}, "", 2, "differs from the registered client in scopes"},
		"a different secret":      {[]any{with("existing", "client_secret", "another-long-secret-0123456789")}, "", 1, "client_secret"},
		"a partner ID of another": {[]any{with("a", "partner_id", "existing")}, "partner_id", 1, "already the client ID or partner ID of client existing"},
	} {
		file := importFile(t, c.recs...)
		_, err := f.importString(t, file, admin.ImportOptions{})
		var ie *admin.ImportError
		if !errors.As(err, &ie) || ie.Record != c.pos || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// The line is where the record starts in the file.
		if lines := strings.Split(file, "\n"); ie.Line < 1 || ie.Line > len(lines) || strings.TrimSpace(lines[ie.Line-1]) != "{" {
			t.Errorf("%s: line %d is not the start of a record", name, ie.Line)
		}
		var ve *admin.ValidationError
		var ce *admin.ConflictError
		if c.field != "" && !(errors.As(err, &ve) && ve.Field == c.field || errors.As(err, &ce) && ce.Field == c.field) {
			t.Errorf("%s: field of %v, want %s", name, err, c.field)
		}
		if p, _ := f.svc.ListClients(f.ctx, admin.ClientQuery{}); len(p.Clients) != 1 {
			t.Fatalf("%s: a refused import created clients", name)
		}
	}
	// Several bad records: each reported.
	_, err := f.importString(t, importFile(t, with("a", "grants", []string{"x"}), good("b"), with("c", "name", "")), admin.ImportOptions{})
	var bad admin.ImportErrors
	if !errors.As(err, &bad) || len(bad) != 2 || bad[0].Record != 1 || bad[1].Record != 3 || admin.ErrorCode(err) != admin.CodeInvalid {
		t.Fatalf("two bad records: %v", err)
	}
	// Not an array, broken JSON.
	for name, file := range map[string]string{
		"an object":      `{"client_id": "a"}`,
		"broken JSON":    "[\n  {\"client_id\": \"a\",\n  \"name\": }\n]",
		"a string":       `["a"]`,
		"trailing data":  `[] []`,
		"unclosed array": `[{"client_id":"a","name":"a","grants":["client_credentials"]}`,
	} {
		if _, err := f.importString(t, file, admin.ImportOptions{}); admin.ErrorCode(err) != admin.CodeInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err = f.importString(t, "[\n  {\"client_id\": \"a\",\n  \"name\": }\n]", admin.ImportOptions{})
	if !strings.Contains(err.Error(), "line 3") {
		t.Errorf("broken JSON names its line: %v", err)
	}
}

// FuzzParseImport: any input parses or is refused with ImportErrors,
// never a panic; what parses encodes back to records that parse again.
func FuzzParseImport(f *testing.F) {
	f.Add(`[{"client_id":"a","name":"a","grants":["client_credentials"],"access_ttl":"15m"}]`)
	f.Add(`[{"client_id":"a","access_ttl":900.5,"disabled":true}]`)
	f.Add(`[{"client_id":"a","colour":"blue"}]`)
	f.Add("[\n{\"client_id\":\n")
	f.Add(`[1, "x", null, {}]`)
	f.Add(`{"a":1}`)
	f.Add(`[{"access_ttl":"-1e99h"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		recs, err := admin.ParseImport(strings.NewReader(in))
		if err != nil {
			var bad admin.ImportErrors
			if !errors.As(err, &bad) || len(bad) == 0 || admin.ErrorCode(err) != admin.CodeInvalid {
				t.Fatalf("ParseImport(%q): an error that is not ImportErrors: %v", in, err)
			}
			return
		}
		b, err := json.Marshal(recs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := admin.ParseImport(bytes.NewReader(b))
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-parsing %s: %d records, %v", b, len(again), err)
		}
	})
}

func TestImportLargeFileLines(t *testing.T) {
	f := newFixture(t)
	var b strings.Builder
	b.WriteString("[\n")
	for i := range 200 {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"client_id": "c-%03d", "name": "c %d", "grants": ["client_credentials"]}`, i, i)
	}
	b.WriteString(",\n{\"client_id\": \"bad\", \"name\": \"x\", \"grants\": []}\n]\n")
	_, err := f.importString(t, b.String(), admin.ImportOptions{})
	var ie *admin.ImportError
	if !errors.As(err, &ie) || ie.Record != 201 || ie.Line != 202 || ie.ClientID != "bad" {
		t.Fatalf("the bad 201st record: %v", err)
	}
	rep, err := f.importString(t, strings.Replace(b.String(), `"grants": []`, `"grants": ["client_credentials"]`, 1), admin.ImportOptions{})
	if err != nil || len(rep.Created) != 201 || !slices.Contains(rep.Created, "bad") {
		t.Fatalf("201 clients: %v", err)
	}
}

// A deleted client's tokens stay dead when its ID is registered again
// (an import restoring a client export, or the ID given to another
// merchant): the new client honours no token issued before it existed —
// opaque and JWT access tokens (introspection, and verifiers through
// engine.AccessToken) and refresh tokens alike.
func TestDeletedClientsTokensStayDeadWhenItsIDComesBack(t *testing.T) {
	f := newFixture(t)
	_, accB := f.merchant(t, "b@example.com", merchantLimits)
	const oldSecret, newSecret = "the merchant's legacy secret, long enough", "merchant B's own new secret, long enough"
	rec := func(id, sec, format, owner string) string {
		r := map[string]any{"client_id": id, "client_secret": sec, "name": id, "token_format": format,
			"grants": []string{"client_credentials", "refresh_token"}, "refresh_with_client_credentials": true, "scopes": []string{"payments"}}
		if owner != "" {
			r["owner_account"] = owner
		}
		return importFile(t, r)
	}
	type issued struct{ access, refresh string }
	tokens := map[string]issued{}
	for _, c := range []struct{ id, format string }{{"legacy-001", "opaque"}, {"legacy-jwt", "jwt"}} {
		if _, err := f.importString(t, rec(c.id, oldSecret, c.format, ""), admin.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := f.eng.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		res, e := f.eng.Token(t.Context(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials,
			Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: c.id, Secret: oldSecret}})
		if e != nil || res.RefreshToken == "" {
			t.Fatalf("%s: %+v, %v", c.id, res, e)
		}
		tokens[c.id] = issued{res.AccessToken, res.RefreshToken}
		if err := f.svc.DeleteClient(f.ctx, c.id); err != nil {
			t.Fatal(err)
		}
	}
	// Later, the IDs are registered again, now for merchant B, with a new
	// secret.
	f.clk.Advance(time.Minute)
	for id := range tokens {
		format := "opaque"
		if id == "legacy-jwt" {
			format = "jwt"
		}
		if _, err := f.importString(t, rec(id, newSecret, format, accB.ID), admin.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.eng.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for id, tok := range tokens {
		for kind, value := range map[string]string{"access": tok.access, "refresh": tok.refresh} {
			if in, err := f.svc.IntrospectToken(f.ctx, value); err != nil || in.Active {
				t.Errorf("%s: the deleted client's %s token is active for the new client of its ID: %+v, %v", id, kind, in, err)
			}
		}
		if at, cl, err := f.eng.AccessToken(t.Context(), tok.access); at != nil || err != nil {
			t.Errorf("%s: verifiers honour the deleted client's access token as one of %+v (%v)", id, cl, err)
		}
		_, e := f.eng.Token(t.Context(), &oauth.TokenRequest{GrantType: oauth.GrantRefreshToken, RefreshToken: tok.refresh,
			Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: id, Secret: newSecret}})
		if e == nil {
			t.Errorf("%s: the deleted client's refresh token was exchanged by the new client of its ID", id)
		}
		// The new client's own tokens work.
		res, e := f.eng.Token(t.Context(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials,
			Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: id, Secret: newSecret}})
		if e != nil {
			t.Fatalf("%s: the new client gets no token: %v", id, e)
		}
		if at, _, err := f.eng.AccessToken(t.Context(), res.AccessToken); at == nil || err != nil {
			t.Errorf("%s: the new client's own token is refused (%v)", id, err)
		}
	}
	// The cut at creation is not shown as a revocation.
	if v, err := f.svc.GetClient(f.ctx, "legacy-001"); err != nil || v.TokensNotBefore != nil {
		t.Errorf("the new client's view: %+v, %v", v, err)
	}
}

// A client's first tokens are honoured even when issued in the very
// millisecond the client was created: a JWT's issue time is known to the
// millisecond only (its jti), and the creation's cut must not fall after
// it.
func TestNewClientsFirstTokensHonouredWithinItsCreationMillisecond(t *testing.T) {
	for _, format := range []string{"jwt", "opaque"} {
		t.Run(format, func(t *testing.T) {
			f := newFixture(t)
			f.clk.Advance(500 * time.Microsecond)
			s := spec("fast")
			s.TokenFormat = format
			v, sec := f.create(t, f.ctx, s)
			if v.TokensNotBefore != nil {
				t.Errorf("a new client's view shows a revocation: %v", v.TokensNotBefore)
			}
			if c := f.stored(t, v.ClientID); c.TokensNotBefore.IsZero() || !c.TokensNotBefore.Before(c.CreatedAt) {
				t.Errorf("stored TokensNotBefore %v, created %v", c.TokensNotBefore, c.CreatedAt)
			}
			f.clk.Advance(200 * time.Microsecond)
			if err := f.eng.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			res, e := f.eng.Token(t.Context(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials,
				Credentials: oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: v.ClientID, Secret: sec}})
			if e != nil {
				t.Fatal(e)
			}
			if at, _, err := f.eng.AccessToken(t.Context(), res.AccessToken); at == nil || err != nil {
				t.Errorf("a token issued 0.2 ms after its client's creation is refused (%v)", err)
			}
			// A revocation at this instant is shown.
			if _, err := f.svc.RevokeClientTokens(f.ctx, v.ClientID); err != nil {
				t.Fatal(err)
			}
			if got, _ := f.svc.GetClient(f.ctx, v.ClientID); got.TokensNotBefore == nil {
				t.Error("a revocation does not show in the view")
			}
		})
	}
}
