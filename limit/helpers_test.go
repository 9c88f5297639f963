package limit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// envRedis is the test Redis's URL. Tests skip only when it is unset and CI
// is unset: CI never skips them.
const envRedis = "TOKENGATE_TEST_REDIS"

func redisURL(t testing.TB) string {
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

// testRedis returns a new client of the test Redis, failing the test when
// it does not answer.
func testRedis(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatalf("%s: %v", envRedis, err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("test Redis at %s: %v", envRedis, err)
	}
	return c
}

// testPrefix is a key prefix no other test uses; its keys are deleted when
// the test ends.
func testPrefix(t testing.TB, c *redis.Client) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	p := "tokengate-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, p+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return p
}

// logBuffer collects log output from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// newLogger logs at info level, as the server does by default.
func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func allow(t testing.TB, l RateLimiter, key string) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatalf("Allow(%.20q): %v", key, err)
	}
	if d.Allowed != (d.RetryAfter == 0) {
		t.Fatalf("Allow(%.20q) = %+v: RetryAfter must be > 0 exactly when refused", key, d)
	}
	return d
}

func fail(t testing.TB, l Lockout, key string) Decision {
	t.Helper()
	d, err := l.Fail(context.Background(), key)
	if err != nil {
		t.Fatalf("Fail(%.20q): %v", key, err)
	}
	if d.Allowed != (d.RetryAfter == 0) {
		t.Fatalf("Fail(%.20q) = %+v: RetryAfter must be > 0 exactly when locked", key, d)
	}
	return d
}

func check(t testing.TB, l Lockout, key string) Decision {
	t.Helper()
	d, err := l.Check(context.Background(), key)
	if err != nil {
		t.Fatalf("Check(%.20q): %v", key, err)
	}
	if d.Allowed != (d.RetryAfter == 0) {
		t.Fatalf("Check(%.20q) = %+v: RetryAfter must be > 0 exactly when locked", key, d)
	}
	return d
}

func succeed(t testing.TB, l Lockout, key string) {
	t.Helper()
	if err := l.Succeed(context.Background(), key); err != nil {
		t.Fatalf("Succeed(%.20q): %v", key, err)
	}
}
