package snap

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

// FuzzDecodeSNAP feeds arbitrary headers and bodies through decode, the
// snap_signature Authenticator and the error writer: nothing panics, and only SNAP service-73 codes
// whose first three digits are the HTTP status come out.
func FuzzDecodeSNAP(f *testing.F) {
	sig, err := Sign(clientKey(), testClientID, ts0)
	if err != nil {
		f.Fatal(err)
	}
	ct := "application/json"
	f.Add("POST", ct, ts0, testClientID, sig, okBody)
	f.Add("POST", ct, ts0, testClientID, sig, `{"grant_type":"CLIENT_CREDENTIALS"}`)
	f.Add("POST", ct, "2024-12-31T03:11:40.359Z", testClientID, sig, `{"grantType":"client_credentials","grant_type":"x"}`)
	f.Add("GET", "", "", "", "", "")
	f.Add("POST", "text/plain", ts0, "a b", "!!", `[`)
	f.Add("POST", ct, ts0, testClientID, "AAAA", `{"grantType":"client_credentials","additionalInfo":[]}`)
	f.Add("POST", ct+"; charset=utf-8", ts0, testClientID, sig, `{"grantType":"client_credentials","grantType":"client_credentials"}`)

	pub := spkiPEM(f, &clientKey().PublicKey)
	auth := NewAuthenticator(nil)
	f.Fuzz(func(t *testing.T, method, contentType, ts, clientID, signature, body string) {
		d, err := NewB2B(nil, dialect.Deps{Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{
			Method: method,
			URL:    &url.URL{Path: "/v1.0/access-token/b2b"},
			Header: http.Header{},
			Body:   http.NoBody,
		}
		if body != "" {
			r.Body = io.NopCloser(strings.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		for name, v := range map[string]string{"Content-Type": contentType, HeaderTimestamp: ts, HeaderClientKey: clientID, HeaderSignature: signature} {
			if v != "" {
				r.Header[name] = []string{v}
			}
		}
		r = r.WithContext(context.Background())

		req, e := d.DecodeTokenRequest(r)
		if e == nil {
			ev, ok := req.Credentials.Evidence.(Evidence)
			if req.GrantType != oauth.GrantClientCredentials || req.Credentials.Method != oauth.AuthSNAPSignature ||
				req.Credentials.ClientID != strings.TrimSpace(clientID) || req.Credentials.Secret != "" ||
				!ok || ev.Timestamp != strings.TrimSpace(ts) || len(ev.Signature) == 0 || !req.NoRefreshToken {
				t.Fatalf("decoded %+v", req)
			}
			e = auth.Authenticate(context.Background(), req.Credentials, &oauth.Client{ID: req.Credentials.ClientID, PublicKeyPEM: pub}, t0)
		}
		if e == nil {
			// PKCS #1 v1.5 is deterministic, so a request verifies only if
			// it carries exactly what Sign produces for its client and
			// timestamp (in any Base64 spelling the decoder tolerates).
			want, err := Sign(clientKey(), req.Credentials.ClientID, strings.TrimSpace(ts))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := decodeSignature(strings.TrimSpace(signature))
			if base64.StdEncoding.EncodeToString(got) != want {
				t.Fatalf("verified a signature Sign did not make: %q %q %q", clientID, ts, signature)
			}
			return
		}
		w := httptest.NewRecorder()
		d.WriteError(w, r, e)
		var m map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		code := m["responseCode"]
		if !slices.Contains(allCodes[1:], code) || code[:3] != strconv.Itoa(w.Code) || len(m) != 2 {
			t.Fatalf("emitted %d %s for %+v", w.Code, w.Body, e)
		}
	})
}
