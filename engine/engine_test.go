package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
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
	store *sqlite.Store
	admin *admin.Admin
	clock *clock
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{now: time.Now()}
	eng, err := New(ctx, st, Config{Issuer: "https://issuer.test", DefaultAccessTTL: time.Hour, Now: clk.Now,
		PasswordHashConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{eng: eng, store: st, admin: admin.New(st, eng.Secrets(), eng.Passwords(), clk.Now), clock: clk}
}

func (f *fixture) client(t testing.TB, spec admin.ClientSpec) (*oauth.Client, string) {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "test"
	}
	c, sec, err := f.admin.CreateClient(context.Background(), spec)
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
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, AccessTTL: 10 * time.Minute})
	resp, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)})
	if e != nil {
		t.Fatal(e)
	}
	if resp.ExpiresIn != 600 || !resp.ExpiresAt.Equal(resp.IssuedAt.Add(10*time.Minute)) {
		t.Fatalf("expires_in %d, issued %v, expires %v", resp.ExpiresIn, resp.IssuedAt, resp.ExpiresAt)
	}
	if in, err := f.eng.Introspect(ctx, resp.AccessToken); err != nil || !in.Active {
		t.Fatalf("fresh token: %+v %v", in, err)
	}
	f.clock.Advance(10*time.Minute - time.Second)
	if in, _ := f.eng.Introspect(ctx, resp.AccessToken); !in.Active {
		t.Fatal("token inactive before its expiry")
	}
	f.clock.Advance(time.Second)
	if in, _ := f.eng.Introspect(ctx, resp.AccessToken); in.Active {
		t.Fatal("token active at its expiry")
	}
}

func TestAuthenticateClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec)); e != nil {
		t.Fatalf("right secret: %v", e)
	}
	post := oauth.ClientCredentials{Method: oauth.AuthSecretPost, ClientID: c.ID, Secret: "wrong"}
	for name, creds := range map[string]oauth.ClientCredentials{
		"wrong secret basic": basic(c.ID, "wrong"),
		"unknown client":     basic("nobody", sec),
		"empty secret":       basic(c.ID, ""),
		"none":               {},
		"wrong secret post":  post,
	} {
		_, e := f.eng.AuthenticateClient(ctx, creds)
		if e == nil || e.Code != oauth.CodeInvalidClient {
			t.Errorf("%s: %v", name, e)
			continue
		}
		wantStatus := 401
		if creds.Method == oauth.AuthSecretPost {
			wantStatus = 400
		}
		if e.Status != wantStatus || e.BasicAuthFailed != (wantStatus == 401) {
			t.Errorf("%s: status %d challenge %v", name, e.Status, e.BasicAuthFailed)
		}
	}
	// The dialect-verified path: the engine defers to the dialect's check.
	verified := oauth.ClientCredentials{Method: oauth.AuthDialect, ClientID: c.ID,
		Verify: func(_ context.Context, cl *oauth.Client) *oauth.Error {
			if cl.ID != c.ID {
				t.Errorf("verify got client %s", cl.ID)
			}
			return oauth.InvalidClient(oauth.CauseReplay, "replayed")
		}}
	if _, e := f.eng.AuthenticateClient(ctx, verified); e == nil || e.Cause != oauth.CauseReplay {
		t.Errorf("dialect verification: %v", e)
	}
}

func TestClientCacheSeesChangesAfterRefresh(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec)); e != nil {
		t.Fatal(e)
	}
	if err := f.admin.SetClientDisabled(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	// Cached until the next revision check.
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec)); e != nil {
		t.Fatalf("cache dropped without a refresh: %v", e)
	}
	if err := f.eng.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec)); e == nil || e.Cause != oauth.CauseClientDisabled {
		t.Fatalf("disabled client after refresh: %v", e)
	}
	// A client created after an unknown-ID lookup was cached is found after a refresh.
	if _, e := f.eng.AuthenticateClient(ctx, basic("later", "x")); e == nil || e.Cause != oauth.CauseUnknownClient {
		t.Fatal(e)
	}
	c2, sec2 := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	f.eng.Refresh(ctx)
	if _, e := f.eng.AuthenticateClient(ctx, basic(c2.ID, sec2)); e != nil {
		t.Fatal(e)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}})
	if err := f.admin.CreateUser(ctx, "u", "password1"); err != nil {
		t.Fatal(err)
	}
	first, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: "u", Password: "password1", Credentials: basic(c.ID, sec)})
	if e != nil {
		t.Fatal(e)
	}
	refresh := func(rt string) (*oauth.TokenResponse, *oauth.Error) {
		return f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantRefreshToken, RefreshToken: rt, Credentials: basic(c.ID, sec)})
	}
	second, e := refresh(first.RefreshToken)
	if e != nil {
		t.Fatal(e)
	}
	if _, e := refresh(first.RefreshToken); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Fatalf("reuse: %v", e)
	}
	for _, tok := range []string{first.AccessToken, second.AccessToken, second.RefreshToken} {
		if in, _ := f.eng.Introspect(ctx, tok); in.Active {
			t.Errorf("family token still active after reuse")
		}
	}
	// Concurrent redemptions of one refresh token: exactly one wins.
	third, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: "u", Password: "password1", Credentials: basic(c.ID, sec)})
	if e != nil {
		t.Fatal(e)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, e := refresh(third.RefreshToken); e == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent redemptions succeeded, want 1", wins)
	}
}

func TestUnknownUserCostsAPasswordCheck(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword}})
	if err := f.admin.CreateUser(ctx, "known", "password1"); err != nil {
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
	known, unknown := timeIt("known"), timeIt("unknown")
	// argon2id takes milliseconds; skipping it for unknown users would make
	// the unknown case orders of magnitude faster.
	if unknown < known/4 {
		t.Errorf("unknown user answered in %v vs %v for a known one: timing reveals existence", unknown, known)
	}
}

func TestStoreFailureIsUnavailableNotServerError(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.eng.StoreError(ctx, "x", errors.Join(errors.New("dial tcp: refused"), oauth.ErrUnavailable))
	if e.Status != 503 || e.Cause != oauth.CauseUnavailable {
		t.Errorf("unavailable: %+v", e)
	}
	if e := f.eng.StoreError(ctx, "x", context.DeadlineExceeded); e.Status != 503 || e.Cause != oauth.CauseTimeout {
		t.Errorf("timeout: %+v", e)
	}
	if e := f.eng.StoreError(ctx, "x", errors.New("constraint")); e.Status != 500 || e.Description != "internal error" {
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
			if _, e := f.eng.AuthenticateClient(ctx, creds); e != nil {
				b.Fatal(e)
			}
		}
	})
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

func TestRateLimiter(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(10, 3, clk.Now)
	for i := range 3 {
		if !l.allow("a") {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.allow("a") {
		t.Fatal("request beyond the burst allowed")
	}
	if !l.allow("b") {
		t.Fatal("another client was limited by a's requests")
	}
	clk.Advance(100 * time.Millisecond) // one token at 10/s
	if !l.allow("a") || l.allow("a") {
		t.Fatal("refill is not 10 a second")
	}
	clk.Advance(time.Hour)
	for range 3 {
		if !l.allow("a") {
			t.Fatal("bucket not refilled to the burst")
		}
	}
	if l.allow("a") {
		t.Fatal("bucket refilled beyond the burst")
	}
	var unlimited *rateLimiter = newRateLimiter(0, 0, clk.Now)
	if unlimited != nil || !unlimited.allow("a") {
		t.Fatal("a zero rate must mean unlimited")
	}
}

func TestUnknownClientFloodKeepsRealClientsCached(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}})
	if _, e := f.eng.AuthenticateClient(ctx, basic(c.ID, sec)); e != nil {
		t.Fatal(e)
	}
	for i := range maxUnknownIDs + 10 {
		f.eng.AuthenticateClient(ctx, basic(fmt.Sprintf("made-up-%d", i), "x"))
	}
	f.eng.clients.mu.RLock()
	_, cached := f.eng.clients.known[c.ID]
	f.eng.clients.mu.RUnlock()
	if !cached {
		t.Error("a flood of unknown client IDs evicted a real client")
	}
}

func TestRefreshScopeRules(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantPassword, oauth.GrantRefreshToken}, Scopes: []string{"pay", "refund"}})
	if err := f.admin.CreateUser(ctx, "u", "password1"); err != nil {
		t.Fatal(err)
	}
	login := func() *oauth.TokenResponse {
		r, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantPassword, Username: "u", Password: "password1",
			Scopes: []string{"pay", "refund"}, Credentials: basic(c.ID, sec)})
		if e != nil {
			t.Fatal(e)
		}
		return r
	}
	refresh := func(rt string, scopes ...string) (*oauth.TokenResponse, *oauth.Error) {
		return f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantRefreshToken, RefreshToken: rt, Scopes: scopes, Credentials: basic(c.ID, sec)})
	}

	// A narrowed refresh narrows the access token, not the refresh token
	// (RFC 6749 §6: the new refresh token's scope is identical).
	r1 := login()
	r2, e := refresh(r1.RefreshToken, "pay")
	if e != nil || strings.Join(r2.Scopes, " ") != "pay" {
		t.Fatalf("narrowed refresh: %v %v", r2, e)
	}
	r3, e := refresh(r2.RefreshToken, "pay", "refund")
	if e != nil || strings.Join(r3.Scopes, " ") != "pay refund" {
		t.Fatalf("the refresh token lost scope when an access token was narrowed: %v %v", r3, e)
	}

	// Reuse is detected before any other check: a replay asking for a scope
	// it never had still revokes the family (RFC 9700 §4.14).
	if _, e := refresh(r2.RefreshToken, "admin"); e == nil || e.Code != oauth.CodeInvalidGrant {
		t.Fatalf("replayed token with a foreign scope: %v", e)
	}
	if in, _ := f.eng.Introspect(ctx, r3.RefreshToken); in.Active {
		t.Error("the family survived a replay that asked for another scope")
	}

	// Scope the operator has since removed from the client is not granted
	// again by a refresh.
	r4 := login()
	if err := f.admin.UpdateClient(ctx, c.ID, func(cl *oauth.Client) error { cl.Scopes = []string{"pay"}; return nil }); err != nil {
		t.Fatal(err)
	}
	f.eng.Refresh(ctx)
	r5, e := refresh(r4.RefreshToken)
	if e != nil || strings.Join(r5.Scopes, " ") != "pay" {
		t.Fatalf("refresh after the client lost a scope: %v %v", r5, e)
	}
	if _, e := refresh(r5.RefreshToken, "refund"); e == nil || e.Code != oauth.CodeInvalidScope {
		t.Errorf("asking for a removed scope: %v", e)
	}
}

func TestFirstKeyForAnAlgorithmIsMadeOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, sec := f.client(t, admin.ClientSpec{Grants: []string{oauth.GrantClientCredentials}, TokenFormat: oauth.FormatJWT, SigningAlg: oauth.AlgEdDSA})
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, e := f.eng.Token(ctx, &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, Credentials: basic(c.ID, sec)}); e != nil {
				t.Error(e)
			}
		}()
	}
	wg.Wait()
	keys, err := f.store.ListSigningKeys(ctx, time.Now())
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
