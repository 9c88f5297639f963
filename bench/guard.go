package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/bearer"
	"github.com/tokengate/tokengate/guard"
)

// The guard scenario (issue 11, point 5): a trivial handler of a resource
// server behind guard.Middleware, with -guard-tokens distinct valid tokens
// (half JWT, half opaque, issued by the real server before the runs)
// presented round-robin; measured in the same run as the same handler
// unprotected, and as the same handler asking POST /oauth/introspect on
// every request. The resource server is this binary again (startSelf), a
// process of its own, so its CPU is accounted apart from tokengate's and
// the generator's. A further closed-loop run of the protected handler
// revokes tokens while it runs (POST /oauth/revoke, and `tokengate token
// revoke --client`) and measures how long each takes to be refused.

// The resource server's environment (see runChild).
const (
	guardEnv       = "BENCH_GUARD_ADDR"
	guardIssuerEnv = "BENCH_GUARD_ISSUER"
	guardIDEnv     = "BENCH_GUARD_CLIENT_ID"
	guardSecretEnv = "BENCH_GUARD_CLIENT_SECRET"
)

// The resource server's routes: the one handler three ways, and two for
// the harness.
const (
	guardProtected   = "/v1/balance"
	guardUnprotected = "/open/v1/balance"
	guardIntrospect  = "/introspect/v1/balance"
	guardWhoami      = "/whoami"
	guardStats       = "/stats"
	guardRealm       = "bench"
)

// Row names of the guard scenario.
const (
	guardRowProtected   = "guard protected"
	guardRowRevoke      = "guard protected+revoke"
	guardRowUnprotected = "guard unprotected"
	guardRowIntrospect  = "guard introspect/req"
)

// guardBody is the trivial handler's answer, guardMarker in it.
var (
	guardBody   = []byte(`{"merchant_balance":"10000.00","currency":"IDR"}`)
	guardMarker = []byte(`"merchant_balance"`)
	// invalidTokenMarker is in the body of a 401 invalid_token (package bearer).
	invalidTokenMarker = []byte(`"invalid_token"`)
)

// guardCounters are the guard's rarer hooks, served on /stats. The
// per-validation hooks (CacheLookup, Validated) are left unset: counting
// every request would add shared atomic increments to the measured path.
type guardCounters struct {
	introspections, introspectErrors atomic.Int64
	resyncs, evicted                 atomic.Int64
	feedDown                         atomic.Int64
	events                           sync.Map // kind -> *atomic.Int64
}

func (c *guardCounters) hooks() guard.Hooks {
	return guard.Hooks{
		Introspected: func(_ time.Duration, err error) {
			c.introspections.Add(1)
			if err != nil {
				c.introspectErrors.Add(1)
			}
		},
		FeedEvent: func(kind string) {
			v, _ := c.events.LoadOrStore(kind, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		},
		Resynced: func(string) { c.resyncs.Add(1) },
		Evicted:  func(n int) { c.evicted.Add(int64(n)) },
		FeedState: func(s guard.FeedStatus) {
			if s != guard.FeedUp {
				c.feedDown.Add(1)
			}
		},
	}
}

// guardStatsJSON is the resource server's /stats answer.
type guardStatsJSON struct {
	Entries          int              `json:"entries"`
	Bytes            int64            `json:"bytes"`
	Revocations      int              `json:"revocations"`
	FeedUp           bool             `json:"feed_up"`
	Introspections   int64            `json:"introspections"`
	IntrospectErrors int64            `json:"introspect_errors"`
	Resyncs          int64            `json:"resyncs"`
	Evicted          int64            `json:"evicted"`
	FeedNotUp        int64            `json:"feed_not_up"` // state changes away from up
	Events           map[string]int64 `json:"events"`
}

// serveGuard is the resource server: the trivial handler behind
// guard.Middleware on guardProtected, bare on guardUnprotected, and behind
// a per-request introspection on guardIntrospect. /readyz answers 200 once
// the guard's revocation feed is up.
func serveGuard(ctx context.Context, addr string) int {
	issuer, id, secret := os.Getenv(guardIssuerEnv), os.Getenv(guardIDEnv), os.Getenv(guardSecretEnv)
	counters := &guardCounters{}
	g, err := guard.New(ctx, guard.Config{Issuer: issuer, ClientID: id, ClientSecret: secret, Hooks: counters.hooks(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "guard:", err)
		return 1
	}
	defer g.Close()
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(guardBody)
	})
	in := newIntrospector(issuer+"/oauth/introspect", id, secret)
	mux := http.NewServeMux()
	mux.Handle("GET "+guardProtected, g.Middleware(hello))
	mux.Handle("GET "+guardUnprotected, hello)
	mux.Handle("GET "+guardIntrospect, in.wrap(hello))
	mux.Handle("GET "+guardWhoami, g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := guard.FromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"client_id": id.ClientID, "format": id.Format.String(), "scope": strings.Join(id.Scopes, " ")})
	})))
	mux.HandleFunc("GET "+guardStats, func(w http.ResponseWriter, r *http.Request) {
		s := g.Stats()
		out := guardStatsJSON{Entries: s.Entries, Bytes: s.Bytes, Revocations: s.Revocations, FeedUp: s.FeedUp,
			Introspections: counters.introspections.Load(), IntrospectErrors: counters.introspectErrors.Load(),
			Resyncs: counters.resyncs.Load(), Evicted: counters.evicted.Load(), FeedNotUp: counters.feedDown.Load(),
			Events: map[string]int64{}}
		counters.events.Range(func(k, v any) bool {
			out.Events[k.(string)] = v.(*atomic.Int64).Load()
			return true
		})
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !g.Stats().FeedUp {
			http.Error(w, "the revocation feed is not up", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return serveHandler(ctx, "guard", addr, mux)
}

// introspector is the reference the guard is compared with: what a
// resource server without it does, POST /oauth/introspect (RFC 7662) for
// every request, with a plain keep-alive net/http client and the same
// client credentials, then the identity in the context as the guard puts it.
type introspector struct {
	url, auth string
	client    *http.Client
}

func newIntrospector(endpoint, id, secret string) *introspector {
	return &introspector{url: endpoint, auth: basicAuth(id, secret), client: &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512, // one per concurrent request: the default 2 would dial all the time
		IdleConnTimeout:     90 * time.Second,
	}, Timeout: 10 * time.Second}}
}

func (in *introspector) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, be := bearer.Token(r.Header)
		if be != nil {
			be.Write(w, guardRealm)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, in.url,
			strings.NewReader("token="+url.QueryEscape(tok)+"&token_type_hint=access_token"))
		if err != nil {
			bearer.Unavailable().Write(w, guardRealm)
			return
		}
		req.Header.Set("Authorization", in.auth)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := in.client.Do(req)
		if err != nil {
			bearer.Unavailable().Write(w, guardRealm)
			return
		}
		var v struct {
			Active   bool   `json:"active"`
			ClientID string `json:"client_id"`
			Sub      string `json:"sub"`
			Scope    string `json:"scope"`
			Exp      int64  `json:"exp"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&v)
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			bearer.Unavailable().Write(w, guardRealm)
			return
		}
		if !v.Active {
			bearer.InvalidToken("the access token is not active").Write(w, guardRealm)
			return
		}
		id := &guard.Identity{ClientID: v.ClientID, Subject: v.Sub, Scopes: strings.Fields(v.Scope), ExpiresAt: time.Unix(v.Exp, 0)}
		next.ServeHTTP(w, r.WithContext(guard.NewContext(r.Context(), id)))
	})
}

// guardToken is one token of the pool.
type guardToken struct {
	value string
	jwt   bool
	owner int // index into guardFixture.clients
}

// guardPool is the scenario's tokens and what the runs learned of them.
// The load generator and the probes share it.
type guardPool struct {
	toks []guardToken
	// pending: a revocation of the token has started, so a 401
	// invalid_token for it is the expected answer, not an error.
	pending []atomic.Bool
	// refused: UnixNano of the first 401 received for it (0: none yet).
	refused []atomic.Int64
	// byLoad: the first 401 came to the load generator, not a probe.
	byLoad          atomic.Int64
	expected        atomic.Int64 // 401s answered to the load for revoked tokens
	probes, probeOK atomic.Int64 // probe requests, of which answered 200 (not refused yet)
}

func newGuardPool(toks []guardToken) *guardPool {
	return &guardPool{toks: toks, pending: make([]atomic.Bool, len(toks)), refused: make([]atomic.Int64, len(toks))}
}

// noteRefusal records a 401 for token k received at now; the first one
// counts.
func (p *guardPool) noteRefusal(k int, now int64, byLoad bool) {
	if p.refused[k].CompareAndSwap(0, now) && byLoad {
		p.byLoad.Add(1)
	}
}

// guardSource presents the pool round-robin on one of the resource
// server's paths (each connection starts at its own place), skipping the
// tokens already refused after their revocation. A 401 invalid_token for
// a token whose revocation has started is a correct answer: it is counted
// apart (guardPool.expected) and noted as a refusal.
type guardSource struct {
	pool      *guardPool
	reqs      [][]byte // per token
	conns     int
	onPrepare func(ctx context.Context) // called right before the run starts
}

func newGuardSource(pool *guardPool, host, path string) *guardSource {
	s := &guardSource{pool: pool, reqs: make([][]byte, len(pool.toks))}
	for i, t := range pool.toks {
		s.reqs[i] = guardRequest(host, path, t.value)
	}
	return s
}

func guardRequest(host, path, tok string) []byte {
	return fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", path, host, tok)
}

func (s *guardSource) prepare(ctx context.Context, _ string, conns int) error {
	s.conns = conns
	if s.onPrepare != nil {
		s.onPrepare(ctx)
	}
	return nil
}

func (s *guardSource) requester(i int) requester {
	return &guardReq{s: s, i: i * len(s.reqs) / max(1, s.conns)}
}

type guardReq struct {
	s   *guardSource
	i   int // the next token
	cur int // the token of the request in flight
}

func (r *guardReq) next() ([]byte, bool) {
	p := r.s.pool
	for range len(r.s.reqs) {
		k := r.i
		if r.i++; r.i == len(r.s.reqs) {
			r.i = 0
		}
		if p.refused[k].Load() == 0 {
			r.cur = k
			return r.s.reqs[k], true
		}
	}
	return nil, false // every token refused: cannot happen with the pool's sizes
}

func (r *guardReq) check(status int, body []byte) bool {
	switch {
	case status == http.StatusOK:
		return bytes.Contains(body, guardMarker)
	case status == http.StatusUnauthorized && r.s.pool.pending[r.cur].Load() && bytes.Contains(body, invalidTokenMarker):
		r.s.pool.noteRefusal(r.cur, time.Now().UnixNano(), true)
		r.s.pool.expected.Add(1)
		return true
	}
	return false
}

// guardFixture is what register creates for the scenario.
type guardFixture struct {
	rs client // the resource server: --can-introspect
	// clients own the pool's tokens: [0] opaque, [1] JWT (revoked token by
	// token), [2] opaque, [3] JWT (each revoked whole with the CLI).
	clients [4]client
}

const (
	guardOpaque, guardJWT, guardVictimOpaque, guardVictimJWT = 0, 1, 2, 3
)

func (h *harness) registerGuard(ctx context.Context, tg *tokengate) (*guardFixture, error) {
	fx := &guardFixture{}
	var err error
	if fx.rs, err = tg.createClient(ctx, "--name", "bench guard resource server", "--grant", "client_credentials", "--can-introspect"); err != nil {
		return nil, err
	}
	for i, args := range [][]string{
		{"--name", "bench guard opaque"},
		{"--name", "bench guard jwt", "--token-format", "jwt"},
		{"--name", "bench guard victim opaque"},
		{"--name", "bench guard victim jwt", "--token-format", "jwt"},
	} {
		if fx.clients[i], err = tg.createClient(ctx, append(args, "--grant", "client_credentials", "--scope", "payments")...); err != nil {
			return nil, err
		}
	}
	return fx, nil
}

// guardVictimTokens is how many tokens each client revoked whole has in
// the pool.
func guardVictimTokens(total int) int { return max(1, min(50, total/40)) }

// issueTokens issues n client_credentials tokens to c on 8 connections.
func issueTokens(ctx context.Context, host string, c client, n int) ([]string, error) {
	issue := formRequest(host, "/oauth/token", basicAuth(c.ID, c.Secret), "grant_type=client_credentials&scope=payments")
	toks := make([]string, n)
	const workers = 8
	errs := make([]error, workers)
	per := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			cn := newConn(host)
			defer cn.close()
			for i := w * per; i < min(n, (w+1)*per); i++ {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				status, body, err := cn.do(issue)
				if err != nil {
					errs[w] = err
					return
				}
				tok, ok := jsonField(body, accessTokenKV)
				if status != 200 || !ok {
					errs[w] = fmt.Errorf("issuing a token: status %d: %.200s", status, body)
					return
				}
				toks[i] = string(tok)
			}
		})
	}
	wg.Wait()
	return toks, errors.Join(errs...)
}

// guardPoolTokens issues the pool: total/2 opaque and total/2 JWTs,
// interleaved; guardVictimTokens of each format belong to the clients
// revoked whole, spread evenly.
func (h *harness) guardPoolTokens(ctx context.Context, host string, fx *guardFixture, total int) ([]guardToken, error) {
	half := total / 2
	v := guardVictimTokens(total)
	issued := map[int][]string{}
	for _, c := range []struct{ owner, n int }{{guardOpaque, half - v}, {guardJWT, half - v}, {guardVictimOpaque, v}, {guardVictimJWT, v}} {
		toks, err := issueTokens(ctx, host, fx.clients[c.owner], c.n)
		if err != nil {
			return nil, err
		}
		issued[c.owner] = toks
	}
	// Each format's list: the victims' tokens at every (half/v)-th place.
	list := func(main, victim int) []guardToken {
		var out []guardToken
		m, vi := issued[main], issued[victim]
		step := half / v
		for i := range half {
			owner := main
			if i%step == step/2 && len(vi) > 0 {
				owner = victim
			}
			var tok string
			if owner == victim {
				tok, vi = vi[0], vi[1:]
			} else if len(m) > 0 {
				tok, m = m[0], m[1:]
			} else {
				owner, tok, vi = victim, vi[0], vi[1:]
			}
			out = append(out, guardToken{value: tok, jwt: main == guardJWT, owner: owner})
		}
		return out
	}
	op, jw := list(guardOpaque, guardVictimOpaque), list(guardJWT, guardVictimJWT)
	var pool []guardToken
	for i := range half {
		pool = append(pool, op[i], jw[i])
	}
	return pool, nil
}

// revocation is one revoked token and what happened to it.
type revocation struct {
	tok  int    // in the pool
	kind string // revocationKinds
	t0   int64  // UnixNano: the revocation (see runRevocations)
	ack  int64  // UnixNano: its acknowledgement (the 200 received, the CLI exited)
	err  string // the revocation itself failed
}

var revocationKinds = []string{"token, opaque", "token, JWT", "client (CLI), opaque", "client (CLI), JWT"}

// guardSummary is what the guard section of the report needs beyond the
// rows.
type guardSummary struct {
	tokens, jwts, victims int
	warm                  time.Duration // first sight of every token, before the runs
	warmStats             guardStatsJSON
	endStats              guardStatsJSON
	revs                  []revocation
	refused               []int64 // per revocation: first 401 (0: never)
	byLoad, expected      int64
	probes                int64
	revokeRate            float64 // the protected handler's rate during the revocations
	gobench               []gobenchLine
	gobenchErr            string
	gobenchCmd            string
}

// probeEvery is how often a revoked token is presented by its probe until
// it is refused; probeFor bounds how long.
const (
	probeEvery = 10 * time.Millisecond
	probeFor   = 5 * time.Second
)

// runGuard runs the guard scenario on the server p (whose store holds the
// clients fx).
func (h *harness) runGuard(ctx context.Context, tg *tokengate, p *proc, fx *guardFixture) error {
	const name = "guard"
	total := h.opts.guardTokens
	h.logf("%s: issuing %d tokens (%d JWT, %d opaque)", name, total, total/2, total/2)
	toks, err := h.guardPoolTokens(ctx, p.addr, fx, total)
	if err != nil {
		return err
	}
	pool := newGuardPool(toks)

	h.logf("%s: starting the resource server (guard subscribed to the revocation feed)", name)
	rs, err := startSelf(ctx, h.dir, "resource-server", func(addr string) []string {
		return []string{guardEnv + "=" + addr, guardIssuerEnv + "=http://" + p.addr, guardIDEnv + "=" + fx.rs.ID, guardSecretEnv + "=" + fx.rs.Secret}
	})
	if err != nil {
		return fmt.Errorf("resource server: %w", err)
	}
	defer rs.stop()

	// The identity reaches the handler, for both formats.
	for _, k := range []int{0, 1} {
		var who struct {
			ClientID string `json:"client_id"`
			Format   string `json:"format"`
		}
		if err := getJSON(ctx, "http://"+rs.addr+guardWhoami, toks[k].value, &who); err != nil {
			return fmt.Errorf("whoami: %w", err)
		}
		if want := fx.clients[toks[k].owner].ID; who.ClientID != want || (who.Format == "jwt") != toks[k].jwt {
			return fmt.Errorf("whoami: got %+v, want client %s jwt=%v", who, want, toks[k].jwt)
		}
	}
	prot := newGuardSource(pool, rs.addr, guardProtected)
	unprot := newGuardSource(pool, rs.addr, guardUnprotected)
	intro := newGuardSource(pool, rs.addr, guardIntrospect)
	for _, s := range []*guardSource{unprot, intro} {
		if err := oneRequest(rs.addr, s, 0); err != nil {
			return err
		}
	}
	// First sight of every token (an introspection each: the opaque ones
	// always, the JWTs because they predate the guard's subscription), so
	// the runs measure the steady state; on as many connections as the
	// closed loops, as a restart under traffic would see it.
	h.logf("%s: presenting each token once (first sight: verification and introspection)", name)
	sum := &guardSummary{tokens: total, jwts: total / 2, victims: guardVictimTokens(total)}
	h.guard = sum
	start := time.Now()
	if err := presentAll(ctx, rs.addr, prot, h.connsFor(name)); err != nil {
		return fmt.Errorf("first sight: %w", err)
	}
	sum.warm = time.Since(start)
	if err := getJSON(ctx, "http://"+rs.addr+guardStats, "", &sum.warmStats); err != nil {
		return err
	}

	upNote := []string{fmt.Sprintf("srv columns: the resource server (pid %d); tokengate (pid %d) is measured apart", rs.pid, p.pid)}
	first := len(h.rows)
	runs := []struct {
		row  string
		src  *guardSource
		rate float64
	}{{guardRowUnprotected, unprot, 0}, {guardRowProtected, prot, 0}, {guardRowIntrospect, intro, 0}}
	for i, r := range runs {
		res, err := h.measure(ctx, r.row, rs, r.src, runSpec{mode: closedLoop, conns: h.connsFor(name), up: p.pid, upName: "tokengate"}, upNote)
		if err != nil {
			return fmt.Errorf("%s: %w", r.row, err)
		}
		if runs[i].rate = res.rate; res.rate <= 0 {
			h.noteLast("no successful response in the closed loop: open loop not run")
		}
	}

	// The protected handler again, closed loop, revoking tokens meanwhile.
	plan := h.revocationPlan(pool)
	rev := &guardSource{pool: pool, reqs: prot.reqs}
	var revWG sync.WaitGroup
	var revs []revocation
	var revMu sync.Mutex
	rev.onPrepare = func(ctx context.Context) {
		at := time.Now().Add(h.opts.warm)
		revWG.Go(func() {
			out := h.runRevocations(ctx, tg, p.addr, rs.addr, pool, prot, fx, plan, at)
			revMu.Lock()
			revs = out
			revMu.Unlock()
		})
	}
	res, err := h.measure(ctx, guardRowRevoke, rs, rev, runSpec{mode: closedLoop, conns: h.connsFor(name), up: p.pid, upName: "tokengate"}, nil)
	revWG.Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", guardRowRevoke, err)
	}
	sum.revokeRate = res.rate
	sum.revs = revs
	for _, r := range revs {
		sum.refused = append(sum.refused, pool.refused[r.tok].Load())
	}
	sum.byLoad, sum.expected, sum.probes = pool.byLoad.Load(), pool.expected.Load(), pool.probes.Load()
	h.noteLast(fmt.Sprintf("%d tokens revoked during the run; %d probe requests of revoked tokens (in srv µs/req); %d answers to the load were the expected 401 for a revoked token (counted as successes)",
		len(revs), sum.probes, sum.expected))

	for _, r := range runs {
		if r.rate <= 0 {
			continue
		}
		if _, err := h.measure(ctx, r.row, rs, r.src, runSpec{mode: openLoop, conns: h.openConnsFor(name), rate: r.rate / 2, up: p.pid, upName: "tokengate"}, nil); err != nil {
			return fmt.Errorf("%s: %w", r.row, err)
		}
	}
	if err := getJSON(ctx, "http://"+rs.addr+guardStats, "", &sum.endStats); err != nil {
		return err
	}
	rows := h.rows[first:]
	slices.SortStableFunc(rows, func(a, b result) int { return cmp.Compare(guardRowOrder(a.scenario), guardRowOrder(b.scenario)) })

	// The Go benchmark of a cached validation, on a machine this bench
	// no longer loads.
	rs.stop()
	p.stop()
	if bt := h.opts.guardBench; bt != "off" {
		h.logf("%s: go test ./guard -bench ValidateCached (benchtime %s)", name, bt)
		sum.gobenchCmd = "go test ./guard -run XXX -bench ValidateCached -benchmem -benchtime " + bt
		if sum.gobench, err = runGobench(ctx, bt); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			sum.gobenchErr = err.Error()
		}
	}
	return nil
}

func guardRowOrder(row string) int {
	return slices.Index([]string{guardRowProtected, guardRowRevoke, guardRowUnprotected, guardRowIntrospect}, row)
}

// revocationPlan picks what to revoke: -guard-revocations tokens of the
// two main clients, alternately opaque and JWT, spread over the pool; and
// the two victim clients whole.
func (h *harness) revocationPlan(pool *guardPool) (singles []int) {
	n := h.opts.guardRevokes
	var mains []int
	for i, t := range pool.toks {
		if t.owner == guardOpaque || t.owner == guardJWT {
			mains = append(mains, i)
		}
	}
	n = min(n, len(mains)/2)
	step := len(mains) / max(1, n)
	for k := range n {
		i := k * step
		// Alternate the formats (the pool alternates them).
		if want := k%2 == 1; pool.toks[mains[i]].jwt != want && i+1 < len(mains) {
			i++
		}
		singles = append(singles, mains[i])
	}
	return singles
}

// runRevocations revokes the planned tokens one by one through
// POST /oauth/revoke (authenticated as the owning client), evenly over the
// first 80% of the measured window that starts at start, and at 30% and
// 60% of it revokes each victim client whole with `tokengate token revoke
// --client`. Each revoked token is then presented by a probe of its own
// every probeEvery until the resource server refuses it (or probeFor has
// passed), on top of the load that also presents it.
//
// The revocation's time t0 is conservative (early): for /oauth/revoke, when
// the request was sent; for the CLI, the cutoff it reports (not_before),
// taken before its transaction commits. Its acknowledgement (the answer
// received, the CLI exited) is recorded too: the time in between is the
// revocation's own (tokengate's, the store's), not the feed's or the guard's.
func (h *harness) runRevocations(ctx context.Context, tg *tokengate, tgAddr, rsAddr string, pool *guardPool, prot *guardSource,
	fx *guardFixture, singles []int, start time.Time) []revocation {
	span := time.Duration(float64(h.opts.dur) * 0.8)
	var probes sync.WaitGroup
	probe := func(k int) {
		probes.Go(func() { probeUntilRefused(ctx, rsAddr, prot.reqs[k], pool, k) })
	}
	var mu sync.Mutex
	var out []revocation
	add := func(r revocation) {
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
	}
	var cliWG sync.WaitGroup
	for _, c := range []struct {
		owner int
		at    float64
		kind  string
	}{{guardVictimOpaque, 0.3, revocationKinds[2]}, {guardVictimJWT, 0.6, revocationKinds[3]}} {
		cliWG.Go(func() {
			if !sleepUntil(ctx, start.Add(time.Duration(float64(h.opts.dur)*c.at))) {
				return
			}
			var toks []int
			for i, t := range pool.toks {
				if t.owner == c.owner {
					toks = append(toks, i)
					pool.pending[i].Store(true)
				}
			}
			out, err := tg.cli(ctx, "", "token", "revoke", "--client", fx.clients[c.owner].ID, "--json")
			ack := time.Now().UnixNano()
			var res struct {
				NotBefore string `json:"not_before"`
			}
			var t0 time.Time
			if err == nil {
				if err = json.Unmarshal(out, &res); err == nil {
					t0, err = time.Parse(time.RFC3339Nano, res.NotBefore)
				}
			}
			for _, k := range toks {
				r := revocation{tok: k, kind: c.kind, t0: t0.UnixNano(), ack: ack}
				if err != nil {
					r.err = err.Error()
				} else {
					probe(k)
				}
				add(r)
			}
		})
	}
	cn := newConn(tgAddr)
	defer cn.close()
	for k, tok := range singles {
		if !sleepUntil(ctx, start.Add(span*time.Duration(k)/time.Duration(max(1, len(singles))))) {
			break
		}
		t := pool.toks[tok]
		owner := fx.clients[t.owner]
		req := formRequest(tgAddr, "/oauth/revoke", basicAuth(owner.ID, owner.Secret), "token="+t.value+"&token_type_hint=access_token")
		kind := revocationKinds[0]
		if t.jwt {
			kind = revocationKinds[1]
		}
		pool.pending[tok].Store(true)
		r := revocation{tok: tok, kind: kind, t0: time.Now().UnixNano()}
		status, body, err := cn.do(req)
		r.ack = time.Now().UnixNano()
		switch {
		case err != nil:
			r.err = err.Error()
		case status != http.StatusOK:
			r.err = fmt.Sprintf("HTTP %d %.200s", status, body)
		default:
			probe(tok)
		}
		add(r)
	}
	cliWG.Wait()
	probes.Wait()
	return out
}

// probeUntilRefused presents token k (request req) on a connection of its
// own every probeEvery until the resource server answers 401.
func probeUntilRefused(ctx context.Context, addr string, req []byte, pool *guardPool, k int) {
	c := newConn(addr)
	defer c.close()
	deadline := time.Now().Add(probeFor)
	for ctx.Err() == nil && time.Now().Before(deadline) && pool.refused[k].Load() == 0 {
		status, body, err := c.do(req)
		now := time.Now().UnixNano()
		pool.probes.Add(1)
		if err == nil && status == http.StatusUnauthorized && bytes.Contains(body, invalidTokenMarker) {
			pool.noteRefusal(k, now, false)
			return
		}
		if err == nil && status == http.StatusOK {
			pool.probeOK.Add(1)
		}
		time.Sleep(probeEvery)
	}
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// presentAll sends every token of s once, on workers connections, and
// checks each is accepted.
func presentAll(ctx context.Context, addr string, s *guardSource, workers int) error {
	errs := make([]error, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := newConn(addr)
			defer c.close()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(s.reqs) {
					return
				}
				status, body, err := c.do(s.reqs[k])
				if err != nil {
					errs[w] = err
					return
				}
				if status != http.StatusOK || !bytes.Contains(body, guardMarker) {
					errs[w] = fmt.Errorf("token %d: HTTP %d %.200s", k, status, body)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// oneRequest sends token k's request of s on a fresh connection and checks
// the answer.
func oneRequest(addr string, s *guardSource, k int) error {
	c := newConn(addr)
	defer c.close()
	status, body, err := c.do(s.reqs[k])
	if err != nil {
		return err
	}
	if status != http.StatusOK || !bytes.Contains(body, guardMarker) {
		return fmt.Errorf("a first request: HTTP %d %.300s", status, body)
	}
	return nil
}

// getJSON GETs url (with a bearer token if tok is not "") and decodes
// the 200 answer into v.
func getJSON(ctx context.Context, u, tok string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d %.200s", u, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
