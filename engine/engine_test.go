package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
	"github.com/tokengate/tokengate/token"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	eng   *Engine
	store *countingStore
	admin *admin.Service
	clock *clock
}

// newFixture builds an engine on a fresh SQLite store, everything on one
// fake clock; configure may change the engine's configuration.
func newFixture(t testing.TB, configure ...func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	raw, err := sqlite.Open(ctx, t.TempDir(), sqlite.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	st := &countingStore{Store: raw}
	cfg := Config{Issuer: "https://issuer.test", DefaultAccessTTL: time.Hour, Now: clk.Now, PasswordHashConcurrency: 2}
	for _, c := range configure {
		c(&cfg)
	}
	eng, err := New(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{eng: eng, store: st, admin: newAdmin(st, eng, clk.Now), clock: clk}
}

// countingStore counts the client reads the engine makes.
type countingStore struct {
	oauth.Store
	clientReads atomic.Int64
}

func (s *countingStore) GetClient(ctx context.Context, id string) (*oauth.Client, error) {
	s.clientReads.Add(1)
	return s.Store.GetClient(ctx, id)
}

// active introspects tok as caller (nil: an operator), failing the test if
// the introspection itself fails, so a store error never reads as a
// verdict.
func (f *fixture) active(t testing.TB, caller *oauth.Client, tok string) bool {
	t.Helper()
	in, err := f.eng.Introspect(context.Background(), caller, tok)
	if err != nil {
		t.Fatalf("introspect: %v", err)
	}
	return in.Active
}

// refreshCaches makes the engine see the store's changes now, as its
// once-a-second poll would.
func (f *fixture) refreshCaches(t testing.TB) {
	t.Helper()
	if err := f.eng.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) client(t testing.TB, spec admin.ClientSpec) (*oauth.Client, string) {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "test"
	}
	v, sec, err := f.admin.CreateClient(opCtx(context.Background()), spec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.store.Store.GetClient(context.Background(), v.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	return c, sec
}

func basic(id, secret string) oauth.ClientCredentials {
	return oauth.ClientCredentials{Method: oauth.AuthSecretBasic, ClientID: id, Secret: secret}
}

func TestGrantScopes(t *testing.T) {
	allowed := []string{"a", "b", "c"}
	for _, c := range []struct {
		name                        string
		requested, endpoint, client []string
		want                        []string
		changed, fails              bool
	}{
		{name: "requested", requested: []string{"a"}, client: []string{"b"}, want: []string{"a"}},
		{name: "endpoint default wins over client default", endpoint: []string{"c"}, client: []string{"b"}, want: []string{"c"}, changed: true},
		{name: "client default", client: []string{"b"}, want: []string{"b"}, changed: true},
		{name: "nothing", want: nil},
		{name: "not allowed", requested: []string{"a", "z"}, fails: true},
		{name: "endpoint default not allowed", endpoint: []string{"z"}, fails: true},
	} {
		got, changed, err := grantScopes(c.requested, c.endpoint, c.client, allowed)
		if (err != nil) != c.fails {
			t.Errorf("%s: err %v", c.name, err)
			continue
		}
		if c.fails {
			if err.Code != oauth.CodeInvalidScope {
				t.Errorf("%s: code %s", c.name, err.Code)
			}
			continue
		}
		if !slices.Equal(got, c.want) || changed != c.changed {
			t.Errorf("%s: got %v changed=%v", c.name, got, changed)
		}
	}
}

func TestAccessTTLPrecedenceAndCap(t *testing.T) {
	e := &Engine{cfg: Config{DefaultAccessTTL: time.Hour, MaxAccessTTL: 2 * time.Hour}}
	for _, c := range []struct {
		client, endpoint, want time.Duration
	}{
		{0, 0, time.Hour},
		{0, 15 * time.Minute, 15 * time.Minute},
		{5 * time.Minute, 15 * time.Minute, 5 * time.Minute},
		{10 * time.Hour, 0, 2 * time.Hour},
	} {
		got := e.accessTTL(&oauth.Client{AccessTTL: c.client}, oauth.EndpointPolicy{AccessTTL: c.endpoint})
		if got != c.want {
			t.Errorf("client %v endpoint %v: %v, want %v", c.client, c.endpoint, got, c.want)
		}
	}
}

func TestExpiryFollowsTheClock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, AccessTTL: admin.Duration(10 * time.Minute)})
	resp, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)})
	if e != nil {
		t.Fatal(e)
	}
	if resp.ExpiresIn != 600 || !resp.ExpiresAt.Equal(resp.IssuedAt.Add(10*time.Minute)) {
		t.Fatalf("expires_in %d, issued %v, expires %v", resp.ExpiresIn, resp.IssuedAt, resp.ExpiresAt)
	}
	if !f.active(t, nil, resp.AccessToken) {
		t.Fatal("fresh token inactive")
	}
	f.clock.Advance(10*time.Minute - time.Second)
	if !f.active(t, nil, resp.AccessToken) {
		t.Fatal("token inactive before its expiry")
	}
	f.clock.Advance(time.Second)
	if f.active(t, nil, resp.AccessToken) {
		t.Fatal("token active at its expiry")
	}
}

func TestAuthenticateClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e != nil {
		t.Fatalf("right secret: %v", e)
	}
	for name, tc := range map[string]struct {
		creds oauth.ClientCredentials
		cause oauth.Cause
	}{
		"wrong secret basic": {basic(c.ID, "wrong"), oauth.CauseBadCredentials},
		"unknown client":     {basic("nobody", sec), oauth.CauseUnknownClient},
		"empty secret":       {basic(c.ID, ""), oauth.CauseBadCredentials},
		"none":               {oauth.ClientCredentials{}, oauth.CauseNoCredentials},
		"wrong secret post":  {oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: c.ID, Secret: "wrong"}, oauth.CauseBadCredentials},
		"unregistered method": {oauth.ClientCredentials{Method: "private_key_jwt", ClientID: c.ID, Secret: sec},
			oauth.CauseMethodNotAllowed},
		"too long an ID": {basic(strings.Repeat("a", oauth.MaxClientIDLen+1), sec), oauth.CauseUnknownClient},
	} {
		_, e := f.eng.AuthenticateClient(ctx, tc.creds, "")
		if e == nil || e.Code != oauth.CodeInvalidClient || e.Cause != tc.cause {
			t.Errorf("%s: %v (cause %v), want invalid_client cause %v", name, e, causeOf(e), tc.cause)
			continue
		}
		if e.Status != 0 {
			t.Errorf("%s: the engine set a wire status (%d): that is the dialect's to decide", name, e.Status)
		}
	}
}

func causeOf(e *oauth.Error) oauth.Cause {
	if e == nil {
		return oauth.CauseUnspecified
	}
	return e.Cause
}

// TestSecretComparedWhole uses real-length secrets (43 characters, as the
// server generates) and near misses of them: a secret compared on a prefix,
// or up to the shorter length, would let one of these through.
func TestSecretComparedWhole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if len(sec) < 40 {
		t.Fatalf("generated secret has %d characters; the test needs a real-length one", len(sec))
	}
	last := sec[len(sec)-1]
	changed := sec[:len(sec)-1] + string(rune('A'+(last-'A'+1)%26))
	if last < 'A' || last > 'Z' {
		changed = sec[:len(sec)-1] + "A"
	}
	for name, guess := range map[string]string{
		"last character changed":  changed,
		"one character appended":  sec + "x",
		"a 32-character prefix":   sec[:32],
		"all but the last":        sec[:len(sec)-1],
		"first character changed": "!" + sec[1:],
	} {
		if guess == sec {
			t.Fatalf("%s: the guess equals the secret", name)
		}
		for _, creds := range []oauth.ClientCredentials{basic(c.ID, guess), {Method: oauth.AuthSecretPost, ClientID: c.ID, Secret: guess}} {
			if _, e := f.eng.AuthenticateClient(ctx, creds, ""); e == nil || e.Cause != oauth.CauseBadCredentials {
				t.Errorf("%s (%s): %v, want a refusal", name, creds.Method, e)
			}
		}
	}
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e != nil {
		t.Errorf("the real secret: %v", e)
	}
}

// countingAuthenticator counts the credential checks and dummy checks the
// engine makes through it.
type countingAuthenticator struct {
	method        string
	checks, dummy atomic.Int64
}

func (a *countingAuthenticator) Method() string { return a.method }
func (a *countingAuthenticator) Authenticate(_ context.Context, creds oauth.ClientCredentials, c *oauth.Client, _ time.Time) *oauth.Error {
	a.checks.Add(1)
	if creds.Secret != "good" {
		return oauth.InvalidClient(oauth.CauseBadCredentials, "bad")
	}
	return nil
}
func (a *countingAuthenticator) Dummy(oauth.ClientCredentials) { a.dummy.Add(1) }

// TestFailedAuthenticationCostsTheSame: a never-seen client ID, a known
// client with a wrong secret (cached or not), all cost one store read and
// two credential checks, so timing does not tell which client IDs exist.
func TestFailedAuthenticationCostsTheSame(t *testing.T) {
	counter := &countingAuthenticator{method: "counted"}
	f := newFixture(t, func(c *Config) { c.Authenticators = []oauth.ClientAuthenticator{counter} })
	ctx := context.Background()
	known, _ := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, AuthMethods: []string{oauth.AuthSecretBasic}})
	if err := f.store.UpdateClient(ctx, known.ID, func(c *oauth.Client) error { c.AuthMethods = []string{"counted"}; return nil }); err != nil {
		t.Fatal(err)
	}
	cost := func(name, id string) (reads, checks int64) {
		r0, c0, d0 := f.store.clientReads.Load(), counter.checks.Load(), counter.dummy.Load()
		_, e := f.eng.AuthenticateClient(ctx, oauth.ClientCredentials{Method: "counted", ClientID: id, Secret: "bad"}, "")
		if e == nil || e.Code != oauth.CodeInvalidClient {
			t.Fatalf("%s: %v", name, e)
		}
		return f.store.clientReads.Load() - r0, counter.checks.Load() - c0 + counter.dummy.Load() - d0
	}
	r1, k1 := cost("known, not cached", known.ID)
	r2, k2 := cost("known, cached", known.ID)
	r3, k3 := cost("never seen", "never-seen-client")
	r4, k4 := cost("never seen, again", "never-seen-client")
	for _, c := range [][2]int64{{r1, k1}, {r2, k2}, {r3, k3}, {r4, k4}} {
		if c != [2]int64{1, failedChecks} {
			t.Errorf("costs (store reads, checks): known uncached %d,%d; known cached %d,%d; unknown %d,%d; unknown again %d,%d; want 1,%d each",
				r1, k1, r2, k2, r3, k3, r4, k4, failedChecks)
			break
		}
	}
	// A success from the cache costs no read and one check.
	r0, c0 := f.store.clientReads.Load(), counter.checks.Load()
	if _, e := f.eng.AuthenticateClient(ctx, oauth.ClientCredentials{Method: "counted", ClientID: known.ID, Secret: "good"}, ""); e != nil {
		t.Fatal(e)
	}
	if r, c := f.store.clientReads.Load()-r0, counter.checks.Load()-c0; r != 0 || c != 1 {
		t.Errorf("a cached success cost %d reads and %d checks, want 0 and 1", r, c)
	}
}

// TestSecretRotatedElsewhereIsSeenAtOnce: a client whose secret was just
// rotated by another process authenticates with the new secret at once,
// before this engine's cache refresh, because a failed check re-reads.
func TestSecretRotatedElsewhereIsSeenAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e != nil {
		t.Fatal(e)
	}
	rot, err := f.admin.RotateSecret(opCtx(ctx), c.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	next := rot.ClientSecret
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, next), ""); e != nil {
		t.Errorf("new secret before a cache refresh: %v", e)
	}
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e == nil {
		t.Error("the old secret still works after a rotation without grace")
	}
}

func TestClientCacheSeesChangesAfterRefresh(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e != nil {
		t.Fatal(e)
	}
	if _, err := f.admin.SetClientDisabled(opCtx(ctx), c.ID, true); err != nil {
		t.Fatal(err)
	}
	// Cached until the next revision check.
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e != nil {
		t.Fatalf("cache dropped without a refresh: %v", e)
	}
	f.refreshCaches(t)
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e == nil || e.Cause != oauth.CauseClientDisabled {
		t.Fatalf("disabled client after refresh: %v", e)
	}
	// A client created after its ID was looked up is found at once: unknown
	// IDs are not remembered.
	if _, e := f.eng.AuthenticateClient(ctx, basic("later", "x"), ""); e == nil || e.Cause != oauth.CauseUnknownClient {
		t.Fatal(e)
	}
	c2, sec2 := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c2.ID, sec2), ""); e != nil {
		t.Fatal(e)
	}
}

// TestUnknownClientFloodHoldsNothing: made-up client IDs, however many and
// however long, leave nothing behind in the engine's caches, and the real
// clients stay cached.
func TestUnknownClientFloodHoldsNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec), ""); e != nil {
		t.Fatal(e)
	}
	body := strings.Repeat("x", 64<<10)
	for i := range 2000 {
		id := body[i : i+200] // a substring of a large request body
		f.eng.AuthenticateClient(ctx, basic(id, "x"), "")
		f.eng.AuthenticateClient(ctx, basic(fmt.Sprintf("made-up-%d", i), "x"), "")
	}
	entries, bytes := f.eng.clients.len()
	if entries != 1 {
		t.Errorf("%d cached clients after a flood of unknown IDs, want only the real one", entries)
	}
	if bytes > 4096 {
		t.Errorf("client cache holds %d bytes for one client", bytes)
	}
	if _, _, ok := f.eng.clients.get(c.ID); !ok {
		t.Error("a flood of unknown client IDs evicted a real client")
	}
}

func TestRecordCacheBounds(t *testing.T) {
	c := newRecordCache(func(n int) int { return n })
	_, gen, _ := c.get("x")
	for i := range maxCachedRecords + 10 {
		c.put(gen, fmt.Sprint(i), 1)
	}
	if n, _ := c.len(); n > maxCachedRecords {
		t.Errorf("%d entries, bound %d", n, maxCachedRecords)
	}
	c.invalidate()
	_, gen, _ = c.get("x")
	for i := range 100 {
		c.put(gen, fmt.Sprint("big", i), maxCachedRecordBytes/10)
	}
	if _, b := c.len(); b > maxCachedRecordBytes {
		t.Errorf("%d bytes, bound %d", b, maxCachedRecordBytes)
	}
	// A put from before an invalidation is dropped.
	c.invalidate()
	c.put(gen, "stale", 1)
	if _, _, ok := c.get("stale"); ok {
		t.Error("a record loaded before an invalidation was cached after it")
	}
}

func TestAuthMethodsAndEndpoints(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	onlyBasic, sec1 := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, AuthMethods: []string{oauth.AuthSecretBasic}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(onlyBasic.ID, sec1), ""); e != nil {
		t.Errorf("registered method: %v", e)
	}
	post := oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: onlyBasic.ID, Secret: sec1}
	if _, e := f.eng.AuthenticateClient(ctx, post, ""); e == nil || e.Code != oauth.CodeInvalidClient || e.Cause != oauth.CauseMethodNotAllowed {
		t.Errorf("unregistered method with the right secret: %v", e)
	}
	// A wrong secret through an unregistered method says only "failed":
	// the client's settings are told only to its holder.
	post.Secret = "wrong"
	if _, e := f.eng.AuthenticateClient(ctx, post, ""); e == nil || e.Cause != oauth.CauseBadCredentials {
		t.Errorf("unregistered method with a wrong secret: %v", e)
	}

	restricted, sec2 := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, Endpoints: []string{"/partner/token"}})
	req := func(path string) *oauth.Error {
		_, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(restricted.ID, sec2), Endpoint: path})
		return e
	}
	if e := req("/partner/token"); e != nil {
		t.Errorf("registered endpoint: %v", e)
	}
	if e := req("/oauth/token"); e == nil || e.Code != oauth.CodeInvalidClient || e.Cause != oauth.CauseEndpointNotAllowed {
		t.Errorf("other endpoint: %v", e)
	}
	// Introspection and revocation authenticate with path "": not restricted.
	if _, e := f.eng.AuthenticateClient(ctx, basic(restricted.ID, sec2), ""); e != nil {
		t.Errorf("introspection by an endpoint-restricted client: %v", e)
	}
}

func TestIntrospectionNeedsPermissionForForeignTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, secA := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"pay"}})
	b, _ := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	rs, _ := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, CanIntrospect: true})
	for _, format := range []oauth.TokenFormat{oauth.FormatOpaque, oauth.FormatJWT} {
		if _, err := f.admin.UpdateClient(opCtx(ctx), a.ID, admin.ClientPatch{TokenFormat: new(string(format))}); err != nil {
			t.Fatal(err)
		}
		f.refreshCaches(t)
		resp, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Scopes: []string{"pay"}, Credentials: basic(a.ID, secA)})
		if e != nil {
			t.Fatal(e)
		}
		if !f.active(t, a, resp.AccessToken) {
			t.Errorf("%s: a client introspecting its own token got inactive", format)
		}
		in, err := f.eng.Introspect(ctx, b, resp.AccessToken)
		if err != nil || !reflect.DeepEqual(*in, oauth.Introspection{}) {
			t.Errorf("%s: another client without permission got %+v, %v; want exactly inactive", format, in, err)
		}
		in, err = f.eng.Introspect(ctx, rs, resp.AccessToken)
		if err != nil || !in.Active || in.ClientID != a.ID || strings.Join(in.Scope, " ") != "pay" {
			t.Errorf("%s: a resource server got %+v, %v", format, in, err)
		}
	}
}

// issue runs client_credentials for c and fails the test on an error.
func (f *fixture) issue(t testing.TB, c *oauth.Client, sec string) *oauth.TokenResponse {
	t.Helper()
	resp, e := f.eng.Token(context.Background(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)})
	if e != nil {
		t.Fatal(e)
	}
	return resp
}

// login runs the password grant and fails the test on an error.
func (f *fixture) login(t testing.TB, c *oauth.Client, sec, user, password string, scopes ...string) *oauth.TokenResponse {
	t.Helper()
	resp, e := f.eng.Token(context.Background(), &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: user, Password: password,
		Scopes: scopes, Credentials: basic(c.ID, sec)})
	if e != nil {
		t.Fatal(e)
	}
	return resp
}

func (f *fixture) refresh(c *oauth.Client, sec, rt string, scopes ...string) (*oauth.TokenResponse, *oauth.Error) {
	return f.eng.Token(context.Background(), &oauth.TokenRequest{GrantType: oauth.GrantRefreshToken, RefreshToken: rt, Scopes: scopes,
		Credentials: basic(c.ID, sec)})
}

// TestRevokeAllOfAClient: every token of the client, access and refresh,
// opaque and JWT, issued before the revocation is inactive and refreshes
// nothing; tokens issued right after it (even in the same second) work.
func TestRevokeAllOfAClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	spec := admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials, oauth.GrantPassword, oauth.GrantRefreshToken},
		RefreshWithClientCredentials: true}
	opaque, secO := f.client(t, spec)
	spec.TokenFormat = string(oauth.FormatJWT)
	jwt, secJ := f.client(t, spec)
	other, secX := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "u", "password1"); err != nil {
		t.Fatal(err)
	}
	var before []*oauth.TokenResponse
	for _, c := range []struct {
		c   *oauth.Client
		sec string
	}{{opaque, secO}, {jwt, secJ}} {
		before = append(before, f.issue(t, c.c, c.sec), f.login(t, c.c, c.sec, "u", "password1"))
	}
	bystander := f.issue(t, other, secX)
	f.clock.Advance(time.Millisecond)
	for _, c := range []*oauth.Client{opaque, jwt} {
		if _, err := f.admin.RevokeClientTokens(opCtx(ctx), c.ID); err != nil {
			t.Fatal(err)
		}
	}
	f.refreshCaches(t)
	f.clock.Advance(time.Millisecond)
	for i, r := range before {
		if f.active(t, nil, r.AccessToken) {
			t.Errorf("token %d: access token active after revoke-all", i)
		}
		if r.RefreshToken == "" {
			t.Fatalf("token %d: no refresh token issued", i)
		}
		if f.active(t, nil, r.RefreshToken) {
			t.Errorf("token %d: refresh token active after revoke-all", i)
		}
	}
	if _, e := f.refresh(opaque, secO, before[0].RefreshToken); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Errorf("refresh with a revoked-all refresh token: %v", e)
	}
	if !f.active(t, nil, bystander.AccessToken) {
		t.Error("another client's token was revoked")
	}
	// Issued after the revocation, within the same second: active.
	for _, c := range []struct {
		c   *oauth.Client
		sec string
	}{{opaque, secO}, {jwt, secJ}} {
		if r := f.issue(t, c.c, c.sec); !f.active(t, nil, r.AccessToken) {
			t.Errorf("a %s token issued after the revocation is inactive", c.c.TokenFormat)
		}
	}
}

func TestRevokeAllOfAUserAndUserDisable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}})
	for _, u := range []string{"alice", "bob"} {
		if _, err := f.admin.CreateUser(opCtx(ctx), u, "password1"); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob := f.login(t, c, sec, "alice", "password1"), f.login(t, c, sec, "bob", "password1")
	f.clock.Advance(time.Millisecond)
	if _, err := f.admin.RevokeUserTokens(opCtx(ctx), "alice"); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	if f.active(t, nil, alice.AccessToken) || f.active(t, nil, alice.RefreshToken) {
		t.Error("alice's tokens active after revoke-all of alice")
	}
	if _, e := f.refresh(c, sec, alice.RefreshToken); e == nil {
		t.Error("alice's refresh token refreshed after revoke-all")
	}
	if !f.active(t, nil, bob.AccessToken) {
		t.Error("bob's token revoked with alice's")
	}
	f.clock.Advance(time.Millisecond)
	alice2 := f.login(t, c, sec, "alice", "password1")
	if !f.active(t, nil, alice2.AccessToken) {
		t.Error("a token issued after the revocation is inactive")
	}

	// Disabling bob makes his existing tokens inactive; enabling him again
	// does not bring them back.
	if _, err := f.admin.SetUserDisabled(opCtx(ctx), "bob", true); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	if f.active(t, nil, bob.AccessToken) {
		t.Error("a disabled user's token is active")
	}
	if _, err := f.admin.SetUserDisabled(opCtx(ctx), "bob", false); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	if f.active(t, nil, bob.AccessToken) || f.active(t, nil, bob.RefreshToken) {
		t.Error("re-enabling the user brought tokens issued before the disable back")
	}

	// A password change revokes the user's refresh tokens (and access tokens).
	f.clock.Advance(time.Millisecond)
	alice3 := f.login(t, c, sec, "alice", "password1")
	f.clock.Advance(time.Millisecond)
	if _, err := f.admin.SetUserPassword(opCtx(ctx), "alice", "password2"); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	if _, e := f.refresh(c, sec, alice3.RefreshToken); e == nil {
		t.Error("a refresh token issued before a password change still refreshes")
	}
	if f.active(t, nil, alice3.AccessToken) {
		t.Error("an access token issued before a password change is still active")
	}
}

// TestDisableRotateEnableResurrectsNothing: tokens issued before a client
// was disabled stay dead after its secret is rotated and it is enabled.
func TestDisableRotateEnableResurrectsNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials, oauth.GrantRefreshToken}, RefreshWithClientCredentials: true})
	old := f.issue(t, c, sec)
	f.clock.Advance(time.Millisecond)
	if _, err := f.admin.SetClientDisabled(opCtx(ctx), c.ID, true); err != nil {
		t.Fatal(err)
	}
	rot, err := f.admin.RotateSecret(opCtx(ctx), c.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	next := rot.ClientSecret
	if _, err := f.admin.SetClientDisabled(opCtx(ctx), c.ID, false); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	f.clock.Advance(time.Millisecond)
	if f.active(t, nil, old.AccessToken) || f.active(t, nil, old.RefreshToken) {
		t.Error("a token issued before the disable is active again")
	}
	if _, e := f.refresh(c, next, old.RefreshToken); e == nil {
		t.Error("a refresh token issued before the disable refreshes again")
	}
	if r := f.issue(t, c, next); !f.active(t, nil, r.AccessToken) {
		t.Error("a new token after re-enabling is inactive")
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RefreshReuseGrace = 0 })
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "u", "password1"); err != nil {
		t.Fatal(err)
	}
	first := f.login(t, c, sec, "u", "password1")
	second, e := f.refresh(c, sec, first.RefreshToken)
	if e != nil {
		t.Fatal(e)
	}
	if _, e := f.refresh(c, sec, first.RefreshToken); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Fatalf("reuse: %v", e)
	}
	for _, tok := range []string{first.AccessToken, second.AccessToken, second.RefreshToken} {
		if f.active(t, nil, tok) {
			t.Errorf("family token still active after reuse")
		}
	}
	// Without a grace window, concurrent redemptions of one refresh token:
	// exactly one wins.
	third := f.login(t, c, sec, "u", "password1")
	var wins atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, e := f.refresh(c, sec, third.RefreshToken); e == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent redemptions succeeded, want 1", wins.Load())
	}
}

// TestRefreshReuseGrace: within the grace window the same client gets a
// valid pair of the same family (a retry after a lost reply, concurrent
// duplicates), and nothing is revoked; after it, reuse revokes the family.
func TestRefreshReuseGrace(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RefreshReuseGrace = 5 * time.Second })
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}})
	other, secO := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "u", "password1"); err != nil {
		t.Fatal(err)
	}
	// 12 concurrent requests with one refresh token: all succeed, all the
	// new tokens stay valid.
	first := f.login(t, c, sec, "u", "password1")
	var mu sync.Mutex
	var got []*oauth.TokenResponse
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			r, e := f.refresh(c, sec, first.RefreshToken)
			if e != nil {
				t.Errorf("concurrent refresh: %v", e)
				return
			}
			mu.Lock()
			got = append(got, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, r := range got {
		if !f.active(t, nil, r.AccessToken) || !f.active(t, nil, r.RefreshToken) {
			t.Fatal("a token of a concurrent refresh within the grace is inactive")
		}
	}
	// A retry of a rotation whose reply was lost, 4 s later: a new pair.
	f.clock.Advance(4 * time.Second)
	retry, e := f.refresh(c, sec, first.RefreshToken)
	if e != nil {
		t.Fatalf("retry within the grace: %v", e)
	}
	// Another client presenting it is refused and revokes nothing.
	if _, e := f.refresh(other, secO, first.RefreshToken); e == nil {
		t.Error("another client's refresh within the grace succeeded")
	}
	if !f.active(t, nil, retry.RefreshToken) || !f.active(t, nil, got[0].RefreshToken) {
		t.Fatal("a foreign presentation revoked the family")
	}
	// After the grace: reuse, and the whole family is revoked.
	f.clock.Advance(2 * time.Second)
	if _, e := f.refresh(c, sec, first.RefreshToken); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Fatalf("reuse after the grace: %v", e)
	}
	for _, r := range append(got, retry) {
		if f.active(t, nil, r.RefreshToken) || f.active(t, nil, r.AccessToken) {
			t.Fatal("a family token survived reuse after the grace")
		}
	}
}

// TestRefreshTokenLifetimes: a refresh token outlives the access token (it
// is stored with the refresh TTL, not the access TTL) and dies at its own.
func TestRefreshTokenLifetimes(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RefreshTTL = 24 * time.Hour })
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}, AccessTTL: admin.Duration(10 * time.Minute)})
	if _, err := f.admin.CreateUser(opCtx(ctx), "u", "password1"); err != nil {
		t.Fatal(err)
	}
	r := f.login(t, c, sec, "u", "password1")
	f.clock.Advance(11 * time.Minute) // the access token has expired
	if f.active(t, nil, r.AccessToken) {
		t.Fatal("access token active after its TTL")
	}
	r2, e := f.refresh(c, sec, r.RefreshToken)
	if e != nil {
		t.Fatalf("refresh after the access TTL: %v", e)
	}
	f.clock.Advance(24*time.Hour + time.Second) // the new refresh token's TTL has passed
	if _, e := f.refresh(c, sec, r2.RefreshToken); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Fatalf("refresh after the refresh TTL: %v", e)
	}
}

func TestUnknownUserCostsAPasswordCheck(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "known", "password1"); err != nil {
		t.Fatal(err)
	}
	timeIt := func(user string) time.Duration {
		start := time.Now()
		_, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: user, Password: "wrong-password", Credentials: basic(c.ID, sec)})
		if e == nil || e.Code != oauth.CodeInvalidGrant || e.Description != "invalid resource owner credentials" {
			t.Fatalf("%s: %v", user, e)
		}
		return time.Since(start)
	}
	// The fastest of a few runs each: a busy machine only adds time.
	fastest := func(user string) time.Duration {
		d := timeIt(user)
		for range 2 {
			d = min(d, timeIt(user))
		}
		return d
	}
	known, unknown := fastest("known"), fastest("unknown")
	// argon2id takes milliseconds; skipping it for unknown users would make
	// the unknown case orders of magnitude faster.
	if unknown < known/4 {
		t.Errorf("unknown user answered in %v vs %v for a known one: timing reveals existence", unknown, known)
	}
}

// TestPasswordLockout: after the threshold of failures a username is
// locked (known or not), answered invalid_grant with the real wait and
// without an argon2id check, and unlocked after the backoff.
func TestPasswordLockout(t *testing.T) {
	var clk *clock
	f := newFixture(t, func(c *Config) {
		c.Lockout = limit.NewMemoryLockout(limit.Policy{Threshold: 3, Base: time.Second, Max: time.Minute, Window: time.Hour},
			func() time.Time { return clk.Now() })
	})
	clk = f.clock
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "u", "password1"); err != nil {
		t.Fatal(err)
	}
	try := func(user, pw string) *oauth.Error {
		_, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: user, Password: pw, Credentials: basic(c.ID, sec)})
		return e
	}
	for _, user := range []string{"u", "nobody"} {
		for i := range 2 {
			if e := try(user, "wrong-password"); e == nil || e.Cause != oauth.CauseBadGrant {
				t.Fatalf("%s failure %d: %v", user, i+1, e)
			}
		}
		e := try(user, "wrong-password")
		if e == nil || e.Code != oauth.CodeInvalidGrant || e.Cause != oauth.CauseUserLocked || e.RetryAfter != time.Second {
			t.Fatalf("%s: the threshold failure: %v (cause %v, retry after %v)", user, e, causeOf(e), e.RetryAfter)
		}
	}
	// Locked: even the right password is refused, and costs no argon2id.
	start := time.Now()
	if e := try("u", "password1"); e == nil || e.Cause != oauth.CauseUserLocked {
		t.Fatalf("locked username with the right password: %v", e)
	}
	if d := time.Since(start); d > 5*time.Millisecond {
		t.Errorf("a locked username took %v: an argon2id check was run", d)
	}
	f.clock.Advance(time.Second)
	if e := try("u", "password1"); e != nil {
		t.Fatalf("after the backoff, the right password: %v", e)
	}
}

func TestRateLimitCarriesTheRealWait(t *testing.T) {
	var clk *clock
	f := newFixture(t, func(c *Config) {
		c.RateLimiter = limit.NewMemoryRateLimiter(2, 1, func() time.Time { return clk.Now() })
	})
	clk = f.clock
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	f.issue(t, c, sec)
	_, e := f.eng.Token(context.Background(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)})
	if e == nil || e.Cause != oauth.CauseRateLimited || e.RetryAfter != 500*time.Millisecond {
		t.Fatalf("over the limit: %v, retry after %v; want rate limited with 500ms", e, e.RetryAfter)
	}
	f.clock.Advance(500 * time.Millisecond)
	f.issue(t, c, sec)
}

// TestNoRefreshTokenForDialectsWithout: a client allowed refresh tokens
// with client_credentials gets none stored through a dialect whose response
// cannot carry one (SNAP, NeoX).
func TestNoRefreshTokenForDialectsWithout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials, oauth.GrantRefreshToken}, RefreshWithClientCredentials: true})
	count := func() int64 {
		n, err := f.store.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n.Tokens
	}
	n0 := count()
	resp, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec), NoRefreshToken: true})
	if e != nil || resp.RefreshToken != "" {
		t.Fatalf("%v %v", resp, e)
	}
	if n := count() - n0; n != 1 {
		t.Errorf("%d token records stored, want only the access token", n)
	}
	resp, e = f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)})
	if e != nil || resp.RefreshToken == "" {
		t.Fatalf("RFC 6749 request: %v %v", resp, e)
	}
}

// TestForgedJWTWithAStolenKey: a JWT signed with the server's own key but
// claiming a lifetime over max_access_ttl, or a scope the client is not
// allowed, is inactive.
func TestForgedJWTWithAStolenKey(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxAccessTTL = time.Hour })
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"pay"}, TokenFormat: string(oauth.FormatJWT)})
	legit := f.issue(t, c, sec)
	if !f.active(t, nil, legit.AccessToken) {
		t.Fatal("a legitimate JWT is inactive")
	}
	keys, err := f.store.ListSigningKeys(ctx, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := token.NewKeySet(keys)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	forge := func(scope string, ttl time.Duration) string {
		v, err := stolen.Sign(oauth.AlgES256, &token.Claims{Issuer: "https://issuer.test", Subject: c.ID, Audience: []string{"https://issuer.test"},
			ClientID: c.ID, Scope: scope, ID: token.NewJTI(now), IssuedAt: now, ExpiresAt: now.Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if !f.active(t, nil, forge("pay", time.Hour)) {
		t.Fatal("the control token (allowed scope and lifetime) is inactive: the test proves nothing")
	}
	if f.active(t, nil, forge("pay", 10*365*24*time.Hour)) {
		t.Error("a JWT valid for ten years is active")
	}
	if f.active(t, nil, forge("pay admin", time.Hour)) {
		t.Error("a JWT with a scope the client is not allowed is active")
	}
}

func TestStoreFailureIsUnavailableNotServerError(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.eng.StoreError(ctx, "x", errors.Join(errors.New("dial tcp: refused"), oauth.ErrUnavailable))
	if e.Code != oauth.CodeTemporarilyUnavail || e.Cause != oauth.CauseUnavailable || e.RetryAfter <= 0 {
		t.Errorf("unavailable: %+v", e)
	}
	if e := f.eng.StoreError(ctx, "x", context.DeadlineExceeded); e.Code != oauth.CodeTemporarilyUnavail || e.Cause != oauth.CauseTimeout {
		t.Errorf("timeout: %+v", e)
	}
	if e := f.eng.StoreError(ctx, "x", errors.New("constraint")); e.Code != oauth.CodeServerError || e.Description != "internal error" {
		t.Errorf("fault: %+v", e)
	}
}

func BenchmarkAuthenticateClient(b *testing.B) {
	f := newFixture(b)
	c, sec := f.client(b, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	ctx := context.Background()
	creds := basic(c.ID, sec)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, e := f.eng.AuthenticateClient(ctx, creds, ""); e != nil {
				b.Fatal(e)
			}
		}
	})
}

// BenchmarkAuthenticateFailure prints what a failed authentication costs
// for a known client with a wrong secret and for a never-seen client ID;
// the two should be within a few percent.
func BenchmarkAuthenticateFailure(b *testing.B) {
	f := newFixture(b)
	c, _ := f.client(b, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	ctx := context.Background()
	for _, bc := range []struct{ name, id string }{{"known-wrong-secret", c.ID}, {"never-seen-id", "0123456789abcdef0123456789abcdef"}} {
		b.Run(bc.name, func(b *testing.B) {
			creds := basic(bc.id, "q8Fz0wrongwrongwrongwrongwrongwrongwrongwro")
			for b.Loop() {
				if _, e := f.eng.AuthenticateClient(ctx, creds, ""); e == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func BenchmarkClientCredentialsOpaque(b *testing.B) {
	f := newFixture(b)
	c, sec := f.client(b, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	ctx := context.Background()
	req := oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := req
			if _, e := f.eng.Token(ctx, &r); e != nil {
				b.Fatal(e)
			}
		}
	})
}

func TestRefreshScopeRules(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RefreshReuseGrace = 0 })
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}, Scopes: []string{"pay", "refund", "report"}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "u", "password1"); err != nil {
		t.Fatal(err)
	}
	// A refresh never widens the scope beyond the original grant, even to
	// scopes the client is allowed.
	narrow := f.login(t, c, sec, "u", "password1", "pay")
	if _, e := f.refresh(c, sec, narrow.RefreshToken, "pay", "refund"); e == nil || e.Code != oauth.CodeInvalidScope {
		t.Fatalf("refresh widening the scope to an allowed one: %v", e)
	}
	if r, e := f.refresh(c, sec, narrow.RefreshToken); e != nil || strings.Join(r.Scopes, " ") != "pay" {
		t.Fatalf("refresh without scope after a login with one: %v %v", r, e)
	}

	// A narrowed refresh narrows the access token, not the refresh token
	// (RFC 6749 §6: the new refresh token's scope is identical).
	r1 := f.login(t, c, sec, "u", "password1", "pay", "refund")
	r2, e := f.refresh(c, sec, r1.RefreshToken, "pay")
	if e != nil || strings.Join(r2.Scopes, " ") != "pay" {
		t.Fatalf("narrowed refresh: %v %v", r2, e)
	}
	r3, e := f.refresh(c, sec, r2.RefreshToken, "pay", "refund")
	if e != nil || strings.Join(r3.Scopes, " ") != "pay refund" {
		t.Fatalf("the refresh token lost scope when an access token was narrowed: %v %v", r3, e)
	}

	// Reuse is detected before any other check: a replay asking for a scope
	// it never had still revokes the family (RFC 9700 §4.14).
	if _, e := f.refresh(c, sec, r2.RefreshToken, "admin"); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Fatalf("replayed token with a foreign scope: %v", e)
	}
	if f.active(t, nil, r3.RefreshToken) {
		t.Error("the family survived a replay that asked for another scope")
	}

	// Scope the operator has since removed from the client is not granted
	// again by a refresh.
	r4 := f.login(t, c, sec, "u", "password1", "pay", "refund")
	if _, err := f.admin.UpdateClient(opCtx(ctx), c.ID, admin.ClientPatch{Scopes: &[]string{"pay"}}); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	r5, e := f.refresh(c, sec, r4.RefreshToken)
	if e != nil || strings.Join(r5.Scopes, " ") != "pay" {
		t.Fatalf("refresh after the client lost a scope: %v %v", r5, e)
	}
	if _, e := f.refresh(c, sec, r5.RefreshToken, "refund"); e == nil || e.Code != oauth.CodeInvalidScope {
		t.Errorf("asking for a removed scope: %v", e)
	}
}

func TestFirstKeyForAnAlgorithmIsMadeOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, TokenFormat: string(oauth.FormatJWT), SigningAlg: oauth.AlgEdDSA})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)}); e != nil {
				t.Error(e)
			}
		})
	}
	wg.Wait()
	keys, err := f.store.ListSigningKeys(ctx, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if k.Alg == oauth.AlgEdDSA {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d EdDSA keys after 10 concurrent first requests, want 1", n)
	}
}

// TestTokensIssuedBeforeANodeSawTheDisableStayDead: a node whose cache
// still holds the enabled client issues tokens after the disable; enabling
// the client again must not bring those back either.
func TestTokensIssuedBeforeANodeSawTheDisableStayDead(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	f.issue(t, c, sec) // cached
	if _, err := f.admin.SetClientDisabled(opCtx(ctx), c.ID, true); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Millisecond)
	stale := f.issue(t, c, sec) // this engine has not seen the disable yet
	f.clock.Advance(time.Millisecond)
	if _, err := f.admin.SetClientDisabled(opCtx(ctx), c.ID, false); err != nil {
		t.Fatal(err)
	}
	f.refreshCaches(t)
	f.clock.Advance(time.Millisecond)
	if f.active(t, nil, stale.AccessToken) {
		t.Error("a token issued by a stale node during the disable is active after enable")
	}
	if r := f.issue(t, c, sec); !f.active(t, nil, r.AccessToken) {
		t.Error("a token issued after enable is inactive")
	}
}

// TestPasswordSprayCannotStarveOtherClients: one client sprays guesses
// across many usernames (no per-username lock applies) with far more
// concurrent requests than the password queue holds; another client's
// user still signs in every time, because a client gets only its share of
// the queue.
func TestPasswordSprayCannotStarveOtherClients(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PasswordHashConcurrency, c.PasswordHashQueue = 2, 16 })
	ctx := context.Background()
	sprayer, secS := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword}})
	app, secA := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword}})
	if _, err := f.admin.CreateUser(opCtx(ctx), "bob", "bob's password"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var refused, spray atomic.Int64
	var wg sync.WaitGroup
	for g := range 100 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: fmt.Sprintf("victim-%d-%d", g, i),
					Password: "Summer2026!", Credentials: basic(sprayer.ID, secS)})
				spray.Add(1)
				if e != nil && e.Cause == oauth.CauseRateLimited {
					refused.Add(1)
				}
			}
		})
	}
	for i := range 10 {
		if _, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: "bob", Password: "bob's password",
			Credentials: basic(app.ID, secA)}); e != nil {
			t.Errorf("bob's login %d during the spray: %v", i+1, e)
		}
	}
	close(stop)
	wg.Wait()
	if refused.Load() == 0 {
		t.Errorf("the spray (%d requests) never exceeded its client's share: the test shows nothing", spray.Load())
	}
}
