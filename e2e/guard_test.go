package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/guard"
)

// TestGuardAgainstTheServer runs package guard against a real server: its
// metadata, JWKS, introspection answers and revocation feed, opaque and
// JWT tokens, the middleware, and a revocation through /oauth/revoke that
// reaches the guard through the feed (TestGuardsOnTwoNodes covers every
// kind of revocation, two nodes, and a feed that is cut).
func TestGuardAgainstTheServer(t *testing.T) {
	e := start(t, nil)
	rsID, rsSecret := e.createClient("--name", "payments-api", "--grant", "client_credentials", "--can-introspect")
	opID, opSecret := e.createClient("--name", "Acme", "--grant", "client_credentials", "--scope", "payments", "--scope", "refunds")
	jwtID, jwtSecret := e.createClient("--name", "Acme JWT", "--grant", "client_credentials", "--scope", "payments",
		"--token-format", "jwt")
	issue := func(id, secret, scope string) string {
		tok := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, id, secret).str("access_token")
		e.remember(tok)
		return tok
	}
	opaque := issue(opID, opSecret, "payments refunds")
	jwt := issue(jwtID, jwtSecret, "payments")

	// The issuer is http://tokengate.test: every connection goes to the
	// server under test.
	addr := e.srv.Addr()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	var introspections atomic.Int32
	g, err := guard.New(context.Background(), guard.Config{Issuer: "http://tokengate.test", ClientID: rsID, ClientSecret: rsSecret,
		AllowInsecureHTTP: true, HTTPClient: client,
		Hooks: guard.Hooks{Introspected: func(time.Duration, error) { introspections.Add(1) }}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !g.Stats().FeedUp {
		t.Fatal("the revocation feed is not up after New")
	}

	for range 3 {
		id, err := g.Validate(context.Background(), opaque)
		if err != nil {
			t.Fatalf("opaque token: %v", err)
		}
		if id.ClientID != opID || id.Subject != opID || id.Username != "" || id.Format != guard.FormatOpaque ||
			!slices.Equal(id.Scopes, []string{"payments", "refunds"}) {
			t.Fatalf("opaque identity %+v", id)
		}
		id, err = g.Validate(context.Background(), jwt)
		if err != nil {
			t.Fatalf("JWT: %v", err)
		}
		if id.ClientID != jwtID || id.Format != guard.FormatJWT || !slices.Equal(id.Scopes, []string{"payments"}) {
			t.Fatalf("JWT identity %+v", id)
		}
	}
	// With the feed up, each token is introspected once, then cached: the
	// opaque token, and the JWT because it was issued before the guard
	// subscribed (it may have been revoked before).
	if n := introspections.Load(); n != 2 {
		t.Errorf("%d introspections for 3 validations of 2 tokens, want 2 (then cached)", n)
	}

	h := g.Middleware(g.Require("refunds")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(guard.FromContext(r.Context()).ClientID))
	})))
	for tok, want := range map[string]int{opaque: 200, jwt: 403, "tga_forged": 401} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/refunds", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("middleware: %d, want %d (%s)", rec.Code, want, rec.Header().Get("WWW-Authenticate"))
		}
	}

	for _, c := range []struct{ tok, id, secret string }{{opaque, opID, opSecret}, {jwt, jwtID, jwtSecret}} {
		if r := e.postForm("/oauth/revoke", url.Values{"token": {c.tok}}, c.id, c.secret); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		before := introspections.Load()
		d := eventuallyWithin(t, time.Second, "the guard refuses the revoked token", func() bool {
			_, err := g.Validate(context.Background(), c.tok)
			if err != nil && !errors.Is(err, guard.ErrRevoked) {
				t.Fatalf("refused with %v, want ErrRevoked (from the feed)", err)
			}
			return err != nil
		})
		if n := introspections.Load() - before; n != 0 {
			t.Errorf("%d introspections until the refusal: the feed, not introspection, must refuse it", n)
		}
		t.Logf("refused %s after the revocation", d)
	}
}
