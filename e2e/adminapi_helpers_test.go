package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"

	"github.com/tokengate/tokengate/adminapi"
	tgconfig "github.com/tokengate/tokengate/config"
)

// The OpenAPI conformance check every admin API response of these tests
// goes through: the checked-in document, validated by
// libopenapi-validator (OpenAPI 3.1, JSON Schema 2020-12, formats
// asserted).
var (
	openAPIOnce sync.Once
	openAPIMu   sync.Mutex // the validator's caches are not documented as safe for concurrent use
	openAPI     validator.Validator
	openAPIErr  error
	// routeMux finds a request's route pattern, as the API's own mux does.
	routeMux = func() *http.ServeMux {
		mux := http.NewServeMux()
		for _, rt := range adminapi.Routes() {
			mux.HandleFunc(rt.Method+" "+rt.Path, func(http.ResponseWriter, *http.Request) {})
		}
		return mux
	}()
)

func openAPIValidator(t *testing.T) validator.Validator {
	t.Helper()
	openAPIOnce.Do(func() {
		b, err := adminapi.OpenAPIJSON()
		if err != nil {
			openAPIErr = err
			return
		}
		doc, err := libopenapi.NewDocument(b)
		if err != nil {
			openAPIErr = err
			return
		}
		v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
		if len(errs) > 0 {
			openAPIErr = errs[0]
			return
		}
		openAPI = v
	})
	if openAPIErr != nil {
		t.Fatalf("the OpenAPI document: %v", openAPIErr)
	}
	return openAPI
}

// withAdminAPI turns the admin API on, on a random port.
func withAdminAPI(more ...func(*tgconfig.Config)) func(*tgconfig.Config) {
	return func(c *tgconfig.Config) {
		c.Admin.Listen = "127.0.0.1:0"
		for _, m := range more {
			m(c)
		}
	}
}

// secretMember finds a secret shown once in a response, to keep it out of
// a failing test's output.
var secretMember = regexp.MustCompile(`"client_secret":"[^"]*"`)

// apiClient calls the admin API as one caller.
type apiClient struct {
	e      *env
	token  string       // the bearer token; "" for none
	client *http.Client // nil: httpClient
	// hits records the route patterns this client got a response from.
	hits map[string]bool
}

// apiResp is an admin API response.
type apiResp struct {
	status int
	header http.Header
	body   []byte
	obj    map[string]any // an object body
	arr    []any          // an array body
}

func (r *apiResp) str(k string) string {
	s, _ := r.obj[k].(string)
	return s
}

// problem decodes a problem details body.
func (r *apiResp) problem(t *testing.T) adminapi.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.status, ct, r.body)
	}
	var p adminapi.Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Type != adminapi.ProblemBase+p.Code || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v with status %d", p, r.status)
	}
	return p
}

// wantProblem checks that r is a problem of status and code, naming the
// fields given (field names; "" for a problem without errors).
func (r *apiResp) wantProblem(t *testing.T, status int, code string, fields ...string) adminapi.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	p := r.problem(t)
	if p.Code != code {
		t.Fatalf("problem code %q, want %q: %s", p.Code, code, r.body)
	}
	for _, f := range fields {
		found := false
		for _, fe := range p.Errors {
			found = found || fe.Field == f
		}
		if !found {
			t.Fatalf("problem errors %+v do not name %q", p.Errors, f)
		}
	}
	return p
}

func (r *apiResp) want(t *testing.T, status int) *apiResp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// apiCall is one request: a method, a path (from /admin/v1/ on), a body
// (nil: none; a string: sent as it is; anything else: as JSON) and
// headers as name, value pairs.
func (c *apiClient) call(method, path string, body any, headers ...string) *apiResp {
	c.e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.e.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, c.e.admin+path, bytes.NewReader(raw))
	if err != nil {
		c.e.t.Fatal(err)
	}
	if raw == nil {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	c.e.rememberSent(req)
	hc := c.client
	if hc == nil {
		hc = httpClient
	}
	res, err := hc.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(res.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	r := &apiResp{status: res.StatusCode, header: res.Header, body: rb}
	if ct := res.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") || ct == "application/problem+json" {
		if len(rb) > 0 && rb[0] == '[' {
			if err := json.Unmarshal(rb, &r.arr); err != nil {
				c.e.t.Fatalf("%s %s: bad JSON %q: %v", method, path, rb, err)
			}
		} else if err := json.Unmarshal(rb, &r.obj); err != nil {
			c.e.t.Fatalf("%s %s: bad JSON %q: %v", method, path, rb, err)
		}
	}
	for _, k := range []string{"client_secret", "access_token"} {
		if v := r.str(k); v != "" {
			c.e.remember(v)
		}
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		c.e.t.Errorf("%s %s: Cache-Control %q, want no-store", method, path, res.Header.Get("Cache-Control"))
	}
	c.conform(req, raw, r)
	return r
}

// conform checks r against the OpenAPI document: the response of every
// request (its status is documented for the operation, its headers and
// body match the documented ones), and the request of every 2xx response
// (a request the server took must be one the document allows). A request
// that matches no operation must be a 404 or 405 problem.
func (c *apiClient) conform(req *http.Request, body []byte, r *apiResp) {
	t := c.e.t
	t.Helper()
	probe := req.Clone(req.Context())
	probe.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	_, pattern := routeMux.Handler(probe)
	if pattern == "" {
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s matches no route but answered %d", req.Method, req.URL.Path, r.status)
		}
		r.problem(t)
		return
	}
	if c.hits != nil {
		c.hits[pattern] = true
	}
	v := openAPIValidator(t)
	fresh := func() *http.Request {
		q := req.Clone(req.Context())
		q.Body = io.NopCloser(bytes.NewReader(body))
		return q
	}
	res := &http.Response{StatusCode: r.status, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body)), Request: fresh()}
	openAPIMu.Lock()
	defer openAPIMu.Unlock()
	if ok, errs := v.ValidateHttpResponse(fresh(), res); !ok {
		for _, e := range errs {
			t.Errorf("OpenAPI: %s %s -> %d: %s: %s", req.Method, req.URL.Path, r.status, e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", se.FieldPath, se.Reason)
			}
		}
		t.Errorf("  the response: %s", secretMember.ReplaceAll(r.body, []byte(`"client_secret":"(redacted)"`)))
	}
	if r.status >= 200 && r.status < 300 {
		if ok, errs := v.ValidateHttpRequest(fresh()); !ok {
			for _, e := range errs {
				t.Errorf("OpenAPI: the request %s %s (answered %d) is not one the document allows: %s: %s",
					req.Method, req.URL.Path, r.status, e.Message, e.Reason)
				for _, se := range e.SchemaValidationErrors {
					t.Errorf("  %s: %s", se.FieldPath, se.Reason)
				}
			}
		}
	}
	if r.status >= 400 {
		r.problem(t)
	}
}

// operator bootstraps an operator client as the README says (the CLI,
// then a token with the tokengate:admin scope) and returns a client of
// the API calling with its token.
func (e *env) operator(name string) (*apiClient, string) {
	e.t.Helper()
	id, sec := e.createClient("--name", name, "--grant", "client_credentials", "--scope", adminapi.Scope)
	tok := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {adminapi.Scope}}, id, sec).str("access_token")
	return &apiClient{e: e, token: tok, hits: map[string]bool{}}, id
}
