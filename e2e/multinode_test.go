package e2e

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/internal/pgtest"
)

// TestTwoNodesOnePostgres runs two tokengate servers on one PostgreSQL
// database, as behind a load balancer.
func TestTwoNodesOnePostgres(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	a := start(t, withPostgres(dsn, snapEndpoints))
	b := start(t, withPostgres(dsn, snapEndpoints))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := a.createClient("--name", "merchant", "--grant", "client_credentials", "--grant", "password",
		"--grant", "refresh_token", "--snap-public-key", pub)
	rsID, rsSecret := b.createClient("--name", "resource server", "--grant", "client_credentials")
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
