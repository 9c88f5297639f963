package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokengate/tokengate/oauth"
)

// proxy is a TCP forwarder between a Store and PostgreSQL that a test can
// cut and restore, to play a database that goes away and comes back.
type proxy struct {
	t      testing.TB
	target string
	addr   string
	silent atomic.Bool // forward nothing, close nothing

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
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
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) forward(c net.Conn) {
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
func (p *proxy) pipe(dst io.Writer, src net.Conn) {
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
func (p *proxy) cut() {
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
func (p *proxy) silence() { p.silent.Store(true) }

// restore listens again on the same address.
func (p *proxy) restore() {
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

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// viaProxy returns dsn with its host and port replaced by addr's.
func viaProxy(t testing.TB, dsn, addr string) string {
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
func target(t testing.TB, dsn string) string {
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

// TestDatabaseDown cuts the store off its database: calls must fail fast
// with oauth.ErrUnavailable, and succeed again once the database is back,
// without reopening the store.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	schemaDSN := freshSchema(t, dsn)
	p := startProxy(t, target(t, dsn))
	s := openStore(t, viaProxy(t, schemaDSN, p.addr), Options{})
	t.Cleanup(func() { s.Close() })

	ctx := t.Context()
	now := time.Now()
	if err := s.CreateClient(ctx, &oauth.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	newToken := func() *oauth.Token {
		n++
		return &oauth.Token{ID: fmt.Sprintf("t%d", n), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	// Fill the pool with a few connections, now idle.
	var wg sync.WaitGroup
	for range 8 {
		tk := newToken()
		wg.Go(func() {
			if err := s.CreateTokens(ctx, tk); err != nil {
				t.Error(err)
			}
			if _, err := s.GetClient(ctx, "c"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"GetClient", func(ctx context.Context) error { _, err := s.GetClient(ctx, "c"); return err }},
		{"CreateTokens", func(ctx context.Context) error { return s.CreateTokens(ctx, newToken()) }},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
		{"GetToken", func(ctx context.Context) error { _, err := s.GetToken(ctx, "t1"); return err }},
		{"UseNonce", func(ctx context.Context) error { return s.UseNonce(ctx, fmt.Sprint("n", n), now.Add(time.Hour)) }},
		{"UpdateClient", func(ctx context.Context) error {
			return s.UpdateClient(ctx, "c", func(c *oauth.Client) error { c.Name = "x"; return nil })
		}},
	}
	requireDown := func(limit time.Duration) {
		t.Helper()
		for round := range 3 { // the first call may meet a dead pooled connection, later ones a refused connect
			for _, c := range calls {
				start := time.Now()
				err := c.call(context.Background()) // no deadline: the store must bound the call itself
				took := time.Since(start)
				if !errors.Is(err, oauth.ErrUnavailable) {
					t.Fatalf("round %d: %s while the database is away = %v, want ErrUnavailable", round, c.name, err)
				}
				if took > limit {
					t.Fatalf("round %d: %s took %v to fail, want under %v", round, c.name, took, limit)
				}
				t.Logf("round %d: %s failed after %v: %v", round, c.name, took.Round(time.Millisecond), err)
			}
		}
	}
	requireUp := func() {
		t.Helper()
		start := time.Now()
		for _, c := range calls {
			for {
				err := c.call(ctx)
				if err == nil {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("%s still fails %v after the database came back: %v", c.name, time.Since(start), err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("all calls succeed %v after the database came back", time.Since(start).Round(time.Millisecond))
	}

	p.cut()
	requireDown(3 * time.Second)
	p.restore()
	requireUp()

	// And once more, while many callers are writing.
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for range 16 {
		writers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tk := &oauth.Token{ID: randomID(), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
				start := time.Now()
				err := s.CreateTokens(context.Background(), tk)
				if err != nil && !errors.Is(err, oauth.ErrUnavailable) {
					t.Errorf("CreateTokens under load: %v", err)
				}
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("CreateTokens under load took %v", took)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	p.cut()
	time.Sleep(500 * time.Millisecond)
	requireDown(3 * time.Second)
	p.restore()
	requireUp()
	close(stop)
	writers.Wait()
}

// TestDatabaseSilent: a database that stops answering without closing
// connections (a network partition) fails calls within Options.Timeout.
func TestDatabaseSilent(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	schemaDSN := freshSchema(t, dsn)
	p := startProxy(t, target(t, dsn))
	const timeout = time.Second
	s := openStore(t, viaProxy(t, schemaDSN, p.addr), Options{Timeout: timeout})
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	ctx := t.Context()
	if err := s.CreateClient(ctx, &oauth.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}

	p.silence()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"GetClient", func() error { _, err := s.GetClient(context.Background(), "c"); return err }},
		{"CreateTokens", func() error {
			return s.CreateTokens(context.Background(), &oauth.Token{ID: randomID(), Kind: oauth.KindAccess, ExpiresAt: time.Now().Add(time.Hour)})
		}},
		{"Ping", func() error { return s.Ping(context.Background()) }},
	} {
		start := time.Now()
		err := c.call()
		took := time.Since(start)
		if !errors.Is(err, oauth.ErrUnavailable) {
			t.Fatalf("%s while the database is silent = %v, want ErrUnavailable", c.name, err)
		}
		if took > timeout+time.Second {
			t.Fatalf("%s took %v to fail, want about %v", c.name, took, timeout)
		}
		t.Logf("%s failed after %v: %v", c.name, took.Round(time.Millisecond), err)
	}

	// Closing must not wait for connections stuck on the silent network.
	start := time.Now()
	closed = true
	s.Close()
	if took := time.Since(start); took > timeout+time.Second {
		t.Fatalf("Close took %v while the database was silent", took)
	}
}
