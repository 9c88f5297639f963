package server_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/testcert"
)

// clock is a fake clock a test moves by hand; it starts at the real time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock                   { return &clock{now: time.Now()} }
func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

const formHeaders = "Content-Type: application/x-www-form-urlencoded\r\n"

// stall opens a connection that sends a request's headers, declaring a
// body of declared bytes, and only the first part of the body.
func stall(t *testing.T, addr, path, headers string, declared int, part string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: tokengate\r\n%sContent-Length: %d\r\n\r\n%s", path, headers, declared, part)
	return c
}

// metric reads one sample from the operations listener, -1 if absent.
func metric(t *testing.T, ops, sample string) float64 {
	t.Helper()
	_, text := get(t, http.DefaultClient, "http://"+ops+"/metrics")
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric waits until ok(sample's value) holds.
func waitMetric(t *testing.T, ops, sample string, ok func(float64) bool) {
	t.Helper()
	var v float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if v = metric(t, ops, sample); ok(v) {
			return
		}
	}
	t.Fatalf("%s stayed at %v", sample, v)
}

type tokenAnswer struct {
	status     int
	retryAfter string
	body       string
	took       time.Duration
}

func tokenRequest(t *testing.T, base, id, secret string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	began := time.Now()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return tokenAnswer{res.StatusCode, res.Header.Get("Retry-After"), string(body), time.Since(began)}
}

// TestSlowBodiesCannotLockOutNewClients: with max_connections 20, 20
// connections that sent headers and trickled a body once held every
// connection, and a token request waited 14.7 s (the read timeout). Now at
// most max_body_readers (10) of them hold a connection; the others are
// answered 503 at once and closed, and a new client is answered at once:
// refused with Retry-After while the stalled readers are younger than a
// second, and served once they are older, by cutting the oldest short.
func TestSlowBodiesCannotLockOutNewClients(t *testing.T) {
	clk := newClock()
	n := startClock(t, clk.Now, func(c *config.Config) {
		c.MaxConnections = 20
		c.OpsListen = "127.0.0.1:0"
		c.BodyTimeout = 30 * time.Second // the stalled bodies outlast the test
	})
	id, secret := createClient(t, n.dir)
	base, ops := "http://"+n.srv.Addr(), n.srv.OpsAddr()
	if got := metric(t, ops, "tokengate_body_readers_max"); got != 10 {
		t.Fatalf("max_body_readers %v, want 10 (half of max_connections)", got)
	}

	var answered sync.WaitGroup
	refused := make(chan int, 40)
	for range 40 {
		c := stall(t, n.srv.Addr(), "/oauth/token", formHeaders, 60000, "grant_type=")
		answered.Add(1)
		go func() {
			defer answered.Done()
			if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				refused <- res.StatusCode
			}
		}()
	}
	waitMetric(t, ops, "tokengate_body_readers_busy", func(v float64) bool { return v == 10 })
	waitMetric(t, ops, "tokengate_connections_open", func(v float64) bool { return v <= 10 })

	a := tokenRequest(t, base, id, secret)
	if a.status != http.StatusServiceUnavailable || a.retryAfter != "1" || !strings.Contains(a.body, "temporarily_unavailable") {
		t.Errorf("token request while 10 young stalled readers hold every reader: %d Retry-After %q %s", a.status, a.retryAfter, a.body)
	}
	if a.took > time.Second {
		t.Errorf("refusal took %v", a.took)
	}

	clk.Advance(2 * time.Second) // the stalled readers are now older than the grace
	a = tokenRequest(t, base, id, secret)
	if a.status != http.StatusOK || !strings.Contains(a.body, "access_token") {
		t.Fatalf("token request behind 40 stalled bodies: %d %s", a.status, a.body)
	}
	if a.took > time.Second {
		t.Errorf("token request behind 40 stalled bodies took %v", a.took)
	}
	if p := n.public.Peak(); p > 20 {
		t.Errorf("%d connections open at once, max_connections 20", p)
	}
	if got := metric(t, ops, `tokengate_request_bodies_stopped_total{reason="cut"}`); got != 1 {
		t.Errorf("%v readers cut short, want 1", got)
	}
	// The attacker's 30 refused requests and the legitimate one.
	if got := metric(t, ops, `tokengate_token_requests_total{endpoint="/oauth/token",result="overloaded"}`); got != 31 {
		t.Errorf("overloaded token requests counted: %v, want 31", got)
	}
	for range 30 {
		if s := <-refused; s != http.StatusServiceUnavailable {
			t.Errorf("a stalled request beyond the readers was answered %d", s)
		}
	}
	t.Logf("served in %v", a.took)
}

// heap is the live heap and goroutine stacks after a collection.
func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // sync.Pools drop their contents over two collections
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// TestStalledBodiesDoNotGrowMemory: 3,000 connections that each sent
// 65,535 of a declared 65,536 body bytes and stalled took a server from 82
// to 570 MB, each holding its body in a buffer grown by doubling until
// the 15 s read timeout. Now at most max_body_readers bodies are held, in
// buffers of their declared size, and the rest are refused at once.
//
// Measured in this process (server and client side): an open connection
// costs net/http about 10 KiB of heap and 4 KiB of stack. Before the
// fix, 2,000 stalled bodies grew heap and stacks by about 292 MiB
// (146 KiB a connection); now by about 22 MiB (256 bodies of 64 KiB, and
// the connections).
func TestStalledBodiesDoNotGrowMemory(t *testing.T) {
	n := start(t, func(c *config.Config) {
		c.OpsListen = "127.0.0.1:0"
		c.BodyTimeout = time.Minute // none times out while measured
	})
	ops := n.srv.OpsAddr()
	readers := int(metric(t, ops, "tokengate_body_readers_max"))
	if readers != 256 {
		t.Fatalf("default max_body_readers %d, want 256", readers)
	}
	const conns, perConn = 2000, 16 << 10
	body := "grant_type=client_credentials&x=" + strings.Repeat("a", 65535-32)
	before := heap()
	for range conns {
		c := stall(t, n.srv.Addr(), "/oauth/token", formHeaders, 65536, "")
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(body)) // refused connections may be closed under it
	}
	// Settled: every connection accepted, and memory no longer growing.
	for deadline := time.Now().Add(10 * time.Second); n.public.Accepted() < conns; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections accepted", n.public.Accepted())
		}
	}
	grown := int64(heap()) - int64(before)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		g := int64(heap()) - int64(before)
		if g-grown < 1<<20 {
			grown = max(g, grown)
			break
		}
		grown = g
	}
	bound := int64(readers*(64<<10) + conns*perConn)
	t.Logf("%d stalled 64 KiB bodies: heap and stacks +%.1f MiB (bound %.1f MiB: %d readers × 64 KiB + %d connections × %d KiB)",
		conns, float64(grown)/(1<<20), float64(bound)/(1<<20), readers, conns, perConn>>10)
	if grown > bound {
		t.Errorf("memory grew %.1f MiB, bound %.1f MiB", float64(grown)/(1<<20), float64(bound)/(1<<20))
	}
	if busy, open := metric(t, ops, "tokengate_body_readers_busy"), metric(t, ops, "tokengate_connections_open"); busy != float64(readers) || open > busy+8 {
		t.Errorf("%v bodies being read, %v connections open: want every reader busy and the other connections closed", busy, open)
	}
}

// TestStalledBodyTimesOut: a body that stops arriving is answered 400
// after body_timeout and its connection closed (it waited for the 15 s
// read timeout); a body that arrives keeps its connection alive.
func TestStalledBodyTimesOut(t *testing.T) {
	n := start(t, func(c *config.Config) {
		c.BodyTimeout = 300 * time.Millisecond
		c.OpsListen = "127.0.0.1:0"
	})
	id, secret := createClient(t, n.dir)

	began := time.Now()
	c := stall(t, n.srv.Addr(), "/oauth/token", formHeaders, 100, "grant_type=client_cr")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	took := time.Since(began)
	var e struct{ Error string }
	json.Unmarshal(body, &e)
	if res.StatusCode != http.StatusBadRequest || e.Error != "invalid_request" || !res.Close {
		t.Errorf("stalled body: %d %s close=%v", res.StatusCode, body, res.Close)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("stalled body answered after %v, body_timeout 300ms", took)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection still open after the timeout: %v", err)
	}
	if got := metric(t, n.srv.OpsAddr(), `tokengate_request_bodies_stopped_total{reason="timeout"}`); got != 1 {
		t.Errorf("timeouts counted: %v", got)
	}

	// Keep-alive as before: the second request reuses the connection, and
	// neither is cut by the body deadline although it takes longer.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i := range 2 {
		reused := false
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.srv.Addr()+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Close || reused != (i == 1) {
			t.Errorf("request %d: %d close=%v reused=%v", i, res.StatusCode, res.Close, reused)
		}
		time.Sleep(400 * time.Millisecond) // past body_timeout: the lifted deadline must not close the idle connection
	}
}

// TestBusyReadersAnsweredInEachFormat: with every body reader busy, each
// body-reading endpoint answers at once in its own format: 503 (SNAP's
// 504 Timeout row) with Retry-After, counted as "overloaded".
func TestBusyReadersAnsweredInEachFormat(t *testing.T) {
	n := start(t, func(c *config.Config) {
		c.MaxConnections = 10
		c.MaxBodyReaders = 1
		c.OpsListen = "127.0.0.1:0"
		c.Endpoints = append(c.Endpoints,
			config.Endpoint{Path: "/v1.0/access-token/b2b", Dialect: "snap-b2b"},
			config.Endpoint{Path: "/v2/auth/oauth2/token", Dialect: "neox"})
	})
	ops := n.srv.OpsAddr()
	stall(t, n.srv.Addr(), "/oauth/token", formHeaders, 100, "grant_type=")
	waitMetric(t, ops, "tokengate_body_readers_busy", func(v float64) bool { return v == 1 })

	for _, tc := range []struct {
		path, contentType, body string
		status                  int
		want                    string
	}{
		{"/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", 503, `"error":"temporarily_unavailable"`},
		{"/oauth/introspect", "application/x-www-form-urlencoded", "token=x", 503, `"error":"temporarily_unavailable"`},
		{"/oauth/revoke", "application/x-www-form-urlencoded", "token=x", 503, `"error":"temporarily_unavailable"`},
		{"/v2/auth/oauth2/token", "application/json", `{"grant_type":"client_credentials"}`, 503, `"code":503`},
		{"/v1.0/access-token/b2b", "application/json", `{"grantType":"client_credentials"}`, 504, `"responseCode":"5047300"`},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.srv.Addr()+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		req.SetBasicAuth("id", "secret")
		began := time.Now()
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || res.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d Retry-After %q %s", tc.path, res.StatusCode, res.Header.Get("Retry-After"), body)
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("%s answered after %v", tc.path, d)
		}
	}
	for _, sample := range []string{
		`tokengate_token_requests_total{endpoint="/oauth/token",result="overloaded"}`,
		`tokengate_token_requests_total{endpoint="/v2/auth/oauth2/token",result="overloaded"}`,
		`tokengate_token_requests_total{endpoint="/v1.0/access-token/b2b",result="overloaded"}`,
		`tokengate_introspection_requests_total{result="overloaded"}`,
		`tokengate_revocation_requests_total{result="overloaded"}`,
	} {
		if got := metric(t, ops, sample); got != 1 {
			t.Errorf("%s = %v, want 1", sample, got)
		}
	}
}

// TestBodiesToOtherRoutesDoNotHoldConnections: a body trickled to a route
// that reads none (health, discovery, an unknown path) is not waited for:
// net/http waited up to the 15 s read timeout to discard it, with the
// connection busy and so never closed to make room.
func TestBodiesToOtherRoutesDoNotHoldConnections(t *testing.T) {
	n := start(t, nil)
	for _, path := range []string{"/healthz", "/.well-known/jwks.json", "/nowhere"} {
		began := time.Now()
		c := stall(t, n.srv.Addr(), path, formHeaders, 60000, "x=")
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, res.Body)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: connection held open waiting for the body: %v", path, err)
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("%s: connection closed after %v", path, d)
		}
	}
}

// TestBodyGateOverHTTP2: over HTTP/2 a stream's body gets the same
// deadline (and the stream, not the connection, is reset when it passes),
// and lifting it after the body leaves the connection serving streams.
func TestBodyGateOverHTTP2(t *testing.T) {
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	f := &certFiles{t: t, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), mtime: time.Now().Add(-time.Hour)}
	f.write(ca.Issue(t, time.Now().Add(time.Hour)))
	n := start(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: f.cert, KeyFile: f.key}
		c.BodyTimeout = 300 * time.Millisecond
	})
	id, secret := createClient(t, n.dir)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	token := func(body io.Reader) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://"+n.srv.Addr()+"/oauth/token", body)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}

	stalled, w := io.Pipe()
	defer w.Close()
	go w.Write([]byte("grant_type=client_cr"))
	began := time.Now()
	res, body := token(stalled)
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
		t.Errorf("stalled HTTP/2 body: HTTP/%d %d %s", res.ProtoMajor, res.StatusCode, body)
	}
	if d := time.Since(began); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("stalled HTTP/2 body answered after %v, body_timeout 300ms", d)
	}
	for range 2 {
		res, body := token(strings.NewReader("grant_type=client_credentials"))
		if res.ProtoMajor != 2 || res.StatusCode != 200 {
			t.Errorf("HTTP/%d %d %s", res.ProtoMajor, res.StatusCode, body)
		}
		time.Sleep(400 * time.Millisecond) // past body_timeout
	}
	if p := n.public.Peak(); p != 1 {
		t.Errorf("%d connections: the HTTP/2 connection was not kept", p)
	}
}
