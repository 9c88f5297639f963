package snap

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

// allCodes is every responseCode the B2B dialect can emit.
var allCodes = []string{"2007300", "4007300", "4007301", "4007302", "4017300", "4297300", "5007300", "5047300"}

type b2bEnv struct {
	d      dialect.Dialect
	clock  *clock
	nonces *memNonces
	engine *fakeEngine
}

func newB2BEnv(t testing.TB, options map[string]any) *b2bEnv {
	t.Helper()
	c := &clock{t: t0}
	n := newMemNonces(c.Now)
	d, err := NewB2B(options, dialect.Deps{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &b2bEnv{d: d, clock: c, nonces: n, engine: &fakeEngine{nonces: n, auth: NewAuthenticator(nil), now: c.Now, clients: map[string]*oauth.Client{
		testClientID: {ID: testClientID, Grants: []string{oauth.GrantClientCredentials}, PublicKeyPEM: spkiPEM(t, &clientKey().PublicKey)},
	}}}
}

// checkEnvelope asserts what every SNAP response carries, and returns the
// body's responseCode and responseMessage.
func checkEnvelope(t *testing.T, w *httptest.ResponseRecorder) (code, msg string) {
	t.Helper()
	m := decodeBody(t, w)
	code, _ = m["responseCode"].(string)
	msg, _ = m["responseMessage"].(string)
	if len(code) != 7 || code[3:5] != "73" {
		t.Fatalf("responseCode %q is not a service-73 SNAP code; body %s", code, w.Body)
	}
	if want := strconv.Itoa(w.Code); code[:3] != want {
		t.Errorf("HTTP status %d but responseCode %s", w.Code, code)
	}
	h := w.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("headers %v", h)
	}
	if _, err := ParseTimestamp(h.Get(HeaderTimestamp)); err != nil {
		t.Errorf("response X-TIMESTAMP %q: %v", h.Get(HeaderTimestamp), err)
	}
	if w.Code != http.StatusOK {
		if len(m) != 2 {
			t.Errorf("error body has extra members: %s", w.Body)
		}
		if h.Get(HeaderClientKey) != "" {
			t.Errorf("error response echoes X-CLIENT-KEY")
		}
	}
	return code, msg
}

func TestB2BResponseCodes(t *testing.T) {
	key := clientKey()
	sign := func(clientID, ts string) string {
		s, err := Sign(key, clientID, ts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	at := func(d time.Duration) string { return Timestamp(t0.Add(d)) }
	otherSig, _ := Sign(otherKey(), testClientID, ts0)

	type tc struct {
		name    string
		options map[string]any // the endpoint's; nil: none
		method  string
		ts      string // default ts0
		body    *string
		edit    func(h http.Header)
		env     func(e *b2bEnv)
		code    string
		message string
	}
	str := func(s string) *string { return &s }
	cases := []tc{
		// 2007300
		{name: "grantType", code: "2007300", message: "Successful"},
		{name: "grant_type spelling", body: str(`{"grant_type":"client_credentials"}`), code: "2007300", message: "Successful"},
		{name: "upper-case value", body: str(`{"grantType":"CLIENT_CREDENTIALS"}`), code: "2007300", message: "Successful"},
		{name: "both spellings agree", body: str(`{"grantType":"client_credentials","grant_type":"Client_Credentials"}`), code: "2007300", message: "Successful"},
		{name: "additionalInfo null", body: str(`{"grantType":"client_credentials","additionalInfo":null}`), code: "2007300", message: "Successful"},
		{name: "unknown member ignored", body: str(`{"grantType":"client_credentials","extra":[1,{"a":2}]}`), code: "2007300", message: "Successful"},
		{name: "charset parameter", edit: func(h http.Header) { h.Set("Content-Type", "application/json; charset=utf-8") }, code: "2007300", message: "Successful"},
		{name: "fractional Z timestamp", ts: "2024-12-31T03:11:40.359Z", code: "2007300", message: "Successful"},
		{name: "window edge past", ts: at(-5 * time.Minute), code: "2007300", message: "Successful"},
		{name: "window edge future", ts: at(5 * time.Minute), code: "2007300", message: "Successful"},
		{name: "UTC offset form", ts: Timestamp(t0.UTC()), code: "2007300", message: "Successful"},

		// 4007300
		{name: "GET", method: http.MethodGet, code: "4007300", message: "Bad Request"},
		{name: "body too large", body: str(`{"grantType":"client_credentials","pad":"` + strings.Repeat("a", 64<<10) + `"}`), code: "4007300", message: "Bad Request"},
		{name: "duplicate member", body: str(`{"grantType":"client_credentials","grantType":"client_credentials"}`), code: "4007300", message: "Bad Request"},

		// 4007301
		{name: "timestamp without offset", ts: "2024-12-31T10:11:40", code: "4007301", message: "Invalid Field Format {X-TIMESTAMP}"},
		{name: "timestamp with space", ts: "2024-12-31 10:11:40+07:00", code: "4007301", message: "Invalid Field Format {X-TIMESTAMP}"},
		{name: "timestamp lower-case", ts: "2024-12-31t10:11:40z", code: "4007301", message: "Invalid Field Format {X-TIMESTAMP}"},
		{name: "timestamp compact offset", ts: "2024-12-31T10:11:40+0700", code: "4007301", message: "Invalid Field Format {X-TIMESTAMP}"},
		{name: "timestamp twice", edit: func(h http.Header) { h.Add(HeaderTimestamp, ts0) }, code: "4007301", message: "Invalid Field Format {X-TIMESTAMP}"},
		{name: "bad JSON", body: str(`{"grantType":`), code: "4007301", message: "Invalid Field Format {body}"},
		{name: "JSON array", body: str(`["client_credentials"]`), code: "4007301", message: "Invalid Field Format {body}"},
		{name: "trailing data", body: str(`{"grantType":"client_credentials"} {}`), code: "4007301", message: "Invalid Field Format {body}"},
		{name: "other grant", body: str(`{"grantType":"password"}`), code: "4007301", message: "Invalid Field Format {grantType}"},
		{name: "grantType number", body: str(`{"grantType":1}`), code: "4007301", message: "Invalid Field Format {grantType}"},
		{name: "grant_type number", body: str(`{"grant_type":true}`), code: "4007301", message: "Invalid Field Format {grantType}"},
		{name: "spellings conflict", body: str(`{"grantType":"client_credentials","grant_type":"password"}`), code: "4007301", message: "Invalid Field Format {grantType}"},
		{name: "additionalInfo not object", body: str(`{"grantType":"client_credentials","additionalInfo":"x"}`), code: "4007301", message: "Invalid Field Format {additionalInfo}"},
		{name: "signature not base64", edit: func(h http.Header) { h.Set(HeaderSignature, "not base64!") }, code: "4007301", message: "Invalid Field Format {X-SIGNATURE}"},
		{name: "signature too long", edit: func(h http.Header) { h.Set(HeaderSignature, strings.Repeat("A", 4096)) }, code: "4007301", message: "Invalid Field Format {X-SIGNATURE}"},
		{name: "client key with space", edit: func(h http.Header) { h.Set(HeaderClientKey, "normal test") }, code: "4007301", message: "Invalid Field Format {X-CLIENT-KEY}"},
		{name: "content type", edit: func(h http.Header) { h.Set("Content-Type", "application/x-www-form-urlencoded") }, code: "4007301", message: "Invalid Field Format {Content-Type}"},

		// 4007302
		{name: "no X-TIMESTAMP", edit: func(h http.Header) { h.Del(HeaderTimestamp) }, code: "4007302", message: "Invalid Mandatory Field {X-TIMESTAMP}"},
		{name: "no X-CLIENT-KEY", edit: func(h http.Header) { h.Del(HeaderClientKey) }, code: "4007302", message: "Invalid Mandatory Field {X-CLIENT-KEY}"},
		{name: "no X-SIGNATURE", edit: func(h http.Header) { h.Del(HeaderSignature) }, code: "4007302", message: "Invalid Mandatory Field {X-SIGNATURE}"},
		{name: "empty X-SIGNATURE", edit: func(h http.Header) { h.Set(HeaderSignature, " ") }, code: "4007302", message: "Invalid Mandatory Field {X-SIGNATURE}"},
		{name: "no Content-Type", edit: func(h http.Header) { h.Del("Content-Type") }, code: "4007302", message: "Invalid Mandatory Field {Content-Type}"},
		{name: "no grantType", body: str(`{"additionalInfo":{}}`), code: "4007302", message: "Invalid Mandatory Field {grantType}"},
		{name: "empty grantType", body: str(`{"grantType":""}`), code: "4007302", message: "Invalid Mandatory Field {grantType}"},
		{name: "empty body", body: str(""), code: "4007302", message: "Invalid Mandatory Field {grantType}"},

		// 4017300
		{name: "stale past", ts: at(-5*time.Minute - time.Second), code: "4017300", message: "Unauthorized. [Stale timestamp]"},
		{name: "stale future", ts: at(5*time.Minute + time.Second), code: "4017300", message: "Unauthorized. [Stale timestamp]"},
		{name: "stale future by 1ms", ts: t0.Add(5*time.Minute + time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z07:00"), code: "4017300", message: "Unauthorized. [Stale timestamp]"},
		{name: "unknown client", edit: func(h http.Header) { h.Set(HeaderClientKey, "nobody"); h.Set(HeaderSignature, sign("nobody", ts0)) }, code: "4017300", message: "Unauthorized. [Unknown client]"},
		{name: "signed by another key", edit: func(h http.Header) { h.Set(HeaderSignature, otherSig) }, code: "4017300", message: "Unauthorized. [Invalid signature]"},
		{name: "signature of another timestamp", edit: func(h http.Header) { h.Set(HeaderSignature, sign(testClientID, at(time.Second))) }, code: "4017300", message: "Unauthorized. [Invalid signature]"},
		{name: "signature truncated", edit: func(h http.Header) { h.Set(HeaderSignature, "AAAA") }, code: "4017300", message: "Unauthorized. [Invalid signature]"},
		{name: "no key registered", env: func(e *b2bEnv) { e.engine.clients[testClientID].PublicKeyPEM = "" }, code: "4017300", message: "Unauthorized. [No public key registered]"},
		{name: "unusable key registered", env: func(e *b2bEnv) { e.engine.clients[testClientID].PublicKeyPEM = "garbage" }, code: "4017300", message: "Unauthorized. [No public key registered]"},
		{name: "disabled client", env: func(e *b2bEnv) { e.engine.clients[testClientID].Disabled = true }, code: "4017300", message: "Unauthorized. [Client disabled]"},
		{name: "client registered for secrets only", env: func(e *b2bEnv) {
			e.engine.clients[testClientID].AuthMethods = []string{oauth.AuthSecretBasic, oauth.AuthSecretPost}
		}, code: "4017300", message: "Unauthorized. [Client not registered for SNAP signatures]"},
		{name: "client registered for another endpoint", env: func(e *b2bEnv) {
			e.engine.clients[testClientID].Endpoints = []string{"/snap/other"}
		}, code: "4017300", message: "Unauthorized. [Client not registered for this endpoint]"},
		{name: "client registered for this endpoint", env: func(e *b2bEnv) {
			e.engine.clients[testClientID].Endpoints = []string{"/snap/other", "/v1.0/access-token/b2b"}
		}, code: "2007300", message: "Successful"},
		{name: "grant not allowed", env: func(e *b2bEnv) { e.engine.clients[testClientID].Grants = nil }, code: "4017300", message: "Unauthorized. [Grant not allowed]"},
		{name: "scope not allowed", env: func(e *b2bEnv) { e.engine.inject = oauth.InvalidScope("scope x not allowed") }, code: "4017300", message: "Unauthorized. [Scope not allowed]"},
		{name: "replayed", options: replayOn, env: func(e *b2bEnv) {
			w := e.engine.serve(e.d, snapRequest(t, key, testClientID, ts0, okBody, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("first request: %d %s", w.Code, w.Body)
			}
		}, code: "4017300", message: "Unauthorized. [Replayed request]"},
		{name: "same request again without replay_protection", env: func(e *b2bEnv) {
			w := e.engine.serve(e.d, snapRequest(t, key, testClientID, ts0, okBody, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("first request: %d %s", w.Code, w.Body)
			}
		}, code: "2007300", message: "Successful"},

		// 4297300
		{name: "rate limited", env: func(e *b2bEnv) { e.engine.inject = oauth.RateLimited("too many requests", time.Second) }, code: "4297300", message: "Too Many Requests"},

		// 5007300
		{name: "internal", env: func(e *b2bEnv) { e.engine.inject = oauth.ServerError() }, code: "5007300", message: "General Error"},

		// 5047300
		{name: "nonce store unavailable", options: replayOn, env: func(e *b2bEnv) { e.nonces.err = fmt.Errorf("dial: %w", oauth.ErrUnavailable) }, code: "5047300", message: "Timeout"},
		{name: "nonce store deadline", options: replayOn, env: func(e *b2bEnv) { e.nonces.err = fmt.Errorf("query: %w", context.DeadlineExceeded) }, code: "5047300", message: "Timeout"},
		{name: "engine timeout", env: func(e *b2bEnv) { e.engine.inject = oauth.Timeout() }, code: "5047300", message: "Timeout"},
		{name: "engine unavailable", env: func(e *b2bEnv) { e.engine.inject = oauth.Unavailable() }, code: "5047300", message: "Timeout"},
		{name: "engine overloaded", env: func(e *b2bEnv) { e.engine.inject = oauth.Overloaded("queue full", time.Second) }, code: "5047300", message: "Timeout"},
	}

	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newB2BEnv(t, c.options)
			if c.env != nil {
				c.env(env)
			}
			ts := c.ts
			if ts == "" {
				ts = ts0
			}
			body := okBody
			if c.body != nil {
				body = *c.body
			}
			r := snapRequest(t, key, testClientID, ts, body, c.edit)
			if c.method != "" {
				r.Method = c.method
			}
			w := env.engine.serve(env.d, r)
			code, msg := checkEnvelope(t, w)
			if code != c.code || msg != c.message {
				t.Fatalf("got %s %q, want %s %q", code, msg, c.code, c.message)
			}
			seen[code] = true
			if c.method == http.MethodGet && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q", w.Header().Get("Allow"))
			}
			if code == "2007300" && w.Header().Get(HeaderClientKey) != testClientID {
				t.Errorf("X-CLIENT-KEY = %q", w.Header().Get(HeaderClientKey))
			}
		})
	}
	for _, code := range allCodes {
		if !seen[code] {
			t.Errorf("no case produced %s", code)
		}
	}
}

func TestB2BSuccessBodyExact(t *testing.T) {
	env := newB2BEnv(t, nil)
	w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil))
	want := `{"responseCode":"2007300","responseMessage":"Successful","accessToken":"xy8DUzzavV9bwDxxrxCB89tsuvk4mf4kx4lgfe4acrvxr7xderhbe1","tokenType":"Bearer","expiresIn":"900","additionalInfo":{}}`
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s\nwant %s", w.Code, w.Body, want)
	}
	h := w.Header()
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache",
		HeaderTimestamp: ts0, HeaderClientKey: testClientID,
	} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
}

func TestB2BErrorBodyExact(t *testing.T) {
	env := newB2BEnv(t, nil)
	w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, func(h http.Header) { h.Del(HeaderTimestamp) }))
	want := `{"responseCode":"4007302","responseMessage":"Invalid Mandatory Field {X-TIMESTAMP}"}`
	if w.Code != http.StatusBadRequest || w.Body.String() != want {
		t.Fatalf("got %d %s\nwant %s", w.Code, w.Body, want)
	}
}

func TestB2BDecodedRequest(t *testing.T) {
	env := newB2BEnv(t, nil)
	req, e := env.d.DecodeTokenRequest(snapRequest(t, clientKey(), testClientID, ts0, okBody, nil))
	if e != nil {
		t.Fatal(e)
	}
	sig, _ := Sign(clientKey(), testClientID, ts0)
	raw, _ := decodeSignature(sig)
	want := oauth.ClientCredentials{
		Method:   oauth.AuthSNAPSignature,
		ClientID: testClientID,
		Evidence: Evidence{Timestamp: ts0, Signature: raw},
	}
	if req.GrantType != oauth.GrantClientCredentials || req.Scopes != nil || !reflect.DeepEqual(req.Credentials, want) {
		t.Fatalf("decoded %+v", req)
	}
	// SNAP's response has no member for a refresh token: none is to be issued.
	if !req.NoRefreshToken {
		t.Error("NoRefreshToken not set")
	}
	// Without replay_protection nothing is spent: no nonce.
	if req.Nonce != nil {
		t.Errorf("a nonce without replay_protection: %+v", req.Nonce)
	}
	withReplay, e := newB2BEnv(t, replayOn).d.DecodeTokenRequest(snapRequest(t, clientKey(), testClientID, ts0, okBody, nil))
	if e != nil {
		t.Fatal(e)
	}
	if withReplay.Nonce == nil || withReplay.Nonce.Key == "" {
		t.Errorf("no nonce with replay_protection: %+v", withReplay.Nonce)
	}
	// The evidence is what the Authenticator checks against the client.
	c := &oauth.Client{ID: testClientID, PublicKeyPEM: spkiPEM(t, &clientKey().PublicKey)}
	if e := NewAuthenticator(nil).Authenticate(context.Background(), req.Credentials, c, t0); e != nil {
		t.Fatalf("Authenticate: %v", e)
	}
}

func TestB2BReplayNonceLifetime(t *testing.T) {
	env := newB2BEnv(t, replayOn)
	ts := Timestamp(t0.Add(-time.Minute))
	if w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts, okBody, nil)); w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// The nonce outlives the timestamp's acceptance by a whole window, so a
	// replay accepted at the window's edge (this node's clock) still finds
	// it when the store judges it later by its own clock.
	if want := t0.Add(-time.Minute + 2*DefaultTimestampWindow); !env.nonces.last.Equal(want) {
		t.Fatalf("nonce expires %v, want %v", env.nonces.last, want)
	}
	// A signature of a different timestamp text is a different nonce, even
	// for the same instant.
	same := t0.Add(-time.Minute).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	if w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, same, okBody, nil)); w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// Past the window the replay is refused as stale, before the store.
	env.clock.Set(t0.Add(4*time.Minute + time.Second))
	w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts, okBody, nil))
	if code, msg := checkEnvelope(t, w); code != "4017300" || msg != "Unauthorized. [Stale timestamp]" {
		t.Fatalf("got %s %q", code, msg)
	}
}

// A failed request spends no nonce: the genuine retry of a request refused
// for another reason (a disabled client, here) is not taken for a replay.
func TestB2BFailedIssuanceDoesNotBurnNonce(t *testing.T) {
	env := newB2BEnv(t, replayOn)
	env.engine.clients[testClientID].Disabled = true
	w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil))
	if code, _ := checkEnvelope(t, w); code != "4017300" {
		t.Fatalf("disabled: %s", code)
	}
	env.engine.clients[testClientID].Disabled = false
	if w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil)); w.Code != http.StatusOK {
		t.Fatalf("retry after the client was enabled: %d %s", w.Code, w.Body)
	}
}

// A forged signature must not consume the nonce the genuine request needs.
func TestB2BBadSignatureDoesNotBurnNonce(t *testing.T) {
	env := newB2BEnv(t, replayOn)
	for range 2 {
		w := env.engine.serve(env.d, snapRequest(t, otherKey(), testClientID, ts0, okBody, nil))
		if code, _ := checkEnvelope(t, w); code != "4017300" {
			t.Fatalf("forged: %s", code)
		}
	}
	if len(env.nonces.m) != 0 {
		t.Fatalf("forged signatures recorded nonces: %v", env.nonces.m)
	}
	if w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil)); w.Code != http.StatusOK {
		t.Fatalf("genuine: %d %s", w.Code, w.Body)
	}
}

func TestB2BKeyFormatsVerify(t *testing.T) {
	pub := &clientKey().PublicKey
	for name, p := range map[string]string{
		"spki":  spkiPEM(t, pub),
		"pkcs1": pkcs1PEM(pub),
		"cert":  certPEM(t, clientKey(), pub),
	} {
		t.Run(name, func(t *testing.T) {
			env := newB2BEnv(t, nil)
			env.engine.clients[testClientID].PublicKeyPEM = p
			if w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil)); w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		})
	}
}

func TestKeyCache(t *testing.T) {
	var c KeyCache
	pemText := spkiPEM(t, &clientKey().PublicKey)
	k1, err := c.Get(pemText)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := c.Get(pemText)
	if k1 != k2 {
		t.Fatal("key parsed twice")
	}
	if _, err := c.Get("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
	if _, err := c.Get("garbage"); err == nil {
		t.Fatal("cached garbage parsed")
	}
	for i := range maxKeys + 1 {
		c.Get(strconv.Itoa(i))
		if len(c.m) > maxKeys {
			t.Fatalf("cache holds %d entries", len(c.m))
		}
	}
	// Large PEM texts: the byte bound holds too.
	big := strings.Repeat("x", maxKeyBytes/5)
	for i := range 12 {
		c.Get(strconv.Itoa(i) + big)
		if c.bytes > maxKeyBytes {
			t.Fatalf("cache holds %d bytes", c.bytes)
		}
	}
}

func TestB2BOptions(t *testing.T) {
	deps := dialect.Deps{Now: func() time.Time { return t0 }}
	for _, bad := range []map[string]any{
		{"timestamp_window": "soon"},
		{"timestamp_window": "0s"},
		{"timestamp_window": "-1m"},
		{"timestamp_window": "48h"},
		{"timestamp_windw": "5m"},
	} {
		if _, err := NewB2B(bad, deps); err == nil {
			t.Errorf("options %v accepted", bad)
		}
	}

	env := newB2BEnv(t, map[string]any{"timestamp_window": "1m"})
	for d, want := range map[time.Duration]int{time.Minute: 200, -time.Minute: 200, 61 * time.Second: 401, -61 * time.Second: 401} {
		w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, Timestamp(t0.Add(d)), okBody, nil))
		if w.Code != want {
			t.Errorf("offset %v with 1m window: %d, want %d", d, w.Code, want)
		}
	}

	pd, ok := env.d.(dialect.PolicyDefaulter)
	if !ok || pd.PolicyDefaults().AccessTTL != 900*time.Second {
		t.Fatalf("PolicyDefaults: %v", ok)
	}
}

func TestMapErrorEveryCause(t *testing.T) {
	want := map[oauth.Cause]string{
		oauth.CauseMissingField:       "4007302",
		oauth.CauseMalformedField:     "4007301",
		oauth.CauseBadRequest:         "4007300",
		oauth.CauseUnknownClient:      "4017300",
		oauth.CauseBadCredentials:     "4017300",
		oauth.CauseNoCredentials:      "4017300",
		oauth.CauseMethodNotAllowed:   "4017300",
		oauth.CauseEndpointNotAllowed: "4017300",
		oauth.CauseNoClientKey:        "4017300",
		oauth.CauseClientDisabled:     "4017300",
		oauth.CauseStaleRequest:       "4017300",
		oauth.CauseReplay:             "4017300",
		oauth.CauseGrantNotAllowed:    "4017300",
		oauth.CauseScopeNotAllowed:    "4017300",
		oauth.CauseBadGrant:           "4017300",
		oauth.CauseUserDisabled:       "4017300",
		oauth.CauseRateLimited:        "4297300",
		oauth.CauseOverloaded:         "5047300",
		oauth.CauseUnavailable:        "5047300",
		oauth.CauseTimeout:            "5047300",
		oauth.CauseInternal:           "5007300",
	}
	for c := oauth.CauseMissingField; c <= oauth.CauseInternal; c++ {
		if c == oauth.CauseUserLocked {
			// A password-grant cause SNAP B2B never meets; its code,
			// invalid_grant, decides (TestMapErrorNewCauses).
			continue
		}
		m := mapError(serviceAccessTokenB2B, &oauth.Error{Cause: c, Field: "f", Status: 418})
		if m.code != want[c] {
			t.Errorf("cause %d: %s, want %s", c, m.code, want[c])
		}
		if strconv.Itoa(m.status) != m.code[:3] {
			t.Errorf("cause %d: status %d for %s", c, m.status, m.code)
		}
	}
	if len(want) != int(oauth.CauseInternal)-1 { // all but CauseUserLocked
		t.Errorf("a Cause is missing from this test")
	}
}

// The causes the engine gives since client authentication methods and
// endpoints are registered per client, as the engine builds them.
func TestMapErrorNewCauses(t *testing.T) {
	for _, c := range []struct {
		e    *oauth.Error
		code string
		msg  string
	}{
		{oauth.InvalidClient(oauth.CauseMethodNotAllowed, "the client is not registered for this client authentication method"),
			"4017300", "Unauthorized. [Client not registered for SNAP signatures]"},
		{oauth.InvalidClient(oauth.CauseEndpointNotAllowed, "the client is not registered for this token endpoint"),
			"4017300", "Unauthorized. [Client not registered for this endpoint]"},
		{oauth.InvalidClient(oauth.CauseNoCredentials, "client authentication required"), "4017300", "Unauthorized. [Invalid signature]"},
		{oauth.Overloaded("queue full", 2*time.Second), "5047300", "Timeout"},
		{oauth.RateLimited("slow down", time.Second), "4297300", "Too Many Requests"},
		// Password-grant only; should it ever reach SNAP, invalid_grant decides.
		{oauth.InvalidGrant(oauth.CauseUserLocked, "locked"), "4017300", "Unauthorized. [Invalid grant]"},
	} {
		m := mapError(serviceAccessTokenB2B, c.e)
		if m.code != c.code || m.message != c.msg || strconv.Itoa(m.status) != m.code[:3] {
			t.Errorf("%+v: got %d %s %q, want %s %q", c.e, m.status, m.code, m.message, c.code, c.msg)
		}
	}
}

func TestMapErrorFallbacks(t *testing.T) {
	for _, c := range []struct {
		e    *oauth.Error
		code string
		msg  string
	}{
		{nil, "5007300", "General Error"},
		{&oauth.Error{Code: oauth.CodeInvalidRequest, Status: 400}, "4007300", "Bad Request"},
		{&oauth.Error{Code: oauth.CodeInvalidRequest, Status: 400, Field: "grant_type"}, "4007301", "Invalid Field Format {grantType}"},
		{&oauth.Error{Code: oauth.CodeInvalidClient, Status: 401}, "4017300", "Unauthorized. [Invalid client]"},
		{&oauth.Error{Code: oauth.CodeUnauthorizedClient, Status: 400}, "4017300", "Unauthorized. [Grant not allowed]"},
		{&oauth.Error{Code: oauth.CodeInvalidScope, Status: 400}, "4017300", "Unauthorized. [Scope not allowed]"},
		{&oauth.Error{Code: oauth.CodeInvalidGrant, Status: 400}, "4017300", "Unauthorized. [Invalid grant]"},
		{&oauth.Error{Code: oauth.CodeUnsupportedGrantType, Status: 400}, "4007301", "Invalid Field Format {grantType}"},
		{oauth.RateLimited("slow down", time.Second), "4297300", "Too Many Requests"},
		{&oauth.Error{Code: oauth.CodeServerError, Status: 500}, "5007300", "General Error"},
		{&oauth.Error{Code: oauth.CodeTemporarilyUnavail, Status: 503}, "5047300", "Timeout"},
		{&oauth.Error{Code: "weird", Status: 400}, "4007300", "Bad Request"},
		{&oauth.Error{Code: "weird", Status: 404}, "4007300", "Bad Request"},
		{&oauth.Error{Code: "weird", Status: 401}, "4017300", "Unauthorized. [Access denied]"},
		{&oauth.Error{Code: "weird", Status: 403}, "4017300", "Unauthorized. [Access denied]"},
		{&oauth.Error{Code: "weird", Status: 429}, "4297300", "Too Many Requests"},
		{&oauth.Error{Code: "weird", Status: 502}, "5007300", "General Error"},
		{&oauth.Error{Code: "weird", Status: 503}, "5047300", "Timeout"},
		{&oauth.Error{Code: "weird"}, "5007300", "General Error"},
		{oauth.Missing("client_id"), "4007302", "Invalid Mandatory Field {X-CLIENT-KEY}"},
		{oauth.UnsupportedGrant("no"), "4007301", "Invalid Field Format {grantType}"},
		{&oauth.Error{Cause: oauth.CauseMissingField}, "4007302", "Invalid Mandatory Field"},
	} {
		m := mapError(serviceAccessTokenB2B, c.e)
		if m.code != c.code || m.message != c.msg || strconv.Itoa(m.status) != m.code[:3] {
			t.Errorf("%+v: got %d %s %q, want %s %q", c.e, m.status, m.code, m.message, c.code, c.msg)
		}
	}
}

func TestResponseCodeBuilderB2B2C(t *testing.T) {
	// The builder is service-parametrised so B2B2C (74) can reuse the table.
	if got := CaseInvalidMandatory.responseCode("74"); got != "4007402" {
		t.Fatal(got)
	}
	if got := build("74", CaseUnauthorized, "[Invalid signature]"); got.code != "4017400" || got.status != 401 {
		t.Fatal(got)
	}
}

func TestTimestamp(t *testing.T) {
	if got := Timestamp(t0); got != ts0 {
		t.Errorf("Timestamp = %q, want %q", got, ts0)
	}
	if got := Timestamp(t0.Add(359 * time.Millisecond).UTC()); got != "2024-12-31T03:11:40+00:00" {
		t.Errorf("Timestamp UTC = %q", got)
	}
	for s, want := range map[string]time.Time{
		ts0:                                   t0,
		"2026-11-23T05:39:09.359Z":            time.Date(2026, 11, 23, 5, 39, 9, 359e6, time.UTC),
		"2024-12-31T03:11:40Z":                t0,
		"2024-12-31T10:11:40.5+07:00":         t0.Add(500 * time.Millisecond),
		"2024-12-31T02:11:40.123456789-01:00": t0.Add(123456789),
	} {
		got, err := ParseTimestamp(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{
		"", "2024-12-31", "2024-12-31T10:11:40", "2024-12-31T10:11:40+07", "2024-12-31T10:11:40+0700",
		"2024-12-31t10:11:40Z", "2024-12-31T10:11:40z", "2024-12-31 10:11:40Z", "2024-13-31T10:11:40Z",
		"2024-12-31T24:11:40Z", "2024-12-31T10:11:40.Z",
		"1735614700", "2024-12-31T10:11:40+07:00 ", "x2024-12-31T10:11:40Z",
	} {
		if _, err := ParseTimestamp(s); err == nil {
			t.Errorf("ParseTimestamp(%q) accepted", s)
		}
	}
}

func TestSignMatchesVerify(t *testing.T) {
	sig, err := Sign(clientKey(), testClientID, ts0)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := decodeSignature(sig)
	if !ok || len(sig) != 344 {
		t.Fatalf("signature %q", sig)
	}
	if !VerifyPKCS1(&clientKey().PublicKey, []byte(testClientID+"|"+ts0), b) {
		t.Fatal("Sign's output does not verify")
	}
	if _, err := Sign(nil, "a", "b"); err == nil {
		t.Fatal("Sign(nil) succeeded")
	}
	// Unpadded Base64 is tolerated; the verified bytes are the same.
	if b2, ok := decodeSignature(strings.TrimRight(sig, "=")); !ok || string(b2) != string(b) {
		t.Fatal("unpadded signature refused")
	}
}

func TestWriteErrorNil(t *testing.T) {
	env := newB2BEnv(t, nil)
	w := httptest.NewRecorder()
	env.d.WriteError(w, httptest.NewRequest(http.MethodPost, "/", nil), nil)
	if code, _ := checkEnvelope(t, w); code != "5007300" {
		t.Fatal(code)
	}
}

// The reason in "Unauthorized. [...]" never carries request values.
func TestUnauthorizedMessageHasNoRequestData(t *testing.T) {
	env := newB2BEnv(t, nil)
	sig, _ := Sign(otherKey(), testClientID, ts0)
	w := env.engine.serve(env.d, snapRequest(t, otherKey(), testClientID, ts0, okBody, nil))
	if strings.Contains(w.Body.String(), sig[:20]) || strings.Contains(w.Body.String(), testClientID) {
		t.Fatalf("body leaks request data: %s", w.Body)
	}
}

// With uniform_auth_errors, an unknown client, a wrong signature and a
// client without a usable key get one answer, identical to the byte;
// without it, each keeps its reason. Answers that need a valid signature,
// and the stale timestamp, which needs no client, keep theirs either way.
func TestB2BUniformAuthErrors(t *testing.T) {
	key := clientKey()
	otherSig, _ := Sign(otherKey(), testClientID, ts0)
	nobodySig, _ := Sign(key, "nobody", ts0)
	hiding := []struct {
		name string
		edit func(h http.Header)
		env  func(e *b2bEnv)
		own  string
	}{
		{"unknown client", func(h http.Header) { h.Set(HeaderClientKey, "nobody"); h.Set(HeaderSignature, nobodySig) }, nil, "Unauthorized. [Unknown client]"},
		{"signed by another key", func(h http.Header) { h.Set(HeaderSignature, otherSig) }, nil, "Unauthorized. [Invalid signature]"},
		{"signature truncated", func(h http.Header) { h.Set(HeaderSignature, "AAAA") }, nil, "Unauthorized. [Invalid signature]"},
		{"no key registered", nil, func(e *b2bEnv) { e.engine.clients[testClientID].PublicKeyPEM = "" }, "Unauthorized. [No public key registered]"},
		{"unusable key registered", nil, func(e *b2bEnv) { e.engine.clients[testClientID].PublicKeyPEM = "garbage" }, "Unauthorized. [No public key registered]"},
	}
	for _, uniform := range []bool{false, true} {
		var first *httptest.ResponseRecorder
		for _, c := range hiding {
			env := newB2BEnv(t, map[string]any{"uniform_auth_errors": uniform})
			if c.env != nil {
				c.env(env)
			}
			w := env.engine.serve(env.d, snapRequest(t, key, testClientID, ts0, okBody, c.edit))
			code, msg := checkEnvelope(t, w)
			if !uniform {
				if code != "4017300" || msg != c.own {
					t.Errorf("%s, default: %s %q, want %q", c.name, code, msg, c.own)
				}
				continue
			}
			if code != "4017300" || msg != "Unauthorized. [Invalid client credentials]" {
				t.Errorf("%s, uniform: %s %q", c.name, code, msg)
			}
			if first == nil {
				first = w
				continue
			}
			if w.Code != first.Code || w.Body.String() != first.Body.String() || !reflect.DeepEqual(w.Header(), first.Header()) {
				t.Errorf("%s, uniform: %d %v %s differs from %d %v %s", c.name, w.Code, w.Header(), w.Body, first.Code, first.Header(), first.Body)
			}
		}
	}

	kept := []struct {
		name string
		ts   string
		env  func(e *b2bEnv)
		msg  string
	}{
		{"success", ts0, nil, "Successful"},
		{"disabled client", ts0, func(e *b2bEnv) { e.engine.clients[testClientID].Disabled = true }, "Unauthorized. [Client disabled]"},
		{"grant not allowed", ts0, func(e *b2bEnv) { e.engine.clients[testClientID].Grants = nil }, "Unauthorized. [Grant not allowed]"},
		{"method not allowed", ts0, func(e *b2bEnv) { e.engine.clients[testClientID].AuthMethods = []string{oauth.AuthSecretPost} },
			"Unauthorized. [Client not registered for SNAP signatures]"},
		{"endpoint not allowed", ts0, func(e *b2bEnv) { e.engine.clients[testClientID].Endpoints = []string{"/elsewhere"} },
			"Unauthorized. [Client not registered for this endpoint]"},
		{"stale", Timestamp(t0.Add(-time.Hour)), nil, "Unauthorized. [Stale timestamp]"},
		{"replayed", ts0, func(e *b2bEnv) {
			if w := e.engine.serve(e.d, snapRequest(t, key, testClientID, ts0, okBody, nil)); w.Code != http.StatusOK {
				t.Fatalf("first request: %d %s", w.Code, w.Body)
			}
		}, "Unauthorized. [Replayed request]"},
	}
	for _, c := range kept {
		env := newB2BEnv(t, map[string]any{"uniform_auth_errors": true, "replay_protection": true})
		if c.env != nil {
			c.env(env)
		}
		if _, msg := checkEnvelope(t, env.engine.serve(env.d, snapRequest(t, key, testClientID, c.ts, okBody, nil))); msg != c.msg {
			t.Errorf("%s, uniform: %q, want %q", c.name, msg, c.msg)
		}
	}

	if _, err := NewB2B(map[string]any{"uniform_auth_errors": "sometimes"}, dialect.Deps{}); err == nil {
		t.Error("a non-boolean uniform_auth_errors was accepted")
	}
}

// replayOn is the endpoint options of replay refusal.
var replayOn = map[string]any{"replay_protection": true}

// Several instances of one merchant send byte-identical requests (same
// client, same X-TIMESTAMP, so the same deterministic signature): each
// gets a token, and nothing is written for a nonce; with
// replay_protection, only the first.
func TestB2BIdenticalRequests(t *testing.T) {
	env := newB2BEnv(t, nil)
	for i := range 3 {
		w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil))
		if code, msg := checkEnvelope(t, w); code != "2007300" {
			t.Fatalf("request %d: %s %q", i, code, msg)
		}
	}
	if len(env.nonces.m) != 0 {
		t.Errorf("nonces recorded without replay_protection: %d", len(env.nonces.m))
	}

	env = newB2BEnv(t, replayOn)
	for i := range 3 {
		w := env.engine.serve(env.d, snapRequest(t, clientKey(), testClientID, ts0, okBody, nil))
		code, msg := checkEnvelope(t, w)
		if want := map[bool]string{true: "2007300", false: "4017300"}[i == 0]; code != want {
			t.Fatalf("request %d with replay_protection: %s %q, want %s", i, code, msg, want)
		}
	}
	if len(env.nonces.m) != 1 {
		t.Errorf("%d nonces recorded with replay_protection, want 1", len(env.nonces.m))
	}

	for _, bad := range []any{"sometimes", 1, []any{true}} {
		if _, err := NewB2B(map[string]any{"replay_protection": bad}, dialect.Deps{}); err == nil {
			t.Errorf("replay_protection %v accepted", bad)
		}
	}
}

func TestRevealsClient(t *testing.T) {
	for c := oauth.CauseUnspecified; c <= oauth.CauseInternal; c++ {
		want := c == oauth.CauseUnknownClient || c == oauth.CauseBadCredentials || c == oauth.CauseNoClientKey
		if got := revealsClient(&oauth.Error{Code: oauth.CodeInvalidClient, Cause: c}); got != (want || c == oauth.CauseUnspecified) {
			t.Errorf("cause %d: %v", c, got)
		}
	}
	if revealsClient(nil) || revealsClient(&oauth.Error{Code: oauth.CodeInvalidRequest}) {
		t.Error("not an authentication failure")
	}
}
