package snapguard

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTokengate is a stand-in for tokengate's verify endpoint: it records
// the verify requests and answers what the test sets.
type fakeTokengate struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []map[string]any
	auth   []string
	status int
	answer string
	wait   time.Duration
}

func newFake(t *testing.T) *fakeTokengate {
	f := &fakeTokengate{status: 200,
		answer: `{"valid":true,"client_id":"c-1","partner_id":"P-1","scope":"va qr","subject":"c-1"}`}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != VerifyPath || r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("verify request %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("verify request body: %v", err)
		}
		f.mu.Lock()
		f.got = append(f.got, m)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		status, answer, wait := f.status, f.answer, f.wait
		f.mu.Unlock()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTokengate) set(status int, answer string) {
	f.mu.Lock()
	f.status, f.answer = status, answer
	f.mu.Unlock()
}

func (f *fakeTokengate) calls() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.got) }

func (f *fakeTokengate) last(t *testing.T) (map[string]any, string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("no verify request")
	}
	return f.got[len(f.got)-1], f.auth[len(f.auth)-1]
}

// service is the guarded handler: it records what it was given.
type service struct {
	mu   sync.Mutex
	id   *Identity
	body []byte
	n    int
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, _ := FromContext(r.Context())
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.id, s.body, s.n = id, b, s.n+1
	s.mu.Unlock()
	io.WriteString(w, `{"responseCode":"2002700","responseMessage":"Successful"}`)
}

func guarded(t *testing.T, cfg Config) (*httptest.Server, *service) {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc := &service{}
	srv := httptest.NewServer(g.Wrap(svc))
	t.Cleanup(srv.Close)
	return srv, svc
}

func post(t *testing.T, url, body string, h map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

var snapHeaders = map[string]string{
	"Content-Type": "application/json", "Authorization": "Bearer tok", "X-TIMESTAMP": "2026-01-02T10:11:12+07:00",
	"X-SIGNATURE": "c2ln", "X-PARTNER-ID": "P-1", "X-EXTERNAL-ID": "E-1", "CHANNEL-ID": "95221",
	"Cookie": "session=private", "X-Other": "not for tokengate",
}

func TestWrapPassesAVerifiedCall(t *testing.T) {
	f := newFake(t)
	srv, svc := guarded(t, Config{URL: f.srv.URL + "/", ClientID: "rs:1", ClientSecret: "s%cret",
		Route: Route{ServiceCode: 27, Scopes: []string{"va"}, StripPrefix: "/pg", IncludeQuery: true}})
	body := "{ \"b\": 1,\n \"a\": \"\\u00e9\" }\n"
	res, answer := post(t, srv.URL+"/pg/v1.0/transfer-va/create-va?x=1&y=a%2Fb", body, snapHeaders)
	if res.StatusCode != 200 || answer != `{"responseCode":"2002700","responseMessage":"Successful"}` {
		t.Fatalf("%d %s", res.StatusCode, answer)
	}
	if string(svc.body) != body {
		t.Errorf("the service got the body %q, want %q", svc.body, body)
	}
	if id := svc.id; id == nil || id.ClientID != "c-1" || id.PartnerID != "P-1" || id.Subject != "c-1" ||
		len(id.Scopes) != 2 || id.Scopes[0] != "va" || id.Scopes[1] != "qr" {
		t.Errorf("identity %+v", svc.id)
	}

	got, auth := f.last(t)
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("rs%3A1:s%25cret")); auth != want {
		t.Errorf("Authorization %q, want %q (RFC 6749 2.3.1 form-encoding)", auth, want)
	}
	call := got["call"].(map[string]any)
	if call["method"] != "POST" || call["path"] != "/pg/v1.0/transfer-va/create-va" || call["query"] != "x=1&y=a%2Fb" {
		t.Errorf("call %v", call)
	}
	if b, _ := base64.StdEncoding.DecodeString(call["body"].(string)); string(b) != body {
		t.Errorf("call.body decodes to %q", b)
	}
	headers := call["headers"].(map[string]any)
	for _, k := range []string{"Authorization", "X-TIMESTAMP", "X-SIGNATURE", "X-PARTNER-ID", "X-EXTERNAL-ID", "CHANNEL-ID", "Content-Type"} {
		if vs, ok := headers[k].([]any); !ok || len(vs) != 1 || vs[0] != snapHeaders[k] {
			t.Errorf("header %s: %v", k, headers[k])
		}
	}
	if len(headers) != 7 {
		t.Errorf("headers sent to tokengate: %v (only the verified ones)", headers)
	}
	route, _ := json.Marshal(got["route"])
	if string(route) != `{"include_query":true,"scopes":["va"],"service_code":27,"strip_prefix":"/pg"}` {
		t.Errorf("route %s", route)
	}

	// A header sent twice reaches tokengate twice (it refuses duplicates).
	req, _ := http.NewRequest("GET", srv.URL+"/v1.0/x", nil)
	req.Header.Add("X-EXTERNAL-ID", "a")
	req.Header.Add("X-EXTERNAL-ID", "b")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("%v %v", res, err)
	}
	got, _ = f.last(t)
	call = got["call"].(map[string]any)
	if vs := call["headers"].(map[string]any)["X-EXTERNAL-ID"].([]any); len(vs) != 2 || call["body"] != nil || call["method"] != "GET" {
		t.Errorf("call %v", call)
	}
}

func TestWrapAnswersRefusals(t *testing.T) {
	f := newFake(t)
	srv, svc := guarded(t, Config{URL: f.srv.URL, ClientID: "rs", ClientSecret: "s", MaxBody: 10,
		Route: Route{ServiceCode: 26}, Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("WIB", 7*3600)) }})
	check := func(what string, status int, want string) {
		t.Helper()
		res, answer := post(t, srv.URL+"/v1.0/transfer-va/status", `{}`, snapHeaders)
		if res.StatusCode != status || answer != want {
			t.Errorf("%s: %d %s, want %d %s", what, res.StatusCode, answer, status, want)
		}
		if res.Header.Get("X-TIMESTAMP") != "2026-01-02T03:04:05+07:00" || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", what, res.Header)
		}
		if (status == 504) != (res.Header.Get("Retry-After") == "1") {
			t.Errorf("%s: Retry-After %q", what, res.Header.Get("Retry-After"))
		}
	}
	f.set(200, `{"valid":false,"status":401,"responseCode":"4012600","responseMessage":"Unauthorized. [Signature]"}`)
	check("refused call", 401, `{"responseCode":"4012600","responseMessage":"Unauthorized. [Signature]"}`)
	f.set(200, `{"valid":false,"status":409,"responseCode":"4092600","responseMessage":"Conflict"}`)
	check("conflict", 409, `{"responseCode":"4092600","responseMessage":"Conflict"}`)
	f.set(403, `{"error":"unauthorized_client"}`)
	check("guard not allowed", 500, `{"responseCode":"5002601","responseMessage":"Internal Server Error"}`)
	f.set(401, `{"error":"invalid_client"}`)
	check("guard credentials wrong", 500, `{"responseCode":"5002601","responseMessage":"Internal Server Error"}`)
	f.set(503, `{"error":"temporarily_unavailable"}`)
	check("tokengate unavailable", 504, `{"responseCode":"5042600","responseMessage":"Timeout"}`)
	for _, bad := range []string{`not json`, `{"valid":true}`, `{"valid":false,"status":200,"responseCode":"2002600"}`,
		`{"valid":false,"status":401,"responseCode":"4002601","responseMessage":"x"}`, `{"valid":false,"status":401,"responseCode":"401260x"}`} {
		f.set(200, bad)
		check("answer "+bad, 500, `{"responseCode":"5002601","responseMessage":"Internal Server Error"}`)
	}
	if svc.n != 0 {
		t.Errorf("the service was called %d times", svc.n)
	}

	// A body over MaxBody is refused without asking tokengate.
	before := f.calls()
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1.0/transfer-va/status", strings.NewReader(`{"a":"0123456789"}`))
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(strings.NewReader(`{"a":"0123456789"}`))
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || string(b) != `{"responseCode":"4002600","responseMessage":"Bad Request"}` {
			t.Errorf("body over MaxBody (chunked %v): %d %s", chunked, res.StatusCode, b)
		}
	}
	if f.calls() != before {
		t.Error("a body over MaxBody was sent to tokengate")
	}
}

func TestWrapWhenTokengateIsDownOrSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(b)
	}), nil))
	downWithPassword := strings.Replace(down, "http://", "http://proxyuser:hunter2secret@", 1)
	srv, svc := guarded(t, Config{URL: downWithPassword, ClientID: "rs", ClientSecret: "s", Route: Route{ServiceCode: 27}, Logger: logger})
	if res, answer := post(t, srv.URL+"/v1.0/x", `{}`, snapHeaders); res.StatusCode != 504 || answer != `{"responseCode":"5042700","responseMessage":"Timeout"}` {
		t.Errorf("tokengate down: %d %s", res.StatusCode, answer)
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "cannot be reached") || strings.Contains(logs.String(), "hunter2secret") {
		t.Errorf("the failure's log line, without the URL's password: %s", logs.String())
	}
	logMu.Unlock()

	f := newFake(t)
	f.wait = 5 * time.Second
	slow, _ := guarded(t, Config{URL: f.srv.URL, ClientID: "rs", ClientSecret: "s", Route: Route{ServiceCode: 27},
		HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}})
	start := time.Now()
	if res, answer := post(t, slow.URL+"/v1.0/x", `{}`, snapHeaders); res.StatusCode != 504 || answer != `{"responseCode":"5042700","responseMessage":"Timeout"}` {
		t.Errorf("tokengate slow: %d %s", res.StatusCode, answer)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the guard waited %v", d)
	}
	if svc.n != 0 {
		t.Error("the service was called")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	ok := Config{URL: "https://auth.example.com", ClientID: "rs", ClientSecret: "s", Route: Route{ServiceCode: 27}}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no URL":                  func(c *Config) { c.URL = "" },
		"not http":                func(c *Config) { c.URL = "ftp://x" },
		"no host":                 func(c *Config) { c.URL = "http://" },
		"no client":               func(c *Config) { c.ClientID = "" },
		"no secret":               func(c *Config) { c.ClientSecret = "" },
		"service code 0":          func(c *Config) { c.Route.ServiceCode = 0 },
		"service code 100":        func(c *Config) { c.Route.ServiceCode = 100 },
		"signature hmac":          func(c *Config) { c.Route.Signature = "hmac" },
		"token optional":          func(c *Config) { c.Route.Token = "optional" },
		"token none, symmetric":   func(c *Config) { c.Route.Token = "none" },
		"negative MaxBody":        func(c *Config) { c.MaxBody = -1 },
		"token none, either kind": func(c *Config) { c.Route.Token, c.Route.Signature = "none", "either" },
	} {
		c := ok
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "s\"") {
			t.Errorf("%s: %v", name, err)
		}
	}
	c := ok
	c.Route = Route{ServiceCode: 54, Token: "none", Signature: "asymmetric"}
	if _, err := New(c); err != nil {
		t.Errorf("token none with asymmetric: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
