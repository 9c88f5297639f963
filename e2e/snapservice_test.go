package e2e

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/snapclient"
	"github.com/tokengate/tokengate/snapsig"
)

// serviceVerifier is a SNAP payment API stand-in that verifies calls with
// snapsig: symmetric with secret and the one token it knows, asymmetric
// with the test key.
type serviceVerifier struct {
	secret, token string
	pub           *rsa.PublicKey
	strip         string
	includeQuery  bool
	mu            sync.Mutex
	bodies        []string
}

func (v *serviceVerifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	asym := r.Header.Get("Authorization") == "" || strings.HasPrefix(r.URL.Path, "/asym/")
	h, fe := snapsig.ParseHeaders(r.Header, !asym)
	body, _ := io.ReadAll(r.Body)
	m, err := snapsig.Minify(body)
	if fe != nil || err != nil {
		http.Error(w, `{"responseCode":"4000000","responseMessage":"bad request"}`, 400)
		return
	}
	ep := snapsig.EndpointURL(r.URL.EscapedPath(), r.URL.RawQuery, v.strip, v.includeQuery)
	var ok bool
	if asym {
		ok = snapsig.VerifyAsymmetric(v.pub, snapsig.AsymmetricString(r.Method, ep, snapsig.BodyHash(m), h.Timestamp), h.Signature)
	} else {
		ok = h.AccessToken == v.token && snapsig.VerifySymmetric([]byte(v.secret), snapsig.SymmetricString(r.Method, ep, h.AccessToken, snapsig.BodyHash(m), h.Timestamp), h.Signature)
	}
	if !ok {
		http.Error(w, `{"responseCode":"4010000","responseMessage":"Unauthorized. [Signature]"}`, 401)
		return
	}
	v.mu.Lock()
	v.bodies = append(v.bodies, string(body))
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"responseCode":"2000000","responseMessage":"Successful"}`)
}

// snapToken gets a B2B token from tokengate's SNAP endpoint through the
// merchant-side TokenSource.
func snapToken(t *testing.T, e *env, id string) string {
	t.Helper()
	ts, err := snapclient.NewTokenSource(snapclient.TokenConfig{URL: e.base + "/v1.0/access-token/b2b", ClientID: id, PrivateKey: testSnapKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token(context.Background())
	if err != nil {
		t.Fatalf("TokenSource against tokengate: %v", err)
	}
	e.remember(tok)
	return tok
}

func TestSNAPSignService(t *testing.T) {
	e := start(t, snapEndpoints)
	privPath, pubPath := writeKeys(t, testSnapKey(t))
	id, secret := e.createClient("--name", "merchant", "--grant", "client_credentials", "--snap-public-key", pubPath,
		"--auth-method", "snap_signature")
	token := snapToken(t, e, id)
	secretPath := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretPath, []byte(secret+"\n"), 0o600)

	v := &serviceVerifier{secret: secret, token: token, pub: &testSnapKey(t).PublicKey, strip: "/pg", includeQuery: true}
	api := httptest.NewServer(v)
	defer api.Close()
	body := "{\n  \"partnerReferenceNo\": \"INV 1\",\n  \"note\": \"it's \\\"quoted\\\"\"\n}\n"
	url := api.URL + "/pg/v1.0/transfer-va/create-va?x=1&y=a%2Fb"
	sym := []string{"snap", "sign-service", "--url", url, "--client-id", id, "--secret-file", secretPath, "--token", token,
		"--body", body, "--strip-prefix", "/pg", "--include-query", "--timestamp", "2026-01-02T10:11:12+07:00", "--external-id", "ext-1"}

	t.Run("json headers verify", func(t *testing.T) {
		var h map[string]string
		if err := json.Unmarshal([]byte(e.mustRun("", append(sym, "--json")...)), &h); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token, "X-TIMESTAMP": "2026-01-02T10:11:12+07:00",
			"X-PARTNER-ID": id, "X-EXTERNAL-ID": "ext-1", "CHANNEL-ID": "95221"}
		for k, val := range want {
			if h[k] != val {
				t.Errorf("%s = %q, want %q", k, h[k], val)
			}
		}
		if len(h) != len(want)+1 {
			t.Errorf("headers %v", h)
		}
		m, _ := snapsig.Minify([]byte(body))
		s := "POST:/v1.0/transfer-va/create-va?x=1&y=a%2Fb:" + token + ":" + snapsig.BodyHash(m) + ":2026-01-02T10:11:12+07:00"
		if !snapsig.VerifySymmetric([]byte(secret), s, h["X-SIGNATURE"]) {
			t.Errorf("X-SIGNATURE does not verify over %q", s)
		}
		// And against OpenSSL's HMAC, when it is installed.
		if _, err := exec.LookPath("openssl"); err == nil {
			cmd := exec.Command("sh", "-c", `openssl dgst -sha512 -mac HMAC -macopt hexkey:"$1" -binary | openssl base64 -A`, "sh", hex.EncodeToString([]byte(secret)))
			cmd.Stdin = strings.NewReader(s)
			out, err := cmd.Output()
			if err != nil || strings.TrimSpace(string(out)) != h["X-SIGNATURE"] {
				t.Errorf("openssl HMAC %q (%v), CLI %q", out, err, h["X-SIGNATURE"])
			}
		}
	})

	t.Run("the printed curl line works", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("curl is not installed")
			}
			t.Skip("curl is not installed")
		}
		args := append([]string{}, sym...)
		args = args[:len(args)-4] // a fresh timestamp and external ID
		out := e.mustRun("", args...)
		i := strings.Index(out, "curl ")
		if i < 0 || strings.Contains(out, secret) {
			t.Fatalf("output: %q", out)
		}
		if !strings.Contains(out, "String to sign: POST:/v1.0/transfer-va/create-va?x=1&y=a%2Fb:") {
			t.Errorf("no string to sign in %q", out)
		}
		res, err := exec.Command("sh", "-c", out[i:]).CombinedOutput()
		if err != nil || !strings.Contains(string(res), "2000000") {
			t.Fatalf("curl line: %v: %s", err, res)
		}
		v.mu.Lock()
		got := v.bodies[len(v.bodies)-1]
		v.mu.Unlock()
		if got != body {
			t.Errorf("upstream got body %q, want %q", got, body)
		}
	})

	t.Run("asymmetric without token", func(t *testing.T) {
		out := e.mustRun("", "snap", "sign-service", "--variant", "asymmetric", "--key", privPath, "--partner-id", id,
			"--url", api.URL+"/asym/v1.0/qr/qr-mpm-generate", "--body", `{"a": 1}`, "--channel-id", "95231", "--json")
		var h map[string]string
		json.Unmarshal([]byte(out), &h)
		if _, ok := h["Authorization"]; ok || h["CHANNEL-ID"] != "95231" || len(h["X-EXTERNAL-ID"]) != 32 {
			t.Errorf("headers %v", h)
		}
		req, _ := http.NewRequest(http.MethodPost, api.URL+"/asym/v1.0/qr/qr-mpm-generate", strings.NewReader(`{"a": 1}`))
		for k, val := range h {
			req.Header.Set(k, val)
		}
		if r := e.do(req); r.status != 200 {
			t.Errorf("asymmetric call: %d %s", r.status, r.body)
		}
	})

	t.Run("token from stdin", func(t *testing.T) {
		args := []string{"snap", "sign-service", "--url", api.URL + "/v1.0/x", "--partner-id", id, "--secret-file", secretPath, "--token", "-", "--json"}
		var h map[string]string
		json.Unmarshal([]byte(e.mustRun(token+"\n", args...)), &h)
		if h["Authorization"] != "Bearer "+token {
			t.Errorf("headers %v", h)
		}
	})

	t.Run("refusals say why and show no secret", func(t *testing.T) {
		base := []string{"snap", "sign-service", "--url", url, "--partner-id", id}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--token", token}, "--secret-file"},
			{[]string{"--secret-file", secretPath}, "--token"},
			{[]string{"--secret-file", secretPath, "--token", token, "--key", privPath}, "--key"},
			{[]string{"--variant", "asymmetric", "--secret-file", secretPath}, "--secret-file"},
			{[]string{"--variant", "asymmetric"}, "--key"},
			{[]string{"--secret-file", secretPath, "--token", token, "--body", `{"a":`}, "JSON"},
			{[]string{"--secret-file", secretPath, "--token", token, "--channel-id", "web"}, "--channel-id"},
			{[]string{"--secret-file", secretPath, "--token", token, "--external-id", strings.Repeat("x", 37)}, "--external-id"},
			{[]string{"--secret-file", secretPath, "--token", "Bearer " + token}, "bare"},
			{[]string{"--secret-file", secretPath, "--token", token, "--timestamp", "yesterday"}, "--timestamp"},
			{[]string{"--secret-file", secretPath, "--token", token, "--body", "{}", "--body-file", "x"}, "body"},
			{[]string{"--variant", "asymmetric", "--key", pubPath}, "PUBLIC KEY"},
			{[]string{"--variant", "hmac"}, "variant"},
		} {
			out, errOut, code := e.run("", append(base, c.args...)...)
			if code == 0 || out != "" || !strings.Contains(errOut, c.want) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q (want it to mention %s)", c.args, code, out, errOut, c.want)
			}
			if strings.Contains(errOut, secret) {
				t.Errorf("%v: the secret is on stderr", c.args)
			}
		}
		key, _ := os.ReadFile(privPath)
		for _, args := range [][]string{sym, {"snap", "sign-service", "--variant", "asymmetric", "--key", privPath, "--partner-id", id, "--url", url}} {
			out := e.mustRun("", args...)
			if strings.Contains(out, secret) || bytes.Contains([]byte(out), key[40:80]) {
				t.Errorf("%v: output shows the secret or the key", args)
			}
		}
	})
}
