package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/app"
	"github.com/tokengate/tokengate/cli"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/testcert"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/server"
)

// feedNode is a node for the feed's tests: before Start, hook may change
// the server (its HTTP timeouts).
type feedNode struct {
	node *app.Node
	dir  string
	base string
}

func startFeedNode(t *testing.T, mutate func(*config.Config), hook func(*server.Server)) *feedNode {
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
	a, err := app.Open(context.Background(), cfg, app.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if hook != nil {
		hook(a.Server)
	}
	if err := a.Start(); err != nil {
		a.Close()
		t.Fatal(err)
	}
	n := &feedNode{node: a, dir: dir, base: "http://" + a.Server.Addr()}
	if cfg.TLS.Enabled() {
		n.base = "https://" + a.Server.Addr()
	}
	t.Cleanup(func() { a.Close() })
	return n
}

// resourceServer registers a client that may read the feed.
func (n *feedNode) resourceServer(t *testing.T) (id, secret string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run([]string{"--data", n.dir, "client", "create", "--json", "--name", "rs", "--grant", "client_credentials", "--can-introspect"},
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

// revoke revokes a (stateless) token in the node's store and returns its ID.
func (n *feedNode) revoke(t *testing.T, id string) {
	t.Helper()
	now := time.Now()
	tok := &oauth.Token{ID: id, Kind: oauth.KindAccess, Format: oauth.FormatJWT, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := n.node.Store.RevokeToken(t.Context(), tok, now); err != nil {
		t.Fatal(err)
	}
}

// stream is a subscriber's open stream.
type stream struct {
	res   *http.Response
	lines chan string
	ended chan struct{}
}

func subscribeFeed(t *testing.T, c *http.Client, base, id, secret string) (*stream, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/oauth/revocations", nil)
	req.SetBasicAuth(id, secret)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, res.StatusCode
	}
	s := &stream{res: res, lines: make(chan string, 100), ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { res.Body.Close(); <-s.ended })
	s.want(t, "event: hello", 5*time.Second)
	return s, http.StatusOK
}

// want reads lines until one starts with prefix, within limit.
func (s *stream) want(t *testing.T, prefix string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case l := <-s.lines:
			if strings.HasPrefix(l, prefix) {
				return
			}
		case <-s.ended:
			t.Fatalf("the stream ended before %q", prefix)
		case <-deadline:
			t.Fatalf("no %q within %v", prefix, limit)
		}
	}
}

// TestFeedOutlivesServerTimeouts: a stream lives on past the server's read,
// write and idle timeouts, over HTTP/1.1 and HTTP/2, and still delivers.
func TestFeedOutlivesServerTimeouts(t *testing.T) {
	const short = 200 * time.Millisecond
	hook := func(s *server.Server) { server.SetHTTPTimeouts(s, short, short) }
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	f := &certFiles{t: t, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), mtime: time.Now().Add(-time.Hour)}
	f.write(ca.Issue(t, time.Now().Add(time.Hour)))
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config)
		client *http.Client
		proto  int
	}{
		{"HTTP/1.1", func(c *config.Config) { c.IdleTimeout = time.Second }, &http.Client{}, 1},
		{"HTTP/2", func(c *config.Config) {
			c.IdleTimeout = time.Second
			c.TLS = config.TLS{CertFile: f.cert, KeyFile: f.key}
		}, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startFeedNode(t, tc.mutate, hook)
			id, secret := n.resourceServer(t)
			s, _ := subscribeFeed(t, tc.client, n.base, id, secret)
			if s.res.ProtoMajor != tc.proto {
				t.Fatalf("HTTP/%d, want HTTP/%d", s.res.ProtoMajor, tc.proto)
			}
			// Real time is the point: the timeouts are the network's.
			time.Sleep(time.Second + 2*short)
			n.revoke(t, "after-the-timeouts")
			s.want(t, `data: {"type":"token","id":"after-the-timeouts"}`, 2*time.Second)
		})
	}
}

// TestFeedShutdown: closing the server ends the streams at once instead
// of waiting for them (a graceful shutdown would wait forever).
func TestFeedShutdown(t *testing.T) {
	n := startFeedNode(t, nil, nil)
	id, secret := n.resourceServer(t)
	s, _ := subscribeFeed(t, http.DefaultClient, n.base, id, secret)
	began := time.Now()
	if err := n.node.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("Close took %v with a stream open", took)
	}
	select {
	case <-s.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
}

// TestFeedStreamsSurviveTheConnectionCap: streams are active requests,
// so the connection cap never closes one to make room; at most half the
// cap may be streams.
func TestFeedStreamsSurviveTheConnectionCap(t *testing.T) {
	n := startFeedNode(t, func(c *config.Config) { c.MaxConnections = 4; c.MaxBodyReaders = 1 }, nil)
	id, secret := n.resourceServer(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	a, _ := subscribeFeed(t, client, n.base, id, secret)
	b, _ := subscribeFeed(t, client, n.base, id, secret)
	if _, status := subscribeFeed(t, &http.Client{Transport: &http.Transport{}}, n.base, id, secret); status != http.StatusServiceUnavailable {
		t.Errorf("a third stream with max_connections 4: %d, want 503", status)
	}
	// A flood of connections kept idle after one request each: the cap
	// closes idle ones to make room, never a stream.
	addr := strings.TrimPrefix(n.base, "http://")
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: tokengate\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
	}
	n.revoke(t, "after-the-flood")
	for _, s := range []*stream{a, b} {
		s.want(t, `data: {"type":"token","id":"after-the-flood"}`, 2*time.Second)
	}
}
