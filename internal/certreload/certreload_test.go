package certreload_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/certreload"
	"github.com/tokengate/tokengate/internal/testcert"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type files struct {
	t         *testing.T
	cert, key string
	mtime     time.Time
}

// write replaces the files' contents. It sets a fresh modification time
// because two writes in the same kernel clock tick (a few milliseconds)
// with equal sizes would otherwise look unchanged — which real
// replacements, seconds or days apart, never do.
func (f *files) write(certPEM, keyPEM []byte) {
	f.t.Helper()
	f.mtime = f.mtime.Add(time.Second)
	for path, body := range map[string][]byte{f.cert: certPEM, f.key: keyPEM} {
		if err := os.WriteFile(path, body, 0o600); err != nil {
			f.t.Fatal(err)
		}
		if err := os.Chtimes(path, f.mtime, f.mtime); err != nil {
			f.t.Fatal(err)
		}
	}
}

func newFiles(t *testing.T) *files {
	dir := t.TempDir()
	return &files{t: t, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), mtime: time.Now().Add(-time.Hour)}
}

// serveTLS serves HTTPS with r's certificate.
func serveTLS(t *testing.T, r *certreload.Reloader) string {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(tls.NewListener(raw, &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}))
	t.Cleanup(func() { srv.Close() })
	return "https://" + raw.Addr().String() + "/"
}

// served makes a fresh TLS connection (no session resumption) and returns
// the serial number of the certificate the server presented.
func served(t *testing.T, url string, ca *testcert.CA) *big.Int {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.TLS.PeerCertificates[0].SerialNumber
}

func TestReplacedCertificateIsServedWithoutRestart(t *testing.T) {
	ca := testcert.NewCA(t)
	f := newFiles(t)
	clk := &clock{now: time.Now()}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	p1 := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(p1.CertPEM, p1.KeyPEM)
	r, err := certreload.New(f.cert, f.key, certreload.Options{Now: clk.Now, CheckEvery: 5 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, r)
	want := func(p testcert.Pair, when string) {
		t.Helper()
		if got := served(t, url, ca); got.Cmp(p.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: serial %v served, want %v", when, got, p.Cert.SerialNumber)
		}
	}
	want(p1, "at start")

	p2 := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(p2.CertPEM, p2.KeyPEM)
	want(p1, "before CheckEvery passed") // handshakes do not stat the files every time
	clk.Add(5 * time.Second)
	want(p2, "after CheckEvery, on the next handshake")

	refusals := func() int { return strings.Count(logs.String(), "refused") }
	p3 := ca.Issue(t, time.Now().Add(time.Hour))
	expired := ca.Issue(t, time.Now().Add(-time.Minute))
	bad := []struct {
		name      string
		cert, key []byte
	}{
		{"half-written certificate", p3.CertPEM[:len(p3.CertPEM)/2], p3.KeyPEM},
		{"half-written key", p3.CertPEM, p3.KeyPEM[:len(p3.KeyPEM)/2]},
		{"key of another certificate", p3.CertPEM, p2.KeyPEM},
		{"garbage", []byte("not a certificate"), []byte("not a key")},
		{"expired certificate", expired.CertPEM, expired.KeyPEM},
	}
	for i, b := range bad {
		f.write(b.cert, b.key)
		clk.Add(5 * time.Second)
		want(p2, b.name) // through GetCertificate
		if err := r.Reload(); err == nil {
			t.Errorf("%s: Reload accepted it", b.name)
		}
		clk.Add(5 * time.Second)
		want(p2, b.name+", checked again")
		if n := refusals(); n != i+1 {
			t.Errorf("%s: %d refusals logged in all, want %d (once per bad version)", b.name, n, i+1)
		}
	}

	if err := os.Remove(f.key); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Error("Reload with the key file missing reported success")
	}
	want(p2, "key file missing")

	p4 := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(p4.CertPEM, p4.KeyPEM)
	if err := r.Reload(); err != nil {
		t.Fatalf("good pair after bad ones: %v", err)
	}
	want(p4, "after an explicit Reload")
	if r.Certificate().Leaf.SerialNumber.Cmp(p4.Cert.SerialNumber) != 0 {
		t.Error("Certificate() is not the pair being served")
	}

	out := logs.String()
	for _, p := range []testcert.Pair{p1, p2, p3, p4} {
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, string(p.KeyPEM[40:80])) {
			t.Fatalf("key material in the log:\n%s", out)
		}
	}
	if strings.Count(out, "TLS certificate reloaded") != 2 {
		t.Errorf("want two reloads logged:\n%s", out)
	}
}

func TestNewRefusesBadPairs(t *testing.T) {
	ca := testcert.NewCA(t)
	p1, p2 := ca.Issue(t, time.Now().Add(time.Hour)), ca.Issue(t, time.Now().Add(time.Hour))
	expired := ca.Issue(t, time.Now().Add(-time.Second))
	for name, pair := range map[string][2][]byte{
		"mismatched": {p1.CertPEM, p2.KeyPEM},
		"expired":    {expired.CertPEM, expired.KeyPEM},
		"empty":      {nil, nil},
	} {
		f := newFiles(t)
		f.write(pair[0], pair[1])
		_, err := certreload.New(f.cert, f.key, certreload.Options{})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "PRIVATE KEY-----") || strings.Contains(err.Error(), string(p2.KeyPEM[40:80])) {
			t.Errorf("%s: key material in the error %q", name, err)
		}
	}
	f := newFiles(t)
	if _, err := certreload.New(f.cert, f.key, certreload.Options{}); err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Errorf("missing files: %v", err)
	}
}
