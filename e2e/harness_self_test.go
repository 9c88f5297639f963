package e2e

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestHarnessRemembersSentCredentials: the no-secret-in-logs check covers
// every credential a test sent, right or wrong, in every place a request
// carries one, and not the short words tests send on purpose.
func TestHarnessRemembersSentCredentials(t *testing.T) {
	e := &env{t: t, logs: &syncBuffer{}}
	secret := "Zx8mC1v3kq0pWJ2rT5yH7uN9bL4dF6gA2sE0iO1aQ3c" // 43 characters, like a real one
	misses := nearMisses(secret)
	if len(misses) != 3 || misses[0] == secret || len(misses[0]) != len(secret) ||
		misses[1] != secret+"A" || misses[2] != secret[:32] {
		t.Fatalf("nearMisses: %q", misses)
	}
	if m := nearMisses("passwordA"); m[0] != "passwordB" || m[2] != "password" {
		t.Fatalf("nearMisses of a short value: %q", m)
	}

	send := func(method, target, contentType, body string, header http.Header) {
		req, err := http.NewRequest(method, target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		e.rememberSent(req)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("client:"+url.QueryEscape("basic+secret/wrong")))
	send("POST", "http://x/oauth/token", "", "grant_type=client_credentials", http.Header{"Authorization": {basic}})
	send("POST", "http://x/oauth/token", "application/x-www-form-urlencoded",
		"grant_type=password&username=someone&password="+url.QueryEscape("mistyped password")+"&client_secret="+misses[0], nil)
	send("POST", "http://x/oauth/token?client_secret=secret-in-the-url", "application/x-www-form-urlencoded", "grant_type=client_credentials", nil)
	send("POST", "http://x/oauth/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=tgr_made_up_refresh", nil)
	send("POST", "http://x/oauth/introspect", "application/x-www-form-urlencoded", "token=tga_made_up_access&token_type_hint=x", nil)
	send("POST", "http://x/v2/auth/oauth2/token", "application/json", `{"client_id":"c","client_secret":"`+misses[1]+`","nested":{"password":"nested password"}}`, nil)
	send("POST", "http://x/v1.0/access-token/b2b", "application/json", `{"grantType":"client_credentials"}`,
		http.Header{"X-Signature": {"c2lnbmF0dXJlLXNlbnQ="}})
	send("POST", "http://x/oauth/token", "application/x-www-form-urlencoded", "grant_type=password&username=u&password=nope", nil)

	sent := []string{"basic+secret/wrong", strings.TrimPrefix(basic, "Basic "), "mistyped password", misses[0],
		"secret-in-the-url", "tgr_made_up_refresh", "tga_made_up_access", misses[1], "nested password", "c2lnbmF0dXJlLXNlbnQ="}
	for _, v := range sent {
		e.logs.buf.Reset()
		e.logs.Write([]byte("level=WARN msg=oops value=" + v + "\n"))
		if !slices.Contains(e.leakedSecrets(), v) {
			t.Errorf("a sent credential %q in the log is not caught", v)
		}
	}
	e.logs.buf.Reset()
	e.logs.Write([]byte("level=WARN msg=\"security event\" reason=\"wrong password or unknown username\" username=someone grant_type=password nope\n"))
	if leaked := e.leakedSecrets(); len(leaked) != 0 {
		t.Errorf("false alarms: %q", leaked)
	}
}
