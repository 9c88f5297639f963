package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// scenarioInfo names a scenario and says what it measures.
type scenarioInfo struct{ name, what string }

var scenarioList = []scenarioInfo{
	{"cc-opaque", "client_credentials, opaque token, Basic auth"},
	{"cc-jwt", "client_credentials, JWT ES256"},
	{"password", "password grant (argon2id), 64 connections"},
	{"refresh", "refresh-token rotation, one chain per connection"},
	{"introspect", "introspection of opaque tokens, round-robin"},
	{"snap-b2b", "SNAP BI B2B, RSA-2048 signature, fresh timestamp"},
	{"pg-cc-opaque", "client_credentials, opaque, PostgreSQL store"},
	{"snap-gateway", "SNAP service calls (HMAC-SHA512, fresh X-EXTERNAL-ID) through the gateway, and a bare reverse proxy"},
	{"guard", "resource server: a handler behind guard.Middleware (10,000 tokens round-robin), unprotected, and introspecting per request; revocation to refusal"},
	{"flood-client-id", "unauthenticated flood of random ~64 KiB client_ids on every path: memory and answers"},
}

// loadScenario reports whether a scenario is a load run measured against
// the hello-world ceiling (the flood is not).
func loadScenario(name string) bool { return name != "flood-client-id" }

func scenarioNames() []string {
	var names []string
	for _, s := range scenarioList {
		names = append(names, s.name)
	}
	return names
}

// passwordConns is the password grant's connection count: the memory
// target is stated for 64 concurrent requests.
const passwordConns = 64

// harness runs the scenarios and collects the report's rows.
type harness struct {
	opts options
	out  io.Writer
	log  io.Writer

	dir      string
	bin      string
	dataDir  string // the embedded store's
	rows     []result
	ceiling  map[int]float64 // closed-loop hello-world rate by connection count
	started  time.Time
	machine  string
	snapNote string
	flood    *floodResult // flood-client-id, when it ran
	gw       *gwSummary   // snap-gateway, when it ran
	guard    *guardSummary
	partial  bool // interrupted or failed: the report is incomplete
}

func (h *harness) logf(format string, a ...any) {
	fmt.Fprintf(h.log, "bench: "+format+"\n", a...)
}

func (h *harness) run(ctx context.Context) error {
	h.started = time.Now()
	h.machine = machineInfo()
	dir, err := os.MkdirTemp("", "tokengate-bench-")
	if err != nil {
		return err
	}
	h.dir = dir
	defer os.RemoveAll(dir)
	defer stopAll()

	h.logf("building ./cmd/tokengate")
	if h.bin, err = buildServer(ctx, dir); err != nil {
		return err
	}
	if !h.opts.skipCeiling && slices.ContainsFunc(scenarioNames(), func(s string) bool { return loadScenario(s) && h.opts.selected(s) }) {
		if err := h.runCeiling(ctx); err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
	}
	var embedded []string
	for _, s := range scenarioList {
		if s.name != "pg-cc-opaque" && h.opts.selected(s.name) {
			embedded = append(embedded, s.name)
		}
	}
	if len(embedded) > 0 {
		if err := h.runEmbedded(ctx, embedded); err != nil {
			return err
		}
	}
	if h.opts.selected("pg-cc-opaque") {
		if err := h.runPostgres(ctx); err != nil {
			return err
		}
	}
	return nil
}

// connsFor is a scenario's closed-loop connection count.
func (h *harness) connsFor(name string) int {
	if name == "password" {
		return passwordConns
	}
	return h.opts.conns
}

func (h *harness) openConnsFor(name string) int {
	if name == "password" {
		return passwordConns
	}
	return h.opts.openConns
}

// runCeiling measures the hello-world server with every connection count
// the scenarios use, closed-loop, and once open-loop at half the rate.
func (h *harness) runCeiling(ctx context.Context) error {
	p, err := startHello(ctx, h.dir)
	if err != nil {
		return err
	}
	defer p.stop()
	h.ceiling = map[int]float64{}
	var counts []int
	for _, s := range scenarioList {
		if loadScenario(s.name) && h.opts.selected(s.name) && !slices.Contains(counts, h.connsFor(s.name)) {
			counts = append(counts, h.connsFor(s.name))
		}
	}
	slices.Sort(counts)
	src := &staticSource{req: formRequest(p.addr, "/token", "Basic aGVsbG86d29ybGQ=", "grant_type=client_credentials"),
		marker: []byte(`"access_token"`)}
	var closedRate float64
	for _, n := range counts {
		h.logf("ceiling: hello-world, closed loop, %d connections", n)
		res, err := h.load(ctx, p.addr, src, runSpec{mode: closedLoop, conns: n, pid: p.pid})
		if err != nil {
			return err
		}
		res.scenario = "ceiling (net/http hello)"
		h.ceiling[n] = res.rate
		res.ceiling = 1
		h.rows = append(h.rows, res)
		if n == h.opts.conns || closedRate == 0 {
			closedRate = res.rate
		}
	}
	if closedRate > 0 {
		h.logf("ceiling: open loop at %.0f/s", closedRate/2)
		res, err := h.load(ctx, p.addr, src, runSpec{mode: openLoop, conns: h.opts.openConns, rate: closedRate / 2, pid: p.pid})
		if err != nil {
			return err
		}
		res.scenario = "ceiling (net/http hello)"
		res.ceiling = res.rate / closedRate
		h.rows = append(h.rows, res)
	}
	return nil
}

// load runs one measured run with the generator's GOMAXPROCS set to -procs.
func (h *harness) load(ctx context.Context, addr string, src source, spec runSpec) (result, error) {
	spec.warm, spec.dur, spec.loops = h.opts.warm, h.opts.dur, h.opts.loops
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(h.opts.procs))
	return runLoad(ctx, addr, src, spec)
}

// fixture is what the embedded scenarios' clients and users are.
type fixture struct {
	cc, jwt, pw, rs client
	username, pass  string
	snap            []snapClient
	gw              []gwClient
	guard           *guardFixture
}

func (h *harness) runEmbedded(ctx context.Context, names []string) error {
	tg := &tokengate{bin: h.bin, config: filepath.Join(h.dir, "embedded.yaml")}
	h.dataDir = filepath.Join(h.dir, "data")
	if err := writeConfig(tg.config, h.dataDir, ""); err != nil {
		return err
	}
	h.logf("registering clients with the CLI")
	fx, err := h.register(ctx, tg, names)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := h.runScenario(ctx, tg, name, fx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// register creates, through the CLI, the clients and the user the
// selected scenarios need.
func (h *harness) register(ctx context.Context, tg *tokengate, names []string) (*fixture, error) {
	fx := &fixture{username: "bench-user", pass: "bench-" + randomHex(12)}
	need := func(ss ...string) bool {
		for _, s := range ss {
			if slices.Contains(names, s) {
				return true
			}
		}
		return false
	}
	var err error
	if need("cc-opaque", "introspect") {
		if fx.cc, err = tg.createClient(ctx, "--name", "bench cc opaque", "--grant", "client_credentials", "--scope", "payments"); err != nil {
			return nil, err
		}
	}
	if need("introspect") {
		if fx.rs, err = tg.createClient(ctx, "--name", "bench resource server", "--grant", "client_credentials"); err != nil {
			return nil, err
		}
	}
	if need("cc-jwt") {
		if fx.jwt, err = tg.createClient(ctx, "--name", "bench cc jwt", "--grant", "client_credentials", "--scope", "payments",
			"--token-format", "jwt"); err != nil {
			return nil, err
		}
	}
	if need("password", "refresh") {
		if fx.pw, err = tg.createClient(ctx, "--name", "bench password", "--grant", "password", "--grant", "refresh_token",
			"--scope", "payments"); err != nil {
			return nil, err
		}
		if err := tg.createUser(ctx, fx.username, fx.pass); err != nil {
			return nil, err
		}
	}
	if need("snap-b2b") {
		h.logf("generating %d RSA-2048 keys for SNAP clients", h.opts.snapClients)
		keys, files, err := generateSnapKeys(ctx, h.dir, h.opts.snapClients)
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			c, err := tg.createClient(ctx, "--name", fmt.Sprintf("bench snap %d", i), "--grant", "client_credentials",
				"--snap-public-key", files[i])
			if err != nil {
				return nil, err
			}
			fx.snap = append(fx.snap, snapClient{id: c.ID, key: k})
		}
	}
	if need("guard") {
		if fx.guard, err = h.registerGuard(ctx, tg); err != nil {
			return nil, err
		}
	}
	if need("snap-gateway") {
		if fx.gw, err = h.registerGateway(ctx, tg, h.opts.gwClients); err != nil {
			return nil, err
		}
	}
	return fx, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runScenario starts a fresh server process on the shared store (so each
// scenario's memory is its own), runs the closed and open loops, and
// stops it.
func (h *harness) runScenario(ctx context.Context, tg *tokengate, name string, fx *fixture) error {
	if name == "snap-gateway" {
		// Its own configuration (the gateway route) and helper processes.
		return h.runGateway(ctx, tg, h.dataDir, fx.gw)
	}
	h.logf("%s: starting the server", name)
	p, err := tg.serve(ctx, h.dir, "tokengate-"+name)
	if err != nil {
		return err
	}
	defer p.stop()
	host := p.addr
	var src source
	var notes []string
	switch name {
	case "cc-opaque":
		src = &staticSource{req: formRequest(host, "/oauth/token", basicAuth(fx.cc.ID, fx.cc.Secret),
			"grant_type=client_credentials&scope=payments"), marker: []byte(`"access_token"`)}
	case "cc-jwt":
		src = &staticSource{req: formRequest(host, "/oauth/token", basicAuth(fx.jwt.ID, fx.jwt.Secret),
			"grant_type=client_credentials&scope=payments"), marker: []byte(`"access_token"`)}
	case "password":
		src = &staticSource{req: formRequest(host, "/oauth/token", basicAuth(fx.pw.ID, fx.pw.Secret), h.passwordBody(fx)),
			marker: []byte(`"access_token"`)}
	case "refresh":
		rs := &refreshSource{host: host, auth: basicAuth(fx.pw.ID, fx.pw.Secret),
			pwReq: formRequest(host, "/oauth/token", basicAuth(fx.pw.ID, fx.pw.Secret), h.passwordBody(fx))}
		src = rs
		defer func() {
			if n := rs.restarts.Load(); n > 0 {
				h.noteLast(fmt.Sprintf("%d chains restarted by a password grant after a failed refresh", n))
			}
		}()
	case "introspect":
		reqs, err := h.introspectRequests(ctx, host, fx)
		if err != nil {
			return err
		}
		src = &listSource{reqs: reqs, marker: []byte(`"active":true`)}
		notes = append(notes, fmt.Sprintf("%d pre-issued tokens introspected round-robin", len(reqs)))
	case "snap-b2b":
		return h.runSnap(ctx, p, fx)
	case "flood-client-id":
		return h.runFlood(ctx, p)
	case "guard":
		return h.runGuard(ctx, tg, p, fx.guard)
	default:
		return fmt.Errorf("unknown scenario %q", name)
	}
	return h.closedThenOpen(ctx, name, p, src, notes, "", 0)
}

func (h *harness) passwordBody(fx *fixture) string {
	return "grant_type=password&username=" + fx.username + "&password=" + fx.pass + "&scope=payments"
}

// noteLast adds a note to the last row.
func (h *harness) noteLast(note string) {
	if len(h.rows) > 0 {
		h.rows[len(h.rows)-1].notes = append(h.rows[len(h.rows)-1].notes, note)
	}
}

// closedThenOpen runs the closed loop, then the open loop at half its rate.
// db names the database's processes whose CPU time is measured too, up
// the pid of an upstream process measured apart (0: none).
func (h *harness) closedThenOpen(ctx context.Context, name string, p *proc, src source, notes []string, db string, up int) error {
	closed, err := h.measure(ctx, name, p, src, runSpec{mode: closedLoop, conns: h.connsFor(name), db: db, up: up}, notes)
	if err != nil {
		return err
	}
	if closed.rate <= 0 {
		h.noteLast("no successful response in the closed loop: open loop not run")
		return nil
	}
	_, err = h.measure(ctx, name, p, src, runSpec{mode: openLoop, conns: h.openConnsFor(name), rate: closed.rate / 2, db: db, up: up}, nil)
	return err
}

// measure runs one run on server p and appends its row.
func (h *harness) measure(ctx context.Context, name string, p *proc, src source, spec runSpec, notes []string) (result, error) {
	spec.pid = p.pid
	if h.opts.perfDir != "" && spec.mode == closedLoop {
		if err := os.MkdirAll(h.opts.perfDir, 0o755); err != nil {
			return result{}, err
		}
		spec.perf = filepath.Join(h.opts.perfDir, name+".perf.data")
	}
	if h.opts.dumpDir != "" {
		if err := os.MkdirAll(h.opts.dumpDir, 0o755); err != nil {
			return result{}, err
		}
		spec.dump = filepath.Join(h.opts.dumpDir, name+"-"+spec.mode.String()+".csv")
	}
	h.logf("%s: %s loop, %d connections%s", name, spec.mode, spec.conns, rateText(spec))
	logBefore := p.logLines()
	res, err := h.load(ctx, p.addr, src, spec)
	if err != nil {
		return res, err
	}
	res.scenario = name
	res.notes = append(notes, res.notes...)
	if spec.db != "" {
		res.notes = append(res.notes, fmt.Sprintf("%s processes (the database) used %.0f µs CPU/request (not in other CPU)", spec.db, res.dbCPU))
	}
	if spec.up > 0 {
		upName := cmp.Or(spec.upName, "the upstream process")
		res.notes = append(res.notes, fmt.Sprintf("%s used %.1f µs CPU/request (not in other CPU)", upName, res.upCPU))
	}
	if n := p.logLines() - logBefore; n > 0 {
		res.notes = append(res.notes, fmt.Sprintf("server logged %d warning/error lines, e.g.:\n%s", n, p.logTail(3)))
	}
	if c := h.ceiling[h.connsFor(name)]; c > 0 {
		res.ceiling = res.rate / c
	}
	h.rows = append(h.rows, res)
	if h.opts.verbose {
		h.logf("  %.0f/s, p50 %s, p99 %s, %d errors", res.rate, fmtDur(res.p50), fmtDur(res.p99), res.errs)
	}
	return res, nil
}

func rateText(spec runSpec) string {
	if spec.mode == openLoop {
		return fmt.Sprintf(", %.0f/s", spec.rate)
	}
	return ""
}

// introspectRequests issues -introspect-tokens opaque tokens and returns
// one introspection request per token, authenticated as the resource
// server.
func (h *harness) introspectRequests(ctx context.Context, host string, fx *fixture) ([][]byte, error) {
	h.logf("introspect: issuing %d opaque tokens", h.opts.introTokens)
	issue := formRequest(host, "/oauth/token", basicAuth(fx.cc.ID, fx.cc.Secret), "grant_type=client_credentials&scope=payments")
	auth := basicAuth(fx.rs.ID, fx.rs.Secret)
	reqs := make([][]byte, h.opts.introTokens)
	errs := make(chan error, 8)
	per := (len(reqs) + 7) / 8
	for w := range 8 {
		go func() {
			c := newConn(host)
			defer c.close()
			for i := w * per; i < min(len(reqs), (w+1)*per); i++ {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				status, body, err := c.do(issue)
				if err != nil {
					errs <- err
					return
				}
				tok, ok := jsonField(body, accessTokenKV)
				if status != 200 || !ok {
					errs <- fmt.Errorf("issuing a token: status %d: %.200s", status, body)
					return
				}
				reqs[i] = formRequest(host, "/oauth/introspect", auth, "token="+string(tok)+"&token_type_hint=access_token")
			}
			errs <- nil
		}()
	}
	var all []error
	for range 8 {
		all = append(all, <-errs)
	}
	return reqs, errors.Join(all...)
}

// runSnap runs the SNAP scenario on pre-signed requests: signing costs the
// client ~1-2 ms of CPU per request, which would otherwise dominate the
// shared CPUs, so every request is signed before the run that sends it.
func (h *harness) runSnap(ctx context.Context, p *proc, fx *fixture) (err error) {
	const name = "snap-b2b"
	signer := &snapSigner{host: p.addr, clients: fx.snap}
	pool := &poolSource{marker: []byte(`"accessToken"`)}
	window := (h.opts.warm + h.opts.dur).Seconds()
	rate := float64(h.opts.snapRate)
	var notes []string
	if rate <= 0 {
		// Calibrate: a short burst of pre-signed requests gives the rate
		// to size the real pre-signing with.
		const burst = 3000
		h.logf("%s: pre-signing %d requests to calibrate", name, burst)
		if err := signer.sign(ctx, pool, burst); err != nil {
			return err
		}
		spec := runSpec{mode: closedLoop, conns: h.connsFor(name), pid: p.pid, loops: h.opts.loops}
		// The window starts after the cold start, and ends when the
		// requests run out.
		spec.warm, spec.dur = 100*time.Millisecond, time.Minute
		var res result
		func() {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(h.opts.procs))
			res, err = runLoad(ctx, p.addr, pool, spec)
		}()
		if err != nil {
			return fmt.Errorf("calibration burst: %w", err)
		}
		if res.errs > 0 {
			return fmt.Errorf("calibration burst: %d of %d requests failed (%s)", res.errs, res.ok+res.errs, strings.Join(res.notes, "; "))
		}
		rate = res.rate
		if rate <= 0 {
			// The burst ended within the cold start: a fast server.
			rate = burst / spec.warm.Seconds()
		}
		notes = append(notes, fmt.Sprintf("calibration burst: %d requests at %.0f/s", burst, rate))
	}
	// Margin: the calibration burst is short and may underestimate.
	need := int(math.Ceil(rate*1.4*window)) + h.connsFor(name)
	h.logf("%s: pre-signing %d requests (%.0f/s × %.0fs × 1.4) on %d CPUs", name, need-pool.left(), rate, window, runtime.NumCPU())
	if err := signer.sign(ctx, pool, need-pool.left()); err != nil {
		return err
	}
	before := pool.used.Load()
	closed, err := h.measure(ctx, name, p, pool, runSpec{mode: closedLoop, conns: h.connsFor(name)}, notes)
	if err != nil {
		return err
	}
	usedClosed := pool.used.Load() - before
	h.noteLast(fmt.Sprintf("used %d pre-signed requests (warm-up included)%s", usedClosed, ranOutText(closed)))
	if closed.rate <= 0 {
		h.noteLast("no successful response in the closed loop: open loop not run")
		return nil
	}
	openRate := closed.rate / 2
	need = int(math.Ceil(openRate*window*1.05)) + h.openConnsFor(name)
	if more := need - pool.left(); more > 0 {
		h.logf("%s: pre-signing %d more requests for the open loop", name, more)
		if err := signer.sign(ctx, pool, more); err != nil {
			return err
		}
	}
	before = pool.used.Load()
	open, err := h.measure(ctx, name, p, pool, runSpec{mode: openLoop, conns: h.openConnsFor(name), rate: openRate}, nil)
	if err != nil {
		return err
	}
	h.noteLast(fmt.Sprintf("used %d pre-signed requests (warm-up included)%s", pool.used.Load()-before, ranOutText(open)))
	h.snapNote = fmt.Sprintf("snap-b2b: %d requests pre-signed (%d clients, unique ms timestamps) in %s on %d CPUs, %d used, %d left over",
		signer.signed, len(fx.snap), signer.spent.Round(100*time.Millisecond), runtime.NumCPU(), pool.used.Load(), pool.left())
	return nil
}

func ranOutText(r result) string {
	if r.exhausted {
		return fmt.Sprintf("; RAN OUT after %s of the window, which ended there", fmtDur(r.window))
	}
	return ""
}

// runPostgres runs cc-opaque on a server whose store is PostgreSQL, in a
// fresh schema when psql can make one.
func (h *harness) runPostgres(ctx context.Context) error {
	const name = "pg-cc-opaque"
	skip := func(reason string) {
		h.logf("%s: skipped: %s", name, reason)
		h.rows = append(h.rows, result{scenario: name, mode: "-", skipped: reason})
	}
	if h.opts.pg == "" {
		skip("no DSN (-pg DSN or TOKENGATE_TEST_POSTGRES)")
		return nil
	}
	dsn := h.opts.pg
	var schemaNote string
	if schema, cleanup, err := freshSchema(ctx, dsn); err == nil {
		defer cleanup()
		dsn = withParam(dsn, "search_path", schema)
		schemaNote = "fresh schema " + schema
	} else {
		schemaNote = "the DSN as given (no fresh schema: " + err.Error() + ")"
	}
	// PostgreSQL needs a configured key-encryption key; a throwaway one.
	tg := &tokengate{bin: h.bin, config: filepath.Join(h.dir, "postgres.yaml"),
		env: []string{"TOKENGATE_STORE_DSN=" + dsn, "TOKENGATE_SECRETS_KEK=" + randomHex(32)}}
	if err := writeConfig(tg.config, filepath.Join(h.dir, "pg-unused-data"), ""); err != nil {
		return err
	}
	cl, err := tg.createClient(ctx, "--name", "bench pg cc opaque", "--grant", "client_credentials", "--scope", "payments")
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		skip(err.Error())
		return nil
	}
	h.logf("%s: starting the server (%s)", name, schemaNote)
	p, err := tg.serve(ctx, h.dir, "tokengate-"+name)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		skip("server did not start: " + firstLine(err.Error()))
		return nil
	}
	defer p.stop()
	src := &staticSource{req: formRequest(p.addr, "/oauth/token", basicAuth(cl.ID, cl.Secret),
		"grant_type=client_credentials&scope=payments"), marker: []byte(`"access_token"`)}
	return h.closedThenOpen(ctx, name, p, src, []string{"PostgreSQL: " + schemaNote}, "postgres", 0)
}

// freshSchema creates a schema for this run with psql and returns a
// function that drops it.
func freshSchema(ctx context.Context, dsn string) (string, func(), error) {
	if _, err := exec.LookPath("psql"); err != nil {
		return "", nil, errors.New("psql not found")
	}
	schema := "tokengate_bench_" + randomHex(4)
	psql := func(ctx context.Context, sql string) error {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql)
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("psql: %s", firstLine(strings.TrimSpace(string(out))))
		}
		return nil
	}
	if err := psql(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	return schema, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		psql(ctx, "DROP SCHEMA "+schema+" CASCADE")
	}, nil
}

// withParam adds a query parameter to a postgres:// URL.
func withParam(dsn, key, value string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + key + "=" + value
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
