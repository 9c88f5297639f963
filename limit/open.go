package limit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokengate/tokengate/config"
)

// Limits are the limiters a configuration describes.
type Limits struct {
	Rate    RateLimiter
	Lockout Lockout
	// Accounts throttles failed portal sign-ins, per account, with the
	// same policy as Lockout but counters of its own (a password grant's
	// username can never lock a portal account).
	Accounts Lockout
	// Fallback is the shared store's health; nil when the limits are per node.
	Fallback *Fallback

	client *redis.Client
}

// Close releases the Redis connections, if any. It returns the client's
// error.
func (l *Limits) Close() error {
	if l.client == nil {
		return nil
	}
	return l.client.Close()
}

// Open builds the limits cfg describes: per node, or, when cfg.Redis is set,
// shared through that Redis with per-node limits answering while it fails
// (see Fallback). An unreachable Redis is not an error: Open tries it once
// (for at most the fallback timeout), logs that it is unavailable, and the
// limits fall back until it answers. Open fails only on an unusable cfg (a
// malformed Redis URL, an invalid lockout policy); its errors never quote the
// URL, which may hold a password. logger nil means slog.Default(); now nil
// means time.Now. Nodes sharing a Redis need synchronised clocks.
//
// go-redis logs through a process-wide logger; Open routes it to logger at
// debug level, since its dial failures would otherwise print a line per
// attempt while Redis is down.
func Open(ctx context.Context, cfg config.RateLimit, logger *slog.Logger, now func() time.Time) (*Limits, error) {
	if logger == nil {
		logger = slog.Default()
	}
	p := Policy{Threshold: cfg.Lockout.Threshold, Base: cfg.Lockout.Base, Max: cfg.Lockout.Max, Window: cfg.Lockout.Window}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	local := &Limits{
		Rate:     NewMemoryRateLimiter(cfg.PerClient, cfg.Burst, now),
		Lockout:  NewMemoryLockout(p, now),
		Accounts: NewMemoryLockout(p, now),
	}
	if cfg.Redis == "" {
		return local, nil
	}
	opt, err := redisOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	redis.SetLogger(redisLogger{logger})
	client := redis.NewClient(opt)
	f := NewFallback(logger, FallbackOptions{Now: now})
	l := &Limits{
		Rate:     f.RateLimiter(NewRedisRateLimiter(client, RatePrefix, cfg.PerClient, cfg.Burst, now), local.Rate),
		Lockout:  f.Lockout(NewRedisLockout(client, LockoutPrefix, p, now), local.Lockout),
		Accounts: f.Lockout(NewRedisLockout(client, AccountLockoutPrefix, p, now), local.Accounts),
		Fallback: f,
		client:   client,
	}
	// Learn (and log) at start whether Redis answers, rather than on the
	// first request.
	_, _ = call(ctx, f,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, client.Ping(ctx).Err() },
		func() (struct{}, error) { return struct{}{}, nil })
	return l, nil
}

func redisOptions(raw string) (*redis.Options, error) {
	// url.Parse's error quotes the whole URL, password included.
	if _, err := url.Parse(raw); err != nil {
		return nil, errors.New("rate_limit.redis: not a URL")
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("rate_limit.redis: %w", err)
	}
	// Fallback bounds each call; retrying inside that bound only delays the
	// answer, and the context's deadline must reach the socket.
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.ContextTimeoutEnabled = true
	return opt, nil
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
