package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/config"
)

// TestGatewayCallsKeepTheirConnection: the gateway reads the body of every
// call to its routes itself, so the server must not treat those routes as
// ones that leave bodies unread — which answered every call with
// Connection: close, so that each SNAP service call (always a POST with a
// body) paid for a new TCP connection. A body sent to a path nothing
// serves still ends its connection.
func TestGatewayCallsKeepTheirConnection(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"from":"upstream"}`)
	}))
	defer up.Close()
	n := start(t, func(c *config.Config) {
		c.Gateway.Routes = []config.GatewayRoute{{Prefix: "/api/", Upstream: up.URL, Auth: "bearer"}}
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	post := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+n.srv.Addr()+path, strings.NewReader(`{"amount":10}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer not-a-token")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	for i := range 3 {
		// Refused by the gateway after it read the body.
		if res := post("/api/pay"); res.StatusCode != 401 || res.Close {
			t.Fatalf("call %d: %d, Connection: close %v; want 401 on a kept connection", i, res.StatusCode, res.Close)
		}
	}
	if got := n.public.Accepted(); got != 1 {
		t.Errorf("3 gateway calls took %d connections, want 1", got)
	}
	if res := post("/elsewhere"); res.StatusCode != 404 || !res.Close {
		t.Errorf("a body to no route: %d, Connection: close %v; want 404 and the connection ended", res.StatusCode, res.Close)
	}
}
