package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
)

var (
	snapKeyOnce sync.Once
	snapKey     *rsa.PrivateKey
)

// testSnapKey is one RSA-2048 key for the whole test binary (generation is slow).
func testSnapKey(t *testing.T) *rsa.PrivateKey {
	snapKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		snapKey = k
	})
	return snapKey
}

// writeKeys writes the key pair as PEM files and returns their paths.
func writeKeys(t *testing.T, k *rsa.PrivateKey) (privPath, pubPath string) {
	dir := t.TempDir()
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPath = filepath.Join(dir, "public.pem")
	privPath = filepath.Join(dir, "private.pem")
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600)
	os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
	return privPath, pubPath
}

var (
	tsMu   sync.Mutex
	lastTS time.Time
)

// uniqueTimestamp is a fresh X-TIMESTAMP with milliseconds, never the same
// twice, so no two test requests share a signature.
func uniqueTimestamp() string {
	tsMu.Lock()
	defer tsMu.Unlock()
	now := time.Now().Truncate(time.Millisecond)
	if !now.After(lastTS) {
		now = lastTS.Add(time.Millisecond)
	}
	lastTS = now
	return now.UTC().Format("2006-01-02T15:04:05.000Z")
}

// snapEndpoints adds two SNAP token endpoints, /v1.0/access-token/b2b
// with replay refusal (replay_protection) and /nicepay/... without, and a
// NeoX endpoint.
func snapEndpoints(c *config.Config) {
	c.Endpoints = append(c.Endpoints,
		config.Endpoint{Path: "/v1.0/access-token/b2b", Dialect: "snap-b2b", Options: map[string]any{"replay_protection": true}},
		config.Endpoint{Path: "/nicepay/v1.0/access-token/b2b", Dialect: "snap-b2b", AccessTTL: 30 * time.Minute},
		config.Endpoint{Path: "/v2/auth/oauth2/token", Dialect: "neox", DefaultScopes: []string{"disbursement"}})
}

func (e *env) snapRequest(path, clientID, ts, sig, body string) *response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TIMESTAMP", ts)
	req.Header.Set("X-CLIENT-KEY", clientID)
	req.Header.Set("X-SIGNATURE", sig)
	return e.do(req)
}

func TestSNAPB2BThroughTheServer(t *testing.T) {
	e := start(t, snapEndpoints)
	key := testSnapKey(t)
	privPath, pubPath := writeKeys(t, key)
	id, secret := e.createClient("--name", "nicepay merchant", "--grant", "client_credentials", "--scope", "payments",
		"--snap-public-key", pubPath, "--auth-method", "snap_signature", "--auth-method", "client_secret_basic")
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")
	body := `{"grantType":"client_credentials","additionalInfo":{}}`

	sign := func(ts string) string {
		sig, err := snap.Sign(key, id, ts)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}

	ts := snap.Timestamp(time.Now())
	r := e.snapRequest("/v1.0/access-token/b2b", id, ts, sign(ts), body)
	if r.status != 200 || r.str("responseCode") != "2007300" || r.str("responseMessage") != "Successful" ||
		r.str("tokenType") != "Bearer" || r.str("expiresIn") != "900" || r.str("accessToken") == "" {
		t.Fatalf("SNAP success: %d %s", r.status, r.body)
	}
	if info, ok := r.json["additionalInfo"].(map[string]any); !ok || len(info) != 0 {
		t.Errorf("additionalInfo: %s", r.body)
	}
	if r.header.Get("X-CLIENT-KEY") != id || r.header.Get("X-TIMESTAMP") == "" {
		t.Errorf("response headers %v", r.header)
	}
	// Interoperability: the SNAP token is a token like any other.
	in := e.introspect(r.str("accessToken"), rsID, rsSecret)
	if in.json["active"] != true || in.str("client_id") != id {
		t.Errorf("SNAP token through RFC 7662: %s", in.body)
	}
	// The same client uses the RFC 6749 endpoint too.
	e.token(url.Values{"grant_type": {"client_credentials"}}, id, secret)

	t.Run("replay refused", func(t *testing.T) {
		r := e.snapRequest("/v1.0/access-token/b2b", id, ts, sign(ts), body)
		if r.status != 401 || r.str("responseCode") != "4017300" || !strings.Contains(r.str("responseMessage"), "Replay") {
			t.Errorf("replay: %d %s", r.status, r.body)
		}
	})
	t.Run("endpoint TTL and field spellings", func(t *testing.T) {
		ts := uniqueTimestamp()
		r := e.snapRequest("/nicepay/v1.0/access-token/b2b", id, ts, sign(ts), `{"grant_type":"CLIENT_CREDENTIALS"}`)
		if r.status != 200 || r.str("expiresIn") != "1800" {
			t.Errorf("nicepay endpoint: %d %s", r.status, r.body)
		}
	})
	t.Run("revocable through RFC 7009", func(t *testing.T) {
		ts := uniqueTimestamp()
		tok := e.snapRequest("/v1.0/access-token/b2b", id, ts, sign(ts), body).str("accessToken")
		if rr := e.postForm("/oauth/revoke", url.Values{"token": {tok}}, id, secret); rr.status != 200 {
			t.Fatalf("revoke: %d %s", rr.status, rr.body)
		}
		if e.active(tok, rsID, rsSecret) {
			t.Error("revoked SNAP token still active")
		}
	})
	t.Run("error codes", func(t *testing.T) {
		other, _ := e.createClient("--name", "no key", "--grant", "client_credentials")
		fresh := uniqueTimestamp
		stale := snap.Timestamp(time.Now().Add(-10 * time.Minute))
		cases := []struct {
			name, client, ts, sig, body, code string
		}{
			{"missing timestamp", id, "", "c2ln", body, "4007302"},
			{"bad timestamp", id, "yesterday", "c2ln", body, "4007301"},
			{"missing grantType", id, "", "", `{"additionalInfo":{}}`, "4007302"},
			{"wrong grantType", id, "", "", `{"grantType":"password"}`, "4007301"},
			{"invalid signature", id, "", "c2lnbmF0dXJl", body, "4017300"},
			{"unknown client", "nobody", "", "", body, "4017300"},
			{"no key registered", other, "", "", body, "4017300"},
			{"stale timestamp", id, stale, "", body, "4017300"},
		}
		for _, c := range cases {
			ts := c.ts
			if ts == "" && c.name != "missing timestamp" {
				ts = fresh()
			}
			sig := c.sig
			if sig == "" {
				s, _ := snap.Sign(key, c.client, ts)
				sig = s
			}
			r := e.snapRequest("/v1.0/access-token/b2b", c.client, ts, sig, c.body)
			if r.str("responseCode") != c.code || strconv.Itoa(r.status) != r.str("responseCode")[:3] || r.str("accessToken") != "" {
				t.Errorf("%s: %d %s, want %s", c.name, r.status, r.body, c.code)
			}
		}
		e.mustRun("", "client", "disable", id)
		eventually(t, "disabled SNAP client refused", func() bool {
			ts := fresh()
			r := e.snapRequest("/v1.0/access-token/b2b", id, ts, sign(ts), body)
			return r.str("responseCode") == "4017300" && strings.Contains(r.str("responseMessage"), "disabled")
		})
	})
	t.Run("snap sign helper", func(t *testing.T) {
		e.mustRun("", "client", "enable", id)
		out := e.mustRun("", "snap", "sign", "--key", privPath, "--client-id", id, "--json")
		var h map[string]string
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			t.Fatal(err)
		}
		eventually(t, "re-enabled client served", func() bool {
			out := e.mustRun("", "snap", "sign", "--key", privPath, "--client-id", id, "--json")
			json.Unmarshal([]byte(out), &h)
			return e.snapRequest("/v1.0/access-token/b2b", id, h["X-TIMESTAMP"], h["X-SIGNATURE"], body).status == 200
		})
	})
}

func TestSNAPKeyRegistration(t *testing.T) {
	e := start(t, snapEndpoints)
	id, _ := e.createClient("--name", "m", "--grant", "client_credentials")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, smallPub := writeKeys(t, small)
	if _, errOut, code := e.run("", "client", "set-snap-key", id, smallPub); code == 0 || !strings.Contains(errOut, "2048") {
		t.Errorf("1024-bit key accepted: %q", errOut)
	}
	_, pub := writeKeys(t, testSnapKey(t))
	e.mustRun("", "client", "set-snap-key", id, pub)
	var shown map[string]any
	json.Unmarshal([]byte(e.mustRun("", "client", "show", id, "--json")), &shown)
	key, _ := shown["snap_public_key"].(string)
	fp, _ := shown["snap_key_fingerprint"].(string)
	if !strings.HasPrefix(key, "-----BEGIN PUBLIC KEY-----") || len(fp) != 64 {
		t.Errorf("client show: %v", shown)
	}
}

func TestNeoXThroughTheServer(t *testing.T) {
	e := start(t, snapEndpoints)
	id, secret := e.createClient("--name", "neox platform", "--grant", "client_credentials", "--scope", "disbursement",
		"--scope", "collections", "--access-ttl", "10m")
	offID, offSecret := e.createClient("--name", "off", "--grant", "client_credentials", "--scope", "disbursement")
	e.mustRun("", "client", "disable", offID)
	rsID, rsSecret := e.createClient("--name", "resource server", "--grant", "client_credentials", "--can-introspect")

	post := func(body string) *response {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v2/auth/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return e.do(req)
	}
	cred := func(id, secret, scope string) string {
		b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "scope": scope})
		return string(b)
	}
	r := post(`{"grant_type":"client_credentials","client_id":"` + id + `","client_secret":"` + secret + `"}`)
	if r.status != 200 || r.json["code"] != float64(1) || r.str("message") != "SUCCESS" || r.str("token_type") != "bearer" ||
		r.json["expires_in"] != float64(600) {
		t.Fatalf("NeoX success: %d %s", r.status, r.body)
	}
	if in := e.introspect(r.str("access_token"), rsID, rsSecret); in.str("scope") != "disbursement" {
		t.Errorf("endpoint default scope not granted: %s", in.body)
	}
	type errorCase struct {
		name, body string
		code       int
	}
	cases := []errorCase{
		{"missing client_secret", `{"grant_type":"client_credentials","client_id":"` + id + `"}`, 400},
		{"malformed body", `{"grant_type":`, 400},
		{"unknown client", cred("nobody", secret, "disbursement"), 401},
		{"disabled client", cred(offID, offSecret, "disbursement"), 403},
		{"scope not allowed", cred(id, secret, "payouts"), 403},
	}
	for i, wrong := range nearMisses(secret) {
		cases = append(cases, errorCase{fmt.Sprintf("wrong secret %d", i), cred(id, wrong, "disbursement"), 401})
	}
	for _, c := range cases {
		r := post(c.body)
		if r.status != c.code || r.json["code"] != float64(c.code) || r.str("access_token") != "" || r.str("message") == "" {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}
}

// TestRateLimitInEveryDialect: a client over its limit gets each dialect's
// own 429, and a forged request naming it does not spend its budget.
func TestRateLimitInEveryDialect(t *testing.T) {
	e := start(t, func(c *config.Config) {
		snapEndpoints(c)
		c.RateLimit.PerClient, c.RateLimit.Burst = 0.01, 2
	})
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	mk := func() (string, string) {
		return e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "disbursement", "--snap-public-key", pub, "--auth-method", "snap_signature,client_secret_basic,client_secret_post")
	}
	cc := url.Values{"grant_type": {"client_credentials"}}

	id, secret := mk()
	for i := range 5 { // forged: a near miss of the secret, must not count
		e.postForm("/oauth/token", cc, id, nearMiss(secret, i))
	}
	e.token(cc, id, secret)
	e.token(cc, id, secret)
	r := e.postForm("/oauth/token", cc, id, secret)
	// Retry-After is the real wait: one request at 0.01 a second is 100 s.
	if r.status != 429 || r.str("error") != "temporarily_unavailable" || r.header.Get("Retry-After") != "100" {
		t.Errorf("oauth2 over the limit: %d %s %v", r.status, r.body, r.header)
	}

	id, _ = mk()
	var last *response
	for range 3 {
		ts := uniqueTimestamp()
		sig, _ := snap.Sign(key, id, ts)
		last = e.snapRequest("/v1.0/access-token/b2b", id, ts, sig, `{"grantType":"client_credentials"}`)
	}
	if last.status != 429 || last.str("responseCode") != "4297300" || last.str("responseMessage") != "Too Many Requests" {
		t.Errorf("SNAP over the limit: %d %s", last.status, last.body)
	}

	id, secret = mk()
	body, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": id, "client_secret": secret})
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v2/auth/oauth2/token", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		last = e.do(req)
	}
	if last.status != 429 || last.json["code"] != float64(429) {
		t.Errorf("NeoX over the limit: %d %s", last.status, last.body)
	}
}

// TestSNAPFailedRequestSpendsNoNonce: the signature is used up only with
// the token it buys, so a merchant can resend a request that failed for
// another reason, and a replay after success is still refused.
func TestSNAPFailedRequestSpendsNoNonce(t *testing.T) {
	e := start(t, snapEndpoints)
	key := testSnapKey(t)
	_, pub := writeKeys(t, key)
	id, _ := e.createClient("--name", "m", "--grant", "client_credentials", "--scope", "payments", "--default-scope", "payments",
		"--snap-public-key", pub, "--auth-method", "snap_signature,client_secret_basic,client_secret_post")
	e.mustRun("", "client", "update", id, "--grant", "password")
	ts := uniqueTimestamp()
	sig, _ := snap.Sign(key, id, ts)
	body := `{"grantType":"client_credentials"}`
	eventually(t, "grant change seen", func() bool {
		r := e.snapRequest("/v1.0/access-token/b2b", id, ts, sig, body)
		return r.str("responseCode") == "4017300" && strings.Contains(r.str("responseMessage"), "Grant not allowed")
	})
	e.mustRun("", "client", "update", id, "--grant", "client_credentials")
	eventually(t, "the same signed request succeeds once the client may use the grant", func() bool {
		return e.snapRequest("/v1.0/access-token/b2b", id, ts, sig, body).status == 200
	})
	if r := e.snapRequest("/v1.0/access-token/b2b", id, ts, sig, body); r.str("responseCode") != "4017300" || !strings.Contains(r.str("responseMessage"), "Replay") {
		t.Errorf("replay after success: %d %s", r.status, r.body)
	}
}
