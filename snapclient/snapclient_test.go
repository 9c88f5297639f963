package snapclient

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/snapsig"
)

var (
	keyOnce   sync.Once
	clientKey *rsa.PrivateKey
)

func testKey(t *testing.T) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		clientKey = k
	})
	return clientKey
}

const (
	testClientID = "0f3c2a1b9d8e7f6a5b4c3d2e1f0a9b8c"
	testSecret   = "kB3x-example-client-secret-0123456789ABCD"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// call is what the provider's service endpoint saw.
type call struct {
	header http.Header
	body   []byte
	path   string
}

// provider is a SNAP provider written for these tests: it checks token
// requests with crypto/rsa directly and service calls with snapsig, as a
// verifier would.
type provider struct {
	t            *testing.T
	pub          *rsa.PublicKey
	strip        string
	includeQuery bool
	needToken    bool
	variant      Variant
	expiresIn    any           // token lifetime as sent ("900" or 900)
	tokenStatus  atomic.Int32  // non-zero: token requests fail with it
	gate         chan struct{} // non-nil: token requests wait for it
	fetches      atomic.Int32

	mu       sync.Mutex
	tokens   map[string]bool
	calls    []call
	tokenTSs []string
}

func newProvider(t *testing.T) (*provider, *httptest.Server) {
	p := &provider{t: t, pub: &testKey(t).PublicKey, needToken: true, variant: Symmetric, expiresIn: "900", tokens: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/access-token/b2b", p.token)
	mux.HandleFunc("/", p.service)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return p, srv
}

func writeSNAP(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func (p *provider) token(w http.ResponseWriter, r *http.Request) {
	n := p.fetches.Add(1)
	if p.gate != nil {
		<-p.gate
	}
	if s := p.tokenStatus.Load(); s != 0 {
		writeSNAP(w, int(s), map[string]any{"responseCode": fmt.Sprintf("%d7300", s), "responseMessage": "Unauthorized. [Signature]"})
		return
	}
	ts, clientID := r.Header.Get("X-TIMESTAMP"), r.Header.Get("X-CLIENT-KEY")
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get("X-SIGNATURE"))
	digest := sha256.Sum256([]byte(clientID + "|" + ts))
	body, _ := io.ReadAll(r.Body)
	if err != nil || clientID != testClientID || rsa.VerifyPKCS1v15(p.pub, crypto.SHA256, digest[:], sig) != nil ||
		r.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"grantType":"client_credentials"`) {
		writeSNAP(w, 401, map[string]any{"responseCode": "4017300", "responseMessage": "Unauthorized. [Signature]"})
		return
	}
	tok := fmt.Sprintf("tok%d", n)
	p.mu.Lock()
	p.tokens[tok] = true
	p.tokenTSs = append(p.tokenTSs, ts)
	p.mu.Unlock()
	writeSNAP(w, 200, map[string]any{"responseCode": "2007300", "responseMessage": "Successful", "accessToken": tok,
		"tokenType": "Bearer", "expiresIn": p.expiresIn, "additionalInfo": map[string]any{}})
}

func (p *provider) service(w http.ResponseWriter, r *http.Request) {
	h, fe := snapsig.ParseHeaders(r.Header, p.needToken)
	if fe != nil {
		writeSNAP(w, 400, map[string]any{"responseCode": "4002702", "responseMessage": fe.Error()})
		return
	}
	body, _ := io.ReadAll(r.Body)
	m, err := snapsig.Minify(body)
	if err != nil {
		writeSNAP(w, 400, map[string]any{"responseCode": "4002701", "responseMessage": "Invalid Field Format body"})
		return
	}
	p.mu.Lock()
	valid := p.tokens[h.AccessToken]
	p.mu.Unlock()
	if p.needToken && !valid {
		writeSNAP(w, 401, map[string]any{"responseCode": "4012701", "responseMessage": "Invalid Token (B2B)"})
		return
	}
	ep := snapsig.EndpointURL(r.URL.EscapedPath(), r.URL.RawQuery, p.strip, p.includeQuery)
	var ok bool
	if p.variant == Asymmetric {
		ok = snapsig.VerifyAsymmetric(p.pub, snapsig.AsymmetricString(r.Method, ep, snapsig.BodyHash(m), h.Timestamp), h.Signature)
	} else {
		ok = snapsig.VerifySymmetric([]byte(testSecret), snapsig.SymmetricString(r.Method, ep, h.AccessToken, snapsig.BodyHash(m), h.Timestamp), h.Signature)
	}
	if !ok {
		writeSNAP(w, 401, map[string]any{"responseCode": "4012700", "responseMessage": "Unauthorized. [Signature]"})
		return
	}
	p.mu.Lock()
	p.calls = append(p.calls, call{header: r.Header.Clone(), body: body, path: r.URL.RequestURI()})
	p.mu.Unlock()
	writeSNAP(w, 200, map[string]any{"responseCode": "2002700", "responseMessage": "Successful"})
}

func (p *provider) revoke(tok string) {
	p.mu.Lock()
	delete(p.tokens, tok)
	p.mu.Unlock()
}

func (p *provider) numCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

func (p *provider) lastCall() call {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) == 0 {
		p.t.Fatal("no call reached the provider")
	}
	return p.calls[len(p.calls)-1]
}

var t0 = time.Date(2024, 12, 31, 3, 11, 40, 0, time.UTC)

func jakarta(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Asia/Jakarta")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func newSource(t *testing.T, srv *httptest.Server, clk *clock) *TokenSource {
	ts, err := NewTokenSource(TokenConfig{URL: srv.URL + "/v1.0/access-token/b2b", ClientID: testClientID, PrivateKey: testKey(t),
		HTTPClient: srv.Client(), Now: clk.Now, Location: jakarta(t), RenewBefore: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(http.MethodPost, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const prettyBody = `{
  "partnerServiceId": "  088899",
  "virtualAccountName": "Jokul Doe",
  "totalAmount": { "value": "12345678.00", "currency": "IDR" }
}`

func TestSymmetricCall(t *testing.T) {
	p, srv := newProvider(t)
	clk := &clock{t: t0}
	tr := &Transport{Base: srv.Client().Transport, Tokens: newSource(t, srv, clk), ClientSecret: []byte(testSecret),
		PartnerID: testClientID, Now: clk.Now, Location: jakarta(t)}
	c := &http.Client{Transport: tr}
	if code, body := post(t, c, srv.URL+"/v1.0/transfer-va/create-va", prettyBody); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	got := p.lastCall()
	if string(got.body) != prettyBody {
		t.Errorf("provider got body %q, want the bytes sent", got.body)
	}
	h := got.header
	if h.Get("X-TIMESTAMP") != "2024-12-31T10:11:40+07:00" || h.Get("X-PARTNER-ID") != testClientID ||
		h.Get("CHANNEL-ID") != DefaultChannelID || h.Get("Content-Type") != "application/json" || h.Get("Authorization") != "Bearer tok1" {
		t.Errorf("headers: %v", h)
	}
	if id := h.Get("X-EXTERNAL-ID"); len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("X-EXTERNAL-ID %q, want 32 hexadecimal characters", id)
	}
	// An empty body is signed as the hash of "".
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1.0/transfer-va/status", nil)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET without body: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestAsymmetricCalls(t *testing.T) {
	for _, withToken := range []bool{true, false} {
		t.Run(fmt.Sprintf("token=%v", withToken), func(t *testing.T) {
			p, srv := newProvider(t)
			p.variant, p.needToken = Asymmetric, withToken
			clk := &clock{t: t0}
			tr := &Transport{Base: srv.Client().Transport, Variant: Asymmetric, PrivateKey: testKey(t), PartnerID: "partner-7",
				ChannelID: "95231", Now: clk.Now}
			if withToken {
				tr.Tokens = newSource(t, srv, clk)
			}
			if code, body := post(t, &http.Client{Transport: tr}, srv.URL+"/v1.0/qr/qr-mpm-generate", `{"amount":{"value":"1.00"}}`); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			h := p.lastCall().header
			if (h.Get("Authorization") != "") != withToken || h.Get("CHANNEL-ID") != "95231" || h.Get("X-PARTNER-ID") != "partner-7" {
				t.Errorf("headers %v", h)
			}
			if h.Get("X-TIMESTAMP") != "2024-12-31T03:11:40Z" && h.Get("X-TIMESTAMP") != "2024-12-31T03:11:40+00:00" {
				t.Errorf("X-TIMESTAMP %q, want the clock's own zone (UTC)", h.Get("X-TIMESTAMP"))
			}
			if p.fetches.Load() != map[bool]int32{true: 1, false: 0}[withToken] {
				t.Errorf("%d token requests", p.fetches.Load())
			}
		})
	}
}

func TestEndpointURLOptions(t *testing.T) {
	p, srv := newProvider(t)
	p.strip, p.includeQuery = "/nicepay", true
	clk := &clock{t: t0}
	tr := &Transport{Base: srv.Client().Transport, Tokens: newSource(t, srv, clk), ClientSecret: []byte(testSecret),
		PartnerID: testClientID, Now: clk.Now, StripPrefix: "/nicepay", IncludeQuery: true}
	c := &http.Client{Transport: tr}
	url := srv.URL + "/nicepay/v1.0/transfer-va/status?b=2&a=%2F1"
	if code, body := post(t, c, url, `{}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if got := p.lastCall().path; got != "/nicepay/v1.0/transfer-va/status?b=2&a=%2F1" {
		t.Errorf("provider saw %q", got)
	}
	// Signing a different EndpointUrl than the provider checks fails.
	tr.IncludeQuery = false
	if code, _ := post(t, c, url, `{}`); code != 401 {
		t.Errorf("query left out of the signature: %d, want 401", code)
	}
	tr.IncludeQuery, tr.StripPrefix = true, ""
	if code, _ := post(t, c, url, `{}`); code != 401 {
		t.Errorf("prefix signed: %d, want 401", code)
	}
}

func TestRequestHeadersAndBodyKept(t *testing.T) {
	p, srv := newProvider(t)
	clk := &clock{t: t0}
	var n atomic.Int32
	tr := &Transport{Base: srv.Client().Transport, Tokens: newSource(t, srv, clk), ClientSecret: []byte(testSecret),
		PartnerID: testClientID, Now: clk.Now, ExternalID: func() string { return fmt.Sprintf("ext-%d", n.Add(1)) }}
	c := &http.Client{Transport: tr}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1.0/debit/payment-host-to-host", strings.NewReader(`{"a":1}`))
	req.Header.Set("X-EXTERNAL-ID", "order-123")
	req.Header.Set("X-DEVICE-ID", "device 9")
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	h := p.lastCall().header
	if h.Get("X-EXTERNAL-ID") != "order-123" || h.Get("X-DEVICE-ID") != "device 9" || h.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("caller's headers not kept: %v", h)
	}
	if req.Header.Get("X-SIGNATURE") != "" || req.Header.Get("Authorization") != "" {
		t.Error("RoundTrip modified the caller's request")
	}
	for range 3 {
		post(t, c, srv.URL+"/v1.0/x", `{}`)
	}
	p.mu.Lock()
	var ids []string
	for _, c := range p.calls[1:] {
		ids = append(ids, c.header.Get("X-EXTERNAL-ID"))
	}
	p.mu.Unlock()
	if strings.Join(ids, ",") != "ext-1,ext-2,ext-3" {
		t.Errorf("external IDs %v", ids)
	}
}

func TestTransportRefuses(t *testing.T) {
	p, srv := newProvider(t)
	clk := &clock{t: t0}
	good := func() *Transport {
		return &Transport{Base: srv.Client().Transport, Tokens: newSource(t, srv, clk), ClientSecret: []byte(testSecret), PartnerID: testClientID, Now: clk.Now}
	}
	for name, c := range map[string]struct {
		tr   func() *Transport
		body string
	}{
		"not JSON":            {good, `{"a":`},
		"unknown variant":     {func() *Transport { tr := good(); tr.Variant = "hmac"; return tr }, `{}`},
		"symmetric no secret": {func() *Transport { tr := good(); tr.ClientSecret = nil; return tr }, `{}`},
		"symmetric no tokens": {func() *Transport { tr := good(); tr.Tokens = nil; return tr }, `{}`},
		"asymmetric no key":   {func() *Transport { tr := good(); tr.Variant = Asymmetric; return tr }, `{}`},
		"no partner":          {func() *Transport { tr := good(); tr.PartnerID = ""; return tr }, `{}`},
		"bad channel":         {func() *Transport { tr := good(); tr.ChannelID = "web"; return tr }, `{}`},
		"bad external ID": {func() *Transport {
			tr := good()
			tr.ExternalID = func() string { return strings.Repeat("x", 37) }
			return tr
		}, `{}`},
		"token endpoint refuses": {func() *Transport { p.tokenStatus.Store(401); return good() }, `{}`},
	} {
		before := p.numCalls()
		body := &closeRecorder{Reader: strings.NewReader(c.body)}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1.0/x", body)
		_, err := c.tr().RoundTrip(req)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if name == "not JSON" && !errors.Is(err, snapsig.ErrNotJSON) {
			t.Errorf("%s: %v, want ErrNotJSON", name, err)
		}
		if strings.Contains(fmt.Sprint(err), testSecret) {
			t.Errorf("%s: error shows the secret", name)
		}
		if !body.closed {
			t.Errorf("%s: request body not closed", name)
		}
		if p.numCalls() != before {
			t.Errorf("%s: a request was sent", name)
		}
		p.tokenStatus.Store(0)
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestTokenCachingAndRenewal(t *testing.T) {
	p, srv := newProvider(t)
	clk := &clock{t: t0}
	ts := newSource(t, srv, clk)
	ctx := context.Background()
	get := func() string {
		t.Helper()
		tok, err := ts.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if get() != "tok1" || get() != "tok1" {
		t.Fatal("not cached")
	}
	// 900 s lifetime, renewed 2 minutes before expiry.
	clk.Add(779 * time.Second)
	if get() != "tok1" || p.fetches.Load() != 1 {
		t.Fatal("renewed early")
	}
	clk.Add(time.Second)
	if got := get(); got != "tok2" || p.fetches.Load() != 2 {
		t.Fatalf("not renewed at expiry-2m: %s", got)
	}
	// A failed renewal keeps the still-valid token.
	p.tokenStatus.Store(500)
	clk.Add(13 * time.Minute)
	if got := get(); got != "tok2" || p.fetches.Load() != 3 {
		t.Fatalf("renewal failure: %s after %d requests", got, p.fetches.Load())
	}
	// Once it has expired, the failure is the caller's.
	clk.Add(2 * time.Minute)
	_, err := ts.Token(ctx)
	var te *TokenError
	if !errors.As(err, &te) || te.StatusCode != 500 || te.ResponseCode != "5007300" || strings.Contains(err.Error(), "tok2") {
		t.Fatalf("expired token, failing provider: %v", err)
	}
	p.tokenStatus.Store(0)
	if get() != "tok5" {
		t.Fatal("no recovery")
	}
	p.mu.Lock()
	for _, ts := range p.tokenTSs {
		if !strings.HasSuffix(ts, "+07:00") {
			t.Errorf("token request X-TIMESTAMP %q, want Jakarta time", ts)
		}
	}
	p.mu.Unlock()
}

func TestTokenLifetimeForms(t *testing.T) {
	for _, c := range []struct {
		expiresIn any
		renewAt   time.Duration // with RenewBefore 2m, capped at half
		ok        bool
	}{
		{"900", 780 * time.Second, true},
		{900, 780 * time.Second, true},
		{"60", 30 * time.Second, true},
		{"", 0, false}, {"abc", 0, false}, {-5, 0, false}, {nil, 0, false}, {1.5, 0, false},
	} {
		p, srv := newProvider(t)
		p.expiresIn = c.expiresIn
		clk := &clock{t: t0}
		ts := newSource(t, srv, clk)
		_, err := ts.Token(context.Background())
		if (err == nil) != c.ok {
			t.Errorf("expiresIn %#v: %v", c.expiresIn, err)
			continue
		}
		if !c.ok {
			continue
		}
		clk.Add(c.renewAt - time.Second)
		ts.Token(context.Background())
		clk.Add(time.Second)
		ts.Token(context.Background())
		if p.fetches.Load() != 2 {
			t.Errorf("expiresIn %#v: %d requests, want a renewal at %v", c.expiresIn, p.fetches.Load(), c.renewAt)
		}
	}
}

// TestConcurrentCalls runs many calls at once (run with -race): one token
// request serves them all, every call verifies, every X-EXTERNAL-ID differs.
func TestConcurrentCalls(t *testing.T) {
	p, srv := newProvider(t)
	p.gate = make(chan struct{})
	clk := &clock{t: t0}
	tr := &Transport{Base: srv.Client().Transport, Tokens: newSource(t, srv, clk), ClientSecret: []byte(testSecret), PartnerID: testClientID, Now: clk.Now}
	c := &http.Client{Transport: tr}
	const n = 40
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for i := range n {
		wg.Go(func() {
			code, _ := post(t, c, srv.URL+"/v1.0/transfer-va/create-va", fmt.Sprintf(`{"trxId":"%d"}`, i))
			codes <- code
		})
	}
	// Let every caller reach the token source before the token arrives.
	for p.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(p.gate)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("call answered %d", code)
		}
	}
	if f := p.fetches.Load(); f != 1 {
		t.Errorf("%d token requests, want 1", f)
	}
	seen := map[string]bool{}
	p.mu.Lock()
	for _, c := range p.calls {
		seen[c.header.Get("X-EXTERNAL-ID")] = true
	}
	p.mu.Unlock()
	if len(seen) != n {
		t.Errorf("%d distinct X-EXTERNAL-IDs in %d calls", len(seen), n)
	}
}

func TestWaitingCallerHonoursContext(t *testing.T) {
	p, srv := newProvider(t)
	p.gate = make(chan struct{})
	defer close(p.gate)
	clk := &clock{t: t0}
	ts := newSource(t, srv, clk)
	go ts.Token(context.Background())
	for p.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting caller with a cancelled context: %v", err)
	}
}

// A token the provider no longer knows (revoked) is dropped after the 401
// that says so, and the next call fetches a new one.
func TestRevokedTokenIsRenewed(t *testing.T) {
	p, srv := newProvider(t)
	clk := &clock{t: t0}
	tr := &Transport{Base: srv.Client().Transport, Tokens: newSource(t, srv, clk), ClientSecret: []byte(testSecret), PartnerID: testClientID, Now: clk.Now}
	c := &http.Client{Transport: tr}
	post(t, c, srv.URL+"/v1.0/x", `{}`)
	p.revoke("tok1")
	code, body := post(t, c, srv.URL+"/v1.0/x", `{}`)
	if code != 401 || !strings.Contains(body, "4012701") {
		t.Fatalf("call with a revoked token: %d %s (the body must reach the caller whole)", code, body)
	}
	if code, body := post(t, c, srv.URL+"/v1.0/x", `{}`); code != 200 || p.fetches.Load() != 2 {
		t.Fatalf("after revocation: %d %s, %d token requests", code, body, p.fetches.Load())
	}
	// A 401 for another reason (a bad signature) keeps the token.
	tr.ClientSecret = []byte("wrong")
	if code, _ := post(t, c, srv.URL+"/v1.0/x", `{}`); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	tr.ClientSecret = []byte(testSecret)
	post(t, c, srv.URL+"/v1.0/x", `{}`)
	if p.fetches.Load() != 2 {
		t.Errorf("token dropped after a signature failure: %d token requests", p.fetches.Load())
	}
}

func TestNewTokenSourceChecks(t *testing.T) {
	k := testKey(t)
	for _, cfg := range []TokenConfig{
		{ClientID: "c", PrivateKey: k},
		{URL: "http://x", PrivateKey: k},
		{URL: "http://x", ClientID: "c"},
		{URL: "http://x", ClientID: "c", PrivateKey: k, RenewBefore: -time.Second},
	} {
		if _, err := NewTokenSource(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
