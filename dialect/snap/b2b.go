package snap

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/internal/reqbody"
	"github.com/tokengate/tokengate/oauth"
)

// Defaults and limits of the B2B access token endpoint.
const (
	// DefaultTimestampWindow is how far X-TIMESTAMP may be from the
	// server's clock, either way, unless the endpoint sets timestamp_window.
	DefaultTimestampWindow = 5 * time.Minute
	// AccessTTL is SNAP's customary access token lifetime ("expiresIn":"900").
	AccessTTL = 900 * time.Second

	maxBodyBytes     = 64 << 10
	maxTimestampSkew = 24 * time.Hour // largest timestamp_window accepted
)

// Header names of the access token request.
const (
	HeaderTimestamp = "X-TIMESTAMP"
	HeaderClientKey = "X-CLIENT-KEY"
	HeaderSignature = "X-SIGNATURE"
)

// B2BOptions are the endpoint options NewB2B accepts.
type B2BOptions struct {
	// TimestampWindow is a Go duration ("5m"): the largest accepted
	// distance, either way, between X-TIMESTAMP and the server's clock.
	TimestampWindow string `yaml:"timestamp_window"`
	// UniformAuthErrors gives one answer, 4017300 "Unauthorized. [Invalid
	// client credentials]", for an unknown client, a wrong signature and a
	// client without a usable public key, so that a caller who has not
	// proved who it is cannot tell which client keys exist or have a key
	// registered. Off by default: those three keep their own reasons.
	// Answers given only after a valid signature (client disabled, replay,
	// grant or scope not allowed) and the stale-timestamp answer, which
	// needs no client, are unchanged.
	UniformAuthErrors bool `yaml:"uniform_auth_errors"`
	// ReplayProtection refuses a request whose signature was already
	// used ("Unauthorized. [Replayed request]"): the signature is a
	// one-time value, spent on every node in the transaction that stores
	// the token. Off by default: a merchant running several instances
	// sends byte-identical requests whenever two of them ask for a token
	// in the same X-TIMESTAMP (the signature is deterministic, and SDKs
	// format timestamps to the second), and each must get a token. No SNAP
	// provider documents such a rule; the timestamp window is the
	// protection against old requests either way.
	ReplayProtection bool `yaml:"replay_protection"`
}

// b2b is the SNAP BI access token B2B dialect (service code 73).
type b2b struct {
	service serviceCode
	window  time.Duration
	uniform bool // B2BOptions.UniformAuthErrors
	replay  bool // B2BOptions.ReplayProtection
	now     func() time.Time
	log     *slog.Logger
}

var (
	_ dialect.Factory         = NewB2B
	_ dialect.PolicyDefaulter = (*b2b)(nil)
)

// NewB2B is the dialect.Factory of SNAP BI's access token B2B service
// (service code 73). Options: timestamp_window, uniform_auth_errors and
// replay_protection (see B2BOptions); unknown options are refused.
func NewB2B(options map[string]any, deps dialect.Deps) (dialect.Dialect, error) {
	var o B2BOptions
	if err := dialect.DecodeOptions(options, &o); err != nil {
		return nil, fmt.Errorf("snap-b2b: %w", err)
	}
	window := DefaultTimestampWindow
	if o.TimestampWindow != "" {
		w, err := time.ParseDuration(o.TimestampWindow)
		if err != nil {
			return nil, fmt.Errorf("snap-b2b: options: timestamp_window: %w", err)
		}
		if w <= 0 || w > maxTimestampSkew {
			return nil, fmt.Errorf("snap-b2b: options: timestamp_window %s must be more than 0 and at most %s", w, maxTimestampSkew)
		}
		window = w
	}
	d := &b2b{service: serviceAccessTokenB2B, window: window, uniform: o.UniformAuthErrors, replay: o.ReplayProtection, now: deps.Now, log: deps.Logger}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// AuthMethods implements dialect.AuthMethoder.
func (d *b2b) AuthMethods() []string { return []string{oauth.AuthSNAPSignature} }

// PolicyDefaults gives SNAP's customary 900-second token lifetime.
func (d *b2b) PolicyDefaults() oauth.EndpointPolicy {
	return oauth.EndpointPolicy{AccessTTL: AccessTTL}
}

// DecodeTokenRequest reads a SNAP access token request. It checks
// everything that needs no client record: method, headers, body and the
// freshness of X-TIMESTAMP. The signature check needs the client's key: the
// engine runs it with this package's Authenticator, to which the request
// hands the signature as Evidence. With replay_protection the signature is
// also the request's nonce: the engine uses it up in the transaction that
// stores the token, so a replay is refused on every node and a failed
// request spends nothing. Without it no nonce is set (nothing is written
// for it), and identical requests each get a token.
func (d *b2b) DecodeTokenRequest(r *http.Request) (*oauth.TokenRequest, *oauth.Error) {
	if r.Method != http.MethodPost {
		return nil, oauth.BadRequest("method must be POST")
	}
	if e := checkContentType(r.Header); e != nil {
		return nil, e
	}
	ts, e := singleHeader(r.Header, HeaderTimestamp)
	if e != nil {
		return nil, e
	}
	clientID, e := singleHeader(r.Header, HeaderClientKey)
	if e != nil {
		return nil, e
	}
	sigText, e := singleHeader(r.Header, HeaderSignature)
	if e != nil {
		return nil, e
	}
	tsTime, err := ParseTimestamp(ts)
	if err != nil {
		return nil, oauth.Malformed(HeaderTimestamp, "expected yyyy-MM-ddTHH:mm:ss±hh:mm")
	}
	if !validClientKey(clientID) {
		return nil, oauth.Malformed(HeaderClientKey, "")
	}
	sig, ok := decodeSignature(sigText)
	if !ok {
		return nil, oauth.Malformed(HeaderSignature, "expected standard Base64")
	}
	if e := d.decodeBody(r); e != nil {
		return nil, e
	}
	if now := d.now(); tsTime.Before(now.Add(-d.window)) || tsTime.After(now.Add(d.window)) {
		return nil, oauth.InvalidClient(oauth.CauseStaleRequest, "X-TIMESTAMP is outside the allowed window")
	}
	req := &oauth.TokenRequest{
		GrantType: oauth.GrantClientCredentials,
		Credentials: oauth.ClientCredentials{
			Method:   oauth.AuthSNAPSignature,
			ClientID: clientID,
			Evidence: Evidence{Timestamp: ts, Signature: sig},
		},
		NoRefreshToken: true, // SNAP's response has no refresh token
	}
	if d.replay {
		// A timestamp is accepted until tsTime+window by this node's clock,
		// but the nonce is judged later and by the store's clock: kept for
		// twice the window, it outlives every way of still accepting it.
		req.Nonce = &oauth.Nonce{Key: replayKey(tsTime, sig), ExpiresAt: tsTime.Add(2 * d.window)}
	}
	return req, nil
}

// decodeBody checks the JSON body: {"grantType":"client_credentials",
// "additionalInfo":{}}. grant_type is accepted as the member name too, and
// the value in any letter case. Unknown members are ignored.
func (d *b2b) decodeBody(r *http.Request) *oauth.Error {
	if r.ContentLength > maxBodyBytes {
		return oauth.BadRequest("request body too large")
	}
	if r.Body == nil {
		return oauth.Missing("grantType")
	}
	body, err := reqbody.Read(r, maxBodyBytes)
	if errors.Is(err, reqbody.ErrTooLarge) {
		return oauth.BadRequest("request body too large")
	}
	if err != nil {
		return oauth.BadRequest("cannot read request body")
	}
	if len(strings.TrimSpace(body)) == 0 {
		return oauth.Missing("grantType")
	}
	members, err := jsonx.ReadObject(body)
	if _, ok := errors.AsType[*jsonx.DuplicateKeyError](err); ok {
		return oauth.BadRequest("duplicate member in request body")
	}
	if err != nil {
		return oauth.Malformed("body", "expected a JSON object")
	}
	grant, e := grantType(members)
	if e != nil {
		return e
	}
	if !strings.EqualFold(grant, oauth.GrantClientCredentials) {
		return oauth.Malformed("grantType", "only client_credentials")
	}
	if v, ok := members.Get("additionalInfo"); ok && !v.IsNull() && !v.IsObject() {
		return oauth.Malformed("additionalInfo", "expected an object")
	}
	return nil
}

// grantType returns the grant type under either spelling of its name.
func grantType(members jsonx.Object) (string, *oauth.Error) {
	var found []string
	for _, name := range [...]string{"grantType", "grant_type"} {
		v, ok := members.Get(name)
		if !ok || v.IsNull() {
			continue
		}
		s, ok := v.Str()
		if !ok {
			return "", oauth.Malformed(name, "expected a string")
		}
		if s == "" {
			continue
		}
		found = append(found, s)
	}
	switch {
	case len(found) == 0:
		return "", oauth.Missing("grantType")
	case len(found) == 2 && !strings.EqualFold(found[0], found[1]):
		return "", oauth.Malformed("grantType", "grantType and grant_type disagree")
	}
	return found[0], nil
}

// checkContentType requires application/json (parameters such as charset
// are allowed). SNAP lists Content-Type among the mandatory headers.
func checkContentType(h http.Header) *oauth.Error {
	ct := h.Get("Content-Type")
	if ct == "" {
		return oauth.Missing("Content-Type")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return oauth.Malformed("Content-Type", "must be application/json")
	}
	return nil
}

// singleHeader returns a mandatory header that must appear exactly once.
func singleHeader(h http.Header, name string) (string, *oauth.Error) {
	vs := h.Values(name)
	switch {
	case len(vs) == 0 || (len(vs) == 1 && strings.TrimSpace(vs[0]) == ""):
		return "", oauth.Missing(name)
	case len(vs) > 1:
		return "", oauth.Malformed(name, "sent more than once")
	}
	return strings.TrimSpace(vs[0]), nil
}

// validClientKey accepts printable ASCII without spaces, as client IDs are.
func validClientKey(s string) bool {
	return len(s) <= oauth.MaxClientIDLen && oauth.VisibleASCII(s)
}

// tokenBody is the success body; field order is SNAP's.
type tokenBody struct {
	ResponseCode    string   `json:"responseCode"`
	ResponseMessage string   `json:"responseMessage"`
	AccessToken     string   `json:"accessToken"`
	TokenType       string   `json:"tokenType"`
	ExpiresIn       string   `json:"expiresIn"`
	AdditionalInfo  struct{} `json:"additionalInfo"`
}

type errorBody struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
}

// WriteToken writes 200 with responseCode 2007300, expiresIn as a string
// of seconds, and the X-TIMESTAMP and X-CLIENT-KEY response headers.
func (d *b2b) WriteToken(w http.ResponseWriter, r *http.Request, resp *oauth.TokenResponse) {
	clientKey := r.Header.Get(HeaderClientKey)
	if clientKey == "" {
		clientKey = resp.ClientID
	}
	h := w.Header()
	if validClientKey(clientKey) {
		h.Set(HeaderClientKey, clientKey)
	}
	d.writeJSON(w, http.StatusOK, tokenBody{
		ResponseCode:    CaseSuccessful.responseCode(d.service),
		ResponseMessage: CaseSuccessful.message,
		AccessToken:     resp.AccessToken,
		TokenType:       "Bearer", // SNAP's only token type, whatever the engine calls it
		ExpiresIn:       strconv.FormatInt(resp.ExpiresIn, 10),
	})
}

// WriteError writes e as {"responseCode","responseMessage"}, with the HTTP
// status taken from the code's first three digits.
func (d *b2b) WriteError(w http.ResponseWriter, r *http.Request, e *oauth.Error) {
	var m snapError
	if d.uniform && revealsClient(e) {
		m = build(d.service, CaseUnauthorized, "["+uniformAuthReason+"]")
	} else {
		m = mapError(d.service, e)
	}
	if r != nil && r.Method != http.MethodPost && e != nil && e.Cause == oauth.CauseBadRequest {
		// SNAP's table has no 405 for this service, so the status stays 400
		// (status = first digits of responseCode); Allow still says why.
		w.Header().Set("Allow", http.MethodPost)
	}
	dialect.SetRetryAfter(w.Header(), e)
	d.writeJSON(w, m.status, errorBody{ResponseCode: m.code, ResponseMessage: m.message})
}

func (d *b2b) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen with these types
		status = http.StatusInternalServerError
		g := build(d.service, CaseGeneralError, "")
		body = []byte(`{"responseCode":"` + g.code + `","responseMessage":"` + g.message + `"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	dialect.NoStore(h)
	h.Set(HeaderTimestamp, Timestamp(d.now()))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
