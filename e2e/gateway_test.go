package e2e

import (
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/snapclient"
	"github.com/tokengate/tokengate/snapsig"
)

// upstream is a payment API stand-in behind the gateway: it records every
// call that reaches it and answers SNAP's success. Paths under /v1.0/slow/
// answer only after the gateway has given up on them.
type upstream struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []upstreamCall
}

type upstreamCall struct {
	method, path, rawQuery, host string
	header                       http.Header
	body                         []byte
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: reading the body: %v", err)
		}
		u.mu.Lock()
		u.calls = append(u.calls, upstreamCall{method: r.Method, path: r.URL.EscapedPath(), rawQuery: r.URL.RawQuery,
			host: r.Host, header: r.Header.Clone(), body: body})
		u.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/v1.0/slow/") {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "payment-api")
		fmt.Fprintf(w, `{"responseCode":"2002700","responseMessage":"Successful","path":%q}`, r.URL.Path)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.calls) }

// last is the last call that reached the upstream.
func (u *upstream) last(t *testing.T) upstreamCall {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.calls) == 0 {
		t.Fatal("no call reached the upstream")
	}
	return u.calls[len(u.calls)-1]
}

// closedURL is an http URL on which nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// gatewayRoutes configures the SNAP routes the gateway tests use, in front
// of upstream (and one in front of down, where nothing listens).
func gatewayRoutes(upstream, down string) func(*config.Config) {
	return func(c *config.Config) {
		c.Gateway.UpstreamTimeout = 300 * time.Millisecond
		c.Gateway.Routes = []config.GatewayRoute{
			// The example route: service 27, and 26 for status.
			{Prefix: "/v1.0/transfer-va/", Upstream: upstream, ServiceCode: 27,
				ServiceCodes: map[string]int{"/v1.0/transfer-va/status": 26}, Scopes: []string{"va"}, Signature: "symmetric"},
			{Prefix: "/v1.0/qr/", Upstream: upstream, ServiceCode: 47, Scopes: []string{"qr"}, Signature: "either"},
			{Prefix: "/v1.0/debit/", Upstream: upstream, ServiceCode: 54, Signature: "asymmetric", Token: "none"},
			{Prefix: "/v1.0/registration/", Upstream: upstream, ServiceCode: 6, Signature: "asymmetric", Token: "none",
				Scopes: []string{"va"}},
			{Prefix: "/pg/v1.0/", Upstream: upstream, ServiceCode: 33, StripPrefix: "/pg", IncludeQuery: true},
			{Prefix: "/v1.0/slow/", Upstream: upstream, ServiceCode: 25},
			{Prefix: "/v1.0/down/", Upstream: down, ServiceCode: 28},
		}
	}
}

// both applies every mutation in turn.
func both(ms ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		for _, m := range ms {
			m(c)
		}
	}
}

// jakarta is the zone of SNAP's X-TIMESTAMP and of the gateway's days.
func jakarta(t *testing.T) *time.Location {
	t.Helper()
	z, err := time.LoadLocation("Asia/Jakarta")
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// tokenSource is a merchant's SNAP token source against e's B2B endpoint
// without replay protection (requests from a frozen clock repeat their
// timestamp), on the env's clock.
func tokenSource(t *testing.T, e *env, clientID string) *snapclient.TokenSource {
	t.Helper()
	now := e.now
	if now == nil {
		now = time.Now
	}
	ts, err := snapclient.NewTokenSource(snapclient.TokenConfig{URL: e.base + "/nicepay/v1.0/access-token/b2b", ClientID: clientID,
		PrivateKey: testSnapKey(t), Now: now, Location: jakarta(t), HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// svcCall is one SNAP service call, signed by hand so a test controls
// every part of it.
type svcCall struct {
	method, target, body string // target: the path and query, as sent
	token                string // the access token; "" sends no Authorization
	secret               string // the symmetric key; "" signs asymmetrically with key
	key                  *rsa.PrivateKey
	partner, externalID  string
	ts                   string            // X-TIMESTAMP; "" is the env's clock now
	strip                string            // the route's strip_prefix
	includeQuery         bool              // the route's include_query
	set                  map[string]string // headers set after signing ("" deletes)
	raw                  map[string]string // headers added under their name as given (any case)
	contentType          string            // "" is application/json
}

// service sends c to e.
func (e *env) service(c svcCall) *response {
	e.t.Helper()
	return e.do(e.serviceRequest(c))
}

// serviceRequest is c as a request to e.
func (e *env) serviceRequest(c svcCall) *http.Request {
	e.t.Helper()
	u, err := url.Parse(e.base + c.target)
	if err != nil {
		e.t.Fatal(err)
	}
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.ts == "" {
		now := time.Now()
		if e.now != nil {
			now = e.now()
		}
		c.ts = snap.Timestamp(now.In(jakarta(e.t)))
	}
	hash := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if m, err := snapsig.Minify([]byte(c.body)); err == nil {
		hash = snapsig.BodyHash(m)
	}
	ep := snapsig.EndpointURL(u.EscapedPath(), u.RawQuery, c.strip, c.includeQuery)
	var sig string
	if c.secret != "" {
		sig = snapsig.SignSymmetric([]byte(c.secret), snapsig.SymmetricString(c.method, ep, c.token, hash, c.ts))
	} else if sig, err = snapsig.SignAsymmetric(c.key, snapsig.AsymmetricString(c.method, ep, hash, c.ts)); err != nil {
		e.t.Fatal(err)
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, u.String(), body)
	if err != nil {
		e.t.Fatal(err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	if c.contentType != "" {
		h.Set("Content-Type", c.contentType)
	}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	h.Set("X-TIMESTAMP", c.ts)
	h.Set("X-SIGNATURE", sig)
	h.Set("X-PARTNER-ID", c.partner)
	h.Set("X-EXTERNAL-ID", c.externalID)
	h.Set("CHANNEL-ID", "95221")
	for k, v := range c.set {
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
	}
	for k, v := range c.raw {
		h[k] = append(h[k], v)
	}
	return req
}

// wantSNAP fails unless r is the SNAP answer status, code, message, with
// SNAP's response headers.
func wantSNAP(t *testing.T, what string, r *response, status int, code, message string) {
	t.Helper()
	if r.status != status || r.str("responseCode") != code || r.str("responseMessage") != message {
		t.Errorf("%s: %d %s, want %d %s %q", what, r.status, r.body, status, code, message)
		return
	}
	if _, err := snap.ParseTimestamp(r.header.Get("X-TIMESTAMP")); err != nil || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("%s: answer headers %v", what, r.header)
	}
	if len(r.json) != 2 {
		t.Errorf("%s: answer %s, want only responseCode and responseMessage", what, r.body)
	}
}

var extSeq struct {
	sync.Mutex
	n int
}

// extID is a fresh X-EXTERNAL-ID.
func extID() string {
	extSeq.Lock()
	defer extSeq.Unlock()
	extSeq.n++
	return fmt.Sprintf("ext-%d-%d", time.Now().UnixNano(), extSeq.n)
}

// TestGatewaySNAPResponseCodes drives every SNAP answer of the gateway
// through a real server in front of a real upstream: each refused call
// gets its code, with the service code of the path called, and never
// reaches the upstream; the metrics count each result per route.
func TestGatewaySNAPResponseCodes(t *testing.T) {
	up := newUpstream(t)
	clk := newClock()
	e := startClock(t, clk, both(snapEndpoints, gatewayRoutes(up.srv.URL, closedURL(t))))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "both", "--scope", "va", "--scope", "qr", "--default-scope", "va", "--default-scope", "qr",
		"--auth-method", "snap_signature", "--auth-method", "client_secret_basic")
	qrID, qrSecret := e.createClient("--name", "qr only", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "symmetric", "--scope", "qr", "--default-scope", "qr")
	ctx := context.Background()
	tok, err := tokenSource(t, e, id).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qrTok, err := tokenSource(t, e, qrID).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(tok, qrTok)

	const createVA = "/v1.0/transfer-va/create-va"
	body := `{"partnerServiceId":"  088899","trxId":"INV-1","totalAmount":{"value":"150000.00","currency":"IDR"}}`
	call := func(mod func(*svcCall)) *response {
		t.Helper()
		c := svcCall{target: createVA, body: body, token: tok, secret: secret, partner: id, externalID: extID()}
		if mod != nil {
			mod(&c)
		}
		return e.service(c)
	}
	// results counts what the metrics must show, per route and result.
	results := map[[2]string]float64{}
	expect := func(route, result string) { results[[2]string{route, result}]++ }

	if r := call(nil); r.status != 200 || r.str("responseCode") != "2002700" || r.header.Get("X-Upstream") != "payment-api" {
		t.Fatalf("a well-signed call: %d %s", r.status, r.body)
	}
	expect("/v1.0/transfer-va/", "ok")

	type refusal struct {
		name    string
		mod     func(*svcCall)
		status  int
		code    string
		message string
	}
	drop := func(h string) func(*svcCall) { return func(c *svcCall) { c.set = map[string]string{h: ""} } }
	stale := clk.Now().Add(-6 * time.Minute).In(jakarta(t))
	future := clk.Now().Add(6 * time.Minute).In(jakarta(t))
	cases := []refusal{
		{"malformed X-TIMESTAMP", func(c *svcCall) { c.ts = "2026-01-02 10:11:12" }, 400, "4002701", "Invalid Field Format {X-TIMESTAMP}"},
		{"37-character X-EXTERNAL-ID", func(c *svcCall) { c.externalID = strings.Repeat("e", 37) }, 400, "4002701", "Invalid Field Format {X-EXTERNAL-ID}"},
		{"37-character X-PARTNER-ID", func(c *svcCall) { c.partner = strings.Repeat("p", 37) }, 400, "4002701", "Invalid Field Format {X-PARTNER-ID}"},
		{"four-digit CHANNEL-ID", func(c *svcCall) { c.set = map[string]string{"CHANNEL-ID": "9522"} }, 400, "4002701", "Invalid Field Format {CHANNEL-ID}"},
		{"X-SIGNATURE not Base64", func(c *svcCall) { c.set = map[string]string{"X-SIGNATURE": "not base64!"} }, 400, "4002701", "Invalid Field Format {X-SIGNATURE}"},
		{"Basic instead of Bearer", func(c *svcCall) { c.set = map[string]string{"Authorization": "Basic bWU6cHc="} }, 400, "4002701", "Invalid Field Format {Authorization}"},
		{"body not JSON", func(c *svcCall) { c.body = "amount=1&note=x" }, 400, "4002701", "Invalid Field Format {body}"},
		{"body truncated", func(c *svcCall) { c.body = body[:len(body)-1] }, 400, "4002701", "Invalid Field Format {body}"},
		{"Content-Type not JSON", func(c *svcCall) { c.contentType = "text/plain" }, 400, "4002701", "Invalid Field Format {Content-Type}"},
		{"X-EXTERNAL-ID twice", func(c *svcCall) { c.raw = map[string]string{"X-External-Id": "again"} }, 400, "4002701", "Invalid Field Format {X-EXTERNAL-ID}"},
		{"no Authorization", drop("Authorization"), 400, "4002702", "Invalid Mandatory Field {Authorization}"},
		{"no X-TIMESTAMP", drop("X-TIMESTAMP"), 400, "4002702", "Invalid Mandatory Field {X-TIMESTAMP}"},
		{"no X-SIGNATURE", drop("X-SIGNATURE"), 400, "4002702", "Invalid Mandatory Field {X-SIGNATURE}"},
		{"no X-PARTNER-ID", drop("X-PARTNER-ID"), 400, "4002702", "Invalid Mandatory Field {X-PARTNER-ID}"},
		{"no X-EXTERNAL-ID", drop("X-EXTERNAL-ID"), 400, "4002702", "Invalid Mandatory Field {X-EXTERNAL-ID}"},
		{"no CHANNEL-ID", drop("CHANNEL-ID"), 400, "4002702", "Invalid Mandatory Field {CHANNEL-ID}"},
		{"blank X-PARTNER-ID", func(c *svcCall) { c.set = map[string]string{"X-PARTNER-ID": " "} }, 400, "4002702", "Invalid Mandatory Field {X-PARTNER-ID}"},
		{"signature by another secret", func(c *svcCall) { c.secret = qrSecret }, 401, "4012700", "Unauthorized. [Signature]"},
		{"signature over another body", func(c *svcCall) {
			c.set = map[string]string{"X-SIGNATURE": snapsig.SignSymmetric([]byte(secret), "POST:"+createVA+":"+tok+":00:x")}
		}, 401, "4012700", "Unauthorized. [Signature]"},
		{"asymmetric signature on a symmetric route", func(c *svcCall) { c.secret, c.key = "", key }, 401, "4012700", "Unauthorized. [Signature]"},
		{"X-PARTNER-ID of another client", func(c *svcCall) { c.partner = qrID }, 401, "4012700", "Unauthorized. [X-PARTNER-ID]"},
		{"stale X-TIMESTAMP", func(c *svcCall) { c.ts = snap.Timestamp(stale) }, 401, "4012700", "Unauthorized. [X-TIMESTAMP]"},
		{"X-TIMESTAMP in the future", func(c *svcCall) { c.ts = snap.Timestamp(future) }, 401, "4012700", "Unauthorized. [X-TIMESTAMP]"},
		{"token without the route's scope", func(c *svcCall) { c.token, c.secret, c.partner = qrTok, qrSecret, qrID }, 401, "4012700", "Unauthorized. [Scope not allowed]"},
		{"unknown token", func(c *svcCall) { c.token = "not-a-token-of-this-server" }, 401, "4012701", "Invalid Token (B2B)"},
		{"forged opaque token", func(c *svcCall) { c.token = tok[:len(tok)-2] + "xx" }, 401, "4012701", "Invalid Token (B2B)"},
	}
	for _, c := range cases {
		before := up.count()
		wantSNAP(t, c.name, call(c.mod), c.status, c.code, c.message)
		if up.count() != before {
			t.Errorf("%s: the refused call reached the upstream", c.name)
		}
		expect("/v1.0/transfer-va/", c.code)
	}

	if logs := e.logs.String(); !strings.Contains(logs, `type=snap_signature_failed client_id=`+id+` remote=127.0.0.1`) ||
		!strings.Contains(logs, `endpoint=/v1.0/transfer-va/ reason="service-call X-SIGNATURE did not verify"`) {
		t.Error("no security event with the caller's address and the route for a bad signature")
	}

	t.Run("the path's own service code", func(t *testing.T) {
		r := call(func(c *svcCall) { c.target = "/v1.0/transfer-va/status"; c.set = map[string]string{"X-TIMESTAMP": ""} })
		wantSNAP(t, "status without X-TIMESTAMP", r, 400, "4002602", "Invalid Mandatory Field {X-TIMESTAMP}")
		r = call(func(c *svcCall) { c.target = "/v1.0/transfer-va/status"; c.secret = qrSecret })
		wantSNAP(t, "status badly signed", r, 401, "4012600", "Unauthorized. [Signature]")
		r = call(func(c *svcCall) { c.target = "/v1.0/transfer-va/status" })
		if r.status != 200 {
			t.Errorf("status: %d %s", r.status, r.body)
		}
		expect("/v1.0/transfer-va/", "4002602")
		expect("/v1.0/transfer-va/", "4012600")
		expect("/v1.0/transfer-va/", "ok")
		r = call(func(c *svcCall) { c.target = "/v1.0/qr/qr-mpm-generate"; c.token = "unknown-token-value" })
		wantSNAP(t, "qr with an unknown token", r, 401, "4014701", "Invalid Token (B2B)")
		expect("/v1.0/qr/", "4014701")
	})

	t.Run("X-EXTERNAL-ID reused the same day", func(t *testing.T) {
		ext := extID()
		if r := call(func(c *svcCall) { c.externalID = ext }); r.status != 200 {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		before := up.count()
		wantSNAP(t, "the same X-EXTERNAL-ID again", call(func(c *svcCall) { c.externalID = ext }), 409, "4092700", "Conflict")
		// Another path of the same partner: the ID is the partner's, whatever the service.
		wantSNAP(t, "on another path", call(func(c *svcCall) { c.externalID = ext; c.target = "/v1.0/transfer-va/status" }),
			409, "4092600", "Conflict")
		if up.count() != before {
			t.Error("a conflicting call reached the upstream")
		}
		// Another partner may use the same ID.
		r := call(func(c *svcCall) {
			c.externalID, c.target, c.token, c.secret, c.partner = ext, "/v1.0/qr/qr-mpm-generate", qrTok, qrSecret, qrID
		})
		if r.status != 200 {
			t.Errorf("the same X-EXTERNAL-ID from another partner: %d %s", r.status, r.body)
		}
		expect("/v1.0/transfer-va/", "ok")
		expect("/v1.0/transfer-va/", "4092700")
		expect("/v1.0/transfer-va/", "4092600")
		expect("/v1.0/qr/", "ok")
	})

	t.Run("a refused call does not spend its X-EXTERNAL-ID", func(t *testing.T) {
		ext := extID()
		for _, mod := range []func(*svcCall){
			func(c *svcCall) { c.secret = qrSecret },                                  // bad signature
			func(c *svcCall) { c.partner = qrID },                                     // wrong partner
			func(c *svcCall) { c.ts = snap.Timestamp(stale) },                         // stale
			func(c *svcCall) { c.token, c.secret, c.partner = qrTok, qrSecret, qrID }, // scope
			func(c *svcCall) { c.target = "/v1.0/slow/x" },                            // upstream timeout (another route, same partner)
		} {
			r := call(func(c *svcCall) { mod(c); c.externalID = ext })
			if r.status == 200 {
				t.Fatalf("a refused call passed: %s", r.body)
			}
		}
		expect("/v1.0/transfer-va/", "4012700")
		expect("/v1.0/transfer-va/", "4012700")
		expect("/v1.0/transfer-va/", "4012700")
		expect("/v1.0/transfer-va/", "4012700")
		expect("/v1.0/slow/", "5042500")
		// The timed-out call passed every check, so the upstream may have
		// acted on it: its ID is spent. The ones refused before are not.
		wantSNAP(t, "after a timeout", call(func(c *svcCall) { c.externalID = ext }), 409, "4092700", "Conflict")
		expect("/v1.0/transfer-va/", "4092700")
		ext = extID()
		call(func(c *svcCall) { c.externalID = ext; c.secret = qrSecret })
		if r := call(func(c *svcCall) { c.externalID = ext }); r.status != 200 {
			t.Errorf("the retry with the right signature: %d %s", r.status, r.body)
		}
		expect("/v1.0/transfer-va/", "4012700")
		expect("/v1.0/transfer-va/", "ok")
	})

	t.Run("upstream timeout and upstream down", func(t *testing.T) {
		before := up.count()
		start := time.Now()
		wantSNAP(t, "slow upstream", call(func(c *svcCall) { c.target = "/v1.0/slow/inquiry" }), 504, "5042500", "Timeout")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the timeout took %v (upstream_timeout is 300ms)", d)
		}
		if up.count() != before+1 {
			t.Error("the slow call did not reach the upstream")
		}
		wantSNAP(t, "upstream down", call(func(c *svcCall) { c.target = "/v1.0/down/inquiry" }), 500, "5002802", "External Server Error")
		expect("/v1.0/slow/", "5042500")
		expect("/v1.0/down/", "5002802")
	})

	t.Run("revoked token", func(t *testing.T) {
		ts := tokenSource(t, e, id)
		fresh, err := ts.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.remember(fresh)
		if r := call(func(c *svcCall) { c.token = fresh }); r.status != 200 {
			t.Fatalf("before revocation: %d %s", r.status, r.body)
		}
		if r := e.postForm("/oauth/revoke", url.Values{"token": {fresh}}, id, secret); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		wantSNAP(t, "after revocation", call(func(c *svcCall) { c.token = fresh }), 401, "4012701", "Invalid Token (B2B)")
		// The original token is another token: still good.
		if r := call(nil); r.status != 200 {
			t.Errorf("another token of the client: %d %s", r.status, r.body)
		}
		expect("/v1.0/transfer-va/", "ok")
		expect("/v1.0/transfer-va/", "4012701")
		expect("/v1.0/transfer-va/", "ok")
	})

	t.Run("expired token", func(t *testing.T) {
		clk.Advance(31 * time.Minute) // the B2B endpoint's access_ttl is 30m
		wantSNAP(t, "expired", call(nil), 401, "4012701", "Invalid Token (B2B)")
		expect("/v1.0/transfer-va/", "4012701")
	})

	t.Run("metrics per route and result", func(t *testing.T) {
		got := map[[2]string]float64{}
		for _, s := range parseMetrics(t, e.metrics())["tokengate_gateway_requests_total"] {
			got[[2]string{s.labels["route"], s.labels["result"]}] = s.value
		}
		for k, want := range results {
			if got[k] != want {
				t.Errorf("tokengate_gateway_requests_total{route=%q,result=%q} = %v, want %v", k[0], k[1], got[k], want)
			}
		}
		for k, v := range got {
			if _, ok := results[k]; !ok {
				t.Errorf("unexpected tokengate_gateway_requests_total{route=%q,result=%q} = %v", k[0], k[1], v)
			}
		}
	})
}
