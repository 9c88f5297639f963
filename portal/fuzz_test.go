package portal_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/tokengate/tokengate/admin"
)

// FuzzRequests sends arbitrary requests (method, path, cookie, Origin,
// content type, body; signed in or not, with the session's CSRF token or
// not) to the portal: whatever they hold, it answers without a server
// error, and a merchant's request never reaches another merchant's
// client.
func FuzzRequests(f *testing.F) {
	fx := newFixture(f)
	b, _ := fx.signedIn("m@example.com", admin.RoleMerchant, merchantLimits)
	other, _ := fx.signedIn("other@example.com", admin.RoleMerchant, merchantLimits)
	otherID, _ := other.createClient("Other's", nil)
	session := b.cookies["__Host-tokengate-session"].Value
	csrf := b.csrf
	handler := fx.srv.Config.Handler

	for _, seed := range []struct {
		method, path, cookie, origin, ctype string
		body                                []byte
		signedIn, withCSRF                  bool
	}{
		{"GET", "/clients", "", "", "", nil, true, false},
		{"POST", "/clients/new", "", "", "application/x-www-form-urlencoded", []byte("name=x&grant=client_credentials&scope=payments&access_ttl=-5m"), true, true},
		{"POST", "/clients/" + otherID + "/rotate", "", "", "application/x-www-form-urlencoded", []byte("grace=1h"), true, true},
		{"POST", "/clients/" + otherID + "/snap-key", "", "", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"pem_file\"; filename=\"a\"\r\n\r\n-----BEGIN PUBLIC KEY-----\r\n--x--\r\n"), true, true},
		{"POST", "/login", "__Host-tokengate-signin=" + session, "null", "application/x-www-form-urlencoded", []byte("email=%ff&password=&code=1"), false, false},
		{"GET", "/audit?before=-1&client=%00", "", "", "", nil, true, false},
		{"POST", "/accounts", "", "https://x", "application/x-www-form-urlencoded", []byte("max_clients=999999999999999999999"), true, true},
		{"GET", "/clients?after=" + otherID, "__Host-tokengate-session=" + session + "x", "", "", nil, false, false},
		{"POST", "/clients/" + url.PathEscape(otherID+"/x?y#z%") + "/rotate", "", "", "application/x-www-form-urlencoded", []byte("grace=720h&once=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), true, true},
		{"GET", "/clients/%2E%2E/rotate", "", "", "", nil, true, false},
	} {
		f.Add(seed.method, seed.path, seed.cookie, seed.origin, seed.ctype, seed.body, seed.signedIn, seed.withCSRF)
	}
	f.Fuzz(func(t *testing.T, method, path, cookie, origin, ctype string, body []byte, signedIn, withCSRF bool) {
		if withCSRF && ctype == "application/x-www-form-urlencoded" {
			body = append([]byte("csrf="+url.QueryEscape(csrf)+"&"), body...)
		}
		req, err := http.NewRequest(method, "http://portal.test"+path, bytes.NewReader(body))
		if err != nil || req.URL.Host != "portal.test" {
			return
		}
		req.Host = "portal.test"
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if signedIn {
			req.AddCookie(&http.Cookie{Name: "__Host-tokengate-session", Value: session})
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, path, w.Code, w.Body)
		}
		if c, err := fx.svc.GetClient(fx.ctx, otherID); err != nil || len(c.Secrets) != 1 || c.SNAPKeyFingerprint != "" || c.Disabled {
			t.Fatalf("%s %q changed another merchant's client: %+v %v", method, path, c, err)
		}
	})
}
