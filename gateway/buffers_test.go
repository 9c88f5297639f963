package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/oauth"
)

// cannedUpstream answers every call at once, without a network.
type cannedUpstream struct{ body string }

func (u cannedUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(u.body)),
		ContentLength: int64(len(u.body)), Request: req}, nil
}

// TestProxyReusesCopyBuffers: forwarding a verified call must not allocate
// the 32 KiB buffer httputil.ReverseProxy copies an answer through when it
// has no BufferPool — the bulk of a call's garbage, which set the pace of
// the collector under load.
func TestProxyReusesCopyBuffers(t *testing.T) {
	cfg := config.Default().Gateway
	cfg.Routes = []config.GatewayRoute{{Prefix: "/api/", Upstream: "http://upstream.invalid", Auth: "bearer"}}
	tokens := &fakeTokens{tokens: map[string]*oauth.Token{"good": {ClientID: "merchant", Subject: "merchant", Scopes: []string{"payments"}}}}
	const answer = `{"responseCode":"2002700","responseMessage":"Successful"}`
	g, err := New(cfg, map[string]Verifier{"bearer": &BearerVerifier{Tokens: tokens}}, Deps{Transport: cannedUpstream{answer}})
	if err != nil {
		t.Fatal(err)
	}
	call := func() {
		req := httptest.NewRequest("POST", "/api/pay", strings.NewReader(`{"amount":"10000.00"}`))
		req.Header.Set("Authorization", "Bearer good")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		if w.Code != 200 || w.Body.String() != answer {
			t.Fatalf("call: %d %q", w.Code, w.Body.String())
		}
	}
	for range 10 {
		call() // warm the pool
	}
	const n = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		call()
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes allocated per forwarded call", perCall)
	if perCall >= 24<<10 {
		t.Errorf("%d bytes allocated per forwarded call: the copy buffer is not reused", perCall)
	}
}
