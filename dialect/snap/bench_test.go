package snap

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
)

// BenchmarkSNAPVerify measures one access token request's dialect work:
// decoding headers and body, then the snap_signature Authenticator with a
// cached parsed key (the store is not measured).
func BenchmarkSNAPVerify(b *testing.B) {
	d, err := NewB2B(nil, dialect.Deps{Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatal(err)
	}
	sig, err := Sign(clientKey(), testClientID, ts0)
	if err != nil {
		b.Fatal(err)
	}
	client := &oauth.Client{ID: testClientID, PublicKeyPEM: spkiPEM(b, &clientKey().PublicKey)}
	ctx := context.Background()
	auth := NewAuthenticator(nil)
	body := strings.NewReader(okBody)
	r := httptest.NewRequest(http.MethodPost, "/v1.0/access-token/b2b", body)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderTimestamp, ts0)
	r.Header.Set(HeaderClientKey, testClientID)
	r.Header.Set(HeaderSignature, sig)

	b.ReportAllocs()
	for b.Loop() {
		body.Reset(okBody)
		req, e := d.DecodeTokenRequest(r)
		if e != nil {
			b.Fatal(e)
		}
		if e := auth.Authenticate(ctx, req.Credentials, client, t0); e != nil {
			b.Fatal(e)
		}
	}
}

// BenchmarkSNAPDecode is the decode half alone, for comparison.
func BenchmarkSNAPDecode(b *testing.B) {
	d, err := NewB2B(nil, dialect.Deps{Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatal(err)
	}
	sig, _ := Sign(clientKey(), testClientID, ts0)
	body := strings.NewReader(okBody)
	r := httptest.NewRequest(http.MethodPost, "/v1.0/access-token/b2b", body)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderTimestamp, ts0)
	r.Header.Set(HeaderClientKey, testClientID)
	r.Header.Set(HeaderSignature, sig)
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(okBody)
		if _, e := d.DecodeTokenRequest(r); e != nil {
			b.Fatal(e)
		}
	}
}
