package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/guard"
	"github.com/tokengate/tokengate/internal/pgtest"
)

// Issue 11, point 4, end to end: package guard in two resource servers,
// each subscribed to the revocation feed of a different tokengate node,
// both nodes on one PostgreSQL.

// testGuard is one resource server's guard and what its hooks counted.
type testGuard struct {
	name           string
	g              *guard.Guard
	introspections atomic.Int64
	jwksFetches    atomic.Int64
}

// dialTo is a transport whose every connection goes to addr() (the
// issuer, http://tokengate.test, names no real host).
func dialTo(addr func() string) *http.Transport {
	return &http.Transport{MaxIdleConnsPerHost: 16, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr())
	}}
}

// splitTransport sends the feed's requests one way and the others
// (metadata, JWKS, introspection) another, so a test can cut either.
type splitTransport struct{ feed, rest http.RoundTripper }

func (s splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/oauth/revocations" {
		return s.feed.RoundTrip(r)
	}
	return s.rest.RoundTrip(r)
}

// offsetClock is the real clock moved forward by a test, so the guard's
// time-based rules (FeedDownLimit) can be crossed without waiting, while
// the tokens of the real servers stay valid to it.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

func newTestGuard(t *testing.T, name, id, secret string, rt http.RoundTripper, cfg guard.Config) *testGuard {
	t.Helper()
	tg := &testGuard{name: name}
	cfg.Issuer, cfg.ClientID, cfg.ClientSecret = "http://tokengate.test", id, secret
	cfg.AllowInsecureHTTP = true
	cfg.HTTPClient = &http.Client{Transport: rt}
	cfg.Hooks.Introspected = func(time.Duration, error) { tg.introspections.Add(1) }
	cfg.Hooks.JWKSFetched = func(error) { tg.jwksFetches.Add(1) }
	g, err := guard.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("guard %s: %v", name, err)
	}
	t.Cleanup(func() { g.Close() })
	if !g.Stats().FeedUp {
		t.Fatalf("guard %s: the feed is not up after New", name)
	}
	tg.g = g
	return tg
}

// cached validates each token through each guard until it is cached: a
// second validation must need no introspection.
func cached(t *testing.T, guards []*testGuard, toks ...string) {
	t.Helper()
	for _, g := range guards {
		for i, tok := range toks {
			if _, err := g.g.Validate(context.Background(), tok); err != nil {
				t.Fatalf("guard %s, token %d: %v", g.name, i, err)
			}
		}
		n := g.introspections.Load()
		for i, tok := range toks {
			if _, err := g.g.Validate(context.Background(), tok); err != nil {
				t.Fatalf("guard %s, token %d (again): %v", g.name, i, err)
			}
		}
		if d := g.introspections.Load() - n; d != 0 {
			t.Fatalf("guard %s: %d introspections validating cached tokens", g.name, d)
		}
	}
}

// stillValid fails unless every guard accepts every token.
func stillValid(t *testing.T, guards []*testGuard, what string, toks ...string) {
	t.Helper()
	for _, g := range guards {
		for i, tok := range toks {
			if _, err := g.g.Validate(context.Background(), tok); err != nil {
				t.Errorf("guard %s: %s %d refused: %v", g.name, what, i, err)
			}
		}
	}
}

// victim is a token a revocation must reach.
type victim struct{ name, tok string }

// refusal is when one guard first refused one victim.
type refusal struct {
	guard, victim string
	after         time.Duration
	err           error
}

// refusedWithin polls Validate of every victim on every guard in a tight
// loop from revoked (just before the revocation was asked for) and
// returns when each guard first refused each one. It fails the test
// unless every refusal is ErrRevoked (the feed's word, not an
// introspection's) and came within limit.
func refusedWithin(t *testing.T, limit time.Duration, revoked time.Time, guards []*testGuard, victims ...victim) []refusal {
	t.Helper()
	var mu sync.Mutex
	var out []refusal
	var wg sync.WaitGroup
	for _, g := range guards {
		for _, v := range victims {
			wg.Go(func() {
				r := refusal{guard: g.name, victim: v.name}
				for {
					_, err := g.g.Validate(context.Background(), v.tok)
					if err != nil {
						r.after, r.err = time.Since(revoked), err
						break
					}
					if time.Since(revoked) > 3*limit {
						r.after, r.err = time.Since(revoked), errors.New("still valid")
						break
					}
					time.Sleep(500 * time.Microsecond)
				}
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b refusal) int { return strings.Compare(a.guard+a.victim, b.guard+b.victim) })
	for _, r := range out {
		switch {
		case !errors.Is(r.err, guard.ErrRevoked):
			t.Errorf("guard %s, %s: %v after %v, want ErrRevoked", r.guard, r.victim, r.err, r.after)
		case r.after > limit:
			t.Errorf("guard %s, %s: refused after %v, later than %v", r.guard, r.victim, r.after, limit)
		}
	}
	return out
}

// kidOf is a JWT's kid header.
func kidOf(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	var h struct{ Kid string }
	if err != nil || json.Unmarshal(b, &h) != nil || h.Kid == "" {
		t.Fatal("JWT without a kid")
	}
	return h.Kid
}

// TestGuardsOnTwoNodes: two tokengate nodes on one PostgreSQL; guard A
// subscribed to node A, guard B to node B. Each kind of revocation made on
// node A or through the CLI (a token, opaque and JWT; a refresh family by
// reuse, opaque and JWT; every token of a client; every token of a user)
// makes both guards refuse the cached tokens it names within a second,
// and no other. Then: a signing key rotated through the CLI is picked up
// by both guards without a restart; guard B's feed is cut: it fails closed
// as documented, and recovers, missing nothing, when the feed is back.
func TestGuardsOnTwoNodes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	settings := func(c *config.Config) {
		c.Tokens.RefreshReuseGrace = 0 // reuse revokes the family at once
		c.Tokens.KeyActivationDelay = time.Second
	}
	a := start(t, withPostgres(dsn, settings))
	b := start(t, withPostgres(dsn, settings))
	nodes := []*env{a, b}
	client := func(args ...string) (string, string) {
		id, secret := a.createClient(append([]string{"--grant", "client_credentials", "--grant", "password", "--grant", "refresh_token"}, args...)...)
		b.remember(secret)
		return id, secret
	}
	opID, opSecret := client("--name", "merchant")
	jwtID, jwtSecret := client("--name", "JWT merchant", "--token-format", "jwt")
	otherOpID, otherOpSecret := client("--name", "bystander")
	otherJWTID, otherJWTSecret := client("--name", "JWT bystander", "--token-format", "jwt")
	doomedOpID, doomedOpSecret := client("--name", "doomed merchant")
	doomedJWTID, doomedJWTSecret := client("--name", "doomed JWT merchant", "--token-format", "jwt")
	rsA, rsASecret := client("--name", "payments API (A)", "--can-introspect")
	rsB, rsBSecret := client("--name", "payments API (B)", "--can-introspect")
	for _, u := range []string{"payer", "bob", "fam"} {
		a.createUser(u, u+"'s password")
		b.remember(u + "'s password")
	}
	tok := func(node *env, id, secret string, form url.Values) *response {
		r := node.token(form, id, secret)
		for _, n := range nodes {
			n.remember(r.str("access_token"), r.str("refresh_token"))
		}
		return r
	}
	cc := func(id, secret string) string {
		return tok(a, id, secret, url.Values{"grant_type": {"client_credentials"}}).str("access_token")
	}
	pw := func(id, secret, user string) *response {
		return tok(a, id, secret, url.Values{"grant_type": {"password"}, "username": {user}, "password": {user + "'s password"}})
	}

	// Guard A talks to node A. Guard B talks to node B through two
	// proxies, one for its feed and one for everything else, that the
	// fail-closed part cuts.
	feedProxy := pgtest.StartProxy(t, b.srv.Addr())
	asProxy := pgtest.StartProxy(t, b.srv.Addr())
	clkB := &offsetClock{}
	aAddr := a.srv.Addr()
	gA := newTestGuard(t, "A", rsA, rsASecret, dialTo(func() string { return aAddr }),
		guard.Config{JWKSMinRefresh: 500 * time.Millisecond})
	gB := newTestGuard(t, "B", rsB, rsBSecret,
		splitTransport{feed: dialTo(feedProxy.Addr), rest: dialTo(asProxy.Addr)},
		guard.Config{JWKSMinRefresh: 500 * time.Millisecond, FeedDownLimit: 20 * time.Second, Now: clkB.Now})
	guards := []*testGuard{gA, gB}

	// Tokens no revocation below names: they stay valid throughout.
	bystanders := []string{cc(otherOpID, otherOpSecret), cc(otherJWTID, otherJWTSecret),
		cc(opID, opSecret), cc(jwtID, jwtSecret),
		pw(opID, opSecret, "bob").str("access_token"), pw(jwtID, jwtSecret, "bob").str("access_token")}
	cached(t, guards, bystanders...)

	var latencies []string
	revocation := func(name string, victims []victim, revoke func()) {
		t.Helper()
		var toks []string
		for _, v := range victims {
			toks = append(toks, v.tok)
		}
		cached(t, guards, toks...)
		at := time.Now()
		revoke()
		took := time.Since(at)
		var worst time.Duration
		for _, r := range refusedWithin(t, time.Second, at, guards, victims...) {
			t.Logf("%-22s guard %s refused %-14s %4dms after the revocation was asked for (the request took %dms)",
				name, r.guard, r.victim, r.after.Milliseconds(), took.Milliseconds())
			worst = max(worst, r.after)
		}
		latencies = append(latencies, fmt.Sprintf("%s: %dms", name, worst.Milliseconds()))
		stillValid(t, guards, "bystander after "+name, bystanders...)
	}
	revokeOnA := func(tok, id, secret string) func() {
		return func() {
			if r := a.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != http.StatusOK {
				t.Fatalf("revoke: %d %s", r.status, r.body)
			}
		}
	}

	opaque := cc(opID, opSecret)
	revocation("token (opaque)", []victim{{"opaque", opaque}}, revokeOnA(opaque, opID, opSecret))
	jwt := cc(jwtID, jwtSecret)
	revocation("token (JWT)", []victim{{"JWT", jwt}}, revokeOnA(jwt, jwtID, jwtSecret))

	for _, c := range []struct{ format, id, secret string }{{"opaque", opID, opSecret}, {"JWT", jwtID, jwtSecret}} {
		first := pw(c.id, c.secret, "fam")
		rt := first.str("refresh_token")
		second := tok(a, c.id, c.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		revocation("family by reuse ("+c.format+")",
			[]victim{{"first access", first.str("access_token")}, {"second access", second.str("access_token")}},
			func() {
				r := a.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.id, c.secret)
				if r.status != http.StatusBadRequest {
					t.Fatalf("refresh token reuse: %d %s", r.status, r.body)
				}
			})
	}

	for _, c := range []struct{ format, id, secret string }{{"opaque", doomedOpID, doomedOpSecret}, {"JWT", doomedJWTID, doomedJWTSecret}} {
		revocation("client, CLI ("+c.format+")",
			[]victim{{"client's own", cc(c.id, c.secret)}, {"bob's", pw(c.id, c.secret, "bob").str("access_token")}},
			func() { a.mustRun("", "token", "revoke", "--client", c.id) })
	}

	revocation("user, CLI",
		[]victim{{"opaque", pw(opID, opSecret, "payer").str("access_token")}, {"JWT", pw(jwtID, jwtSecret, "payer").str("access_token")}},
		func() { a.mustRun("", "token", "revoke", "--user", "payer") })
	t.Logf("slowest refusal of each revocation, over both guards: %s", strings.Join(latencies, "; "))

	// A signing key rotated through the CLI is picked up without a restart.
	// (Blocks, not subtests: the helpers of env fail the test they were
	// made with.)
	{
		old := cc(jwtID, jwtSecret)
		oldKID := kidOf(t, old)
		var rotated struct{ KID string }
		if err := json.Unmarshal([]byte(a.mustRun("", "key", "rotate", "--json")), &rotated); err != nil || rotated.KID == oldKID {
			t.Fatalf("key rotate: %v, kid %q", err, rotated.KID)
		}
		fetches := []int64{gA.jwksFetches.Load(), gB.jwksFetches.Load()}
		// After the activation delay, node A signs with the new key.
		var fresh string
		eventuallyWithin(t, 5*time.Second, "node A signs with the rotated key", func() bool {
			fresh = cc(jwtID, jwtSecret)
			return kidOf(t, fresh) == rotated.KID
		})
		for i, g := range guards {
			if _, err := g.g.Validate(context.Background(), fresh); err != nil {
				t.Errorf("guard %s: a JWT signed by the rotated key: %v", g.name, err)
			}
			if g.jwksFetches.Load() == fetches[i] {
				t.Errorf("guard %s validated a JWT of a new key without fetching the JWKS", g.name)
			}
		}
		// Tokens of the replaced key stay valid (it stays published).
		stillValid(t, guards, "JWT of the replaced key", old)
		stillValid(t, guards, "bystander", bystanders...)
	}

	// Guard B's feed is cut: it fails closed, then recovers.
	{
		op, jw := cc(opID, opSecret), cc(jwtID, jwtSecret)
		opVictim, jwtVictim := cc(opID, opSecret), cc(jwtID, jwtSecret)
		cached(t, guards, op, jw, opVictim, jwtVictim)
		// A plain subscriber of node B, to know when node B has the
		// revocations made while guard B's feed is cut.
		watch := b.subscribe(rsB, rsBSecret, "")
		watch.hello()

		feedProxy.Cut()
		eventuallyWithin(t, 5*time.Second, "guard B sees its feed down", func() bool { return !gB.g.Stats().FeedUp })
		// Within FeedDownLimit of the last byte (the server pings every
		// 15 s; the limit is 20 s): cached results are still used.
		n := gB.introspections.Load()
		stillValid(t, []*testGuard{gB}, "cached token, feed down within the limit", op, jw)
		if d := gB.introspections.Load() - n; d != 0 {
			t.Errorf("%d introspections within the limit", d)
		}

		// Past the limit: no cached result is used. Every opaque token is
		// introspected on every call, and every JWT too.
		clkB.Advance(25 * time.Second)
		n = gB.introspections.Load()
		for range 3 {
			stillValid(t, []*testGuard{gB}, "token, feed down past the limit", op, jw)
		}
		if d := gB.introspections.Load() - n; d != 6 {
			t.Errorf("%d introspections for 3 validations of an opaque token and a JWT past the limit, want 6", d)
		}
		// So revocations made meanwhile are refused, through introspection
		// (guard A, whose feed is up, refuses them through the feed).
		revokeOnA(opVictim, opID, opSecret)()
		revokeOnA(jwtVictim, jwtID, jwtSecret)()
		at := time.Now()
		refusedWithin(t, time.Second, at, []*testGuard{gA}, victim{"opaque", opVictim}, victim{"JWT", jwtVictim})
		for _, v := range []string{opVictim, jwtVictim} {
			if _, err := gB.g.Validate(context.Background(), v); !errors.Is(err, guard.ErrInactive) {
				t.Errorf("guard B, feed down, a token revoked meanwhile: %v, want ErrInactive (introspected)", err)
			}
		}

		watch.expect(time.Second, tokenEvent(opVictim), revoked{Type: "token", ID: jti(t, jwtVictim)})

		// The authorization server unreachable too: nothing can be checked.
		asProxy.Cut()
		for _, v := range []string{op, jw} {
			if _, err := gB.g.Validate(context.Background(), v); !errors.Is(err, guard.ErrUnavailable) {
				t.Errorf("feed and server unreachable: %v, want ErrUnavailable", err)
			}
		}
		h := gB.g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/v1/balance", nil)
		req.Header.Set("Authorization", "Bearer "+op)
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("middleware, feed and server unreachable: %d, want 503", rec.Code)
		}

		// Back: the guard resumes from its cursor, so it learns of the
		// revocations it missed (node B replays them before the ping that
		// tells the guard it has caught up), and uses its cache again.
		asProxy.Restore()
		feedProxy.Restore()
		took := eventuallyWithin(t, 10*time.Second, "guard B's feed up again", func() bool { return gB.g.Stats().FeedUp })
		t.Logf("guard B's feed up again %v after the proxies came back (the guard's reconnection backoff)", took.Round(time.Millisecond))
		for _, v := range []string{opVictim, jwtVictim} {
			if _, err := gB.g.Validate(context.Background(), v); !errors.Is(err, guard.ErrRevoked) {
				t.Errorf("guard B back, a token revoked while its feed was cut: %v, want ErrRevoked (replayed by the resumed feed)", err)
			}
		}
		n = gB.introspections.Load()
		stillValid(t, []*testGuard{gB}, "token after the feed came back", op, jw)
		stillValid(t, guards, "bystander after the feed came back", bystanders...)
		if d := gB.introspections.Load() - n; d != 0 {
			t.Errorf("%d introspections after the feed came back, want none (cached)", d)
		}
	}
}
