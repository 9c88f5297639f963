package limit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/pgtest"
)

func testConfig(redisURL string) config.RateLimit {
	c := config.Default().RateLimit
	c.PerClient, c.Burst, c.Redis = 1, 2, redisURL
	return c
}

func TestOpenWithoutRedisIsPerNode(t *testing.T) {
	clk := newClock()
	l, err := Open(context.Background(), testConfig(""), nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Fallback != nil {
		t.Error("a Fallback without Redis")
	}
	if _, ok := l.Rate.(*memoryRateLimiter); !ok {
		t.Errorf("rate limiter %T, want the in-process one", l.Rate)
	}
	if !allow(t, l.Rate, "a").Allowed || !allow(t, l.Rate, "a").Allowed || allow(t, l.Rate, "a").Allowed {
		t.Error("the rate limiter does not apply per_client 1, burst 2")
	}
	for range 4 {
		fail(t, l.Lockout, "alice")
	}
	if d := fail(t, l.Lockout, "alice"); d.Allowed || !within(d.RetryAfter, time.Second) {
		t.Errorf("the 5th failure under the default policy: %+v, want locked for 1s", d)
	}
	// Portal accounts count apart: a locked username locks no account.
	if d := check(t, l.Accounts, "alice"); !d.Allowed {
		t.Error("the password grant's lockout locked the accounts' too")
	}
}

func TestOpenZeroRateIsUnlimitedEvenWithRedis(t *testing.T) {
	cfg := testConfig("redis://127.0.0.1:1/0")
	cfg.PerClient = 0
	l, err := Open(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, ok := l.Rate.(Unlimited); !ok {
		t.Fatalf("per_client 0 with Redis: %T, want Unlimited", l.Rate)
	}
}

// A Redis that is down at start does not stop the server from starting: Open
// succeeds, says so once, and the limits answer per node.
func TestOpenWithRedisDownStarts(t *testing.T) {
	clk := newClock()
	log, logs := newLogger()
	l, err := Open(context.Background(), testConfig("redis://127.0.0.1:1/0"), log, clk.Now)
	if err != nil {
		t.Fatalf("Open with Redis down: %v", err)
	}
	defer l.Close()
	if l.Fallback.Available() {
		t.Error("Available() with Redis down")
	}
	if n := len(logs.lines()); n != 1 {
		t.Errorf("%d log lines at start, want 1", n)
	}
	ok := 0
	for range 100 {
		if allow(t, l.Rate, "a").Allowed {
			ok++
		}
		check(t, l.Lockout, "alice")
	}
	if ok != 2 {
		t.Errorf("the per-node fallback allowed %d (burst 2)", ok)
	}
	if lines := logs.lines(); len(lines) != 1 {
		t.Errorf("log lines:\n%s\nwant still one", strings.Join(lines, "\n"))
	}
}

func TestOpenSharesLimitsThroughRedis(t *testing.T) {
	url := redisURL(t)
	testRedis(t) // fail, not fall back, when the test Redis is missing
	clk := newClock()
	ctx := context.Background()
	var nodes []*Limits
	for range 2 {
		log, logs := newLogger()
		l, err := Open(ctx, testConfig(url), log, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if !l.Fallback.Available() || len(logs.lines()) != 0 {
			t.Fatalf("Open against the test Redis: available %v, log %q", l.Fallback.Available(), logs.lines())
		}
		nodes = append(nodes, l)
	}
	// The production prefixes: random keys keep runs apart.
	client, user := "client-"+pgtest.RandomID(), "user-"+pgtest.RandomID()
	if !allow(t, nodes[0].Rate, client).Allowed || !allow(t, nodes[1].Rate, client).Allowed {
		t.Fatal("the burst of 2 refused")
	}
	if d := allow(t, nodes[0].Rate, client); d.Allowed || !within(d.RetryAfter, time.Second) {
		t.Fatalf("a third request over two nodes: %+v, want refused for 1s", d)
	}
	for i := range 5 {
		fail(t, nodes[i%2].Lockout, user)
	}
	if d := check(t, nodes[1].Lockout, user); d.Allowed {
		t.Fatal("five failures over two nodes did not lock")
	}
	if d := check(t, nodes[1].Accounts, user); !d.Allowed {
		t.Fatal("the password grant's lockout locked the accounts' too")
	}
	succeed(t, nodes[0].Lockout, user)
	if d := check(t, nodes[1].Lockout, user); !d.Allowed {
		t.Fatal("Succeed on one node did not clear the other")
	}
	// Accounts are shared across nodes too.
	for i := range 5 {
		fail(t, nodes[i%2].Accounts, user)
	}
	if d := check(t, nodes[1].Accounts, user); d.Allowed {
		t.Fatal("five account failures over two nodes did not lock")
	}
	succeed(t, nodes[0].Accounts, user)
}

func TestOpenErrorsDoNotQuoteTheURL(t *testing.T) {
	for _, raw := range []string{
		"redis://user:s3cretpassword@127.0.0.1:6379/zero",
		"redis://user:s3cretpassword@127.0.0.1:6379/0/1",
		"redis://user:s3cretpassword@[::1/0",
		"http://user:s3cretpassword@127.0.0.1/",
	} {
		_, err := Open(context.Background(), testConfig(raw), nil, nil)
		if err == nil {
			t.Errorf("%s: no error", raw)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
	cfg := testConfig("")
	cfg.Lockout.Threshold = 0
	if _, err := Open(context.Background(), cfg, nil, nil); err == nil {
		t.Error("threshold 0 accepted")
	}
}
