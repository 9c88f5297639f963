package admin_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

func valid() *oauth.Client {
	return &oauth.Client{Name: "acme", Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"a", "b"}, DefaultScopes: []string{"a"}}
}

func TestValidate(t *testing.T) {
	if err := admin.Validate(valid()); err != nil {
		t.Fatalf("valid client: %v", err)
	}
	for _, c := range []struct {
		field, msg string
		change     func(*oauth.Client)
	}{
		{"name", "needs a name", func(c *oauth.Client) { c.Name = " " }},
		{"name", "control characters", func(c *oauth.Client) { c.Name = "a\x00b" }},
		{"grants", "at least one grant", func(c *oauth.Client) { c.Grants = nil }},
		{"grants", "unknown grant", func(c *oauth.Client) { c.Grants = []string{"implicit"} }},
		{"scopes", "invalid scope", func(c *oauth.Client) { c.Scopes = []string{`bad"scope`} }},
		{"default_scopes", "not among", func(c *oauth.Client) { c.DefaultScopes = []string{"z"} }},
		{"access_ttl", "negative", func(c *oauth.Client) { c.AccessTTL = -time.Second }},
		{"access_ttl", "at least 1s", func(c *oauth.Client) { c.AccessTTL = time.Millisecond }},
		{"token_format", "unknown token format", func(c *oauth.Client) { c.TokenFormat = "paseto" }},
		{"signing_alg", "unknown signing algorithm", func(c *oauth.Client) { c.SigningAlg = "HS256" }},
		{"auth_methods", "unknown client authentication method", func(c *oauth.Client) { c.AuthMethods = []string{"private_key_jwt"} }},
		{"auth_methods", "needs a SNAP public key", func(c *oauth.Client) { c.AuthMethods = []string{oauth.AuthSNAPSignature} }},
		{"endpoints", "not a path", func(c *oauth.Client) { c.Endpoints = []string{"token"} }},
		{"snap_service_signature", `"hmac" is unknown`, func(c *oauth.Client) { c.SNAPServiceSignature = "hmac" }},
		{"snap_service_signature", "asymmetric needs a SNAP public key", func(c *oauth.Client) { c.SNAPServiceSignature = oauth.SNAPSignatureAsymmetric }},
		{"snap_service_signature", "both needs a SNAP public key", func(c *oauth.Client) { c.SNAPServiceSignature = oauth.SNAPSignatureBoth }},
		{"partner_id", "1 to 36", func(c *oauth.Client) { c.PartnerID = strings.Repeat("p", 37) }},
		{"partner_id", "printable ASCII", func(c *oauth.Client) { c.PartnerID = "café" }},
		{"refresh_with_client_credentials", "refresh_token grant", func(c *oauth.Client) { c.RefreshWithClientCredentials = true }},
	} {
		cl := valid()
		c.change(cl)
		err := admin.Validate(cl)
		var ve *admin.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field || !strings.Contains(ve.Message, c.msg) || !errors.Is(err, admin.ErrInvalid) {
			t.Errorf("%s (%s): got %v", c.field, c.msg, err)
		}
		// Fields, never CLI flags.
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%s: the message speaks of a flag: %v", c.field, err)
		}
	}
	for _, change := range []func(*oauth.Client){
		func(c *oauth.Client) { c.SNAPServiceSignature = oauth.SNAPSignatureSymmetric },
		func(c *oauth.Client) { c.SNAPServiceSignature, c.PublicKeyPEM = oauth.SNAPSignatureAsymmetric, "PEM" },
		func(c *oauth.Client) { c.PartnerID = strings.Repeat("P", 36) },
		func(c *oauth.Client) { c.PartnerID = "NICEPAY-01~!" },
	} {
		c := valid()
		change(c)
		if err := admin.Validate(c); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestValidUsername(t *testing.T) {
	for _, ok := range []string{"6982129990", "alice@example.com", "Budi Santoso"} {
		if err := admin.ValidUsername(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " alice", "alice ", "a\x00b", "a\nb", "a\tb", strings.Repeat("x", 256)} {
		if err := admin.ValidUsername(bad); admin.ErrorCode(err) != admin.CodeInvalid {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{nil, ""},
		{admin.ErrNotFound, admin.CodeNotFound},
		{&admin.ValidationError{Field: "scopes", Message: "x"}, admin.CodeInvalid},
		{&admin.ConflictError{Field: "email", Message: "x"}, admin.CodeConflict},
		{admin.ErrForbidden, admin.CodeForbidden},
		{admin.ErrUnauthenticated, admin.CodeUnauthenticated},
		{admin.ErrBadCredentials, admin.CodeBadCredentials},
		{admin.ErrTOTPRequired, admin.CodeTOTPRequired},
		{&admin.LockedError{RetryAfter: time.Second}, admin.CodeLocked},
		{admin.ErrUnavailable, admin.CodeUnavailable},
		{admin.ErrUnsupported, admin.CodeUnsupported},
		{errors.New("disk on fire: row 42 holds secret xyz"), admin.CodeInternal},
	} {
		wrapped := c.err
		if c.err != nil {
			wrapped = errors.Join(errors.New("context"), c.err)
		}
		if got := admin.ErrorCode(wrapped); got != c.code {
			t.Errorf("ErrorCode(%v) = %q, want %q", c.err, got, c.code)
		}
	}
	if m := admin.ErrorMessage(errors.New("row 42 holds secret xyz")); m != "internal error" {
		t.Errorf("ErrorMessage of an internal error = %q", m)
	}
	if m := admin.ErrorMessage(&admin.ValidationError{Field: "scopes", Message: "bad"}); m != "scopes: bad" {
		t.Errorf("ErrorMessage of a validation error = %q", m)
	}
}

// TestClientViewCarriesNoSecret: the view type has no field that could
// hold a secret or its hash, and the view of a client whose secrets are
// recoverable shows neither the secrets, their sealed forms nor their
// hashes.
func TestClientViewCarriesNoSecret(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[admin.ClientView](), reflect.TypeFor[admin.SecretView](),
		reflect.TypeFor[admin.AccountView](), reflect.TypeFor[admin.UserView](), reflect.TypeFor[admin.KeyView]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.ToLower(f.Name)
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Uint8 ||
				strings.Contains(name, "hash") || strings.Contains(name, "sealed") || strings.Contains(name, "private") ||
				strings.Contains(name, "password") || name == "secret" || name == "totpsecret" {
				t.Errorf("%s.%s could carry a secret", typ.Name(), f.Name)
			}
		}
	}
	c := &oauth.Client{ID: "c", Name: "n", Grants: []string{oauth.GrantClientCredentials}, SNAPServiceSignature: oauth.SNAPSignatureSymmetric,
		Secrets: []oauth.SecretHash{{Hash: []byte("the-hash-bytes"), Sealed: []byte("the-sealed-bytes"), Plain: []byte("the-plain-secret")}}}
	b, err := json.Marshal(admin.NewClientView(c))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"the-hash-bytes", "the-sealed-bytes", "the-plain-secret"} {
		if bytes.Contains(b, []byte(s)) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(s)))) {
			t.Errorf("the view shows %s: %s", s, b)
		}
	}
}

func TestClientLifecycle(t *testing.T) {
	f := newFixture(t)
	s := spec("acme")
	s.AccessTTL, s.DefaultScopes = admin.Duration(15*time.Minute), []string{"payments"}
	v, sec := f.create(t, f.ctx, s)
	if v.Name != "acme" || time.Duration(v.AccessTTL) != 15*time.Minute || !slices.Equal(v.AuthMethods, []string{oauth.AuthSecretBasic, oauth.AuthSecretPost}) ||
		len(v.Secrets) != 1 || v.Secrets[0].State != "current" || v.Secrets[0].Recoverable || v.SNAPServiceSignature != "none" || v.PartnerID != v.ClientID {
		t.Fatalf("created: %+v", v)
	}
	if !f.authenticates(t, v.ClientID, sec) {
		t.Fatal("the secret CreateClient returned does not authenticate")
	}
	ev := f.lastEvent(t)
	if ev.Action != "client.create" || ev.ObjectType != admin.ObjectClient || ev.ObjectID != v.ClientID || ev.ActorKind != "cli" ||
		ev.ActorID != "root@host" || ev.Before != nil || !bytes.Contains(ev.After, []byte(`"name":"acme"`)) {
		t.Fatalf("create event: %+v", ev)
	}
	got, err := f.svc.GetClient(f.ctx, v.ClientID)
	if err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("GetClient = %+v, %v; want %+v", got, err, v)
	}

	// PATCH semantics: only the fields given change.
	f.clk.Advance(time.Second)
	u, err := f.svc.UpdateClient(f.ctx, v.ClientID, admin.ClientPatch{Name: new("acme 2"), TokenFormat: new("jwt"), Endpoints: &[]string{"/oauth/token"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "acme 2" || u.TokenFormat != "jwt" || !slices.Equal(u.Endpoints, []string{"/oauth/token"}) ||
		!slices.Equal(u.Scopes, v.Scopes) || !slices.Equal(u.DefaultScopes, v.DefaultScopes) || u.AccessTTL != v.AccessTTL || !u.UpdatedAt.After(v.UpdatedAt) {
		t.Fatalf("after the patch: %+v", u)
	}
	ev = f.lastEvent(t)
	if ev.Action != "client.update" || !bytes.Contains(ev.Before, []byte(`"name":"acme"`)) || !bytes.Contains(ev.After, []byte(`"name":"acme 2"`)) {
		t.Fatalf("update event: before %s after %s", ev.Before, ev.After)
	}
	// Empty lists clear; "" clears text fields.
	u, err = f.svc.UpdateClient(f.ctx, v.ClientID, admin.ClientPatch{DefaultScopes: &[]string{}, Endpoints: &[]string{}, TokenFormat: new("")})
	if err != nil || len(u.DefaultScopes) != 0 || len(u.Endpoints) != 0 || u.TokenFormat != "" || u.Name != "acme 2" {
		t.Fatalf("clearing: %+v, %v", u, err)
	}
	// An invalid result is not stored, and leaves no event.
	n := len(f.events(t))
	_, err = f.svc.UpdateClient(f.ctx, v.ClientID, admin.ClientPatch{DefaultScopes: &[]string{"elsewhere"}})
	var ve *admin.ValidationError
	if !errors.As(err, &ve) || ve.Field != "default_scopes" {
		t.Fatalf("an invalid patch: %v", err)
	}
	if len(f.events(t)) != n {
		t.Fatal("a refused update left an audit event")
	}
	if c := f.stored(t, v.ClientID); len(c.DefaultScopes) != 0 {
		t.Fatal("a refused update was stored")
	}

	// Disable and enable revoke the client's tokens.
	d, err := f.svc.SetClientDisabled(f.ctx, v.ClientID, true)
	if err != nil || !d.Disabled || d.TokensNotBefore == nil {
		t.Fatalf("disable: %+v, %v", d, err)
	}
	if f.lastEvent(t).Action != "client.disable" || f.authenticates(t, v.ClientID, sec) {
		t.Fatal("disable: no event, or the client still authenticates")
	}
	if d, err = f.svc.SetClientDisabled(f.ctx, v.ClientID, false); err != nil || d.Disabled {
		t.Fatalf("enable: %+v, %v", d, err)
	}

	// Rotation with grace: both secrets work until the grace ends.
	rot, err := f.svc.RotateSecret(f.ctx, v.ClientID, time.Hour)
	if err != nil || rot.ClientSecret == "" || rot.ClientSecret == sec || rot.PreviousExpiresAt == nil ||
		!rot.PreviousExpiresAt.Equal(f.clk.Now().Add(time.Hour)) {
		t.Fatalf("RotateSecret: %+v, %v", rot, err)
	}
	if !f.authenticates(t, v.ClientID, sec) || !f.authenticates(t, v.ClientID, rot.ClientSecret) {
		t.Fatal("during the grace, both secrets must work")
	}
	got, _ = f.svc.GetClient(f.ctx, v.ClientID)
	if len(got.Secrets) != 2 || got.Secrets[0].State != "current" || got.Secrets[1].State != "previous" || got.Secrets[1].ExpiresAt == nil {
		t.Fatalf("secrets after rotation: %+v", got.Secrets)
	}
	if ev := f.lastEvent(t); ev.Action != "client.rotate_secret" || bytes.Contains(ev.After, []byte(rot.ClientSecret)) {
		t.Fatalf("rotate event: %+v", ev)
	}
	if _, err := f.svc.RotateSecret(f.ctx, v.ClientID, -time.Second); admin.ErrorCode(err) != admin.CodeInvalid {
		t.Fatalf("negative grace: %v", err)
	}

	// A SNAP key: validated, normalized, fingerprinted.
	_, pub := rsaKey(t, 2048)
	k, err := f.svc.SetSNAPKey(f.ctx, v.ClientID, []byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(pub))
	sum := sha256.Sum256(block.Bytes)
	if k.SNAPKeyFingerprint != hex.EncodeToString(sum[:]) || k.SNAPPublicKey != pub || !slices.Contains(k.AuthMethods, oauth.AuthSNAPSignature) {
		t.Fatalf("after SetSNAPKey: %+v", k)
	}
	_, small := rsaKey(t, 1024)
	for name, bad := range map[string]string{"1024 bits": small, "not PEM": "hello", "a private key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		_, err := f.svc.SetSNAPKey(f.ctx, v.ClientID, []byte(bad))
		if !errors.As(err, &ve) || ve.Field != "snap_public_key" {
			t.Errorf("SetSNAPKey with %s: %v", name, err)
		}
	}

	// Revoke all tokens.
	at, err := f.svc.RevokeClientTokens(f.ctx, v.ClientID)
	if err != nil || !at.Equal(f.clk.Now()) || f.lastEvent(t).Action != "client.revoke_tokens" {
		t.Fatalf("RevokeClientTokens: %v, %v", at, err)
	}

	// Delete.
	if err := f.svc.DeleteClient(f.ctx, v.ClientID); err != nil {
		t.Fatal(err)
	}
	if ev := f.lastEvent(t); ev.Action != "client.delete" || ev.After != nil || ev.Before == nil {
		t.Fatalf("delete event: %+v", ev)
	}
	for name, err := range map[string]error{
		"GetClient":    func() error { _, err := f.svc.GetClient(f.ctx, v.ClientID); return err }(),
		"DeleteClient": f.svc.DeleteClient(f.ctx, v.ClientID),
		"UpdateClient": func() error { _, err := f.svc.UpdateClient(f.ctx, v.ClientID, admin.ClientPatch{}); return err }(),
	} {
		isCode(t, err, admin.CodeNotFound, name+" of a deleted client")
	}
	if v, err := f.svc.VerifyAudit(f.ctx); err != nil || !v.OK {
		t.Fatalf("VerifyAudit after the lifecycle: %+v, %v", v, err)
	}
}

func TestPartnerIDConflict(t *testing.T) {
	f := newFixture(t)
	s := spec("a")
	s.PartnerID = "NICEPAY-01"
	f.create(t, f.ctx, s)
	other, _ := f.create(t, f.ctx, spec("b"))
	_, _, err := f.svc.CreateClient(f.ctx, s)
	var ce *admin.ConflictError
	if !errors.As(err, &ce) || ce.Field != "partner_id" || !strings.Contains(ce.Message, "NICEPAY-01 is already") {
		t.Fatalf("a taken partner ID at create: %v", err)
	}
	_, err = f.svc.UpdateClient(f.ctx, other.ClientID, admin.ClientPatch{PartnerID: new("NICEPAY-01")})
	if !errors.As(err, &ce) || ce.Field != "partner_id" {
		t.Fatalf("a taken partner ID at update: %v", err)
	}
}

// TestRecoverableSecrets: a symmetric SNAP client's secret is kept
// recoverable (sealed), and only while it is symmetric.
func TestRecoverableSecrets(t *testing.T) {
	f := newFixture(t)
	s := spec("snap")
	s.SNAPServiceSignature = "symmetric"
	v, sec := f.create(t, f.ctx, s)
	if !v.Secrets[0].Recoverable || string(f.stored(t, v.ClientID).Secrets[0].Plain) != sec {
		t.Fatal("a symmetric client's secret is not recoverable")
	}
	u, err := f.svc.UpdateClient(f.ctx, v.ClientID, admin.ClientPatch{SNAPServiceSignature: new("none")})
	if err != nil || u.Secrets[0].Recoverable || f.stored(t, v.ClientID).Secrets[0].Plain != nil {
		t.Fatalf("switched to none, the secret stays recoverable: %+v, %v", u, err)
	}
	u, err = f.svc.UpdateClient(f.ctx, v.ClientID, admin.ClientPatch{SNAPServiceSignature: new("symmetric")})
	if err != nil || !slices.Contains(u.Notes, admin.NoteSecretNotRecoverable) {
		t.Fatalf("switched back to symmetric: %+v, %v", u, err)
	}
	rot, err := f.svc.RotateSecret(f.ctx, v.ClientID, 0)
	if err != nil || string(f.stored(t, v.ClientID).Secrets[0].Plain) != rot.ClientSecret {
		t.Fatalf("after rotation the secret is not recoverable: %v", err)
	}
}

// A rotation sent twice (a double-clicked portal form, a retried call)
// must not cut off the secret in use, which the first rotation's grace
// promised to keep working: a rotation with grace keeps the secrets of
// earlier rotations until their own grace ends, up to MaxSecrets in all
// (the most recently replaced kept); one without grace (an incident)
// stops every other secret at once. For a symmetric SNAP client every
// secret within its grace keys service signatures.
func TestRotateSecretTwiceKeepsTheSecretInUse(t *testing.T) {
	f := newFixture(t)
	s := spec("shop")
	s.SNAPServiceSignature = "symmetric"
	v, inUse := f.create(t, f.ctx, s)
	id := v.ClientID
	rotate := func(grace time.Duration) string {
		t.Helper()
		r, err := f.svc.RotateSecret(f.ctx, id, grace)
		if err != nil {
			t.Fatal(err)
		}
		return r.ClientSecret
	}
	works := func(secs ...string) {
		t.Helper()
		for i, sec := range secs {
			if !f.authenticates(t, id, sec) {
				t.Errorf("secret %d stopped working", i)
			}
		}
	}
	first, second := rotate(24*time.Hour), rotate(24*time.Hour)
	works(inUse, first, second)
	c := f.stored(t, id)
	if len(c.Secrets) != 3 || len(c.ServiceSecrets(f.clk.Now())) != 3 {
		t.Fatalf("after two rotations: %d secrets, %d for SNAP signatures", len(c.Secrets), len(c.ServiceSecrets(f.clk.Now())))
	}
	got, _ := f.svc.GetClient(f.ctx, id)
	if len(got.Secrets) != 3 || got.Secrets[0].State != "current" || got.Secrets[1].State != "previous" || got.Secrets[2].State != "previous" {
		t.Fatalf("the view after two rotations: %+v", got.Secrets)
	}
	// A third: at most MaxSecrets, the oldest (inUse) goes.
	third := rotate(time.Hour)
	works(first, second, third)
	if f.authenticates(t, id, inUse) {
		t.Error("a client keeps more than MaxSecrets secrets")
	}
	if n := len(f.stored(t, id).Secrets); n != admin.MaxSecrets {
		t.Errorf("%d secrets stored, want %d", n, admin.MaxSecrets)
	}
	// A secret's own grace still ends: second's (1h) before first's (24h).
	f.clk.Advance(2 * time.Hour)
	works(first, third)
	if f.authenticates(t, id, second) {
		t.Error("a secret works after its grace")
	}
	// Expired secrets are dropped at the next rotation.
	fourth := rotate(time.Hour)
	works(first, third, fourth)
	if n := len(f.stored(t, id).Secrets); n != 3 {
		t.Errorf("%d secrets stored after a rotation past a grace, want 3", n)
	}
	// Without grace, every other secret stops at once.
	fifth := rotate(0)
	works(fifth)
	for _, old := range []string{first, third, fourth} {
		if f.authenticates(t, id, old) {
			t.Error("a rotation without grace left an old secret working")
		}
	}
	if c := f.stored(t, id); len(c.Secrets) != 1 || len(c.ServiceSecrets(f.clk.Now())) != 1 {
		t.Errorf("after a rotation without grace: %d secrets", len(c.Secrets))
	}
}

func TestListClients(t *testing.T) {
	f := newFixture(t)
	_, acc := f.merchant(t, "m@example.com", admin.AccountLimits{})
	var ids []string
	for i, name := range []string{"Alpha Pay", "beta", "ALPHABET", "gamma", "delta"} {
		s := spec(name)
		if i%2 == 0 {
			s.OwnerAccount = acc.ID
		}
		if i == 3 {
			s.AuthMethods = []string{oauth.AuthSecretPost}
		}
		v, _ := f.create(t, f.ctx, s)
		ids = append(ids, v.ClientID)
	}
	if _, err := f.svc.SetClientDisabled(f.ctx, ids[1], true); err != nil {
		t.Fatal(err)
	}
	names := func(q admin.ClientQuery) []string {
		t.Helper()
		p, err := f.svc.ListClients(f.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range p.Clients {
			out = append(out, c.Name)
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		q    admin.ClientQuery
		want string
	}{
		{admin.ClientQuery{}, "ALPHABET Alpha Pay beta delta gamma"},
		{admin.ClientQuery{NameContains: "alpha"}, "ALPHABET Alpha Pay"},
		{admin.ClientQuery{Disabled: new(true)}, "beta"},
		{admin.ClientQuery{Disabled: new(false)}, "ALPHABET Alpha Pay delta gamma"},
		{admin.ClientQuery{OwnerAccount: acc.ID}, "ALPHABET Alpha Pay delta"},
		{admin.ClientQuery{AuthMethod: oauth.AuthSecretBasic}, "ALPHABET Alpha Pay beta delta"},
		{admin.ClientQuery{AuthMethod: oauth.AuthSecretPost, NameContains: "a"}, "ALPHABET Alpha Pay beta delta gamma"},
	} {
		if got := strings.Join(names(c.q), " "); got != c.want {
			t.Errorf("ListClients(%+v) = %q, want %q", c.q, got, c.want)
		}
	}
	// Pages of 2, by ID, until Next is empty.
	var paged []string
	q := admin.ClientQuery{Limit: 2}
	for range 10 {
		p, err := f.svc.ListClients(f.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Clients) > 2 {
			t.Fatalf("a page of %d", len(p.Clients))
		}
		for _, c := range p.Clients {
			paged = append(paged, c.ClientID)
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	slices.Sort(ids)
	if !slices.Equal(paged, ids) {
		t.Fatalf("paged = %v, want %v", paged, ids)
	}
}
