package guard

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/token"
)

// fakeClock is the injected clock of the tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Millisecond)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey is a signing key of the fake server.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newES256Key(t testing.TB) *testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: "k" + strconv.Itoa(int(keyCounter.Add(1))), alg: jose.ES256, priv: priv}
}

var keyCounter atomic.Int64

const (
	testClient = "rs-client"
	testSecret = "rs-secret with spaces&symbols"
)

// fakeAS stands in for tokengate: RFC 8414 metadata, a JWKS, RFC 7662
// introspection and the SSE revocation feed (notes/feed-wire.md), each
// under the test's control.
type fakeAS struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	keys      []*testKey
	jwksRaw   []byte // overrides keys when set
	active    map[string]map[string]any
	introDown bool
	introGate chan struct{} // when set, introspection waits for it

	jwksFetches    atomic.Int32
	introspections atomic.Int32
	introConns     sync.Map // the client addresses introspections came from: one per TCP connection

	feedMu       sync.Mutex
	events       []sseRecord
	notify       chan struct{}
	kill         chan struct{}
	feedDown     bool
	expiredBelow int // cursors below this index get a reset
	lastEventID  []string
	pingSeq      int
	replayGate   chan struct{} // when set, a stream waits for it between hello and the replay
	feedConns    atomic.Int32
	feedLive     atomic.Int32
}

type sseRecord struct {
	id, name, data string
}

func newFakeAS(t testing.TB) *fakeAS {
	f := &fakeAS{t: t, active: make(map[string]map[string]any), notify: make(chan struct{}), kill: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/.well-known/jwks.json",
			"introspection_endpoint": f.srv.URL + "/oauth/introspect",
		})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", f.jwks)
	mux.HandleFunc("POST /oauth/introspect", f.introspect)
	mux.HandleFunc("GET /oauth/revocations", f.feed)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.dropFeed(true)
		f.srv.Close()
	})
	f.keys = []*testKey{newES256Key(t)}
	return f
}

func (f *fakeAS) authorized(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	return ok && id == testClient && secret == strings.ReplaceAll(strings.ReplaceAll(testSecret, " ", "+"), "&", "%26")
}

func (f *fakeAS) jwks(w http.ResponseWriter, _ *http.Request) {
	f.jwksFetches.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	if f.jwksRaw != nil {
		w.Write(f.jwksRaw)
		return
	}
	var set jose.JSONWebKeySet
	for _, k := range f.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	json.NewEncoder(w).Encode(set)
}

func (f *fakeAS) setKeys(keys ...*testKey) {
	f.mu.Lock()
	f.keys = keys
	f.mu.Unlock()
}

func (f *fakeAS) introspect(w http.ResponseWriter, r *http.Request) {
	f.introspections.Add(1)
	f.introConns.Store(r.RemoteAddr, true)
	f.mu.Lock()
	down, gate := f.introDown, f.introGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if down {
		http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	if !f.authorized(r) {
		w.Header().Set("WWW-Authenticate", "Basic")
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	ans, ok := f.active[r.PostFormValue("token")]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.Write([]byte(`{"active":false}`))
		return
	}
	json.NewEncoder(w).Encode(ans)
}

// setActive makes introspection answer ans (active) for tok; nil makes it
// inactive.
func (f *fakeAS) setActive(tok string, ans map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ans == nil {
		delete(f.active, tok)
		return
	}
	f.active[tok] = ans
}

func (f *fakeAS) setIntrospectionDown(down bool) {
	f.mu.Lock()
	f.introDown = down
	f.mu.Unlock()
}

// opaque mints an opaque access token, active for client (and user, if
// not "") with scopes until exp.
func (f *fakeAS) opaque(client, user, scope string, iat, exp time.Time) (value, id string) {
	value, id, err := token.NewOpaque([]byte("0123456789abcdef0123456789abcdef")).Mint(oauth.KindAccess)
	if err != nil {
		f.t.Fatal(err)
	}
	sub := client
	ans := map[string]any{"active": true, "client_id": client, "scope": scope, "token_type": "Bearer",
		"exp": exp.Unix(), "iat": iat.Unix(), "iss": f.srv.URL}
	if user != "" {
		sub = user
		ans["username"] = user
	}
	ans["sub"] = sub
	f.setActive(value, ans)
	return value, id
}

// activeJWT makes introspection answer for a JWT with claims c as
// tokengate does.
func (f *fakeAS) activeJWT(tok string, c map[string]any) {
	ans := map[string]any{"active": true, "token_type": "Bearer", "aud": []string{f.srv.URL}}
	for _, k := range []string{"client_id", "scope", "exp", "iat", "sub", "iss", "jti"} {
		ans[k] = c[k]
	}
	if c["sub"] != c["client_id"] {
		ans["username"] = c["sub"]
	}
	f.setActive(tok, ans)
}

// feed serves the revocation feed as notes/feed-wire.md and the server
// (package feed) do: hello names where the stream starts (a resuming
// subscriber's own cursor, else the head); an expired or unknown cursor
// gets hello with it, then a reset to the head; a resuming subscriber gets
// the events it missed; then a ping at once (the end of the catch-up),
// then live events.
func (f *fakeAS) feed(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(r) {
		w.Header().Set("WWW-Authenticate", "Basic")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	f.feedMu.Lock()
	if f.feedDown {
		f.feedMu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	cursor := r.Header.Get("Last-Event-ID")
	f.lastEventID = append(f.lastEventID, cursor)
	kill, gate := f.kill, f.replayGate
	head := len(f.events)
	var backlog []sseRecord
	reset := false
	if cursor != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(cursor, "c"))
		if err != nil || n < f.expiredBelow || n > head {
			reset = true
		} else {
			backlog = append(backlog, f.events[n:]...)
		}
	}
	f.feedMu.Unlock()
	f.feedConns.Add(1)
	f.feedLive.Add(1)
	defer f.feedLive.Add(-1)

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fl := w.(http.Flusher)
	headID := "c" + strconv.Itoa(head)
	start := cursor
	if start == "" {
		start = headID
	}
	fmt.Fprintf(w, "event: hello\nid: %s\ndata: {\"cursor\":%q,\"retention\":\"24h0m0s\"}\n\n", start, start)
	fl.Flush()
	if gate != nil {
		select {
		case <-gate:
		case <-kill:
			return
		case <-r.Context().Done():
			return
		}
	}
	if reset {
		fmt.Fprintf(w, "event: reset\nid: %s\ndata: {\"reason\":\"cursor expired\",\"cursor\":%q}\n\n", headID, headID)
	}
	for _, e := range backlog {
		fmt.Fprintf(w, "event: %s\nid: %s\ndata: %s\n\n", e.name, e.id, e.data)
	}
	fmt.Fprintf(w, ": ping\n\n")
	fl.Flush()
	next := head
	f.feedMu.Lock()
	pinged := f.pingSeq
	f.feedMu.Unlock()
	for {
		f.feedMu.Lock()
		notify := f.notify
		pending := append([]sseRecord(nil), f.events[next:]...)
		next = len(f.events)
		pings := f.pingSeq - pinged
		pinged = f.pingSeq
		f.feedMu.Unlock()
		for _, e := range pending {
			fmt.Fprintf(w, "event: %s\nid: %s\ndata: %s\n\n", e.name, e.id, e.data)
		}
		for range pings {
			fmt.Fprintf(w, ": ping\n\n")
		}
		fl.Flush()
		select {
		case <-notify:
		case <-kill:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// publish appends an event to the feed's log and sends it to subscribers.
func (f *fakeAS) publish(name, data string) {
	f.feedMu.Lock()
	f.events = append(f.events, sseRecord{id: "c" + strconv.Itoa(len(f.events)+1), name: name, data: data})
	close(f.notify)
	f.notify = make(chan struct{})
	f.feedMu.Unlock()
}

// ping sends a comment to the subscribers, as the server does every 15 s.
func (f *fakeAS) ping() {
	f.feedMu.Lock()
	f.pingSeq++
	close(f.notify)
	f.notify = make(chan struct{})
	f.feedMu.Unlock()
}

// pingAndWait pings and waits until every guard has received it at the
// fake clock's current time (its feed is then known live up to now).
func (f *fakeAS) pingAndWait(t testing.TB, clk *fakeClock, guards ...*Guard) {
	t.Helper()
	f.ping()
	now := clk.Now().UnixNano()
	for _, g := range guards {
		eventually(t, 5*time.Second, "ping received", func() bool { return g.feed.lastUp.Load() == now })
	}
}

func (f *fakeAS) revokeToken(id string) {
	f.publish("revoked", fmt.Sprintf(`{"type":"token","id":%q}`, id))
}

func (f *fakeAS) revokeClient(client string, before time.Time) {
	f.publish("revoked", fmt.Sprintf(`{"type":"client","client_id":%q,"before":%q}`, client, before.UTC().Format(time.RFC3339Nano)))
}

func (f *fakeAS) revokeUser(user string, before time.Time) {
	f.publish("revoked", fmt.Sprintf(`{"type":"user","username":%q,"before":%q}`, user, before.UTC().Format(time.RFC3339Nano)))
}

// dropFeed ends the current streams; with down, new ones are refused.
func (f *fakeAS) dropFeed(down bool) {
	f.feedMu.Lock()
	f.feedDown = down
	close(f.kill)
	f.kill = make(chan struct{})
	f.feedMu.Unlock()
}

func (f *fakeAS) restoreFeed() {
	f.feedMu.Lock()
	f.feedDown = false
	f.feedMu.Unlock()
}

// expireCursors makes every cursor so far too old: a subscriber resuming
// from one gets a reset.
func (f *fakeAS) expireCursors() {
	f.feedMu.Lock()
	f.expiredBelow = len(f.events) + 1
	f.feedMu.Unlock()
}

// jwt signs claims with k as an RFC 9068 token (typ at+jwt).
func (f *fakeAS) jwt(k *testKey, claims map[string]any) string {
	return signJWT(f.t, k, "at+jwt", claims)
}

func signJWT(t testing.TB, k *testKey, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", k.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// claims are valid claims for a token of client (and user) issued at iat.
func (f *fakeAS) claims(client, user, scope string, iat time.Time, ttl time.Duration) map[string]any {
	sub := client
	if user != "" {
		sub = user
	}
	return map[string]any{"iss": f.srv.URL, "sub": sub, "aud": f.srv.URL, "client_id": client, "scope": scope,
		"jti": token.NewJTI(iat), "iat": iat.Unix(), "exp": iat.Add(ttl).Unix()}
}

// newGuard starts a Guard on f with the fake clock and cfg's other fields.
func newGuard(t testing.TB, f *fakeAS, clk *fakeClock, cfg Config) *Guard {
	t.Helper()
	cfg.Issuer = f.srv.URL
	cfg.ClientID, cfg.ClientSecret = testClient, testSecret
	cfg.HTTPClient = f.srv.Client()
	if clk != nil {
		cfg.Now = clk.Now
	}
	g, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if !g.Stats().FeedUp {
		t.Fatal("the feed is not up after New")
	}
	return g
}

// eventually polls cond (a real-time wait: what is measured is delivery
// over the network) and returns how long it took; it fails after limit.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}
