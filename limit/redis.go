package limit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key prefixes of the Redis implementations.
const (
	RatePrefix    = "tokengate:rl:"
	LockoutPrefix = "tokengate:lock:"
	// AccountLockoutPrefix keys the portal accounts' lockout.
	AccountLockoutPrefix = "tokengate:acctlock:"
)

// redisKey is prefix + "k:" + key, or prefix + "h:" + the hex SHA-256 of a
// key longer than MaxKeyLen: two namespaces, so no key can name a digest.
func redisKey(prefix, key string) string {
	if len(key) <= MaxKeyLen {
		return prefix + "k:" + key
	}
	sum := longKey(key)
	return prefix + "h:" + hex.EncodeToString(sum[:])
}

// Times in the scripts are unix microseconds: Lua numbers are doubles, exact
// only to 2^53, which nanoseconds since 1970 exceed. Numbers are written
// back as %.0f strings so Redis stores plain integers whatever its version's
// number conversion (Lua's own tostring keeps only 14 digits).

// rateScript is gcra.take. KEYS[1]: the TAT; ARGV: now, interval, tolerance.
// Returns {allowed (0/1), wait}. The key expires when the bucket is full
// again, so Redis holds only buckets in use.
var rateScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat > now + tolerance then tat = now + tolerance end
local nxt = tat + interval
if nxt - now > tolerance then
  return {0, nxt - now - tolerance}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, 0}
`)

// failScript is memoryLockout.Fail. KEYS[1]: a hash {n, last, until};
// ARGV: now, threshold, base, max, window. Returns {allowed (0/1), wait}.
// The key expires when its failures are forgotten.
var failScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'n', 'last', 'until')
local n = tonumber(v[1]) or 0
local last = tonumber(v[2]) or 0
local untl = tonumber(v[3]) or 0
if now >= math.max(last + window, untl) then
  n = 0
  untl = 0
end
n = n + 1
if n >= threshold then
  local lock = base
  local k = n - threshold
  while k > 0 and lock < max do
    lock = lock * 2
    k = k - 1
  end
  if lock > max then lock = max end
  if now + lock > untl then untl = now + lock end
end
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', n), 'last', string.format('%.0f', now), 'until', string.format('%.0f', untl))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(now + window, untl) - now) / 1000) + 1)
if untl > now then
  return {0, untl - now}
end
return {1, 0}
`)

// NewRedisRateLimiter returns a RateLimiter shared by every node using the
// same Redis (a *redis.Client, or a cluster or failover client: each script
// touches one key) and prefix (RatePrefix unless testing): rate tokens a second
// per key, in bursts of up to burst (burst < 1: one second's worth). A rate
// <= 0 returns Unlimited, which never calls Redis. Each Allow is one
// EVALSHA; its errors are the client's (connection, timeout, a Redis error
// reply). now nil means time.Now.
func NewRedisRateLimiter(client redis.UniversalClient, prefix string, rate float64, burst int, now func() time.Time) RateLimiter {
	if rate <= 0 {
		return Unlimited{}
	}
	return &redisRateLimiter{c: client, prefix: prefix, g: newGCRA(rate, burst, time.Microsecond), now: orNow(now)}
}

type redisRateLimiter struct {
	c      redis.UniversalClient
	prefix string
	g      gcra // in microseconds
	now    func() time.Time
}

func (l *redisRateLimiter) Allow(ctx context.Context, key string) (Decision, error) {
	res, err := rateScript.Run(ctx, l.c, []string{redisKey(l.prefix, key)}, l.now().UnixMicro(), l.g.interval, l.g.tolerance).Int64Slice()
	if err != nil {
		return Decision{}, err
	}
	return scriptDecision(res)
}

func scriptDecision(res []int64) (Decision, error) {
	if len(res) != 2 {
		return Decision{}, fmt.Errorf("limit: script returned %d values, want 2", len(res))
	}
	if res[0] == 1 {
		return allowed, nil
	}
	return denied(time.Duration(res[1]) * time.Microsecond), nil
}

// NewRedisLockout returns a Lockout shared by every node using the same
// Redis and prefix (LockoutPrefix unless testing), with policy p (which must
// be valid: see Policy.Validate; an invalid one panics). Check is one HGET,
// Fail one EVALSHA, Succeed one DEL; their errors are the client's. now nil
// means time.Now.
func NewRedisLockout(client redis.UniversalClient, prefix string, p Policy, now func() time.Time) Lockout {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return &redisLockout{c: client, prefix: prefix, p: p, now: orNow(now)}
}

type redisLockout struct {
	c      redis.UniversalClient
	prefix string
	p      Policy
	now    func() time.Time
}

func (l *redisLockout) Check(ctx context.Context, key string) (Decision, error) {
	v, err := l.c.HGet(ctx, redisKey(l.prefix, key), "until").Result()
	if errors.Is(err, redis.Nil) {
		return allowed, nil
	}
	if err != nil {
		return Decision{}, err
	}
	until, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return Decision{}, fmt.Errorf("limit: lockout entry holds %q, not a time", v)
	}
	if wait := until - l.now().UnixMicro(); wait > 0 {
		return denied(time.Duration(wait) * time.Microsecond), nil
	}
	return allowed, nil
}

func (l *redisLockout) Fail(ctx context.Context, key string) (Decision, error) {
	us := func(d time.Duration) int64 { return int64(d / time.Microsecond) }
	res, err := failScript.Run(ctx, l.c, []string{redisKey(l.prefix, key)},
		l.now().UnixMicro(), l.p.Threshold, us(l.p.Base), us(l.p.Max), us(l.p.Window)).Int64Slice()
	if err != nil {
		return Decision{}, err
	}
	return scriptDecision(res)
}

func (l *redisLockout) Succeed(ctx context.Context, key string) error {
	return l.c.Del(ctx, redisKey(l.prefix, key)).Err()
}
