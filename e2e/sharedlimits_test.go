package e2e

import (
	"context"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/limit"
)

// envRedis names the test Redis's URL. Tests skip only when it is unset
// and CI is unset: CI never skips them.
const envRedis = "TOKENGATE_TEST_REDIS"

func redisURL(t *testing.T) string {
	t.Helper()
	raw := os.Getenv(envRedis)
	if raw == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s is not", envRedis)
		}
		t.Skipf("%s is unset", envRedis)
	}
	return raw
}

// forgetRedisKeys deletes the limits' keys of the given client IDs and
// usernames when the test ends. The keys cannot collide with another
// test's: client IDs are random and the usernames carry a random suffix.
func forgetRedisKeys(t *testing.T, raw string, clientIDs, usernames []string) {
	t.Helper()
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("%s: %v", envRedis, err)
	}
	t.Cleanup(func() {
		c := redis.NewClient(opt)
		defer c.Close()
		var keys []string
		for _, id := range clientIDs {
			keys = append(keys, limit.RatePrefix+"k:"+id)
		}
		for _, u := range usernames {
			keys = append(keys, limit.LockoutPrefix+"k:"+u)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Errorf("deleting the test's Redis keys: %v", err)
		}
	})
}

// retryAfter is a response's Retry-After in seconds (-1 if absent or not
// a number).
func retryAfter(r *response) int {
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil {
		return -1
	}
	return n
}

// TestLimitsSharedAcrossNodes (issue 8, point 8): two servers on one
// PostgreSQL database and one Redis, one of them the real binary in a
// process of its own. A client's rate limit is one budget across both
// nodes, 429s carry the real wait, and a username locked by failures on
// one node is refused on the other, which never saw a failure.
func TestLimitsSharedAcrossNodes(t *testing.T) {
	rurl := redisURL(t)
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	const (
		rate  = 0.05 // a request every 20 s once the burst is spent
		burst = 4
	)
	shared := func(c *config.Config) {
		c.RateLimit.PerClient, c.RateLimit.Burst, c.RateLimit.Redis = rate, burst, rurl
		c.RateLimit.Lockout.Threshold, c.RateLimit.Lockout.Base = 3, time.Minute
	}
	bin := buildBinary(t)
	a := start(t, withPostgres(dsn, shared))
	b := startProcess(t, bin, withPostgres(dsn, shared))
	if strings.Contains(a.logs.String()+b.logs.String(), "shared limits unavailable") {
		t.Fatal("a node could not reach the test Redis")
	}

	id, secret := a.createClient("--name", "merchant", "--grant", "client_credentials")
	aliceClientA, aliceSecretA := a.createClient("--name", "app on A", "--grant", "password")
	aliceClientB, aliceSecretB := a.createClient("--name", "app on B", "--grant", "password")
	suffix := pgtest.RandomID()
	locked, other := "locked-"+suffix, "other-"+suffix
	forgetRedisKeys(t, rurl, []string{id, aliceClientA, aliceClientB}, []string{locked, other})

	t.Run("one rate budget across both nodes", func(t *testing.T) {
		cc := url.Values{"grant_type": {"client_credentials"}}
		begin := time.Now()
		ok := map[*env]int{}
		refused := map[*env]int{}
		for i := range 4 * burst {
			node := []*env{a, b}[i%2]
			r := node.postForm("/oauth/token", cc, id, secret)
			switch r.status {
			case 200:
				ok[node]++
			case 429:
				refused[node]++
				// The real wait: the next token is due 20 s after the
				// burst, less the time this loop took.
				wait := retryAfter(r)
				if wait < 20-int(time.Since(begin).Seconds())-1 || wait > 20 || r.str("error") != "temporarily_unavailable" {
					t.Errorf("429 from node %d: Retry-After %q, %s", i%2, r.header.Get("Retry-After"), r.body)
				}
			default:
				t.Fatalf("request %d: %d %s", i, r.status, r.body)
			}
		}
		total := ok[a] + ok[b]
		refill := int(rate * time.Since(begin).Seconds())
		t.Logf("%d requests alternating between the nodes: %d + %d allowed, %d + %d refused", 4*burst, ok[a], ok[b], refused[a], refused[b])
		if total < burst || total > burst+refill {
			t.Errorf("%d tokens issued across both nodes, want %d (the burst) + %d (refill); per-node limits would allow %d",
				total, burst, refill, 2*burst)
		}
		if ok[a] == 0 || ok[b] == 0 || refused[a] == 0 || refused[b] == 0 {
			t.Errorf("each node should have served and refused some: ok %d/%d, refused %d/%d", ok[a], ok[b], refused[a], refused[b])
		}
	})

	t.Run("a username locked on A is refused on B", func(t *testing.T) {
		right := "the right password for " + locked
		a.createUser(locked, right)
		a.createUser(other, "the other user's password")
		pw := func(user, password string) url.Values {
			return url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
		}
		var r *response
		for i := range 3 {
			r = a.postForm("/oauth/token", pw(locked, nearMiss(right, i)), aliceClientA, aliceSecretA)
			if r.status != 400 || r.str("error") != "invalid_grant" {
				t.Fatalf("wrong password %d on A: %d %s", i, r.status, r.body)
			}
		}
		if !strings.Contains(r.str("error_description"), "too many failed sign-ins") {
			t.Errorf("the third failure did not lock: %s", r.body)
		}
		r = b.postForm("/oauth/token", pw(locked, right), aliceClientB, aliceSecretB)
		if r.status != 400 || r.str("error") != "invalid_grant" || !strings.Contains(r.str("error_description"), "too many failed sign-ins") {
			t.Errorf("the right password on B for a username locked on A: %d %s", r.status, r.body)
		}
		if wait := retryAfter(r); wait < 50 || wait > 60 {
			t.Errorf("Retry-After %q on B, want the rest of A's one-minute lock", r.header.Get("Retry-After"))
		}
		if r := b.postForm("/oauth/token", pw(other, "the other user's password"), aliceClientB, aliceSecretB); r.status != 200 {
			t.Errorf("another user on B: %d %s", r.status, r.body)
		}
		mb := parseMetrics(t, b.metrics())
		if got := mb.get("tokengate_security_events_total", "type", "password_failed"); got != 0 {
			t.Errorf("B counted %v wrong passwords, want 0: the lock came from A through Redis", got)
		}
		if got := mb.get("tokengate_security_events_total", "type", "user_locked"); got != 1 {
			t.Errorf("B counted %v lockout refusals, want 1", got)
		}
		if got := parseMetrics(t, a.metrics()).get("tokengate_security_events_total", "type", "password_failed"); got != 3 {
			t.Errorf("A counted %v wrong passwords, want 3", got)
		}
	})
}

// TestLimitsFallBackWhenRedisIsDown: with the configured Redis unreachable
// the server starts, serves, applies its own per-node limits, and says so
// in the log once, not once per request.
func TestLimitsFallBackWhenRedisIsDown(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.RateLimit.PerClient, c.RateLimit.Burst = 0.05, 3
		c.RateLimit.Redis = "redis://127.0.0.1:1/0" // nothing listens on port 1
		c.RateLimit.Lockout.Threshold, c.RateLimit.Lockout.Base = 2, time.Minute
	})
	const fallbackLine = "shared limits unavailable, falling back to per-node limits"
	if n := strings.Count(e.logs.String(), fallbackLine); n != 1 {
		t.Fatalf("at start: %d fallback lines, want 1", n)
	}
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials")
	cc := url.Values{"grant_type": {"client_credentials"}}
	// Longer than the second after which the limiter tries Redis again,
	// so the retries' failures are not logged either.
	begin := time.Now()
	ok, refused := 0, 0
	for time.Since(begin) < 1600*time.Millisecond {
		r := e.postForm("/oauth/token", cc, id, secret)
		switch r.status {
		case 200:
			ok++
		case 429:
			refused++
			if wait := retryAfter(r); wait < 15 || wait > 20 {
				t.Errorf("Retry-After %q from the per-node limit", r.header.Get("Retry-After"))
			}
		default:
			t.Fatalf("%d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok != 3 || refused < 10 {
		t.Errorf("%d allowed and %d refused, want the burst of 3 allowed and the rest refused", ok, refused)
	}

	pwID, pwSecret := e.createClient("--name", "app", "--grant", "password")
	e.createUser("walter", "walter's password")
	for i := range 2 {
		e.postForm("/oauth/token", url.Values{"grant_type": {"password"}, "username": {"walter"},
			"password": {nearMiss("walter's password", i)}}, pwID, pwSecret)
	}
	r := e.postForm("/oauth/token", url.Values{"grant_type": {"password"}, "username": {"walter"}, "password": {"walter's password"}}, pwID, pwSecret)
	if r.status != 400 || !strings.Contains(r.str("error_description"), "too many failed sign-ins") {
		t.Errorf("per-node lockout while Redis is down: %d %s", r.status, r.body)
	}
	if n := strings.Count(e.logs.String(), fallbackLine); n != 1 {
		t.Errorf("%d fallback lines after %d requests, want 1", n, ok+refused+3)
	}
	if strings.Contains(e.logs.String(), "available again") {
		t.Error("the log claims Redis came back")
	}
}
