package e2e

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/guard"
	"github.com/tokengate/tokengate/internal/pgtest"
)

// TestGuardRefusesWhileClusterHasOpenTransaction (issue 11, review 3,
// point 3): another application's transaction left open on the same
// PostgreSQL cluster, in another database, does not delay revocations: a
// guard with the token cached refuses it within a second, as the README
// promises, its feed up all along. (With the feed ordered by the snapshot's
// xmin horizon, the event waited for the foreign transaction to end, while
// the node kept pinging and the guard kept accepting the revoked token.)
func TestGuardRefusesWhileClusterHasOpenTransaction(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	a := start(t, withPostgres(dsn))
	id, secret := a.createClient("--name", "merchant", "--grant", "client_credentials")
	rs, rsSecret := a.createClient("--name", "payments api", "--grant", "client_credentials", "--can-introspect")
	addr := a.srv.Addr()
	g := newTestGuard(t, "A", rs, rsSecret, dialTo(func() string { return addr }), guard.Config{})
	cc := url.Values{"grant_type": {"client_credentials"}}
	tok := a.token(cc, id, secret).str("access_token")
	other := a.token(cc, id, secret).str("access_token")
	a.remember(tok, other)
	cached(t, []*testGuard{g}, tok, other)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.WithParam(t, pgtest.DSN(t), "dbname", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	batch, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Rollback(ctx)
	if _, err := batch.Exec(ctx, `CREATE TEMP TABLE nightly_batch (x int)`); err != nil { // takes a transaction ID
		t.Fatal(err)
	}

	revokedAt := time.Now()
	if r := a.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	refusedWithin(t, time.Second, revokedAt, []*testGuard{g}, victim{"the revoked token", tok})
	if !g.g.Stats().FeedUp {
		t.Error("the guard's feed is down")
	}
	stillValid(t, []*testGuard{g}, "a token not revoked", other)
	if err := batch.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFeedStreamsPerClient (issue 11, review 3, point 8): one resource
// server's credentials cannot take every feed slot of a node. Beyond
// feed.max_subscribers_per_client streams, its next one is refused with
// 429 temporarily_unavailable and Retry-After, while another resource
// server still subscribes.
func TestFeedStreamsPerClient(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Feed.MaxSubscribers = 4
		c.Feed.MaxSubscribersPerClient = 2
	})
	hog, hogSecret := e.createClient("--name", "one rs", "--grant", "client_credentials", "--can-introspect")
	rs, rsSecret := e.createClient("--name", "another rs", "--grant", "client_credentials", "--can-introspect")
	for range 2 {
		e.subscribe(hog, hogSecret, "").hello()
	}
	for range 2 {
		s, res := e.trySubscribe(hog, hogSecret, "", nil)
		if s != nil {
			t.Fatal("a third stream of one client was opened")
		}
		if res.status != http.StatusTooManyRequests || res.str("error") != "temporarily_unavailable" ||
			res.header.Get("Retry-After") == "" || res.header.Get("Content-Type") != "application/json" {
			t.Fatalf("a third stream of one client: %d %s (Retry-After %q)", res.status, res.body, res.header.Get("Retry-After"))
		}
	}
	e.subscribe(rs, rsSecret, "").hello()
	e.subscribe(rs, rsSecret, "").hello()
}
