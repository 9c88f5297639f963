package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsNeedNoFile(t *testing.T) {
	c, err := Load("", nil, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Store.DataDir != "tokengate-data" || c.Issuer != "http://127.0.0.1:8080" {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].Path != "/oauth/token" || c.Endpoints[0].Dialect != "oauth2" {
		t.Errorf("default endpoints: %+v", c.Endpoints)
	}
}

func TestUnknownKeyIsNamed(t *testing.T) {
	for body, key := range map[string]string{
		"listen: 127.0.0.1:9000\nlisten_addr: x\n":        "listen_addr",
		"tokens:\n  acces_ttl: 5m\n":                      "acces_ttl",
		"endpoints:\n  - path: /t\n    dialekt: oauth2\n": "dialekt",
	} {
		_, err := Load(writeFile(t, body), nil, Overrides{})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v does not name %s", body, err, key)
		}
	}
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	p := writeFile(t, "listen: 127.0.0.1:9000\ntokens:\n  access_ttl: 10m\n  refresh_ttl: 48h\nstore:\n  data_dir: /from/file\n")
	env := []string{"TOKENGATE_TOKENS_ACCESS_TTL=20m", "TOKENGATE_STORE_DATA_DIR=/from/env", "PATH=/bin",
		"TOKENGATE_TOKENS_AUDIENCE=[https://api.example, https://pay.example]",
		`TOKENGATE_ENDPOINTS=[{path: /v2/auth/oauth2/token, dialect: oauth2, default_scopes: [disbursement]}]`}
	c, err := Load(p, env, Overrides{DataDir: "/from/flag"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.Tokens.AccessTTL != 20*time.Minute || c.Tokens.RefreshTTL != 48*time.Hour || c.Store.DataDir != "/from/flag" {
		t.Errorf("precedence: %+v", c)
	}
	if !slices.Equal(c.Tokens.Audience, []string{"https://api.example", "https://pay.example"}) {
		t.Errorf("audience from env: %v", c.Tokens.Audience)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].Path != "/v2/auth/oauth2/token" || c.Endpoints[0].DefaultScopes[0] != "disbursement" {
		t.Errorf("endpoints from env: %+v", c.Endpoints)
	}
}

func TestUnknownEnvIsAnError(t *testing.T) {
	_, err := Load("", []string{"TOKENGATE_LISTN=127.0.0.1:1"}, Overrides{})
	if err == nil || !strings.Contains(err.Error(), "TOKENGATE_LISTN") {
		t.Errorf("error %v", err)
	}
	if _, err := Load("", []string{"TOKENGATE_TOKENS_ACCESS_TTL=soon"}, Overrides{}); err == nil {
		t.Error("a bad duration in the environment was accepted")
	}
}

func TestEveryFieldHasAnEnvName(t *testing.T) {
	names := EnvNames()
	for _, want := range []string{"TOKENGATE_ISSUER", "TOKENGATE_LISTEN", "TOKENGATE_STORE_DATA_DIR", "TOKENGATE_STORE_DSN",
		"TOKENGATE_TOKENS_ACCESS_TTL", "TOKENGATE_TOKENS_REFRESH_TTL", "TOKENGATE_TOKENS_FORMAT",
		"TOKENGATE_TOKENS_SIGNING_ALG", "TOKENGATE_ENDPOINTS", "TOKENGATE_GC_INTERVAL",
		"TOKENGATE_SECRETS_KEK", "TOKENGATE_SECRETS_KEK_FILE", "TOKENGATE_SECRETS_OLD_KEK_FILES",
		"TOKENGATE_RATE_LIMIT_REDIS", "TOKENGATE_RATE_LIMIT_LOCKOUT_THRESHOLD", "TOKENGATE_RATE_LIMIT_LOCKOUT_WINDOW",
		"TOKENGATE_TLS_CERT_FILE", "TOKENGATE_TLS_KEY_FILE", "TOKENGATE_OPS_LISTEN", "TOKENGATE_MAX_CONNECTIONS",
		"TOKENGATE_IDLE_TIMEOUT", "TOKENGATE_PORTAL_LISTEN", "TOKENGATE_PORTAL_SESSION_IDLE", "TOKENGATE_PORTAL_SESSION_MAX",
		"TOKENGATE_ADMIN_LISTEN", "TOKENGATE_ADMIN_TLS_CERT_FILE", "TOKENGATE_ADMIN_TLS_KEY_FILE",
		"TOKENGATE_ADMIN_TLS_CLIENT_CA_FILE"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from %v", want, names)
		}
	}
}

func TestValidation(t *testing.T) {
	for body, want := range map[string]string{
		"listen: nope\n":                                                  "listen",
		"issuer: ftp://x\n":                                               "issuer",
		"tokens:\n  format: paseto\n":                                     "tokens.format",
		"tokens:\n  signing_alg: HS256\n":                                 "tokens.signing_alg",
		"tokens:\n  access_ttl: 0s\n":                                     "tokens.access_ttl",
		"store:\n  dsn: mysql://x\n":                                      "store.dsn",
		"endpoints: []\n":                                                 "endpoints",
		"portal:\n  listen: nope\n":                                       "portal.listen",
		"portal:\n  listen: 127.0.0.1:8080\n":                             "portal.listen",
		"portal:\n  session_idle: 10s\n":                                  "portal.session_idle",
		"portal:\n  session_max: 200h\n":                                  "portal.session_max",
		"portal:\n  session_idle: 2h\n  session_max: 1h\n":                "portal.session_max",
		"endpoints:\n  - path: token\n    dialect: oauth2\n":              "must start with /",
		"endpoints:\n  - path: /oauth/revoke\n    dialect: oauth2\n":      "reserved",
		"endpoints:\n  - path: /oauth/revocations\n    dialect: oauth2\n": "reserved",
		"endpoints:\n  - path: /t\n    dialect: oauth2\n  - path: /t\n    dialect: oauth2\n": "twice",
		"log:\n  level: loud\n":                                                  "log.level",
		"tokens:\n  refresh_reuse_grace: 9s\n":                                   "tokens.refresh_reuse_grace",
		"tokens:\n  refresh_reuse_grace: 3m\n":                                   "tokens.refresh_reuse_grace",
		"store:\n  timeout: 1ms\n":                                               "store.timeout",
		"endpoints:\n  - path: /partner/{id/token\n    dialect: oauth2\n":        "braces",
		"rate_limit:\n  redis: http://127.0.0.1:6379/0\n":                        "rate_limit.redis",
		"rate_limit:\n  redis: 127.0.0.1:6379\n":                                 "rate_limit.redis",
		"rate_limit:\n  lockout:\n    threshold: 0\n":                            "rate_limit.lockout.threshold",
		"rate_limit:\n  lockout:\n    base: 0s\n":                                "rate_limit.lockout.base",
		"rate_limit:\n  lockout:\n    base: 1h\n    max: 1m\n":                   "rate_limit.lockout.max",
		"rate_limit:\n  lockout:\n    window: 0s\n":                              "rate_limit.lockout.window",
		"rate_limit:\n  lockout:\n    window: 9000h\n":                           "rate_limit.lockout.window",
		"tls:\n  cert_file: /etc/tokengate/tls.crt\n":                            "tls: set both",
		"tls:\n  key_file: /etc/tokengate/tls.key\n":                             "tls: set both",
		"ops_listen: 9090\n":                                                     "ops_listen",
		"listen: 127.0.0.1:8080\nops_listen: 127.0.0.1:8080\n":                   "ops_listen: must differ",
		"max_connections: -1\n":                                                  "max_connections",
		"idle_timeout: 0s\n":                                                     "idle_timeout",
		"max_body_readers: -1\n":                                                 "max_body_readers",
		"max_connections: 20\nmax_body_readers: 20\n":                            "max_body_readers: must be below max_connections",
		"body_timeout: 10ms\n":                                                   "body_timeout",
		"body_timeout: 2m\n":                                                     "body_timeout",
		"feed:\n  retention: 30s\n":                                              "feed.retention",
		"feed:\n  poll: 1ms\n":                                                   "feed.poll",
		"feed:\n  poll: 1m\n":                                                    "feed.poll",
		"feed:\n  max_subscribers: 0\n":                                          "feed.max_subscribers",
		"admin:\n  listen: 8443\n":                                               "admin.listen",
		"admin:\n  listen: 127.0.0.1:8080\n":                                     "admin.listen: must differ from listen",
		"ops_listen: 127.0.0.1:9\nadmin:\n  listen: 127.0.0.1:9\n":               "admin.listen: must differ from ops_listen",
		"admin:\n  tls:\n    cert_file: a.crt\n    key_file: a.key\n":            "set admin.listen",
		"admin:\n  listen: 127.0.0.1:8443\n  tls:\n    cert_file: a.crt\n":       "admin.tls: set both",
		"admin:\n  listen: 127.0.0.1:8443\n  tls:\n    client_ca_file: ca.pem\n": "admin.tls.client_ca_file",
		"feed:\n  max_subscribers_per_client: 0\n":                               "feed.max_subscribers_per_client",
	} {
		_, err := Load(writeFile(t, body), nil, Overrides{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want mention of %q", body, err, want)
		}
	}
}

// readmeExample is the README's example configuration file.
func readmeExample(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start, end = "<!-- example-config -->\n```yaml\n", "```\n"
	s := string(raw)
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatal("README has no example configuration block")
	}
	body := s[i+len(start):]
	return body[:strings.Index(body, end)]
}

func TestExampleFileInREADMEIsValid(t *testing.T) {
	body := readmeExample(t)
	c, err := Load(writeFile(t, body), nil, Overrides{})
	if err != nil {
		t.Fatalf("the README's example configuration does not load: %v", err)
	}
	if len(c.Endpoints) < 2 {
		t.Errorf("example shows %d endpoints", len(c.Endpoints))
	}
}

func TestIssuerHasOneSpelling(t *testing.T) {
	c, err := Load(writeFile(t, "issuer: https://auth.example.com/\n"), nil, Overrides{})
	if err != nil || c.Issuer != "https://auth.example.com" {
		t.Errorf("issuer %q, %v", c.Issuer, err)
	}
}

func TestSecrets(t *testing.T) {
	const key = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
	c, err := Load(writeFile(t, "secrets:\n  kek_file: /etc/tokengate/kek.hex\n"),
		[]string{`TOKENGATE_SECRETS_OLD_KEK_FILES=[/etc/tokengate/old1.hex, /etc/tokengate/old2.hex]`}, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Secrets.KEKFile != "/etc/tokengate/kek.hex" || !slices.Equal(c.Secrets.OldKEKFiles, []string{"/etc/tokengate/old1.hex", "/etc/tokengate/old2.hex"}) {
		t.Errorf("secrets: %+v", c.Secrets)
	}
	if c, err := Load("", []string{"TOKENGATE_SECRETS_KEK=" + key}, Overrides{}); err != nil || c.Secrets.KEK != key {
		t.Errorf("TOKENGATE_SECRETS_KEK: %v", err)
	}
	for name, env := range map[string][]string{
		"both":      {"TOKENGATE_SECRETS_KEK=" + key, "TOKENGATE_SECRETS_KEK_FILE=/k"},
		"short":     {"TOKENGATE_SECRETS_KEK=" + key[:62]},
		"not hex":   {"TOKENGATE_SECRETS_KEK=" + key[:60] + "zzzz"},
		"empty old": {"TOKENGATE_SECRETS_KEK=" + key, "TOKENGATE_SECRETS_OLD_KEK_FILES=['']"},
	} {
		_, err := Load("", env, Overrides{})
		if err == nil || !strings.Contains(err.Error(), "secrets") {
			t.Errorf("%s: error %v, want one about secrets", name, err)
			continue
		}
		if strings.Contains(err.Error(), key[:60]) || strings.Contains(strings.ToLower(err.Error()), strings.ToLower(key[:16])) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}

func TestRateLimitSettings(t *testing.T) {
	c, err := Load("", nil, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if lo := c.RateLimit.Lockout; lo.Threshold != 5 || lo.Base != time.Second || lo.Max != 15*time.Minute || lo.Window != 15*time.Minute || c.RateLimit.Redis != "" {
		t.Errorf("rate_limit defaults: %+v", c.RateLimit)
	}
	env := []string{"TOKENGATE_RATE_LIMIT_REDIS=redis://:pw@127.0.0.1:6379/2", "TOKENGATE_RATE_LIMIT_LOCKOUT_THRESHOLD=3",
		"TOKENGATE_RATE_LIMIT_LOCKOUT_MAX=1h", "TOKENGATE_TEST_REDIS=redis://127.0.0.1:6379/0"}
	c, err = Load(writeFile(t, "rate_limit:\n  lockout:\n    base: 2s\n"), env, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.RateLimit; r.Redis != "redis://:pw@127.0.0.1:6379/2" || r.Lockout.Threshold != 3 || r.Lockout.Base != 2*time.Second || r.Lockout.Max != time.Hour || r.Lockout.Window != 15*time.Minute {
		t.Errorf("rate_limit from file and environment: %+v", r)
	}
	_, err = Load(writeFile(t, "rate_limit:\n  redis: \"redis://u:s3cret@[::1\"\n"), nil, Overrides{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a malformed Redis URL: %v (must be refused without quoting it)", err)
	}
}

func TestFeedSettings(t *testing.T) {
	c, err := Load("", nil, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Feed; f.Retention != 24*time.Hour || f.Poll != 200*time.Millisecond || f.MaxSubscribers != 1000 || f.MaxSubscribersPerClient != 32 {
		t.Errorf("feed defaults: %+v", f)
	}
	env := []string{"TOKENGATE_FEED_RETENTION=48h", "TOKENGATE_FEED_MAX_SUBSCRIBERS=50", "TOKENGATE_FEED_MAX_SUBSCRIBERS_PER_CLIENT=3"}
	c, err = Load(writeFile(t, "feed:\n  poll: 500ms\n"), env, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Feed; f.Retention != 48*time.Hour || f.Poll != 500*time.Millisecond || f.MaxSubscribers != 50 ||
		f.MaxSubscribersPerClient != 3 {
		t.Errorf("feed from file and environment: %+v", f)
	}
}

func TestTLSOpsAndConnectionSettings(t *testing.T) {
	c, err := Load("", nil, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.Enabled() || c.OpsListen != "" || c.MaxConnections != 0 || c.IdleTimeout != 30*time.Second {
		t.Errorf("defaults: tls %+v, ops_listen %q, max_connections %d, idle_timeout %v", c.TLS, c.OpsListen, c.MaxConnections, c.IdleTimeout)
	}
	p := writeFile(t, "listen: 0.0.0.0:8443\ntls:\n  cert_file: /etc/tokengate/tls.crt\n  key_file: /etc/tokengate/tls.key\n"+
		"ops_listen: 127.0.0.1:9090\nmax_connections: 5000\nidle_timeout: 1m\n")
	c, err = Load(p, []string{"TOKENGATE_MAX_CONNECTIONS=6000"}, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.CertFile != "/etc/tokengate/tls.crt" || c.TLS.KeyFile != "/etc/tokengate/tls.key" || c.OpsListen != "127.0.0.1:9090" ||
		c.MaxConnections != 6000 || c.IdleTimeout != time.Minute {
		t.Errorf("loaded %+v", c)
	}
	if c.Issuer != "https://0.0.0.0:8443" {
		t.Errorf("default issuer with TLS is %q, want https", c.Issuer)
	}
	if c.MaxBodyReaders != 0 || c.BodyTimeout != 5*time.Second {
		t.Errorf("defaults: max_body_readers %d, body_timeout %v", c.MaxBodyReaders, c.BodyTimeout)
	}
	c, err = Load(writeFile(t, "max_connections: 100\nmax_body_readers: 99\nbody_timeout: 2s\n"), []string{"TOKENGATE_BODY_TIMEOUT=3s"}, Overrides{})
	if err != nil || c.MaxBodyReaders != 99 || c.BodyTimeout != 3*time.Second {
		t.Errorf("loaded max_body_readers %d, body_timeout %v: %v", c.MaxBodyReaders, c.BodyTimeout, err)
	}
}

func TestRemovedSettingSaysWhatReplacedIt(t *testing.T) {
	_, err := Load(writeFile(t, "pprof_addr: 127.0.0.1:6060\n"), nil, Overrides{})
	if err == nil || !strings.Contains(err.Error(), "replaced by ops_listen") {
		t.Errorf("file: %v", err)
	}
	_, err = Load("", []string{"TOKENGATE_PPROF_ADDR=127.0.0.1:6060"}, Overrides{})
	if err == nil || !strings.Contains(err.Error(), "replaced by ops_listen") {
		t.Errorf("environment: %v", err)
	}
}

// TestGatewayRoutesKeepTheVerifyEndpoint: a gateway route cannot cover
// the SNAP verify endpoint, and no token endpoint can be mounted on it.
func TestGatewayRoutesKeepTheVerifyEndpoint(t *testing.T) {
	route := "gateway:\n  routes:\n    - prefix: %s\n      upstream: http://127.0.0.1:9000\n      service_code: 27\n"
	for _, prefix := range []string{"/snap/", "/snap/v1/", "/snap/v1/verify", "/sn"} {
		_, err := Load(writeFile(t, strings.ReplaceAll(route, "%s", prefix)), nil, Overrides{})
		if err == nil || !strings.Contains(err.Error(), "SNAP verify endpoint") {
			t.Errorf("prefix %s: %v", prefix, err)
		}
	}
	if _, err := Load(writeFile(t, strings.ReplaceAll(route, "%s", "/snap/v2/")), nil, Overrides{}); err != nil {
		t.Errorf("prefix /snap/v2/: %v", err)
	}
	_, err := Load(writeFile(t, "endpoints:\n  - path: /snap/v1/verify\n    dialect: oauth2\n"), nil, Overrides{})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("token endpoint on the verify path: %v", err)
	}
}

// An upstream URL that is refused is named without its password.
func TestGatewayUpstreamErrorHidesPassword(t *testing.T) {
	route := "gateway:\n  routes:\n    - prefix: /api/\n      upstream: %s\n      service_code: 27\n"
	for _, up := range []string{"ftp://user:hunter2secret@host", "http://user:hunter2secret@host:bad port/", "https://user:hunter2secret@"} {
		_, err := Load(writeFile(t, strings.ReplaceAll(route, "%s", up)), nil, Overrides{})
		if err == nil || !strings.Contains(err.Error(), "upstream") {
			t.Errorf("upstream %s accepted: %v", up, err)
		} else if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("the refusal of an upstream shows its password: %v", err)
		}
	}
}

// TestExampleFileInREADMEIsComplete fails when a setting is missing from
// the README's example configuration, which says it shows every one.
func TestExampleFileInREADMEIsComplete(t *testing.T) {
	body := readmeExample(t)
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, typ reflect.Type, m map[string]any)
	walk = func(path string, typ reflect.Type, m map[string]any) {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			v, ok := m[name]
			if !ok {
				t.Errorf("the README's example configuration does not show %s%s", path, name)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				sub, _ := v.(map[string]any)
				walk(path+name+".", f.Type, sub)
			}
		}
	}
	walk("", reflect.TypeFor[Config](), doc)
}

func TestGoGCPercent(t *testing.T) {
	c, err := Load("", nil, Overrides{})
	if err != nil || c.GoGCPercent != 400 {
		t.Fatalf("default go_gc_percent %d: %v", c.GoGCPercent, err)
	}
	for v, ok := range map[string]bool{"25": true, "10000": true, "0": false, "24": false, "10001": false, "-1": false} {
		c, err := Load(writeFile(t, "go_gc_percent: "+v+"\n"), nil, Overrides{})
		if ok && (err != nil || strconv.Itoa(c.GoGCPercent) != v) {
			t.Errorf("go_gc_percent: %s refused or lost: %d, %v", v, c.GoGCPercent, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "go_gc_percent")) {
			t.Errorf("go_gc_percent: %s accepted: %v", v, err)
		}
	}
}
