package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/snapclient"
)

// identityHeaders are the headers of c that an upstream could take for
// one of the gateway's identity headers (any case, '-' or '_').
func identityHeaders(c upstreamCall) map[string][]string {
	out := map[string][]string{}
	for k, v := range c.header {
		if len(k) >= len("X-Tokengate-") && strings.EqualFold(strings.ReplaceAll(k[:len("X-Tokengate-")], "_", "-"), "X-Tokengate-") {
			out[http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))] = append(out[http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))], v...)
		}
	}
	return out
}

// wantIdentity fails unless the upstream saw exactly these identity
// headers, once each.
func wantIdentity(t *testing.T, what string, c upstreamCall, clientID, partnerID, scope string) {
	t.Helper()
	want := map[string]string{"X-Tokengate-Client-Id": clientID, "X-Tokengate-Partner-Id": partnerID,
		"X-Tokengate-Scope": scope, "X-Tokengate-Subject": clientID}
	got := identityHeaders(c)
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("%s: the upstream saw %s: %q, want %q", what, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: the upstream saw %s: %q", what, k, v)
		}
	}
}

// TestGatewaySNAPForwarding: calls signed by the merchant-side client
// package pass the gateway and reach the upstream exactly as sent, with
// the identity headers of the gateway and none of the caller's, on
// keep-alive connections.
func TestGatewaySNAPForwarding(t *testing.T) {
	up := newUpstream(t)
	clk := newClock()
	e := startClock(t, clk, both(snapEndpoints, gatewayRoutes(up.srv.URL, closedURL(t))))
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	const partner = "MERCHANT-0042"
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "both", "--partner-id", partner,
		"--scope", "va", "--scope", "qr", "--default-scope", "va", "--default-scope", "qr")
	symOnly, _ := e.createClient("--name", "symmetric only", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "symmetric", "--scope", "va", "--default-scope", "va")
	qrOnly, _ := e.createClient("--name", "qr only", "--grant", "client_credentials", "--snap-public-key", pub,
		"--snap-service-signature", "asymmetric", "--scope", "qr")
	tokens := tokenSource(t, e, id)
	tok, err := tokens.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.remember(tok)

	// Count the connections the merchant opens to the gateway.
	var dials atomic.Int32
	conns := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer conns.CloseIdleConnections()
	merchant := func(tr *snapclient.Transport) *http.Client {
		tr.Base, tr.Now, tr.Location = conns, clk.Now, jakarta(t)
		if tr.PartnerID == "" {
			tr.PartnerID = partner
		}
		return &http.Client{Transport: tr}
	}
	send := func(c *http.Client, method, target, body string, header http.Header) (int, string, bool) {
		t.Helper()
		req, err := http.NewRequest(method, e.base+target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == "" {
			req.Body = http.NoBody
		}
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Close
	}
	symmetric := merchant(&snapclient.Transport{Tokens: tokens, Variant: snapclient.Symmetric, ClientSecret: []byte(secret)})
	asymmetric := merchant(&snapclient.Transport{Tokens: tokens, Variant: snapclient.Asymmetric, PrivateKey: key})
	noToken := merchant(&snapclient.Transport{Variant: snapclient.Asymmetric, PrivateKey: key})

	t.Run("the upstream sees the bytes, path, query and identity", func(t *testing.T) {
		// Whitespace everywhere JSON allows it, members out of order,
		// escapes (a surrogate pair among them) that a re-encoder would
		// change, numbers as written.
		body := "{\n  \"virtualAccountName\" : \"Jokul \\u00e9 \\\"Doe\\\"\",\t\"b\":1 ,\"a\" :[ 1.50, 2e3 ,true,null],\r\n" +
			" \"emoji\":\"\\ud83d\\ude00 \\/ \\u2028\", \"note\":\"  two  spaces  \" }\n"
		forged := http.Header{
			"x-tokengate-client-id":  {"forged"},
			"X-TOKENGATE-SCOPE":      {"admin"},
			"X-Tokengate-Partner-Id": {"forged"},
			"X-Tokengate-Subject":    {"forged"},
			"X-Tokengate-Other":      {"forged"},
			"X_Tokengate_Client_Id":  {"forged"},
			"x_tokengate_scope":      {"admin"},
		}
		for i := range 3 {
			status, answer, closed := send(symmetric, "POST", "/v1.0/transfer-va/create-va", body, forged)
			if status != 200 || !strings.Contains(answer, `"2002700"`) {
				t.Fatalf("call %d: %d %s", i, status, answer)
			}
			if closed {
				t.Errorf("call %d: the gateway closed the connection after its answer", i)
			}
		}
		if n := dials.Load(); n != 1 {
			t.Errorf("3 calls took %d connections, want 1 (keep-alive)", n)
		}
		c := up.last(t)
		if c.method != "POST" || c.path != "/v1.0/transfer-va/create-va" || c.rawQuery != "" {
			t.Errorf("the upstream saw %s %s?%s", c.method, c.path, c.rawQuery)
		}
		// A query the route does not sign is refused: it could be changed
		// on the way, and the upstream would act on it.
		if status, answer, _ := send(symmetric, "POST", "/v1.0/transfer-va/create-va?trx=1", body, nil); status != 400 ||
			!strings.Contains(answer, `"4002701"`) || !strings.Contains(answer, "{query}") {
			t.Errorf("an unsigned query: %d %s", status, answer)
		}
		if string(c.body) != body {
			t.Errorf("the upstream saw the body\n%q\nwant\n%q", c.body, body)
		}
		// The upstream's own host (a caller-chosen Host could pick another
		// virtual host behind an ingress); the caller's in X-Forwarded-Host.
		if want, _ := url.Parse(e.base); c.host == want.Host || c.header.Get("X-Forwarded-Host") != want.Host {
			t.Errorf("the upstream saw Host %q and X-Forwarded-Host %q; want its own host and the gateway's %q",
				c.host, c.header.Get("X-Forwarded-Host"), want.Host)
		}
		for _, h := range []string{"Authorization", "X-Timestamp", "X-Signature", "X-Partner-Id", "X-External-Id", "Channel-Id", "Content-Type"} {
			if len(c.header[h]) != 1 {
				t.Errorf("the upstream saw %s: %q", h, c.header[h])
			}
		}
		if c.header.Get("X-Forwarded-For") == "" {
			t.Error("no X-Forwarded-For at the upstream")
		}
		wantIdentity(t, "symmetric", c, id, partner, "va qr")
	})

	t.Run("hop-by-hop headers stop at the gateway", func(t *testing.T) {
		status, answer, _ := send(symmetric, "POST", "/v1.0/transfer-va/create-va", `{}`, http.Header{
			"Connection": {"X-Hop, X-Tokengate-Client-Id"}, "X-Hop": {"1"}, "Proxy-Authorization": {"Basic eDp5"}})
		if status != 200 {
			t.Fatalf("%d %s", status, answer)
		}
		c := up.last(t)
		if c.header.Get("X-Hop") != "" || c.header.Get("Proxy-Authorization") != "" {
			t.Errorf("hop-by-hop headers reached the upstream: %v", c.header)
		}
		wantIdentity(t, "Connection naming an identity header", c, id, partner, "va qr")
	})

	t.Run("asymmetric with a token on an either route", func(t *testing.T) {
		if status, answer, _ := send(asymmetric, "POST", "/v1.0/qr/qr-mpm-generate", `{"amount":{"value":"1.00"}}`, nil); status != 200 {
			t.Fatalf("%d %s", status, answer)
		}
		wantIdentity(t, "asymmetric", up.last(t), id, partner, "va qr")
		if status, answer, _ := send(symmetric, "POST", "/v1.0/qr/qr-mpm-query", `{}`, nil); status != 200 {
			t.Errorf("symmetric on the either route: %d %s", status, answer)
		}
	})

	t.Run("asymmetric without a token", func(t *testing.T) {
		status, answer, _ := send(noToken, "POST", "/v1.0/debit/payment-host-to-host", `{"partnerReferenceNo":"R-1"}`, nil)
		if status != 200 {
			t.Fatalf("%d %s", status, answer)
		}
		c := up.last(t)
		if c.header.Get("Authorization") != "" {
			t.Errorf("Authorization at the upstream: %q", c.header.Get("Authorization"))
		}
		wantIdentity(t, "no token, no route scope", c, id, partner, "")
		// With route scopes, the client's registered scopes stand in for a token's.
		if status, answer, _ := send(noToken, "POST", "/v1.0/registration/account-binding", `{}`, nil); status != 200 {
			t.Fatalf("scoped route: %d %s", status, answer)
		}
		wantIdentity(t, "no token, route scope va", up.last(t), id, partner, "va")

		before := up.count()
		for _, c := range []struct {
			name, partner, target, want string
		}{
			{"unknown partner", "NO-SUCH-PARTNER", "/v1.0/debit/payment-host-to-host", `{"responseCode":"4015400","responseMessage":"Unauthorized. [Unknown partner]"}`},
			{"client without asymmetric service signatures", symOnly, "/v1.0/debit/payment-host-to-host", `{"responseCode":"4015400","responseMessage":"Unauthorized. [Signature]"}`},
			{"client without the route's scope", qrOnly, "/v1.0/registration/account-binding", `{"responseCode":"4010600","responseMessage":"Unauthorized. [Scope not allowed]"}`},
			// The partner is found by X-PARTNER-ID: the client ID is not it.
			{"client ID instead of the partner ID", id, "/v1.0/debit/payment-host-to-host", `{"responseCode":"4015400","responseMessage":"Unauthorized. [Unknown partner]"}`},
		} {
			cl := merchant(&snapclient.Transport{Variant: snapclient.Asymmetric, PrivateKey: key, PartnerID: c.partner})
			if status, answer, _ := send(cl, "POST", c.target, `{}`, nil); status != 401 || answer != c.want {
				t.Errorf("%s: %d %s, want 401 %s", c.name, status, answer, c.want)
			}
		}
		if up.count() != before {
			t.Error("a refused call reached the upstream")
		}
		if status, answer, _ := send(asymmetric, "POST", "/v1.0/transfer-va/create-va", `{}`, nil); status != 401 || !strings.Contains(answer, "[Signature]") {
			t.Errorf("asymmetric on the symmetric route: %d %s", status, answer)
		}
	})

	t.Run("a mount prefix and the query in the signed URL", func(t *testing.T) {
		pg := merchant(&snapclient.Transport{Tokens: tokens, ClientSecret: []byte(secret), StripPrefix: "/pg", IncludeQuery: true})
		status, answer, _ := send(pg, "GET", "/pg/v1.0/transfer-va/inquiry?b=2&a=1%2F&a=%E2%82%AC", "", nil)
		if status != 200 {
			t.Fatalf("%d %s", status, answer)
		}
		c := up.last(t)
		if c.method != "GET" || c.path != "/pg/v1.0/transfer-va/inquiry" || c.rawQuery != "b=2&a=1%2F&a=%E2%82%AC" || len(c.body) != 0 {
			t.Errorf("the upstream saw %s %s?%s %q", c.method, c.path, c.rawQuery, c.body)
		}
		wantIdentity(t, "mounted", c, id, partner, "va qr")
		// Signed without the query, or with the prefix: refused.
		for _, tr := range []*snapclient.Transport{
			{Tokens: tokens, ClientSecret: []byte(secret), StripPrefix: "/pg"},
			{Tokens: tokens, ClientSecret: []byte(secret), IncludeQuery: true},
		} {
			if status, answer, _ := send(merchant(tr), "GET", "/pg/v1.0/transfer-va/inquiry?b=2", "", nil); status != 401 || !strings.Contains(answer, `"4013300"`) {
				t.Errorf("signed over another EndpointUrl: %d %s", status, answer)
			}
		}
	})
}
