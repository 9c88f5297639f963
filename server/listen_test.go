package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/app"
	"github.com/tokengate/tokengate/cli"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/testcert"
	"github.com/tokengate/tokengate/server"
)

// counting wraps the public listener and counts the connections it handed
// out that have not been closed, independently of the server's own count.
type counting struct {
	net.Listener
	mu                   sync.Mutex
	open, peak, accepted int
}

type countedConn struct {
	net.Conn
	l    *counting
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *counting) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.accepted++
	l.peak = max(l.peak, l.open)
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

func (l *counting) Peak() int { l.mu.Lock(); defer l.mu.Unlock(); return l.peak }

func (l *counting) Accepted() int { l.mu.Lock(); defer l.mu.Unlock(); return l.accepted }

type node struct {
	srv    *server.Server
	dir    string
	public *counting
}

// start runs a server on a fresh embedded store.
func start(t *testing.T, mutate func(*config.Config)) *node {
	t.Helper()
	return startClock(t, nil, mutate)
}

// startClock is start with the server reading now instead of the real
// clock (nil: the real one).
func startClock(t *testing.T, now func() time.Time, mutate func(*config.Config)) *node {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Load("", nil, config.Overrides{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(context.Background(), cfg, app.Deps{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv := a.Server
	n := &node{srv: srv, dir: dir}
	server.SetListen(srv, func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil || addr != cfg.Listen || n.public != nil {
			return ln, err
		}
		n.public = &counting{Listener: ln}
		return n.public, nil
	})
	if err := a.Start(); err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func TestMetricsAndProfilerOnlyOnTheOpsListener(t *testing.T) {
	n := start(t, func(c *config.Config) { c.OpsListen = "127.0.0.1:0" })
	public, ops := "http://"+n.srv.Addr(), "http://"+n.srv.OpsAddr()
	for path, want := range map[string]int{"/metrics": 404, "/debug/pprof/": 404, "/debug/pprof/heap": 404, "/healthz": 200, "/readyz": 200} {
		if got, _ := get(t, http.DefaultClient, public+path); got != want {
			t.Errorf("public %s: %d, want %d", path, got, want)
		}
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/healthz", "/readyz"} {
		if got, _ := get(t, http.DefaultClient, ops+path); got != 200 {
			t.Errorf("ops %s: %d, want 200", path, got)
		}
	}
	_, metrics := get(t, http.DefaultClient, ops+"/metrics")
	for _, name := range []string{"tokengate_token_requests_total", "tokengate_connections_open", "tokengate_connections_max", "tokengate_connections_evicted_total"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if got, _ := get(t, http.DefaultClient, ops+"/oauth/introspect"); got != 404 {
		t.Errorf("the ops listener serves the OAuth routes: %d", got)
	}

	off := start(t, nil)
	if off.srv.OpsAddr() != "" {
		t.Errorf("ops listener on by default at %s", off.srv.OpsAddr())
	}
	if got, _ := get(t, http.DefaultClient, "http://"+off.srv.Addr()+"/metrics"); got != 404 {
		t.Errorf("public /metrics without ops_listen: %d", got)
	}
}

type certFiles struct {
	t         *testing.T
	cert, key string
	mtime     time.Time
}

// write replaces the files, each with a fresh modification time (two
// writes within one kernel clock tick could otherwise share it).
func (f *certFiles) write(p testcert.Pair) {
	f.t.Helper()
	f.mtime = f.mtime.Add(time.Second)
	for path, body := range map[string][]byte{f.cert: p.CertPEM, f.key: p.KeyPEM} {
		if err := os.WriteFile(path, body, 0o600); err != nil {
			f.t.Fatal(err)
		}
		os.Chtimes(path, f.mtime, f.mtime)
	}
}

func TestHTTPS(t *testing.T) {
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	f := &certFiles{t: t, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), mtime: time.Now().Add(-time.Hour)}
	p1 := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(p1)
	n := start(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: f.cert, KeyFile: f.key}
		c.OpsListen = "127.0.0.1:0"
	})
	url := "https://" + n.srv.Addr() + "/healthz"

	// A fresh transport per request: a new handshake, no resumed session.
	do := func(cfg *tls.Config) (*http.Response, error) {
		cfg.RootCAs = ca.Pool
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return res, err
	}
	servedSerial := func() *big.Int {
		t.Helper()
		res, err := do(&tls.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return res.TLS.PeerCertificates[0].SerialNumber
	}

	res, err := do(&tls.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.ProtoMajor != 2 || res.TLS.Version != tls.VersionTLS13 {
		t.Errorf("default client: status %d, HTTP/%d, TLS %s", res.StatusCode, res.ProtoMajor, tls.VersionName(res.TLS.Version))
	}
	// Handshakes alone, over HTTP/1.1: HTTP/2 refuses weak suites by
	// itself, which would hide what the TLS policy allows.
	handshake := func(cfg *tls.Config) (tls.ConnectionState, error) {
		cfg.RootCAs, cfg.NextProtos = ca.Pool, []string{"http/1.1"}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.srv.Addr(), cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} {
		st, err := handshake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
		if err != nil || st.Version != tls.VersionTLS12 || st.CipherSuite != suite {
			t.Errorf("TLS 1.2 with %s refused: %v", tls.CipherSuiteName(suite), err)
		}
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if _, err := handshake(&tls.Config{MinVersion: v, MaxVersion: v}); err == nil {
			t.Errorf("a %s client was served", tls.VersionName(v))
		}
	}
	// Go's own server accepts these CBC suites in TLS 1.2 by default.
	for _, weak := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256} {
		if _, err := handshake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{weak}}); err == nil {
			t.Errorf("a TLS 1.2 client offering only %s was served", tls.CipherSuiteName(weak))
		}
	}
	if got, _ := get(t, http.DefaultClient, "http://"+n.srv.Addr()+"/healthz"); got == 200 {
		t.Error("plain HTTP served on the TLS listener")
	}
	if got, _ := get(t, http.DefaultClient, "http://"+n.srv.OpsAddr()+"/healthz"); got != 200 {
		t.Errorf("ops listener (plain HTTP): %d", got)
	}

	if got := servedSerial(); got.Cmp(p1.Cert.SerialNumber) != 0 {
		t.Fatalf("serial %v served, want %v", got, p1.Cert.SerialNumber)
	}
	p2 := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(p2)
	if err := n.srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(); got.Cmp(p2.Cert.SerialNumber) != 0 {
		t.Fatalf("after replacing the files: serial %v served, want %v", got, p2.Cert.SerialNumber)
	}
	p3 := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(testcert.Pair{CertPEM: p3.CertPEM, KeyPEM: p2.KeyPEM}) // the new certificate, the old key
	if err := n.srv.ReloadTLS(); err == nil {
		t.Error("a certificate with another certificate's key was accepted")
	}
	if got := servedSerial(); got.Cmp(p2.Cert.SerialNumber) != 0 {
		t.Fatalf("after a bad replacement: serial %v served, want the previous %v", got, p2.Cert.SerialNumber)
	}
}

func TestStartRefusesBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load("", nil, config.Overrides{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = config.TLS{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}
	a, err := app.Open(context.Background(), cfg, app.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Start(); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("Start with missing TLS files: %v", err)
	}
}

// TestIdleFloodCannotLockOutNewClients: 3,100 idle keep-alive connections
// once made a server with a 3,000-descriptor limit refuse new token
// requests for 10 s. Scaled down: with max_connections 50, 200 idle
// connections that each made one request, a new client is still served at
// once, and the server never holds more than 50 connections.
func TestIdleFloodCannotLockOutNewClients(t *testing.T) {
	n := start(t, func(c *config.Config) { c.MaxConnections = 50 })
	id, secret := createClient(t, n.dir)
	base := "http://" + n.srv.Addr()

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", n.srv.Addr())
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(func() { c.Close() }) // held open, idle, until the test ends
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: tokengate\r\n\r\n")
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, res.Body)
			if res.StatusCode != 200 {
				errs <- errors.New(res.Status)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("flood connection not served: %v", err)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	began := time.Now()
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("token request behind 200 idle connections: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	took := time.Since(began)
	if res.StatusCode != 200 || !bytes.Contains(body, []byte("access_token")) {
		t.Fatalf("token request: %d %s", res.StatusCode, body)
	}
	if took > 2*time.Second {
		t.Errorf("token request took %v behind the idle flood", took)
	}
	if p := n.public.Peak(); p > 50 {
		t.Errorf("%d connections open at once, max_connections 50", p)
	}
	t.Logf("token in %v; peak %d connections", took, n.public.Peak())
}

// createClient registers a client_credentials client through the CLI.
func createClient(t *testing.T, dir string) (id, secret string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run([]string{"--data", dir, "client", "create", "--json", "--name", "m", "--grant", "client_credentials"},
		cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}, nil)
	if code != 0 {
		t.Fatalf("client create: %d %s", code, errb.String())
	}
	var got map[string]string
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	return got["client_id"], got["client_secret"]
}
