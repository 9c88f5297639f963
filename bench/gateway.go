package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/snapclient"
	"github.com/tokengate/tokengate/snapsig"
)

// The snap-gateway scenario (issue 9, point 8): SNAP service calls, signed
// symmetrically (HMAC-SHA512 with the client secret) and each with a fresh
// X-EXTERNAL-ID, so each is a durable write, through tokengate's gateway
// to a trivial upstream; and the same calls through a bare
// httputil.ReverseProxy in front of the same upstream, the reference.
// The upstream and the bare proxy are this binary again (startSelf), so
// the CPU time of each is accounted apart from tokengate's.

const (
	// gwRoute is the gateway route's prefix and gwPath the path called.
	gwRoute = "/v1.0/transfer-va/"
	gwPath  = "/v1.0/transfer-va/create-va"
	// gwServiceCode is SNAP's service code of create-va.
	gwServiceCode = 27
	// gwScope is the scope the route requires (the clients' default).
	gwScope = "va"
	// bareName is the row name of the bare proxy.
	bareName = "bare proxy (httputil)"
)

// gwBody is the body of every call: a minified create-va request, as
// merchants' SDKs send it.
const gwBody = `{"partnerServiceId":"   12345","customerNo":"00000000001","virtualAccountNo":"   1234500000000001",` +
	`"virtualAccountName":"Bench Merchant","virtualAccountEmail":"bench@example.com","trxId":"INV-0001",` +
	`"totalAmount":{"value":"10000.00","currency":"IDR"},"expiredDate":"2030-12-31T23:59:59+07:00","additionalInfo":{}}`

// upstreamBody is the upstream's answer to every call.
var upstreamBody = []byte(`{"responseCode":"2002700","responseMessage":"Successful","virtualAccountData":{"partnerServiceId":"   12345",` +
	`"customerNo":"00000000001","virtualAccountNo":"   1234500000000001","trxId":"INV-0001","totalAmount":{"value":"10000.00","currency":"IDR"}}}`)

// gwMarker is in the body of every successful call's answer (the
// upstream's); the gateway's refusals carry their own responseCode.
var gwMarker = []byte(`"responseCode":"2002700"`)

// wib is SNAP's usual X-TIMESTAMP offset (Asia/Jakarta, no daylight saving).
var wib = time.FixedZone("WIB", 7*3600)

// serveUpstream is the trivial payment API behind both proxies: every POST
// gets 200 with upstreamBody (net/http reads and discards the request
// body), GET /readyz 200.
func serveUpstream(ctx context.Context, addr string) int {
	return serveStatic(ctx, "upstream", addr, upstreamBody)
}

// serveProxy is the reference: a bare httputil.ReverseProxy in front of
// target, with the gateway's upstream transport settings (keep-alive
// connections enough for every caller; http.DefaultTransport keeps 2 per
// host, and would spend the run opening connections) and the same request
// rewriting (upstream URL, Host kept, X-Forwarded-*), without any check.
func serveProxy(ctx context.Context, addr, target string) int {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "proxy: bad target %q\n", target)
		return 2
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   512,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
	return serveHandler(ctx, "proxy", addr, rp)
}

// gatewayConfig is the gateway section of the scenario's server
// configuration: one SNAP route to the upstream.
func gatewayConfig(upstreamAddr string) string {
	return fmt.Sprintf(`gateway:
  routes:
    - prefix: %s
      upstream: http://%s
      service_code: %d
      scopes: [%s]
      signature: symmetric
`, gwRoute, upstreamAddr, gwServiceCode, gwScope)
}

// gwClient is a client of the scenario: its secret keys the HMAC, its
// RSA key gets the B2B token.
type gwClient struct {
	id, secret string
	key        *rsa.PrivateKey
	token      string // the B2B access token, fetched once before the runs
}

// registerGateway creates n clients for symmetric SNAP service signatures
// through the CLI, each with an RSA key for the token endpoint.
func (h *harness) registerGateway(ctx context.Context, tg *tokengate, n int) ([]gwClient, error) {
	dir := filepath.Join(h.dir, "gateway-keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	h.logf("generating %d RSA-2048 keys for the gateway's SNAP clients", n)
	keys, files, err := generateSnapKeys(ctx, dir, n)
	if err != nil {
		return nil, err
	}
	var out []gwClient
	for i, k := range keys {
		c, err := tg.createClient(ctx, "--name", fmt.Sprintf("bench gateway %d", i), "--grant", "client_credentials",
			"--scope", gwScope, "--default-scope", gwScope, "--snap-public-key", files[i], "--snap-service-signature", "symmetric")
		if err != nil {
			return nil, err
		}
		out = append(out, gwClient{id: c.ID, secret: c.Secret, key: k})
	}
	return out, nil
}

// gwSource builds each connection's calls: connection i is client
// i mod len(clients). Every call gets the current X-TIMESTAMP (to the
// second, +07:00), a fresh X-EXTERNAL-ID and its own HMAC-SHA512 signature,
// computed in next(): a merchant signs every call, and it costs the
// generator about a microsecond (the keyed HMAC state is kept per
// connection and only reset).
type gwSource struct {
	host    string
	clients []gwClient
	idPre   string        // X-EXTERNAL-ID prefix, random per bench run
	seq     *atomic.Int64 // X-EXTERNAL-ID counter, shared by every source of the run
}

func (s *gwSource) prepare(context.Context, string, int) error { return nil }

func (s *gwSource) requester(i int) requester {
	c := s.clients[i%len(s.clients)]
	bodyHash := snapsig.BodyHash([]byte(gwBody)) // already minified
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\n"+
		"X-PARTNER-ID: %s\r\nCHANNEL-ID: %s\r\nContent-Length: %d\r\nX-TIMESTAMP: ",
		gwPath, s.host, c.token, c.id, snapclient.DefaultChannelID, len(gwBody))
	return &gwReq{s: s, head: []byte(head),
		toSign: []byte(snapsig.SymmetricString("POST", gwPath, c.token, bodyHash, "")),
		mac:    hmac.New(sha512.New, []byte(c.secret))}
}

type gwReq struct {
	s      *gwSource
	head   []byte // the request up to X-TIMESTAMP's value
	toSign []byte // the string to sign without X-TIMESTAMP
	mac    hash.Hash
	sum    []byte
	sig    [88]byte // Base64 of the 64-byte MAC
	msg    []byte
	buf    []byte
	sec    int64  // the second ts is of
	ts     []byte // X-TIMESTAMP
}

func (r *gwReq) next() ([]byte, bool) {
	if now := time.Now(); now.Unix() != r.sec {
		r.sec = now.Unix()
		r.ts = now.In(wib).AppendFormat(r.ts[:0], "2006-01-02T15:04:05-07:00")
	}
	r.msg = append(append(r.msg[:0], r.toSign...), r.ts...)
	r.mac.Reset()
	r.mac.Write(r.msg)
	r.sum = r.mac.Sum(r.sum[:0])
	base64.StdEncoding.Encode(r.sig[:], r.sum)

	b := append(r.buf[:0], r.head...)
	b = append(b, r.ts...)
	b = append(b, "\r\nX-SIGNATURE: "...)
	b = append(b, r.sig[:]...)
	b = append(b, "\r\nX-EXTERNAL-ID: "...)
	b = append(b, r.s.idPre...)
	b = strconv.AppendInt(b, r.s.seq.Add(1), 36)
	b = append(b, "\r\n\r\n"...)
	b = append(b, gwBody...)
	r.buf = b
	return b, true
}

func (r *gwReq) check(status int, body []byte) bool {
	return status == 200 && bytes.Contains(body, gwMarker)
}

// gwSummary is what the scenario's section of the report needs beyond
// the rows.
type gwSummary struct {
	clients  int
	signCost time.Duration // generator: building and signing one call
}

// runGateway runs the snap-gateway scenario: it starts the upstream, the
// bare proxy and a tokengate server whose configuration adds the gateway
// route, fetches one B2B token per client from that server's SNAP token
// endpoint, and measures the bare proxy and the gateway closed-loop, one
// right after the other (their ratio is a target, and the machine is
// shared), then each open-loop at half its own rate.
func (h *harness) runGateway(ctx context.Context, tg *tokengate, dataDir string, clients []gwClient) error {
	const name = "snap-gateway"
	h.logf("%s: starting the upstream and the bare proxy", name)
	up, err := startSelf(ctx, h.dir, "upstream", func(addr string) []string { return []string{upstreamEnv + "=" + addr} })
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	defer up.stop()
	bare, err := startSelf(ctx, h.dir, "bare-proxy", func(addr string) []string {
		return []string{proxyEnv + "=" + addr, proxyTargetEnv + "=http://" + up.addr}
	})
	if err != nil {
		return fmt.Errorf("bare proxy: %w", err)
	}
	defer bare.stop()

	gtg := &tokengate{bin: tg.bin, config: filepath.Join(h.dir, "gateway.yaml"), env: tg.env}
	if err := writeConfig(gtg.config, dataDir, gatewayConfig(up.addr)); err != nil {
		return err
	}
	h.logf("%s: starting the server with the gateway route", name)
	p, err := gtg.serve(ctx, h.dir, "tokengate-"+name)
	if err != nil {
		return err
	}
	defer p.stop()

	h.logf("%s: fetching a B2B access token for each of %d clients", name, len(clients))
	for i := range clients {
		ts, err := snapclient.NewTokenSource(snapclient.TokenConfig{URL: "http://" + p.addr + "/v1.0/access-token/b2b",
			ClientID: clients[i].id, PrivateKey: clients[i].key, Location: wib})
		if err != nil {
			return err
		}
		if clients[i].token, err = ts.Token(ctx); err != nil {
			return fmt.Errorf("B2B token: %w", err)
		}
	}
	seq := new(atomic.Int64)
	idPre := "bench-" + randomHex(4) + "-"
	gw := &gwSource{host: p.addr, clients: clients, idPre: idPre, seq: seq}
	ref := &gwSource{host: bare.addr, clients: clients, idPre: idPre, seq: seq}
	for _, t := range []struct {
		what string
		addr string
		src  *gwSource
	}{{"gateway", p.addr, gw}, {"bare proxy", bare.addr, ref}} {
		if err := oneCall(t.addr, t.src); err != nil {
			return fmt.Errorf("a first call through the %s: %w", t.what, err)
		}
	}
	h.gw = &gwSummary{clients: len(clients), signCost: signCost(ref)}

	upNote := []string{fmt.Sprintf("upstream: a separate net/http process (pid %d), its CPU apart in the section below", up.pid)}
	first := len(h.rows)
	runs := []struct {
		name string
		p    *proc
		src  *gwSource
		rate float64
	}{{bareName, bare, ref, 0}, {name, p, gw, 0}}
	for i, r := range runs {
		res, err := h.measure(ctx, r.name, r.p, r.src, runSpec{mode: closedLoop, conns: h.connsFor(r.name), up: up.pid}, upNote)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if runs[i].rate = res.rate; res.rate <= 0 {
			h.noteLast("no successful response in the closed loop: open loop not run")
		}
	}
	for _, r := range runs {
		if r.rate <= 0 {
			continue
		}
		if _, err := h.measure(ctx, r.name, r.p, r.src, runSpec{mode: openLoop, conns: h.openConnsFor(r.name), rate: r.rate / 2, up: up.pid}, nil); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	// The table groups each one's rows.
	rows := h.rows[first:]
	slices.SortStableFunc(rows, func(a, b result) int { return cmp.Compare(rowOrder(a.scenario), rowOrder(b.scenario)) })
	return nil
}

func rowOrder(scenario string) int {
	if scenario == bareName {
		return 0
	}
	return 1
}

// oneCall sends one call on a fresh connection and checks its answer.
func oneCall(addr string, src *gwSource) error {
	c := newConn(addr)
	defer c.close()
	r := src.requester(0)
	req, _ := r.next()
	status, body, err := c.do(req)
	if err != nil {
		return err
	}
	if !r.check(status, body) {
		return fmt.Errorf("HTTP %d %.300s", status, body)
	}
	return nil
}

// signCost times building and signing calls as the generator does (on
// one CPU, before the runs): the part of the generator's CPU per call that
// the other scenarios do not have.
func signCost(src *gwSource) time.Duration {
	const n = 20000
	r := src.requester(0)
	start := time.Now()
	for range n {
		r.next()
	}
	return time.Since(start) / n
}

// The targets for snap-gateway on this 2-core machine.
const (
	gwTargetRate  = 12000
	gwTargetRatio = 0.6
	gwTargetP99   = 10 * time.Millisecond
)

// reportGateway prints the snap-gateway section: the gateway against the
// bare proxy, with the upstream's CPU and the generator's signing cost.
func (h *harness) reportGateway() {
	g := h.gw
	gc, okG := h.row("snap-gateway", "closed")
	bc, okB := h.row(bareName, "closed")
	if g == nil || (!okG && !okB) {
		return
	}
	fmt.Fprintf(h.out, "\nsnap-gateway: POST %s, HMAC-SHA512 signed, a fresh X-EXTERNAL-ID each (one durable write per verified call), %d clients with one B2B token each;\n",
		gwPath, g.clients)
	fmt.Fprintf(h.out, "the same calls through a bare httputil.ReverseProxy (same upstream transport settings, no checks). Both in front of one trivial\n")
	fmt.Fprintf(h.out, "net/http upstream (a separate process: its CPU is not in the proxy's). Generator: building and signing a call costs %s.\n\n",
		fmtMicros(g.signCost))
	h.sideBySide("\tcalls/s (closed)\thalf-rate p50\thalf-rate p99\tproxy µs/call\tupstream µs/call\tgen µs/call\tproxy peak RSS\terrors\t", 0,
		[2]string{"gateway (verified)", "snap-gateway"}, [2]string{"bare proxy", bareName})
	if okG && okB && bc.rate > 0 {
		fmt.Fprintf(h.out, "  gateway/bare: rate %.2f, proxy CPU per call %.2f×", gc.rate/bc.rate, gc.serverCPU/max(bc.serverCPU, 1))
		// What the rates would be if the machine were saturated by the
		// three processes: insensitive to a neighbour's load in one run.
		if cg, cb := gc.serverCPU+gc.upCPU+gc.genCPU, bc.serverCPU+bc.upCPU+bc.genCPU; cg > 0 {
			fmt.Fprintf(h.out, ", rate implied by CPU per call (proxy+upstream+generator, %.0f against %.0f µs) %.2f", cg, cb, cb/cg)
		}
		fmt.Fprintln(h.out)
		if c := h.ceiling[h.connsFor("snap-gateway")]; c > 0 {
			fmt.Fprintf(h.out, "  hello-world ceiling at %d connections: %.0f/s (gateway %.2f of it, bare proxy %.2f)\n", h.connsFor("snap-gateway"), c, gc.rate/c, bc.rate/c)
		}
	}
	fmt.Fprintln(h.out, "  (µs/call: CPU per call in the closed loop; p50/p99 from each one's own open loop at half its closed-loop rate)")
}

func fmtMicros(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
