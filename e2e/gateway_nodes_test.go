package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/app"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/snapclient"
)

// beforeMidnight is a clock at 23:50 in Jakarta, the next one to come.
func beforeMidnight(t *testing.T) *clock {
	t.Helper()
	z := jakarta(t)
	now := time.Now().In(z)
	at := time.Date(now.Year(), now.Month(), now.Day(), 23, 50, 0, 0, z)
	if at.Before(now) {
		at = at.AddDate(0, 0, 1)
	}
	return &clock{now: at}
}

// TestGatewaySNAPTwoNodes runs two gateways (tokengate servers with
// gateway routes) on one PostgreSQL database, with one clock: an
// X-EXTERNAL-ID spent on one is refused on the other the same day and
// accepted again the next; a refused call spends nothing; a revoked
// token is refused on the next call on both.
func TestGatewaySNAPTwoNodes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	up := newUpstream(t)
	clk := beforeMidnight(t)
	routes := gatewayRoutes(up.srv.URL, closedURL(t))
	a := startClock(t, clk, withPostgres(dsn, snapEndpoints, routes))
	b := startClock(t, clk, withPostgres(dsn, snapEndpoints, routes))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := a.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "symmetric", "--scope", "va", "--default-scope", "va",
		"--auth-method", "snap_signature", "--auth-method", "client_secret_basic")
	b.remember(secret)
	tok, err := tokenSource(t, a, id).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a.remember(tok)
	b.remember(tok)
	body := `{"trxId":"INV-1"}`
	call := func(e *env, ext string, mod func(*svcCall)) *response {
		t.Helper()
		c := svcCall{target: "/v1.0/transfer-va/create-va", body: body, token: tok, secret: secret, partner: id, externalID: ext}
		if mod != nil {
			mod(&c)
		}
		return e.service(c)
	}
	ok := func(what string, r *response) {
		t.Helper()
		if r.status != 200 || r.str("responseCode") != "2002700" {
			t.Errorf("%s: %d %s", what, r.status, r.body)
		}
	}

	t.Run("replayed on the other node the same day, accepted the next day", func(t *testing.T) {
		ok("INV-0001 on A at 23:50", call(a, "INV-0001", nil))
		wantSNAP(t, "INV-0001 on B", call(b, "INV-0001", nil), 409, "4092700", "Conflict")
		wantSNAP(t, "INV-0001 on B, status", call(b, "INV-0001", func(c *svcCall) { c.target = "/v1.0/transfer-va/status" }),
			409, "4092600", "Conflict")

		// Refused calls spend nothing: the right one after them passes, on the other node.
		wantSNAP(t, "INV-0002 badly signed on A", call(a, "INV-0002", func(c *svcCall) { c.secret = "wrong secret" }),
			401, "4012700", "Unauthorized. [Signature]")
		wantSNAP(t, "INV-0002 without CHANNEL-ID on A", call(a, "INV-0002", func(c *svcCall) { c.set = map[string]string{"CHANNEL-ID": ""} }),
			400, "4002702", "Invalid Mandatory Field {CHANNEL-ID}")
		ok("INV-0002 right on B", call(b, "INV-0002", nil))
		wantSNAP(t, "INV-0002 again on A", call(a, "INV-0002", nil), 409, "4092700", "Conflict")

		// 23:58: a call that will be replayed, byte for byte, at 00:02.
		clk.Advance(8 * time.Minute)
		replay := svcCall{target: "/v1.0/transfer-va/create-va", body: body, token: tok, secret: secret, partner: id,
			externalID: "INV-0003", ts: snap.Timestamp(clk.Now())}
		ok("INV-0003 on A at 23:58", a.service(replay))

		clk.Advance(4 * time.Minute) // 00:02 the next day in Jakarta
		if h := clk.Now().In(jakarta(t)).Hour(); h != 0 {
			t.Fatalf("the clock is at %v, want just after midnight in Jakarta", clk.Now().In(jakarta(t)))
		}
		wantSNAP(t, "the 23:58 call replayed at 00:02 on B", b.service(replay), 409, "4092700", "Conflict")
		ok("INV-0001 on B the next day", call(b, "INV-0001", nil))
		ok("INV-0003 on A the next day", call(a, "INV-0003", nil))
		wantSNAP(t, "INV-0001 on A the next day, again", call(a, "INV-0001", nil), 409, "4092700", "Conflict")
		ok("INV-0002 on A the next day", call(a, "INV-0002", nil))
	})

	t.Run("a revoked token is refused on the next call on both nodes", func(t *testing.T) {
		tokens := tokenSource(t, b, id)
		fresh, err := tokens.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		a.remember(fresh)
		b.remember(fresh)
		for _, e := range []*env{a, b} {
			ok("before", call(e, extID(), func(c *svcCall) { c.token = fresh }))
		}
		if r := b.postForm("/oauth/revoke", url.Values{"token": {fresh}}, id, secret); r.status != 200 {
			t.Fatalf("revoke on B: %d %s", r.status, r.body)
		}
		for _, e := range []*env{a, b} {
			wantSNAP(t, "after", call(e, extID(), func(c *svcCall) { c.token = fresh }), 401, "4012701", "Invalid Token (B2B)")
		}

		// The merchant's client package drops the refused token and gets
		// another for the next call.
		merchant := &http.Client{Transport: &snapclient.Transport{Tokens: tokens, ClientSecret: []byte(secret), PartnerID: id,
			Now: clk.Now, Location: jakarta(t)}}
		for i, want := range []int{401, 200} {
			res, err := merchant.Post(a.base+"/v1.0/transfer-va/create-va", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("merchant call %d: %d, want %d", i, res.StatusCode, want)
			}
		}
	})
}

// TestGatewayOnlyProcess: `tokengate gateway` (app.OpenGateway) on the
// store of a token server serves the routes with the tokens that server
// issues, and none of the token server's endpoints.
func TestGatewayOnlyProcess(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	up := newUpstream(t)
	routes := gatewayRoutes(up.srv.URL, closedURL(t))
	srv := start(t, withPostgres(dsn, snapEndpoints, routes))
	gw := startNode(t, t.TempDir(), nil, app.OpenGateway, withPostgres(dsn, snapEndpoints, routes))
	_, pub := writeKeys(t, testSnapKey(t))
	id, secret := srv.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "symmetric", "--scope", "va", "--default-scope", "va")
	gw.remember(secret)
	tok, err := tokenSource(t, srv, id).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gw.remember(tok)

	r := gw.service(svcCall{target: "/v1.0/transfer-va/create-va", body: `{}`, token: tok, secret: secret, partner: id, externalID: extID()})
	if r.status != 200 || r.str("responseCode") != "2002700" {
		t.Fatalf("a call through the gateway process: %d %s", r.status, r.body)
	}
	for _, p := range []struct{ method, path string }{
		{"POST", "/oauth/token"}, {"POST", "/v1.0/access-token/b2b"}, {"POST", "/nicepay/v1.0/access-token/b2b"},
		{"POST", "/v2/auth/oauth2/token"}, {"POST", "/oauth/introspect"}, {"POST", "/oauth/revoke"},
		{"GET", "/.well-known/oauth-authorization-server"}, {"GET", "/.well-known/jwks.json"}, {"POST", "/snap/v1/verify"},
	} {
		req, _ := http.NewRequest(p.method, gw.base+p.path, strings.NewReader(`{"grantType":"client_credentials"}`))
		req.Header.Set("Content-Type", "application/json")
		if r := gw.do(req); r.status != 404 {
			t.Errorf("%s %s on the gateway process: %d %s", p.method, p.path, r.status, r.body)
		}
	}
	// The token server's paths read no body here: a body sent to them is
	// not waited for, and its connection ends after the 404.
	res, err := httpClient.Post(gw.base+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 || !res.Close {
		t.Errorf("a body to /oauth/token on the gateway process: %d, connection kept: %v", res.StatusCode, !res.Close)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		req, _ := http.NewRequest("GET", gw.base+path, nil)
		if r := gw.do(req); r.status != 200 {
			t.Errorf("%s: %d", path, r.status)
		}
	}
	found := false
	for _, s := range parseMetrics(t, gw.metrics())["tokengate_gateway_requests_total"] {
		if s.labels["route"] == "/v1.0/transfer-va/" && s.labels["result"] == "ok" {
			found = s.value == 1
		}
	}
	if !found {
		t.Error("the gateway process's metrics do not count the call")
	}
}
