package snapclient

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/snapsig"
)

// Variant is the service-call signature scheme.
type Variant string

const (
	// Symmetric is Base64(HMAC-SHA512(client secret,
	// METHOD:EndpointUrl:AccessToken:bodyHash:X-TIMESTAMP)).
	Symmetric Variant = "symmetric"
	// Asymmetric is Base64(SHA256withRSA(private key,
	// METHOD:EndpointUrl:bodyHash:X-TIMESTAMP)).
	Asymmetric Variant = "asymmetric"
)

// DefaultChannelID is the CHANNEL-ID sent unless Transport.ChannelID says
// otherwise: the value DANA's SDK sends; providers accept any five digits
// unless they assign one.
const DefaultChannelID = "95221"

// Transport is an http.RoundTripper that turns a plain JSON request into a
// SNAP service call. For each request it adds Authorization: Bearer (from
// Tokens; none when Tokens is nil, for "asymmetric without get token"),
// X-TIMESTAMP, X-PARTNER-ID, X-EXTERNAL-ID (unless the request has one),
// CHANNEL-ID (unless the request has one), Content-Type: application/json
// (unless set) and X-SIGNATURE in the configured variant over the
// minified body. The request body is read, hashed and sent unchanged.
//
// A Transport is safe for concurrent use once configured; its fields must
// not change while it is in use.
type Transport struct {
	// Base sends the signed request (nil: http.DefaultTransport).
	Base http.RoundTripper
	// Tokens supplies the B2B access token; nil sends no Authorization
	// (only with Asymmetric). When the provider answers 401 with case 01
	// (invalid token) or 03 (token not found), the token is invalidated so
	// the next request fetches a new one; the failed request is not
	// retried.
	Tokens *TokenSource
	// Variant selects the signature ("": Symmetric).
	Variant Variant
	// ClientSecret keys Symmetric signatures.
	ClientSecret []byte
	// PrivateKey makes Asymmetric signatures.
	PrivateKey *rsa.PrivateKey
	// PartnerID is X-PARTNER-ID (often the client ID).
	PartnerID string
	// ChannelID is CHANNEL-ID ("": DefaultChannelID).
	ChannelID string
	// ExternalID returns a fresh X-EXTERNAL-ID, unique for the partner
	// within the day (nil: 32 random hexadecimal characters).
	ExternalID func() string
	// StripPrefix is a mount prefix in the request path that is not
	// signed (see snapsig.EndpointURL), e.g. "/nicepay".
	StripPrefix string
	// IncludeQuery signs the query string as part of EndpointUrl.
	IncludeQuery bool
	// Now is the clock X-TIMESTAMP is read from (nil: time.Now).
	Now func() time.Time
	// Location is the time zone X-TIMESTAMP is written in (nil: the one of
	// Now's times).
	Location *time.Location
}

// RoundTrip signs and sends req; req itself is not modified (its body is
// consumed and closed). It returns an error without sending anything when
// the Transport is misconfigured, the body is not JSON (wrapping
// snapsig.ErrNotJSON) or no token can be had, and otherwise what Base
// returns.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	minified, err := snapsig.Minify(body)
	if err != nil {
		return nil, fmt.Errorf("snapclient: %s %s: %w", req.Method, req.URL.Path, err)
	}
	token := ""
	if t.Tokens != nil {
		if token, err = t.Tokens.Token(req.Context()); err != nil {
			return nil, err
		}
	}

	out := req.Clone(req.Context())
	out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 {
		out.Body = http.NoBody
	}
	h := out.Header
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	tnow := now()
	if t.Location != nil {
		tnow = tnow.In(t.Location)
	}
	ts := snap.Timestamp(tnow)
	h.Set(snapsig.HeaderTimestamp, ts)
	h.Set(snapsig.HeaderPartnerID, t.PartnerID)
	if h.Get(snapsig.HeaderExternalID) == "" {
		id := newExternalID()
		if t.ExternalID != nil {
			id = t.ExternalID()
		}
		if !snapsig.ValidID(id) {
			return nil, errors.New("snapclient: ExternalID returned an invalid X-EXTERNAL-ID (1 to 36 visible ASCII characters)")
		}
		h.Set(snapsig.HeaderExternalID, id)
	}
	if h.Get(snapsig.HeaderChannelID) == "" {
		h.Set(snapsig.HeaderChannelID, t.channelID())
	}

	method := out.Method
	if method == "" {
		method = http.MethodGet
	}
	endpoint := snapsig.EndpointURL(out.URL.EscapedPath(), out.URL.RawQuery, t.StripPrefix, t.IncludeQuery)
	hash := snapsig.BodyHash(minified)
	var sig string
	if t.variant() == Asymmetric {
		if sig, err = snapsig.SignAsymmetric(t.PrivateKey, snapsig.AsymmetricString(method, endpoint, hash, ts)); err != nil {
			return nil, fmt.Errorf("snapclient: sign: %w", err)
		}
	} else {
		sig = snapsig.SignSymmetric(t.ClientSecret, snapsig.SymmetricString(method, endpoint, token, hash, ts))
	}
	h.Set(snapsig.HeaderSignature, sig)

	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(out)
	if err == nil && token != "" && resp.StatusCode == http.StatusUnauthorized && tokenRefused(resp) {
		t.Tokens.Invalidate(token)
	}
	return resp, err
}

func (t *Transport) variant() Variant {
	if t.Variant == "" {
		return Symmetric
	}
	return t.Variant
}

func (t *Transport) channelID() string {
	if t.ChannelID == "" {
		return DefaultChannelID
	}
	return t.ChannelID
}

// check reports a configuration that cannot make a valid call.
func (t *Transport) check() error {
	switch v := t.variant(); {
	case v != Symmetric && v != Asymmetric:
		return fmt.Errorf("snapclient: unknown Variant %q (symmetric or asymmetric)", string(v))
	case v == Symmetric && len(t.ClientSecret) == 0:
		return errors.New("snapclient: Symmetric needs ClientSecret")
	case v == Symmetric && t.Tokens == nil:
		return errors.New("snapclient: Symmetric needs Tokens (its string to sign includes the access token)")
	case v == Asymmetric && t.PrivateKey == nil:
		return errors.New("snapclient: Asymmetric needs PrivateKey")
	case !snapsig.ValidID(t.PartnerID):
		return errors.New("snapclient: PartnerID must be 1 to 36 visible ASCII characters")
	case !snapsig.ValidChannelID(t.channelID()):
		return errors.New("snapclient: ChannelID must be five digits")
	}
	return nil
}

// readBody reads and closes req's body.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("snapclient: read request body: %w", err)
	}
	return b, nil
}

func newExternalID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// maxPeek bounds what is read of a 401 answer to find its responseCode.
const maxPeek = 4 << 10

// tokenRefused reports whether a 401 answer's SNAP responseCode says the
// token is invalid (case 01) or unknown (case 03). It reads at most maxPeek
// bytes and puts them back in front of the rest of the body.
func tokenRefused(resp *http.Response) bool {
	peek, err := io.ReadAll(io.LimitReader(resp.Body, maxPeek))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	var b struct {
		ResponseCode string `json:"responseCode"`
	}
	if json.Unmarshal(peek, &b) != nil || len(b.ResponseCode) != 7 || !strings.HasPrefix(b.ResponseCode, "401") {
		return false
	}
	c := b.ResponseCode[5:]
	return c == "01" || c == "03"
}

type readCloser struct {
	io.Reader
	io.Closer
}
