package e2e

import (
	"bytes"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/pgtest"
)

// replyDropper forwards to PostgreSQL and, once armed, drops the server's
// reply carrying the COMMIT of the first transaction that rotates a
// refresh token (and everything after it on that connection): a network
// that loses the reply to a committed rotation.
type replyDropper struct {
	target string
	ln     net.Listener
	armed  atomic.Bool
	fired  atomic.Bool
}

func (p *replyDropper) run() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var rotating atomic.Bool
		go func() { // client to server
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.armed.Load() && bytes.Contains(buf[:n], []byte("rotated_at")) {
						rotating.Store(true)
					}
					up.Write(buf[:n])
				}
				if err != nil {
					up.Close()
					return
				}
			}
		}()
		go func() { // server to client
			buf := make([]byte, 64<<10)
			dropping := false
			for {
				n, err := up.Read(buf)
				if n > 0 && !dropping && rotating.Load() && bytes.Contains(buf[:n], []byte("COMMIT\x00")) && p.fired.CompareAndSwap(false, true) {
					dropping = true
				}
				if n > 0 && !dropping {
					c.Write(buf[:n])
				}
				if err != nil {
					c.Close()
					return
				}
			}
		}()
	}
}

// TestLostRotationReplyIsRetriedWithinTheGrace: PostgreSQL commits a
// refresh rotation but its reply is lost; the client gets 503 with
// Retry-After, waits as told and retries with the same refresh token. The
// retry lands inside the reuse grace (which the configuration requires to
// exceed the request timeout), so it gets a new pair and the family lives.
// Before the grace, this revoked the family (9 of 48 times in the review).
func TestLostRotationReplyIsRetriedWithinTheGrace(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{target: pgtest.Target(t, dsn), ln: ln}
	go p.run()
	t.Cleanup(func() { ln.Close() })
	const grace = 8 * time.Second // the least the configuration allows with these timeouts
	e := start(t, withPostgres(pgtest.ViaProxy(t, dsn, ln.Addr().String()), func(c *config.Config) {
		c.RequestTimeout, c.Store.Timeout = time.Second, 3*time.Second
		c.Tokens.RefreshReuseGrace = grace
	}))
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--grant", "refresh_token",
		"--refresh-with-client-credentials")
	first := e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.str("refresh_token")}}

	p.armed.Store(true)
	start := time.Now()
	r := e.postForm("/oauth/token", form, id, secret)
	if !p.fired.Load() {
		t.Fatalf("the rotation's COMMIT reply was not dropped (status %d %s)", r.status, r.body)
	}
	// The client retries as the server advises until it gets an answer
	// other than 503 (the store is recovering from the lost connection).
	tries := 1
	for r.status == 503 && r.str("error") == "temporarily_unavailable" {
		wait, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || wait < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		time.Sleep(time.Duration(wait) * time.Second) // the client follows the server's advice
		r = e.postForm("/oauth/token", form, id, secret)
		tries++
	}
	t.Logf("answered %d after %d tries and %v", r.status, tries, time.Since(start).Round(time.Millisecond))
	if tries < 2 {
		t.Fatalf("the lost reply was not answered 503: %d %s", r.status, r.body)
	}
	retry := r
	if retry.status != 200 || retry.str("refresh_token") == "" {
		t.Fatalf("the retry as advised: %d %s", retry.status, retry.body)
	}
	rs, rsSecret := e.createClient("--name", "rs", "--grant", "client_credentials", "--can-introspect")
	for name, tok := range map[string]string{"first access token": first.str("access_token"),
		"the retry's access token": retry.str("access_token"), "the retry's refresh token": retry.str("refresh_token")} {
		if !e.active(tok, rs, rsSecret) {
			t.Errorf("%s inactive: the lost reply cost the family", name)
		}
	}
}
