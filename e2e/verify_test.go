package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/snapclient"
	"github.com/tokengate/tokengate/snapguard"
)

// verifyCall is the "call" member of a verify request for req.
func verifyCall(t *testing.T, req *http.Request) map[string]any {
	t.Helper()
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]any{"method": req.Method, "path": req.URL.EscapedPath(), "query": req.URL.RawQuery,
		"headers": map[string][]string(req.Header), "body": body}
}

// verify posts a verify request with v as its JSON body (a string is sent
// as is), with Basic credentials when id is not "".
func (e *env) verify(id, secret string, v any) *response {
	e.t.Helper()
	raw, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			e.t.Fatal(err)
		}
		raw = string(b)
	}
	req, err := http.NewRequest(http.MethodPost, e.base+"/snap/v1/verify", strings.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return e.do(req)
}

// wantVerdict fails unless r is a 200 verdict with exactly the members of want.
func wantVerdict(t *testing.T, what string, r *response, want map[string]any) {
	t.Helper()
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: %d %v %s", what, r.status, r.header, r.body)
		return
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(r.json)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("%s: %s, want %s", what, gotJSON, wantJSON)
	}
}

// wantOAuthError fails unless r is an RFC 6749 error with status and code
// whose description mentions about.
func wantOAuthError(t *testing.T, what string, r *response, status int, code, about string) {
	t.Helper()
	if r.status != status || r.str("error") != code || !strings.Contains(r.str("error_description"), about) {
		t.Errorf("%s: %d %s, want %d %s mentioning %q", what, r.status, r.body, status, code, about)
	}
}

// TestSNAPVerifyEndpoint: a payment service that verifies SNAP calls
// itself asks POST /snap/v1/verify, authenticated as a resource server,
// and gets the caller's identity or the SNAP answer to give.
func TestSNAPVerifyEndpoint(t *testing.T) {
	clk := newClock()
	e := startClock(t, clk, both(snapEndpoints, func(c *config.Config) { c.Gateway.MaxBody = 1024 }))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "both", "--scope", "va", "--scope", "qr", "--default-scope", "va", "--default-scope", "qr")
	rsID, rsSecret := e.createClient("--name", "payment service", "--grant", "client_credentials", "--can-introspect")
	otherID, otherSecret := e.createClient("--name", "not a resource server", "--grant", "client_credentials")
	tok, err := tokenSource(t, e, id).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.remember(tok)
	route := map[string]any{"service_code": 27, "scopes": []string{"va"}}
	call := func(mod func(*svcCall)) map[string]any {
		c := svcCall{target: "/v1.0/transfer-va/create-va", body: "{ \"trxId\" : \"INV-1\" }", token: tok, secret: secret,
			partner: id, externalID: extID()}
		if mod != nil {
			mod(&c)
		}
		return verifyCall(t, e.serviceRequest(c))
	}
	valid := map[string]any{"valid": true, "client_id": id, "partner_id": id, "scope": "va qr", "subject": id}

	t.Run("verdicts", func(t *testing.T) {
		c := call(nil)
		wantVerdict(t, "a valid call", e.verify(rsID, rsSecret, map[string]any{"call": c, "route": route}), valid)
		wantVerdict(t, "the same call again", e.verify(rsID, rsSecret, map[string]any{"call": c, "route": route}),
			map[string]any{"valid": false, "status": 409, "responseCode": "4092700", "responseMessage": "Conflict"})
		wantVerdict(t, "badly signed", e.verify(rsID, rsSecret, map[string]any{"call": call(func(c *svcCall) { c.secret = rsSecret }), "route": route}),
			map[string]any{"valid": false, "status": 401, "responseCode": "4012700", "responseMessage": "Unauthorized. [Signature]"})
		wantVerdict(t, "another service code", e.verify(rsID, rsSecret, map[string]any{
			"call": call(func(c *svcCall) { c.set = map[string]string{"CHANNEL-ID": ""} }), "route": map[string]any{"service_code": 26}}),
			map[string]any{"valid": false, "status": 400, "responseCode": "4002602", "responseMessage": "Invalid Mandatory Field {CHANNEL-ID}"})
		wantVerdict(t, "a scope the token lacks", e.verify(rsID, rsSecret, map[string]any{"call": call(nil),
			"route": map[string]any{"service_code": 27, "scopes": []string{"va", "payouts"}}}),
			map[string]any{"valid": false, "status": 401, "responseCode": "4012700", "responseMessage": "Unauthorized. [Scope not allowed]"})

		// Header names in any case; a name sent twice in two spellings is a duplicate.
		c = call(nil)
		lower := map[string][]string{}
		for k, v := range c["headers"].(map[string][]string) {
			lower[strings.ToLower(k)] = v
		}
		c["headers"] = lower
		wantVerdict(t, "lower-case header names", e.verify(rsID, rsSecret, map[string]any{"call": c, "route": route}), valid)
		c = call(nil)
		c["headers"].(map[string][]string)["x-external-id"] = []string{"other"}
		wantVerdict(t, "X-EXTERNAL-ID twice", e.verify(rsID, rsSecret, map[string]any{"call": c, "route": route}),
			map[string]any{"valid": false, "status": 400, "responseCode": "4002701", "responseMessage": "Invalid Field Format {X-EXTERNAL-ID}"})

		// The mount prefix and the query, as the route says.
		c = call(func(c *svcCall) {
			c.target, c.strip, c.includeQuery = "/pg/v1.0/transfer-va/inquiry?b=2&a=1", "/pg", true
		})
		wantVerdict(t, "strip_prefix and include_query", e.verify(rsID, rsSecret, map[string]any{"call": c,
			"route": map[string]any{"service_code": 27, "strip_prefix": "/pg", "include_query": true}}), valid)

		// Asymmetric without a token: the client's scopes stand in.
		c = call(func(c *svcCall) { c.token, c.secret, c.key = "", "", key })
		wantVerdict(t, "asymmetric without a token", e.verify(rsID, rsSecret, map[string]any{"call": c,
			"route": map[string]any{"service_code": 54, "signature": "asymmetric", "token": "none", "scopes": []string{"qr"}}}),
			map[string]any{"valid": true, "client_id": id, "partner_id": id, "scope": "qr", "subject": id})

		// A body over gateway.max_body, inside a request of acceptable size.
		c = call(func(c *svcCall) { c.body = `{"a":"` + strings.Repeat("x", 1100) + `"}` })
		wantVerdict(t, "body over max_body", e.verify(rsID, rsSecret, map[string]any{"call": c, "route": route}),
			map[string]any{"valid": false, "status": 400, "responseCode": "4002700", "responseMessage": "Bad Request"})
	})

	t.Run("the caller authenticates as a resource server", func(t *testing.T) {
		body := map[string]any{"call": call(nil), "route": route}
		r := e.verify("", "", body)
		wantOAuthError(t, "no credentials", r, 401, "invalid_client", "")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("401 without a challenge")
		}
		wantOAuthError(t, "wrong secret", e.verify(rsID, nearMiss(rsSecret, 0), body), 401, "invalid_client", "")
		wantOAuthError(t, "without can_introspect", e.verify(otherID, otherSecret, body), 403, "unauthorized_client", "can_introspect")
		// Nothing about the request is checked for a caller that did not authenticate.
		wantOAuthError(t, "no credentials, bad route", e.verify("", "", map[string]any{"call": call(nil), "route": map[string]any{}}),
			401, "invalid_client", "")
		// client_secret_post: the credentials as members of the JSON body.
		post := map[string]any{"call": call(nil), "route": route, "client_id": rsID, "client_secret": rsSecret}
		wantVerdict(t, "client_secret_post", e.verify("", "", post), valid)
		post["client_secret"] = nearMiss(rsSecret, 1)
		wantOAuthError(t, "client_secret_post, wrong secret", e.verify("", "", post), 400, "invalid_client", "")
	})

	t.Run("malformed verify requests", func(t *testing.T) {
		good := func() map[string]any {
			return map[string]any{"call": call(nil), "route": map[string]any{"service_code": 27}}
		}
		with := func(mod func(m map[string]any)) map[string]any { m := good(); mod(m); return m }
		for _, c := range []struct {
			name  string
			body  any
			about string
		}{
			{"not JSON", `{"call":`, "JSON"},
			{"an array", `[]`, "JSON"},
			{"a repeated member", `{"route":{"service_code":27},"route":{"service_code":27},"call":{}}`, "JSON"},
			{"an unknown member", with(func(m map[string]any) { m["verbose"] = true }), "verbose"},
			{"no call", with(func(m map[string]any) { delete(m, "call") }), "call"},
			{"no route", with(func(m map[string]any) { delete(m, "route") }), "route"},
			{"a misspelt route member", with(func(m map[string]any) { m["route"] = map[string]any{"service_code": 27, "scope": []string{"va"}} }), "route.scope"},
			{"no service code", with(func(m map[string]any) { m["route"] = map[string]any{"scopes": []string{"va"}} }), "route.service_code"},
			{"service code 100", with(func(m map[string]any) { m["route"] = map[string]any{"service_code": 100} }), "route.service_code"},
			{"service code as a string", with(func(m map[string]any) { m["route"] = map[string]any{"service_code": "27"} }), "route.service_code"},
			{"signature hmac", with(func(m map[string]any) { m["route"] = map[string]any{"service_code": 27, "signature": "hmac"} }), "route.signature"},
			{"token none, symmetric", with(func(m map[string]any) { m["route"] = map[string]any{"service_code": 27, "token": "none"} }), "route.token"},
			{"include_query as a string", with(func(m map[string]any) { m["route"] = map[string]any{"service_code": 27, "include_query": "yes"} }), "route.include_query"},
			{"a relative path", with(func(m map[string]any) { m["call"].(map[string]any)["path"] = "v1.0/x" }), "call.path"},
			{"a path with its query", with(func(m map[string]any) { m["call"].(map[string]any)["path"] = "/v1.0/x?a=1" }), "call.path"},
			{"no method", with(func(m map[string]any) { delete(m["call"].(map[string]any), "method") }), "call.method"},
			{"a header value that is not a list", with(func(m map[string]any) { m["call"].(map[string]any)["headers"] = map[string]any{"X-TIMESTAMP": "x"} }), "call.headers"},
			{"a header value with a newline", with(func(m map[string]any) {
				m["call"].(map[string]any)["headers"] = map[string]any{"X-TIMESTAMP": []string{"a\nb"}}
			}), "call.headers"},
			{"a body that is not base64", with(func(m map[string]any) { m["call"].(map[string]any)["body"] = "{}" }), "call.body"},
			{"an unknown call member", with(func(m map[string]any) { m["call"].(map[string]any)["url"] = "/x" }), "call.url"},
		} {
			wantOAuthError(t, c.name, e.verify(rsID, rsSecret, c.body), 400, "invalid_request", c.about)
		}
		req, _ := http.NewRequest(http.MethodGet, e.base+"/snap/v1/verify", nil)
		req.SetBasicAuth(rsID, rsSecret)
		wantOAuthError(t, "GET", e.do(req), 405, "invalid_request", "POST")
		req, _ = http.NewRequest(http.MethodPost, e.base+"/snap/v1/verify", strings.NewReader("call=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(rsID, rsSecret)
		wantOAuthError(t, "a form", e.do(req), 400, "invalid_request", "application/json")
		// Sent with Expect: 100-continue, so that the answer, written
		// without reading the body, cannot be lost to a connection reset.
		huge, _ := json.Marshal(with(func(m map[string]any) { m["call"].(map[string]any)["body"] = bytes.Repeat([]byte("x"), 100<<10) }))
		req, _ = http.NewRequest(http.MethodPost, e.base+"/snap/v1/verify", bytes.NewReader(huge))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Expect", "100-continue")
		req.SetBasicAuth(rsID, rsSecret)
		wantOAuthError(t, "a request over the bound", e.do(req), 413, "invalid_request", "max_body")
	})

	t.Run("metrics", func(t *testing.T) {
		got := map[string]float64{}
		for _, s := range parseMetrics(t, e.metrics())["tokengate_snap_verify_requests_total"] {
			got[s.labels["result"]] = s.value
		}
		for result, want := range map[string]float64{"valid": 5, "4092700": 1, "4012700": 2, "4002602": 1, "4002701": 1, "4002700": 1,
			"invalid_client": 4, "unauthorized_client": 1, "invalid_request": 23} {
			if got[result] != want {
				t.Errorf("tokengate_snap_verify_requests_total{result=%q} = %v, want %v (all: %v)", result, got[result], want, got)
			}
		}
	})
}

// TestSNAPGuardWithTokengate: a Go payment service behind snapguard, with
// tokengate's verify endpoint, gets verified calls with their bytes and
// identity, and its callers get SNAP answers for the others.
func TestSNAPGuardWithTokengate(t *testing.T) {
	clk := newClock()
	e := startClock(t, clk, snapEndpoints)
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	const partner = "MERCHANT-7"
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "symmetric", "--partner-id", partner, "--scope", "va", "--default-scope", "va")
	rsID, rsSecret := e.createClient("--name", "payment service", "--grant", "client_credentials", "--can-introspect")
	otherID, otherSecret := e.createClient("--name", "not a resource server", "--grant", "client_credentials")

	var mu sync.Mutex
	var seen []*snapguard.Identity
	var bodies []string
	createVA := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := snapguard.FromContext(r.Context())
		b, _ := io.ReadAll(r.Body)
		if !ok {
			t.Error("a call without an identity reached the service")
		}
		mu.Lock()
		seen, bodies = append(seen, id), append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"responseCode":"2002700","responseMessage":"Successful"}`)
	})
	service := func(clientID, clientSecret string) *httptest.Server {
		g, err := snapguard.New(snapguard.Config{URL: e.base, ClientID: clientID, ClientSecret: clientSecret,
			Route: snapguard.Route{ServiceCode: 27, Scopes: []string{"va"}}, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("POST /v1.0/transfer-va/create-va", g.Wrap(createVA))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	api := service(rsID, rsSecret)

	tokens := tokenSource(t, e, id)
	ext := "INV-0001"
	merchant := func(secret string) *http.Client {
		return &http.Client{Transport: &snapclient.Transport{Tokens: tokens, ClientSecret: []byte(secret), PartnerID: partner,
			ExternalID: func() string { return ext }, Now: clk.Now, Location: jakarta(t)}}
	}
	body := "{\n \"trxId\" : \"INV-0001\", \"note\":\"\\u00e9  x\"\n}"
	send := func(c *http.Client, srv *httptest.Server) (int, string) {
		t.Helper()
		res, err := c.Post(srv.URL+"/v1.0/transfer-va/create-va", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	if status, answer := send(merchant(secret), api); status != 200 {
		t.Fatalf("a verified call: %d %s", status, answer)
	}
	if tok, err := tokens.Token(context.Background()); err == nil {
		e.remember(tok)
	}
	mu.Lock()
	if len(seen) != 1 || bodies[0] != body || seen[0].ClientID != id || seen[0].PartnerID != partner || seen[0].Subject != id ||
		strings.Join(seen[0].Scopes, " ") != "va" {
		t.Errorf("the service saw %+v %q", seen, bodies)
	}
	mu.Unlock()

	for _, c := range []struct {
		name         string
		client       *http.Client
		srv          *httptest.Server
		status       int
		answer, ext_ string
	}{
		{"the same X-EXTERNAL-ID again", merchant(secret), api, 409, `{"responseCode":"4092700","responseMessage":"Conflict"}`, "INV-0001"},
		{"badly signed", merchant(rsSecret), api, 401, `{"responseCode":"4012700","responseMessage":"Unauthorized. [Signature]"}`, "INV-0002"},
		{"a guard without can_introspect", merchant(secret), service(otherID, otherSecret), 500, `{"responseCode":"5002701","responseMessage":"Internal Server Error"}`, "INV-0002"},
		{"a guard with a wrong secret", merchant(secret), service(rsID, nearMiss(rsSecret, 2)), 500, `{"responseCode":"5002701","responseMessage":"Internal Server Error"}`, "INV-0002"},
	} {
		ext = c.ext_
		if status, answer := send(c.client, c.srv); status != c.status || answer != c.answer {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, answer, c.status, c.answer)
		}
	}
	// INV-0002 was refused every time: it is still free.
	if status, answer := send(merchant(secret), api); status != 200 {
		t.Errorf("INV-0002 after its refusals: %d %s", status, answer)
	}
	mu.Lock()
	if len(seen) != 2 {
		t.Errorf("the service was called %d times, want 2", len(seen))
	}
	mu.Unlock()

	e.stop()
	ext = "INV-0003"
	if status, answer := send(merchant(secret), api); status != 504 || answer != `{"responseCode":"5042700","responseMessage":"Timeout"}` {
		t.Errorf("tokengate down: %d %s", status, answer)
	}
}

// TestSnapguardCallerMistakes: what a merchant sends that the verify
// endpoint cannot take (too many header values, an 9 KiB path, a 40-byte
// method) is the merchant's mistake: snapguard answers it the route's SNAP
// Bad Request, not a 500 that blames the service's own setup.
func TestSnapguardCallerMistakes(t *testing.T) {
	clk := newClock()
	e := startClock(t, clk, snapEndpoints)
	rsID, rsSecret := e.createClient("--name", "payment service", "--grant", "client_credentials", "--can-introspect")
	g, err := snapguard.New(snapguard.Config{URL: e.base, ClientID: rsID, ClientSecret: rsSecret,
		Route: snapguard.Route{ServiceCode: 27}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("an unusable call reached the service") })))
	defer srv.Close()
	many := make([]string, 101)
	for i := range many {
		many[i] = strconv.Itoa(i)
	}
	for _, c := range []struct {
		name, method, path string
		hdr                map[string][]string
	}{
		{"101 Origin header values", "POST", "/v1.0/x", map[string][]string{"Origin": many}},
		{"a 9 KiB path", "POST", "/v1.0/" + strings.Repeat("a", 9<<10), nil},
		{"a 40-byte method", strings.Repeat("P", 40), "/v1.0/x", nil},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader("{}"))
		for k, vs := range c.hdr {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || !strings.Contains(string(b), `"4002700"`) {
			t.Errorf("%s: %d %s, want 400 with 4002700", c.name, res.StatusCode, b)
		}
	}
}
