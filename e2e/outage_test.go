package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/internal/pgtest"
)

// TestPostgresOutage: while PostgreSQL is unreachable, requests fail fast
// with a 503 in each dialect's own format and /readyz says not ready; when
// it is back, the same server serves again without a restart.
func TestPostgresOutage(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	p := pgtest.StartProxy(t, pgtest.Target(t, dsn))
	e := start(t, withPostgres(pgtest.ViaProxy(t, dsn, p.Addr()), snapEndpoints, func(c *config.Config) {
		c.RequestTimeout = 2 * time.Second
	}))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "disbursement",
		"--snap-public-key", pub, "--auth-method", "snap_signature,client_secret_basic,client_secret_post")
	cc := url.Values{"grant_type": {"client_credentials"}}
	tok := e.token(cc, id, secret).str("access_token")

	get := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, e.base+path, nil)
		return e.do(req).status
	}
	neox := func() *response {
		b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": id, "client_secret": secret})
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v2/auth/oauth2/token", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		return e.do(req)
	}

	p.Cut()
	start := time.Now()
	r := e.postForm("/oauth/token", cc, id, secret)
	if r.status != 503 || r.str("error") != "temporarily_unavailable" {
		t.Errorf("oauth2 token during outage: %d %s", r.status, r.body)
	}
	if r := e.postForm("/oauth/introspect", url.Values{"token": {tok}}, id, secret); r.status != 503 || r.str("error") != "temporarily_unavailable" {
		t.Errorf("introspection during outage: %d %s (must not claim inactive)", r.status, r.body)
	}
	if r := neox(); r.status != 503 || r.json["code"] != float64(503) {
		t.Errorf("neox during outage: %d %s", r.status, r.body)
	}
	ts := uniqueTimestamp()
	sig, _ := snap.Sign(key, id, ts)
	if r := e.snapRequest("/v1.0/access-token/b2b", id, ts, sig, `{"grantType":"client_credentials"}`); r.status != 504 || r.str("responseCode") != "5047300" {
		t.Errorf("SNAP during outage: %d %s", r.status, r.body)
	}
	if got := get("/readyz"); got != 503 {
		t.Errorf("/readyz during outage: %d", got)
	}
	if got := get("/healthz"); got != 200 {
		t.Errorf("/healthz during outage: %d (the process is up)", got)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("failing took %v: not fast", took)
	}
	if strings.Contains(e.logs.String(), "panic") {
		t.Error("a panic was logged during the outage")
	}

	p.Restore()
	took := eventuallyWithin(t, 10*time.Second, "served again after the database is back", func() bool {
		return e.postForm("/oauth/token", cc, id, secret).status == 200 && get("/readyz") == 200
	})
	t.Logf("recovered %v after the database came back", took.Round(time.Millisecond))
	if !e.active(tok, id, secret) {
		t.Error("a token issued before the outage is inactive after it")
	}
}
