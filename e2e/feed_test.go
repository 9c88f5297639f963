package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/server"
	"github.com/tokengate/tokengate/token"
)

// The revocation feed, GET /oauth/revocations (/work/notes/feed-wire.md),
// over real HTTP on real servers.

type sseFrame struct {
	event, id, data, comment string
}

// feedSub is one subscriber's stream.
type feedSub struct {
	t      *testing.T
	frames chan sseFrame
	ended  chan struct{}
	cancel context.CancelFunc
}

// subscribe opens the feed with Basic credentials, resuming after cursor
// (as Last-Event-ID) when it is not "". It fails the test unless the
// server answers 200.
func (e *env) subscribe(id, secret, cursor string) *feedSub {
	e.t.Helper()
	s, res := e.trySubscribe(id, secret, "", http.Header{"Last-Event-Id": {cursor}})
	if res != nil {
		e.t.Fatalf("subscribe: %d %s", res.status, res.body)
	}
	return s
}

// trySubscribe returns the stream, or the response when it is not 200.
// query is the URL's query ("" for none).
func (e *env) trySubscribe(id, secret, query string, header http.Header) (*feedSub, *response) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := e.base + "/oauth/revocations"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		if v[0] != "" {
			req.Header[k] = v
		}
	}
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	e.rememberSent(req)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		r := &response{status: res.StatusCode, header: res.Header, body: body}
		json.Unmarshal(body, &r.json)
		return nil, r
	}
	s := &feedSub{t: e.t, frames: make(chan sseFrame, 1000), ended: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.ended)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				s.frames <- f
				f = sseFrame{}
			case strings.HasPrefix(line, ":"):
				f.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "event":
					f.event = v
				case "id":
					f.id = v
				case "data":
					f.data = v
				}
			}
		}
	}()
	e.t.Cleanup(s.close)
	return s, nil
}

// close disconnects.
func (s *feedSub) close() {
	s.cancel()
	<-s.ended
}

// next returns the next frame other than a ping, within limit.
func (s *feedSub) next(limit time.Duration) sseFrame {
	s.t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case f := <-s.frames:
			if f.comment != "" {
				continue
			}
			return f
		case <-s.ended:
			select {
			case f := <-s.frames:
				return f
			default:
			}
			s.t.Fatal("the stream ended")
		case <-deadline:
			s.t.Fatalf("no event within %v", limit)
		}
	}
}

func (s *feedSub) hello() string {
	s.t.Helper()
	f := s.next(5 * time.Second)
	var h struct{ Cursor, Retention string }
	if f.event != "hello" || json.Unmarshal([]byte(f.data), &h) != nil || h.Cursor != f.id || h.Retention != "24h0m0s" {
		s.t.Fatalf("first frame %+v, want hello", f)
	}
	return f.id
}

// revoked is one revoked event's data.
type revoked struct {
	Type     string `json:"type"`
	ID       string `json:"id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Username string `json:"username,omitempty"`
	Before   string `json:"before,omitempty"`
}

func (r revoked) key() string { return r.Type + ":" + r.ID + r.ClientID + r.Username }

// expect reads len(want) revoked events, each within limit of the call,
// and fails unless they are want (in any order). It returns them with
// the last one's cursor.
func (s *feedSub) expect(limit time.Duration, want ...revoked) ([]revoked, string) {
	s.t.Helper()
	start := time.Now()
	var got []revoked
	last := ""
	for range want {
		f := s.next(limit - time.Since(start))
		var r revoked
		if f.event != "revoked" || json.Unmarshal([]byte(f.data), &r) != nil {
			s.t.Fatalf("got %+v, want a revoked event", f)
		}
		got, last = append(got, r), f.id
	}
	keys := func(rs []revoked) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.key())
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(keys(got), keys(want)) {
		s.t.Fatalf("events %v, want %v", keys(got), keys(want))
	}
	s.t.Logf("%d event(s) within %v", len(got), time.Since(start).Round(time.Millisecond))
	return got, last
}

func tokenEvent(value string) revoked { return revoked{Type: "token", ID: token.ID(value)} }

// jti is a JWT's jti claim.
func jti(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ JTI string }
	if err != nil || json.Unmarshal(payload, &c) != nil || c.JTI == "" {
		t.Fatal("JWT without a jti")
	}
	return c.JTI
}

// TestFeedAcrossNodes: two nodes on one PostgreSQL; a resource server
// subscribed to node B sees, within a second, every revocation made on
// node A or by the CLI: a token (opaque and JWT), a family revoked by
// refresh-token reuse, every token of a client, every token of a user.
// It then disconnects and resumes on node A from its cursor, missing
// nothing and getting nothing twice.
func TestFeedAcrossNodes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	noGrace := func(c *config.Config) { c.Tokens.RefreshReuseGrace = 0 }
	a := start(t, withPostgres(dsn, noGrace))
	b := start(t, withPostgres(dsn, noGrace))
	id, secret := a.createClient("--name", "merchant", "--grant", "client_credentials", "--grant", "password", "--grant", "refresh_token")
	jwtID, jwtSecret := a.createClient("--name", "jwt merchant", "--grant", "client_credentials", "--token-format", "jwt")
	rsID, rsSecret := a.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	b.remember(secret, jwtSecret, rsSecret)
	a.createUser("payer", "payer's password")
	b.remember("payer's password")
	cc := url.Values{"grant_type": {"client_credentials"}}
	const within = time.Second

	sub := b.subscribe(rsID, rsSecret, "")
	sub.hello()

	// A token revoked on A.
	tok := a.token(cc, id, secret).str("access_token")
	b.remember(tok)
	if r := a.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	sub.expect(within, tokenEvent(tok))

	// A JWT revoked on A: its jti.
	jwt := a.token(cc, jwtID, jwtSecret).str("access_token")
	b.remember(jwt)
	if r := a.postForm("/oauth/revoke", url.Values{"token": {jwt}}, jwtID, jwtSecret); r.status != 200 {
		t.Fatalf("revoke JWT: %d %s", r.status, r.body)
	}
	sub.expect(within, revoked{Type: "token", ID: jti(t, jwt)})

	// A refresh token reused on A: its whole family.
	pw := url.Values{"grant_type": {"password"}, "username": {"payer"}, "password": {"payer's password"}}
	first := a.token(pw, id, secret)
	rt := first.str("refresh_token")
	second := a.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, id, secret)
	b.remember(rt, first.str("access_token"), second.str("access_token"), second.str("refresh_token"))
	if r := a.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, id, secret); r.status != 400 {
		t.Fatalf("reuse: %d %s", r.status, r.body)
	}
	sub.expect(within, tokenEvent(first.str("access_token")), tokenEvent(rt),
		tokenEvent(second.str("access_token")), tokenEvent(second.str("refresh_token")))

	// Every token of a client, and of a user, through the CLI.
	var out struct {
		NotBefore string `json:"not_before"`
	}
	json.Unmarshal([]byte(a.mustRun("", "token", "revoke", "--client", id, "--json")), &out)
	got, _ := sub.expect(within, revoked{Type: "client", ClientID: id})
	sameInstant(t, got[0].Before, out.NotBefore)
	json.Unmarshal([]byte(a.mustRun("", "token", "revoke", "--user", "payer", "--json")), &out)
	got, cursor := sub.expect(within, revoked{Type: "user", Username: "payer"})
	sameInstant(t, got[0].Before, out.NotBefore)

	// Away, then back on the other node with the last cursor.
	sub.close()
	var missed []revoked
	for range 3 {
		tok := b.token(cc, id, secret).str("access_token")
		a.remember(tok)
		if r := b.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		missed = append(missed, tokenEvent(tok))
	}
	back := a.subscribe(rsID, rsSecret, cursor)
	if h := back.hello(); h != cursor {
		t.Errorf("hello on resuming: %q, want the subscriber's cursor %q", h, cursor)
	}
	got, _ = back.expect(within, missed...)
	for i := range got {
		if got[i] != missed[i] {
			t.Errorf("resumed events out of order: %v, want %v", got, missed)
			break
		}
	}
	// Nothing more (no repeat): the next event is a new revocation.
	tok = a.token(cc, id, secret).str("access_token")
	b.remember(tok)
	a.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret)
	back.expect(within, tokenEvent(tok))
}

func sameInstant(t *testing.T, feed, cli string) {
	t.Helper()
	f, err1 := time.Parse(time.RFC3339Nano, feed)
	c, err2 := time.Parse(time.RFC3339Nano, cli)
	if err1 != nil || err2 != nil || !f.Equal(c.Truncate(time.Microsecond)) || !strings.HasSuffix(feed, "Z") {
		t.Errorf("event before %q, the CLI said %q", feed, cli)
	}
}

// TestFeedResume: on the embedded store, a subscriber that disconnects
// and comes back with its cursor (Last-Event-ID, or ?cursor=) gets what it
// missed, once, then later revocations.
func TestFeedResume(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	cc := url.Values{"grant_type": {"client_credentials"}}
	revoke := func() revoked {
		t.Helper()
		tok := e.token(cc, id, secret).str("access_token")
		if r := e.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		return tokenEvent(tok)
	}
	sub := e.subscribe(rsID, rsSecret, "")
	start := sub.hello()
	first := []revoked{revoke(), revoke()}
	_, cursor := sub.expect(time.Second, first...)
	sub.close()
	missed := []revoked{revoke(), revoke(), revoke()}

	back := e.subscribe(rsID, rsSecret, cursor)
	back.hello()
	back.expect(time.Second, missed...)
	later := revoke()
	back.expect(time.Second, later)

	// ?cursor= from the very start: everything, once.
	q, res := e.trySubscribe(rsID, rsSecret, "cursor="+url.QueryEscape(start), nil)
	if res != nil {
		t.Fatalf("?cursor=: %d %s", res.status, res.body)
	}
	q.hello()
	q.expect(time.Second, append(append(first, missed...), later)...)
}

// TestFeedExpiredCursor: a subscriber back after longer than the retention
// gets a reset (flush your cache) with a cursor to go on from.
func TestFeedExpiredCursor(t *testing.T) {
	clk := newClock()
	e := startClock(t, clk, nil)
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	cc := url.Values{"grant_type": {"client_credentials"}}
	sub := e.subscribe(rsID, rsSecret, "")
	old := sub.hello()
	tok := e.token(cc, id, secret).str("access_token")
	e.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret)
	sub.expect(time.Second, tokenEvent(tok))
	sub.close()

	clk.Advance(25 * time.Hour)
	if _, err := server.CollectGarbage(t.Context(), e.node.Store, 1000, clk.Now); err != nil {
		t.Fatal(err)
	}
	// A node keeps its latest events in memory and serves a subscriber
	// from there when it can (it then misses nothing); a restarted one has
	// only the store.
	e.stop()
	e = startWith(t, e.dir, clk.Now, nil)
	back := e.subscribe(rsID, rsSecret, old)
	if h := back.hello(); h != old {
		t.Errorf("hello %q, want the subscriber's cursor %q", h, old)
	}
	f := back.next(time.Second)
	var reset struct{ Reason, Cursor string }
	if f.event != "reset" || json.Unmarshal([]byte(f.data), &reset) != nil || reset.Cursor != f.id || reset.Reason != "cursor expired" {
		t.Fatalf("got %+v, want a reset", f)
	}
	tok = e.token(cc, id, secret).str("access_token")
	e.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret)
	back.expect(time.Second, tokenEvent(tok))
}

// TestFeedRefusesUnauthorized: only clients authenticated with
// client_secret_basic that may introspect get the feed.
func TestFeedRefusesUnauthorized(t *testing.T) {
	e := start(t, nil)
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	for name, c := range map[string]struct {
		id, secret string
		status     int
		code       string
	}{
		"no credentials":          {"", "", 401, "invalid_client"},
		"wrong secret":            {rsID, nearMiss(rsSecret, 0), 401, "invalid_client"},
		"unknown client":          {"nobody", rsSecret, 401, "invalid_client"},
		"without the permission":  {id, secret, 403, "unauthorized_client"},
		"the permission, at last": {rsID, rsSecret, 200, ""},
	} {
		s, res := e.trySubscribe(c.id, c.secret, "", nil)
		if c.status == 200 {
			if res != nil {
				t.Errorf("%s: %d %s", name, res.status, res.body)
				continue
			}
			s.hello()
			continue
		}
		if res == nil {
			t.Errorf("%s: the stream was opened", name)
			continue
		}
		if res.status != c.status || res.str("error") != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, res.status, res.body, c.status, c.code)
		}
		if c.status == 401 && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: WWW-Authenticate %q", name, res.header.Get("WWW-Authenticate"))
		}
	}
	// Credentials in the query string are not client authentication.
	q := url.Values{"client_id": {rsID}, "client_secret": {rsSecret}}.Encode()
	if s, res := e.trySubscribe("", "", q, nil); s != nil || res.status != 401 {
		t.Errorf("credentials in the query: %v", res)
	}
}
