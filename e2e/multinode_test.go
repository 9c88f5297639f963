package e2e

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/internal/pgtest"
)

// TestTwoNodesOnePostgres runs two tokengate servers on one PostgreSQL
// database, as behind a load balancer.
func TestTwoNodesOnePostgres(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	// Without the refresh reuse grace: its exactly-once rotation is what
	// is tested here (TestRefreshGraceAcrossNodes covers the grace).
	noGrace := func(c *config.Config) { c.Tokens.RefreshReuseGrace = 0 }
	a := start(t, withPostgres(dsn, snapEndpoints, noGrace))
	b := start(t, withPostgres(dsn, snapEndpoints, noGrace))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := a.createClient("--name", "merchant", "--grant", "client_credentials", "--grant", "password",
		"--grant", "refresh_token", "--snap-public-key", pub, "--auth-method", "snap_signature,client_secret_basic,client_secret_post")
	rsID, rsSecret := b.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	b.remember(secret)
	a.remember(rsSecret)
	cc := url.Values{"grant_type": {"client_credentials"}}

	t.Run("issued on A, active on B; revoked on B, inactive on A at once", func(t *testing.T) {
		tok := a.token(cc, id, secret).str("access_token")
		b.remember(tok)
		if !b.active(tok, rsID, rsSecret) {
			t.Fatal("token from A inactive on B")
		}
		if r := b.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != 200 {
			t.Fatalf("revoke on B: %d %s", r.status, r.body)
		}
		if a.active(tok, rsID, rsSecret) {
			t.Error("token revoked on B still active on A")
		}
	})

	t.Run("refresh token presented to A and B at once is honoured once", func(t *testing.T) {
		a.createUser("payer", "payer's password")
		b.remember("payer's password")
		for round := range 5 {
			r := a.token(url.Values{"grant_type": {"password"}, "username": {"payer"}, "password": {"payer's password"}}, id, secret)
			rt := r.str("refresh_token")
			b.remember(rt, r.str("access_token"))
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			var wg sync.WaitGroup
			statuses := make([]int, 2)
			for i, node := range []*env{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res := node.postForm("/oauth/token", form, id, secret)
					statuses[i] = res.status
				}()
			}
			wg.Wait()
			ok := 0
			for _, s := range statuses {
				if s == 200 {
					ok++
				} else if s != 400 {
					t.Errorf("round %d: status %d", round, s)
				}
			}
			if ok != 1 {
				t.Errorf("round %d: %d nodes honoured the same refresh token (statuses %v)", round, ok, statuses)
			}
		}
	})

	t.Run("SNAP signature replayed to the other node is refused", func(t *testing.T) {
		ts := uniqueTimestamp()
		sig, _ := snap.Sign(key, id, ts)
		body := `{"grantType":"client_credentials","additionalInfo":{}}`
		if r := a.snapRequest("/v1.0/access-token/b2b", id, ts, sig, body); r.status != 200 {
			t.Fatalf("on A: %d %s", r.status, r.body)
		}
		r := b.snapRequest("/v1.0/access-token/b2b", id, ts, sig, body)
		if r.status != 401 || r.str("responseCode") != "4017300" {
			t.Errorf("replay on B: %d %s", r.status, r.body)
		}
	})

	t.Run("client disabled on A is refused on B within the bound", func(t *testing.T) {
		b.token(cc, id, secret) // cached on B
		a.mustRun("", "client", "disable", id)
		took := eventually(t, "disabled client refused on B", func() bool {
			return b.postForm("/oauth/token", cc, id, secret).status == http.StatusUnauthorized
		})
		t.Logf("B refused the client %v after it was disabled", took.Round(time.Millisecond))
	})
}

// TestRefreshGraceAcrossNodes: with the reuse grace (the default), one
// refresh token presented to two nodes at once gets each a valid pair of
// the family, and a retry of a lost reply is honoured too; nothing is
// revoked. After the grace, reuse revokes the whole family on every node.
func TestRefreshGraceAcrossNodes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	clk := newClock()
	withClock := func(c *config.Config) { c.Tokens.RefreshReuseGrace = 15 * time.Second }
	a := startClock(t, clk, withPostgres(dsn, withClock))
	b := startClock(t, clk, withPostgres(dsn, withClock))
	id, secret := a.createClient("--name", "merchant", "--grant", "password", "--grant", "refresh_token")
	rsID, rsSecret := a.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	b.remember(secret, rsSecret)
	a.createUser("payer", "payer's password")
	b.remember("payer's password")
	r := a.token(url.Values{"grant_type": {"password"}, "username": {"payer"}, "password": {"payer's password"}}, id, secret)
	rt := r.str("refresh_token")
	b.remember(rt, r.str("access_token"))
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	var wg sync.WaitGroup
	got := make([]*response, 2)
	for i, node := range []*env{a, b} {
		wg.Go(func() { got[i] = node.postForm("/oauth/token", form, id, secret) })
	}
	wg.Wait()
	clk.Advance(14 * time.Second)
	retry := b.postForm("/oauth/token", form, id, secret)
	var fresh []string
	for i, res := range append(got, retry) {
		if res.status != 200 {
			t.Fatalf("request %d within the grace: %d %s", i, res.status, res.body)
		}
		a.remember(res.str("access_token"), res.str("refresh_token"))
		b.remember(res.str("access_token"), res.str("refresh_token"))
		fresh = append(fresh, res.str("access_token"), res.str("refresh_token"))
	}
	for _, tok := range fresh {
		if !a.active(tok, rsID, rsSecret) || !b.active(tok, rsID, rsSecret) {
			t.Fatal("a token issued within the grace is inactive")
		}
	}
	clk.Advance(2 * time.Second)
	if res := a.postForm("/oauth/token", form, id, secret); res.status != 400 || res.str("error") != "invalid_grant" {
		t.Fatalf("reuse after the grace: %d %s", res.status, res.body)
	}
	for _, tok := range fresh {
		if a.active(tok, rsID, rsSecret) || b.active(tok, rsID, rsSecret) {
			t.Fatal("a family token survived reuse after the grace")
		}
	}
}
