// Package pgtest is shared test support for code that needs PostgreSQL:
// the DSN from TOKENGATE_TEST_POSTGRES, a fresh schema per test, and a TCP
// proxy a test can cut to play a database that goes away.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable with the test database's DSN.
// Tests skip only when it is unset; CI sets it.
const EnvDSN = "TOKENGATE_TEST_POSTGRES"

const envDSN = EnvDSN

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.addr }

// Proxy is a TCP forwarder between a Store and PostgreSQL that a test can
// cut and restore, to play a database that goes away and comes back.
type Proxy struct {
	t      testing.TB
	target string
	addr   string
	silent atomic.Bool // forward nothing, close nothing

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
}

func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

// track registers c so that cut closes it; it reports false (and closes
// c) if the proxy was cut meanwhile.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forward(c net.Conn) {
	if !p.track(c) {
		return
	}
	if p.silent.Load() {
		go p.pipe(io.Discard, c) // accepted, never answered
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	go p.pipe(up, c)
	go p.pipe(c, up)
}

// pipe copies src to dst until either fails, dropping what it reads while
// the proxy is silent.
func (p *Proxy) pipe(dst io.Writer, src net.Conn) {
	defer src.Close()
	if c, ok := dst.(net.Conn); ok {
		defer c.Close()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.silent.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every connection and the listener: new connections are
// refused, as by a database host that is down.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// silence stops forwarding without closing anything: existing connections
// go quiet and new ones are accepted and never answered, as across a
// network partition.
func (p *Proxy) Silence() { p.silent.Store(true) }

// restore listens again on the same address.
func (p *Proxy) Restore() {
	p.t.Helper()
	var (
		ln  net.Listener
		err error
	)
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy: listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func RandomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// viaProxy returns dsn with its host and port replaced by addr's.
func ViaProxy(t testing.TB, dsn, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a valid URL", envDSN)
		}
		u.Host = addr
		return u.String()
	}
	return dsn + " host=" + host + " port=" + port // later keywords win
}

// target returns the host:port the DSN connects to.
func Target(t testing.TB, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("%s: %v", envDSN, err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Skipf("%s connects through a Unix socket; the proxy test needs TCP", envDSN)
	}
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}

func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatal(envDSN + " is not set, and CI never skips the PostgreSQL tests")
		}
		t.Skip(envDSN + " is not set (outside CI, the PostgreSQL tests skip)")
	}
	return dsn
}

// freshSchema creates an empty schema, drops it when the test ends, and
// returns dsn with its search_path set to it, so tests (and other
// packages' tests) sharing the database do not see each other's rows.
func FreshSchema(t testing.TB, dsn string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "tg_test_" + hex.EncodeToString(b[:])
	Exec(t, dsn, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { Exec(t, dsn, `DROP SCHEMA `+schema+` CASCADE`) })
	return WithParam(t, dsn, "search_path", schema)
}

// admin runs one statement on its own connection.
func Exec(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", envDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// withParam sets a connection parameter in a URL or keyword/value DSN.
func WithParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a valid URL", envDSN)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}
