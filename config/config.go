// Package config loads tokengate's configuration: defaults, then a YAML
// file (unknown keys are an error that names the key), then TOKENGATE_*
// environment variables, then command-line flags, then validation.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. Every field's environment variable is
// TOKENGATE_ followed by its YAML path in upper case joined by "_", e.g.
// store.data_dir is TOKENGATE_STORE_DATA_DIR; a list or map value is given
// in YAML or JSON syntax.
type Config struct {
	Issuer string `yaml:"issuer"`
	Listen string `yaml:"listen"`
	// TLS, when its files are set, serves HTTPS on Listen.
	TLS TLS `yaml:"tls"`
	// OpsListen, when set, serves /metrics, Go's profiler (/debug/pprof/),
	// /healthz and /readyz on their own listener. Keep it on localhost or a
	// private network: profiles show code paths, never request data.
	OpsListen string `yaml:"ops_listen"`
	// MaxConnections caps the connections open on Listen; at the cap the
	// longest-idle one is closed to make room. 0: derived from the
	// process's descriptor limit (RLIMIT_NOFILE minus 128, at most 10000).
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxBodyReaders caps the request bodies the public listener's token,
	// introspection and revocation endpoints read at once; a request that
	// finds every reader busy is answered 503 with Retry-After at once. It
	// must stay below max_connections, so that connections stalled in a
	// body can never hold every connection. 0: half of max_connections, at
	// most 256.
	MaxBodyReaders int `yaml:"max_body_readers"`
	// BodyTimeout is how long a request body may take to arrive once its
	// headers have; a slower one is refused and its connection closed.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	Store       Store         `yaml:"store"`
	Tokens      Tokens        `yaml:"tokens"`
	// GoGCPercent is the garbage collector's target for serve and gateway
	// (Go's GOGC): a collection starts when the heap has grown this many
	// percent over what the last one left live. Go's 100 makes a server
	// whose live heap is a few tens of MB collect thousands of times a
	// minute under load; 400 spends a fraction of that CPU, and lets the
	// heap reach five times what is live (GOMEMLIMIT holds it down). A
	// valid GOGC environment variable, when set, wins.
	GoGCPercent int `yaml:"go_gc_percent"`
	// Pepper keys client-secret hashes (hex, at least 32 bytes). Empty: a
	// random pepper is generated into the store on first start. Set it
	// before creating clients; changing it invalidates every client secret.
	Pepper                  string  `yaml:"pepper"`
	Secrets                 Secrets `yaml:"secrets"`
	PasswordHashConcurrency int     `yaml:"password_hash_concurrency"`
	PasswordHashQueue       int     `yaml:"password_hash_queue"`
	// PasswordHashPerClient caps one client's password checks running or
	// waiting (0: half of password_hash_concurrency + password_hash_queue).
	PasswordHashPerClient int           `yaml:"password_hash_per_client"`
	RequestTimeout        time.Duration `yaml:"request_timeout"`
	RateLimit             RateLimit     `yaml:"rate_limit"`
	GC                    GC            `yaml:"gc"`
	Feed                  Feed          `yaml:"feed"`
	Log                   Log           `yaml:"log"`
	Endpoints             []Endpoint    `yaml:"endpoints"`
	Gateway               Gateway       `yaml:"gateway"`
	Portal                Portal        `yaml:"portal"`
	// Admin is the admin HTTP API (/admin/v1/), on a listener of its own;
	// off unless admin.listen is set.
	Admin Admin `yaml:"admin"`
}

// Portal is the merchant portal: server-rendered pages where merchants
// and operators sign in to manage accounts and clients, on a listener of
// its own (HTTPS when tls is set, with the same certificate).
type Portal struct {
	// Listen is the portal's address; "" (the default): no portal.
	Listen string `yaml:"listen"`
	// SessionIdle ends a session unused for this long.
	SessionIdle time.Duration `yaml:"session_idle"`
	// SessionMax ends a session this long after its sign-in, however
	// much it is used.
	SessionMax time.Duration `yaml:"session_max"`
}

// Admin configures the admin HTTP API's listener. Callers authenticate
// with an access token of a client holding the tokengate:admin scope, or,
// when TLS.ClientCAFile is set, with a client certificate that CA issued.
type Admin struct {
	// Listen is the address (HOST:PORT) of the admin API; "" (the
	// default) serves no admin API. Keep it on localhost or a private
	// network.
	Listen string   `yaml:"listen"`
	TLS    AdminTLS `yaml:"tls"`
}

// AdminTLS is the admin listener's TLS: with CertFile and KeyFile it
// serves HTTPS only (replaced files are picked up without a restart); with
// ClientCAFile too, a client certificate that CA issued (chain verified,
// for client authentication) authenticates its caller as an operator
// named by the certificate's subject common name. A certificate that does
// not verify fails the handshake.
type AdminTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the admin listener serves HTTPS.
func (t AdminTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// TLS names the PEM files of the server's certificate (with any
// intermediates after it) and private key. Both or neither: set, the
// public listener serves HTTPS only (TLS 1.2 or later), and replaced files
// are picked up without a restart.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether HTTPS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Store selects the backend: PostgreSQL when DSN is set, else the embedded
// SQLite store in DataDir.
type Store struct {
	DataDir  string `yaml:"data_dir"`
	DSN      string `yaml:"dsn"`
	MaxConns int    `yaml:"max_conns"`
	// Timeout bounds one PostgreSQL call and one group-commit transaction,
	// so a database that stops answering fails requests instead of hanging.
	Timeout time.Duration `yaml:"timeout"`
}

// Secrets configures the key-encryption key (KEK) that encrypts the
// secrets kept in the store (signing keys, the pepper, the opaque-token
// key). Set at most one of KEK and KEKFile. With neither, the embedded
// store generates a KEK into its data directory on first start (move it
// out and set KEKFile); PostgreSQL requires one.
type Secrets struct {
	// KEKFile is a file holding the KEK as 64 hex characters (32 bytes); it
	// must not be readable by group or others.
	KEKFile string `yaml:"kek_file"`
	// KEK is the KEK itself as 64 hex characters, typically from the
	// environment (TOKENGATE_SECRETS_KEK).
	KEK string `yaml:"kek"`
	// OldKEKFiles are earlier KEKs, still accepted for decryption until
	// "tokengate kek rotate" has re-encrypted everything under the current one.
	OldKEKFiles []string `yaml:"old_kek_files"`
}

// Tokens holds token policy.
type Tokens struct {
	AccessTTL    time.Duration `yaml:"access_ttl"`
	MaxAccessTTL time.Duration `yaml:"max_access_ttl"`
	RefreshTTL   time.Duration `yaml:"refresh_ttl"`
	Format       string        `yaml:"format"`
	SigningAlg   string        `yaml:"signing_alg"`
	Audience     []string      `yaml:"audience"`
	// KeyActivationDelay is how long a rotated-in signing key is published
	// before it signs, so resource servers' cached JWKS know it first.
	KeyActivationDelay time.Duration `yaml:"key_activation_delay"`
	// RefreshReuseGrace: a rotated refresh token presented again by its
	// client within this long gets a new pair of its family instead of
	// revoking the family (0 disables it).
	RefreshReuseGrace time.Duration `yaml:"refresh_reuse_grace"`
}

// RateLimit bounds each client's token requests and throttles wrong
// passwords per username: on each node, or across every node sharing Redis.
type RateLimit struct {
	PerClient float64 `yaml:"per_client"` // requests a second; 0: unlimited
	Burst     int     `yaml:"burst"`      // 0: one second's worth
	// Redis, when set (redis://[user:password@]host:port/db, rediss:// for
	// TLS, or unix://), holds the limits so every node enforces the same
	// ones. While it is unreachable each node falls back to its own limits.
	// It may hold a password: it is never logged or echoed in errors.
	Redis   string  `yaml:"redis"`
	Lockout Lockout `yaml:"lockout"`
}

// Lockout throttles wrong passwords per username: after Threshold
// consecutive failures the username is locked for Base, doubling with each
// further failure up to Max; failures are forgotten Window after the last.
type Lockout struct {
	Threshold int           `yaml:"threshold"`
	Base      time.Duration `yaml:"base"`
	Max       time.Duration `yaml:"max"`
	Window    time.Duration `yaml:"window"`
}

// GC is the background deletion of expired tokens and nonces.
type GC struct {
	Interval time.Duration `yaml:"interval"`
	Batch    int           `yaml:"batch"`
}

// Feed is the revocation feed (GET /oauth/revocations).
type Feed struct {
	// Retention is how long revocation events are kept: a subscriber away
	// longer gets a reset and must flush its cache.
	Retention time.Duration `yaml:"retention"`
	// Poll is how often each node reads new events from the store.
	Poll time.Duration `yaml:"poll"`
	// MaxSubscribers caps the streams one node serves at once (at most
	// half of max_connections are used, so streams cannot take every
	// connection).
	MaxSubscribers int `yaml:"max_subscribers"`
	// MaxSubscribersPerClient caps the streams one resource-server client
	// has open on one node, so that one credential cannot take every
	// slot; the instances of a resource server sharing its client all
	// count.
	MaxSubscribersPerClient int `yaml:"max_subscribers_per_client"`
}

// Log is the server log's shape.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Endpoint mounts one dialect of the token endpoint at a path.
type Endpoint struct {
	Path          string         `yaml:"path"`
	Dialect       string         `yaml:"dialect"`
	AccessTTL     time.Duration  `yaml:"access_ttl"`
	DefaultScopes []string       `yaml:"default_scopes"`
	Options       map[string]any `yaml:"options"`
}

// Gateway puts tokengate in front of payment APIs: each route verifies the
// calls to a path prefix (SNAP service signatures, or bearer tokens) and
// forwards the verified ones to an upstream.
type Gateway struct {
	// Listen is the address of `tokengate gateway` (a gateway-only
	// process); "" means listen. `serve` mounts the routes on listen.
	Listen string `yaml:"listen"`
	// MaxBody bounds a call's body (bytes); a larger one is refused.
	MaxBody int64 `yaml:"max_body"`
	// MaxReaders bounds the call bodies read at once (each within
	// body_timeout), so bodies cost at most max_readers × max_body.
	MaxReaders int `yaml:"max_readers"`
	// UpstreamTimeout bounds the upstream's answer; past it the caller
	// gets a timeout in the route's format.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// TimestampWindow is how far X-TIMESTAMP may be from the clock.
	TimestampWindow time.Duration `yaml:"timestamp_window"`
	// TimeZone is the zone whose calendar day an X-EXTERNAL-ID is unique in.
	TimeZone string         `yaml:"time_zone"`
	Routes   []GatewayRoute `yaml:"routes"`
}

// GatewayRoute is one protected path prefix.
type GatewayRoute struct {
	Prefix   string `yaml:"prefix"`
	Upstream string `yaml:"upstream"`
	// Auth is how calls prove themselves: "snap" (SNAP service signatures,
	// the default) or "bearer" (RFC 6750 access tokens).
	Auth string `yaml:"auth"`
	// ServiceCode is the SNAP service code of the route's answers (the
	// middle two digits of responseCode); ServiceCodes overrides it per
	// path.
	ServiceCode  int            `yaml:"service_code"`
	ServiceCodes map[string]int `yaml:"service_codes"`
	// Scopes the access token must all hold.
	Scopes []string `yaml:"scopes"`
	// Signature is the SNAP signature variant: symmetric, asymmetric or
	// either (default symmetric).
	Signature string `yaml:"signature"`
	// Token is "required" (default) or "none" (SNAP's asymmetric calls
	// without an access token).
	Token string `yaml:"token"`
	// StripPrefix is removed from the path before it is signed (a mount
	// prefix such as /nicepay); IncludeQuery signs the query string too.
	StripPrefix  string `yaml:"strip_prefix"`
	IncludeQuery bool   `yaml:"include_query"`
	// SignatureOnce also spends each X-SIGNATURE once within the timestamp
	// window, so a captured call cannot be sent again under a fresh
	// X-EXTERNAL-ID (which the signature does not cover). One more durable
	// write per call.
	SignatureOnce bool `yaml:"signature_once"`
}

// Default returns the configuration used when nothing is configured.
func Default() Config {
	return Config{
		Listen:      "127.0.0.1:8080",
		IdleTimeout: 30 * time.Second,
		BodyTimeout: 5 * time.Second,
		Store:       Store{DataDir: "tokengate-data", MaxConns: 16, Timeout: 5 * time.Second},
		Tokens: Tokens{
			AccessTTL:    time.Hour,
			MaxAccessTTL: 24 * time.Hour,
			RefreshTTL:   30 * 24 * time.Hour,
			Format:       "opaque",
			SigningAlg:   "ES256",
			// The JWKS is served with max-age=60.
			KeyActivationDelay: 2 * time.Minute,
			RefreshReuseGrace:  15 * time.Second,
		},
		GoGCPercent:             400,
		PasswordHashConcurrency: 2,
		PasswordHashQueue:       16,
		RateLimit:               RateLimit{Lockout: Lockout{Threshold: 5, Base: time.Second, Max: 15 * time.Minute, Window: 15 * time.Minute}},
		RequestTimeout:          5 * time.Second,
		GC:                      GC{Interval: time.Minute, Batch: 1000},
		Feed:                    Feed{Retention: 24 * time.Hour, Poll: 200 * time.Millisecond, MaxSubscribers: 1000, MaxSubscribersPerClient: 32},
		Log:                     Log{Level: "info", Format: "text"},
		Endpoints:               []Endpoint{{Path: "/oauth/token", Dialect: "oauth2"}},
		Gateway: Gateway{MaxBody: 1 << 20, MaxReaders: 64, UpstreamTimeout: 30 * time.Second, TimestampWindow: 5 * time.Minute,
			TimeZone: "Asia/Jakarta"},
		Portal: Portal{SessionIdle: 30 * time.Minute, SessionMax: 12 * time.Hour},
	}
}

// Overrides are command-line flags; empty fields leave the setting alone.
type Overrides struct {
	Listen  string
	DataDir string
}

// Load builds the configuration from the file at path (none if ""), the
// environment and the overrides, and validates it.
func Load(path string, env []string, o Overrides) (Config, error) {
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		if err := decodeStrict(raw, &c); err != nil {
			return c, fmt.Errorf("config %s: %w%s", path, err, removedHint(err.Error()))
		}
	}
	if err := applyEnv(&c, env); err != nil {
		return c, err
	}
	if o.Listen != "" {
		c.Listen = o.Listen
	}
	if o.DataDir != "" {
		c.Store.DataDir = o.DataDir
	}
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Listen
		if c.TLS.Enabled() {
			c.Issuer = "https://" + c.Listen
		}
	}
	// One spelling everywhere: metadata, JWT iss and aud, introspection.
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	return c, c.Validate()
}

func decodeStrict(raw []byte, into any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: it configures nothing, which is fine.
	if err := dec.Decode(into); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

const envPrefix = "TOKENGATE_"

// removed are settings that no longer exist, with what replaced them: the
// configuration is strict, so a file written for an older version fails
// to load, and this says why.
var removed = map[string]string{
	"pprof_addr": "pprof_addr was replaced by ops_listen, which serves the profiler and /metrics",
}

// removedHint explains an unknown-key error (or unknown environment
// variable) about a removed setting.
func removedHint(msg string) string {
	for key, hint := range removed {
		if strings.Contains(msg, "field "+key+" not found") || msg == envPrefix+strings.ToUpper(key) {
			return " (" + hint + ")"
		}
	}
	return ""
}

// EnvNames lists every environment variable the configuration reads, for
// the documentation and its test.
func EnvNames() []string {
	var names []string
	walk(reflect.ValueOf(&Config{}).Elem(), envPrefix, func(name string, _ reflect.Value) { names = append(names, name) })
	return names
}

func walk(v reflect.Value, prefix string, visit func(string, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + strings.ToUpper(tag)
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[time.Duration]() {
			walk(f, name+"_", visit)
			continue
		}
		visit(name, f)
	}
}

func applyEnv(c *Config, env []string) error {
	vals := make(map[string]string)
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, envPrefix) {
			vals[k] = v
		}
	}
	known := make(map[string]bool)
	var firstErr error
	walk(reflect.ValueOf(c).Elem(), envPrefix, func(name string, f reflect.Value) {
		known[name] = true
		v, ok := vals[name]
		if !ok || firstErr != nil {
			return
		}
		if f.Kind() == reflect.String {
			f.SetString(v)
			return
		}
		fresh := reflect.New(f.Type())
		if err := yaml.Unmarshal([]byte(v), fresh.Interface()); err != nil {
			firstErr = fmt.Errorf("environment %s: %w", name, err)
			return
		}
		f.Set(fresh.Elem())
	})
	if firstErr != nil {
		return firstErr
	}
	for k := range vals {
		if !known[k] && !ignoredEnv[k] {
			return fmt.Errorf("environment %s: unknown setting (see the README for the TOKENGATE_* names)%s", k, removedHint(k))
		}
	}
	return nil
}

// ignoredEnv are TOKENGATE_ variables that are not settings (test hooks).
var ignoredEnv = map[string]bool{"TOKENGATE_TEST_POSTGRES": true, "TOKENGATE_TEST_REDIS": true, "TOKENGATE_CONFIG": true}

// Validate checks settings that do not depend on other packages (dialect
// names and options are checked when the server builds its endpoints).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen: %q is not HOST:PORT", c.Listen)
	}
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("issuer: %q must be an http(s) URL without query or fragment (RFC 8414 §2)", c.Issuer)
	}
	if c.Store.DSN == "" && c.Store.DataDir == "" {
		bad("store: set data_dir (embedded store) or dsn (PostgreSQL)")
	}
	if c.Store.DSN != "" && !strings.HasPrefix(c.Store.DSN, "postgres://") && !strings.HasPrefix(c.Store.DSN, "postgresql://") {
		bad("store.dsn: must be a postgres:// URL")
	}
	if c.Store.Timeout < 100*time.Millisecond {
		bad("store.timeout: must be at least 100ms")
	}
	if c.Store.MaxConns < 1 {
		bad("store.max_conns: must be at least 1")
	}
	if c.Tokens.AccessTTL < time.Second {
		bad("tokens.access_ttl: must be at least 1s")
	}
	if c.Tokens.MaxAccessTTL < c.Tokens.AccessTTL {
		bad("tokens.max_access_ttl: must be at least tokens.access_ttl")
	}
	if c.Tokens.RefreshTTL < time.Minute {
		bad("tokens.refresh_ttl: must be at least 1m")
	}
	if c.Tokens.KeyActivationDelay < 0 {
		bad("tokens.key_activation_delay: must not be negative")
	}
	if c.Tokens.Format != "opaque" && c.Tokens.Format != "jwt" {
		bad("tokens.format: %q is not opaque or jwt", c.Tokens.Format)
	}
	switch c.Tokens.SigningAlg {
	case "ES256", "RS256", "EdDSA":
	default:
		bad("tokens.signing_alg: %q is not ES256, RS256 or EdDSA", c.Tokens.SigningAlg)
	}
	if c.Pepper != "" && len(c.Pepper) < 64 {
		bad("pepper: must be at least 32 bytes as hex (64 characters)")
	}
	if c.Secrets.KEK != "" && c.Secrets.KEKFile != "" {
		bad("secrets: set kek or kek_file, not both")
	}
	if k := c.Secrets.KEK; k != "" && !isHex(k, 64) {
		// Never quote the value: it is the key.
		bad("secrets.kek: must be 32 bytes as 64 hex characters")
	}
	for i, f := range c.Secrets.OldKEKFiles {
		if f == "" {
			bad("secrets.old_kek_files[%d]: empty path", i)
		}
	}
	if c.GoGCPercent < 25 || c.GoGCPercent > 10000 {
		bad("go_gc_percent: must be 25 to 10000")
	}
	if c.PasswordHashConcurrency < 1 {
		bad("password_hash_concurrency: must be at least 1")
	}
	if c.PasswordHashPerClient < 0 {
		bad("password_hash_per_client: must not be negative")
	}
	if c.PasswordHashQueue < 1 {
		bad("password_hash_queue: must be at least 1")
	}
	switch g := c.Tokens.RefreshReuseGrace; {
	case g < 0 || g > 2*time.Minute:
		bad("tokens.refresh_reuse_grace: must be between 0 and 2m")
	case g > 0 && g < max(c.RequestTimeout, c.Store.Timeout)+retryMargin:
		// A rotation that commits but whose reply is lost is answered 503
		// with Retry-After; the store recovers within its timeout, and the
		// client's retry must still fall in the grace.
		bad("tokens.refresh_reuse_grace: must be 0 or at least the longer of request_timeout and store.timeout, plus %s (%s), so that a retry after a rotation whose reply was lost falls inside it",
			retryMargin, max(c.RequestTimeout, c.Store.Timeout)+retryMargin)
	}
	if c.RequestTimeout < 100*time.Millisecond {
		bad("request_timeout: must be at least 100ms")
	}
	if c.RateLimit.PerClient < 0 || c.RateLimit.Burst < 0 {
		bad("rate_limit: per_client and burst must not be negative")
	}
	if r := c.RateLimit.Redis; r != "" {
		// The URL may hold a password: no message quotes it.
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") || (u.Scheme != "unix" && u.Host == "") {
			bad("rate_limit.redis: must be a redis://HOST:PORT/DB, rediss:// or unix:// URL")
		}
	}
	lo := c.RateLimit.Lockout
	if lo.Threshold < 1 {
		bad("rate_limit.lockout.threshold: must be at least 1")
	}
	if lo.Base < time.Millisecond {
		bad("rate_limit.lockout.base: must be at least 1ms")
	}
	if lo.Max < lo.Base || lo.Max > 30*24*time.Hour {
		bad("rate_limit.lockout.max: must be at least rate_limit.lockout.base and at most 720h")
	}
	if lo.Window < time.Second || lo.Window > 30*24*time.Hour {
		bad("rate_limit.lockout.window: must be between 1s and 720h")
	}
	if c.GC.Interval < time.Second {
		bad("gc.interval: must be at least 1s")
	}
	if c.GC.Batch < 1 {
		bad("gc.batch: must be at least 1")
	}
	if c.Feed.Retention < time.Minute {
		bad("feed.retention: must be at least 1m")
	}
	if c.Feed.Poll < 10*time.Millisecond || c.Feed.Poll > 10*time.Second {
		bad("feed.poll: must be between 10ms and 10s")
	}
	if c.Feed.MaxSubscribers < 1 {
		bad("feed.max_subscribers: must be at least 1")
	}
	if c.Feed.MaxSubscribersPerClient < 1 {
		bad("feed.max_subscribers_per_client: must be at least 1")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format: %q is not text or json", c.Log.Format)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls: set both cert_file and key_file, or neither")
	}
	if c.OpsListen != "" {
		if _, port, err := net.SplitHostPort(c.OpsListen); err != nil {
			bad("ops_listen: %q is not HOST:PORT", c.OpsListen)
		} else if c.OpsListen == c.Listen && port != "0" {
			bad("ops_listen: must differ from listen (%s)", c.Listen)
		}
	}
	if c.MaxConnections < 0 {
		bad("max_connections: must not be negative (0 derives it from the descriptor limit)")
	}
	if c.IdleTimeout < time.Second {
		bad("idle_timeout: must be at least 1s")
	}
	if c.MaxBodyReaders < 0 {
		bad("max_body_readers: must not be negative (0 derives it from max_connections)")
	} else if c.MaxConnections > 1 && c.MaxBodyReaders >= c.MaxConnections {
		bad("max_body_readers: must be below max_connections (%d)", c.MaxConnections)
	}
	if c.BodyTimeout < 100*time.Millisecond || c.BodyTimeout > time.Minute {
		bad("body_timeout: must be between 100ms and 1m")
	}
	if len(c.Endpoints) == 0 {
		bad("endpoints: at least one token endpoint is needed")
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		if !strings.HasPrefix(e.Path, "/") {
			bad("endpoints[%d].path: %q must start with /", i, e.Path)
		} else if strings.ContainsAny(e.Path, "{} \t?#") {
			bad("endpoints[%d].path: %q may not contain braces, spaces, '?' or '#'", i, e.Path)
		}
		if seen[e.Path] {
			bad("endpoints[%d].path: %q is mounted twice", i, e.Path)
		}
		seen[e.Path] = true
		if reserved[e.Path] {
			bad("endpoints[%d].path: %q is reserved", i, e.Path)
		}
		if e.Dialect == "" {
			bad("endpoints[%d].dialect: missing", i)
		}
		if e.AccessTTL != 0 && e.AccessTTL < time.Second {
			bad("endpoints[%d].access_ttl: must be at least 1s", i)
		}
	}
	c.validateGateway(bad, seen)
	c.validatePortal(bad)
	c.validateAdmin(bad)
	return errors.Join(errs...)
}

func (c *Config) validatePortal(bad func(string, ...any)) {
	p := c.Portal
	if p.Listen != "" {
		if _, port, err := net.SplitHostPort(p.Listen); err != nil {
			bad("portal.listen: %q is not HOST:PORT", p.Listen)
		} else if port != "0" && (p.Listen == c.Listen || p.Listen == c.OpsListen || p.Listen == c.Gateway.Listen) {
			bad("portal.listen: must differ from listen, ops_listen and gateway.listen")
		}
	}
	if p.SessionIdle < time.Minute || p.SessionIdle > 24*time.Hour {
		bad("portal.session_idle: must be between 1m and 24h")
	}
	if p.SessionMax < p.SessionIdle || p.SessionMax > 7*24*time.Hour {
		bad("portal.session_max: must be at least portal.session_idle and at most 168h")
	}
}

func (c *Config) validateAdmin(bad func(string, ...any)) {
	a := c.Admin
	if a.Listen == "" {
		if a.TLS != (AdminTLS{}) {
			bad("admin.tls: set admin.listen too (the admin API is off without it)")
		}
		return
	}
	if _, port, err := net.SplitHostPort(a.Listen); err != nil {
		bad("admin.listen: %q is not HOST:PORT", a.Listen)
	} else if port != "0" {
		for name, other := range map[string]string{"listen": c.Listen, "ops_listen": c.OpsListen, "gateway.listen": c.Gateway.Listen, "portal.listen": c.Portal.Listen} {
			if a.Listen == other {
				bad("admin.listen: must differ from %s (%s)", name, other)
			}
		}
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		bad("admin.tls: set both cert_file and key_file, or neither")
	}
	if a.TLS.ClientCAFile != "" && !a.TLS.Enabled() {
		bad("admin.tls.client_ca_file: client certificates need TLS: set admin.tls.cert_file and key_file too")
	}
}

func (c *Config) validateGateway(bad func(string, ...any), endpoints map[string]bool) {
	g := c.Gateway
	if g.Listen != "" {
		if _, _, err := net.SplitHostPort(g.Listen); err != nil {
			bad("gateway.listen: %q is not HOST:PORT", g.Listen)
		}
	}
	if g.MaxBody < 1 || g.MaxBody > 64<<20 {
		bad("gateway.max_body: must be between 1 and 64 MiB")
	}
	if g.MaxReaders < 1 {
		bad("gateway.max_readers: must be at least 1")
	}
	if g.UpstreamTimeout < 100*time.Millisecond {
		bad("gateway.upstream_timeout: must be at least 100ms")
	}
	if g.TimestampWindow <= 0 || g.TimestampWindow > 24*time.Hour {
		bad("gateway.timestamp_window: must be more than 0 and at most 24h")
	}
	if _, err := time.LoadLocation(g.TimeZone); err != nil || g.TimeZone == "" {
		bad("gateway.time_zone: %q is not an IANA time zone", g.TimeZone)
	}
	prefixes := map[string]bool{}
	for i, r := range g.Routes {
		at := fmt.Sprintf("gateway.routes[%d]", i)
		switch {
		case !strings.HasPrefix(r.Prefix, "/") || strings.ContainsAny(r.Prefix, "{} \t?#"):
			bad("%s.prefix: %q must start with / and hold no braces, spaces, '?' or '#'", at, r.Prefix)
		case prefixes[r.Prefix]:
			bad("%s.prefix: %q is routed twice", at, r.Prefix)
		case reserved[r.Prefix] || endpoints[r.Prefix] || (r.Prefix == "/" && len(endpoints) > 0):
			bad("%s.prefix: %q would hide a token endpoint or a reserved path", at, r.Prefix)
		}
		prefixes[r.Prefix] = true
		for p := range endpoints {
			if strings.HasPrefix(p, r.Prefix) {
				bad("%s.prefix: %q would hide the token endpoint %s", at, r.Prefix, p)
			}
		}
		if strings.HasPrefix(verifyPath, r.Prefix) {
			bad("%s.prefix: %q would hide the SNAP verify endpoint %s", at, r.Prefix, verifyPath)
		}
		if u, err := url.Parse(r.Upstream); err != nil {
			bad("%s.upstream: must be an http(s) URL", at) // not quoted: it may hold a password
		} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s.upstream: %q must be an http(s) URL", at, u.Redacted())
		}
		switch r.Auth {
		case "", "snap":
			if r.ServiceCode < 1 || r.ServiceCode > 99 {
				bad("%s.service_code: a SNAP route needs its two-digit service code (1 to 99)", at)
			}
			for p, code := range r.ServiceCodes {
				if code < 1 || code > 99 || !strings.HasPrefix(p, r.Prefix) {
					bad("%s.service_codes: %s: %d must be 1 to 99, for a path under the prefix", at, p, code)
				}
			}
			switch r.Signature {
			case "", "symmetric", "asymmetric", "either":
			default:
				bad("%s.signature: %q is not symmetric, asymmetric or either", at, r.Signature)
			}
			switch r.Token {
			case "", "required":
			case "none":
				if r.Signature != "asymmetric" {
					bad("%s.token: none (no access token) needs signature: asymmetric", at)
				}
			default:
				bad("%s.token: %q is not required or none", at, r.Token)
			}
			if r.StripPrefix != "" && !strings.HasPrefix(r.Prefix, r.StripPrefix) {
				bad("%s.strip_prefix: %q must be a leading part of the prefix", at, r.StripPrefix)
			}
		case "bearer":
			if r.Signature != "" || r.Token != "" || r.ServiceCode != 0 || len(r.ServiceCodes) > 0 || r.StripPrefix != "" || r.IncludeQuery || r.SignatureOnce {
				bad("%s: signature, token, service codes, strip_prefix and include_query are for SNAP routes", at)
			}
		default:
			bad("%s.auth: %q is not snap or bearer", at, r.Auth)
		}
		for _, sc := range r.Scopes {
			if sc == "" || strings.ContainsAny(sc, " \"\\") {
				bad("%s.scopes: %q is not a scope token", at, sc)
			}
		}
	}
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// retryMargin is what a client's retry after a 503 (Retry-After: 1) may
// take beyond the request timeout: the advised second and a network's worth.
const retryMargin = 5 * time.Second

// verifyPath is the SNAP verify endpoint (server.VerifyPath).
const verifyPath = "/snap/v1/verify"

// reserved are the server's own paths.
var reserved = map[string]bool{
	"/oauth/introspect": true, "/oauth/revoke": true, "/oauth/revocations": true, "/.well-known/oauth-authorization-server": true,
	"/.well-known/jwks.json": true, "/healthz": true, "/readyz": true, "/metrics": true,
	verifyPath: true,
}
