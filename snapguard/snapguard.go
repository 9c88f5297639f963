// Package snapguard protects the SNAP BI endpoints of a Go payment service
// that verifies its calls itself instead of sitting behind tokengate's
// gateway. Guard.Wrap buffers each incoming call (bounded), asks
// tokengate's verify endpoint (POST /snap/v1/verify) whether it is valid —
// the B2B token, X-PARTNER-ID, the signature, the timestamp window, the
// route's scopes, and X-EXTERNAL-ID once per partner per day, checked and
// recorded by tokengate as for its gateway — and either answers the SNAP
// error itself or passes the call on, with its body restored and the
// caller's identity in the request context (FromContext).
//
//	guard, err := snapguard.New(snapguard.Config{
//		URL:          "https://auth.example.com",
//		ClientID:     rsID,     // a client with the resource-server permission (can_introspect)
//		ClientSecret: rsSecret,
//		Route:        snapguard.Route{ServiceCode: 27, Scopes: []string{"va"}},
//	})
//	mux.Handle("POST /v1.0/transfer-va/create-va", guard.Wrap(createVA))
//
// Only the headers the verification reads are sent to tokengate
// (Authorization, X-TIMESTAMP, X-SIGNATURE, X-PARTNER-ID, X-EXTERNAL-ID,
// CHANNEL-ID, X-DEVICE-ID, ORIGIN, Content-Type), with the method, the
// path and query as received (wrap the handler before anything rewrites
// r.URL, such as http.StripPrefix; use Route.StripPrefix for a mount
// prefix that is not signed) and the body.
package snapguard

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/reqbody"
)

// VerifyPath is the path of tokengate's verify endpoint under Config.URL.
const VerifyPath = "/snap/v1/verify"

// DefaultMaxBody is the largest call body Wrap reads unless Config.MaxBody
// says otherwise: tokengate's default gateway.max_body, which bounds the
// bodies its verify endpoint takes.
const DefaultMaxBody = 1 << 20

// DefaultTimeout bounds a verify request when Config.HTTPClient is nil.
const DefaultTimeout = 10 * time.Second

// Route is how the guarded endpoints are verified: the parameters of a
// SNAP route of tokengate's gateway (gateway.routes in its configuration).
type Route struct {
	// ServiceCode is the SNAP service code of the answers (1 to 99): the
	// middle two digits of responseCode, e.g. 27 in 4012700.
	ServiceCode int `json:"service_code"`
	// Scopes the access token must all hold.
	Scopes []string `json:"scopes,omitempty"`
	// Signature is symmetric (default), asymmetric or either.
	Signature string `json:"signature,omitempty"`
	// Token is required (default) or none (asymmetric calls without an
	// access token: the caller is found by X-PARTNER-ID).
	Token string `json:"token,omitempty"`
	// StripPrefix is a mount prefix removed from the path before it is
	// signed; IncludeQuery signs the query string too.
	StripPrefix  string `json:"strip_prefix,omitempty"`
	IncludeQuery bool   `json:"include_query"`
}

// Config configures a Guard.
type Config struct {
	// URL is tokengate's base URL, e.g. https://auth.example.com; the
	// verify endpoint is URL + VerifyPath.
	URL string
	// ClientID and ClientSecret are the credentials of a tokengate client
	// with the resource-server permission (client create
	// --can-introspect), sent with HTTP Basic (client_secret_basic).
	ClientID, ClientSecret string
	// Route is how the wrapped handlers' calls are verified.
	Route Route
	// MaxBody bounds a call's body (0: DefaultMaxBody); a larger one is
	// refused with 400SS00 without asking tokengate. Keep it at most
	// tokengate's gateway.max_body.
	MaxBody int64
	// HTTPClient sends the verify requests (nil: a client with
	// DefaultTimeout and keep-alive connections for concurrent calls).
	HTTPClient *http.Client
	// Logger receives the verify endpoint's failures (nil: discarded).
	// Nothing secret is logged.
	Logger *slog.Logger
	// Now is the clock of the answers' X-TIMESTAMP (nil: time.Now).
	Now func() time.Time
}

// Identity is the verified caller of a call, as tokengate found it.
type Identity struct {
	ClientID  string
	PartnerID string   // X-PARTNER-ID
	Subject   string   // the access token's subject: the client
	Scopes    []string // the token's scopes (without a token: the route's)
}

type identityKey struct{}

// FromContext returns the identity Wrap put in a verified call's context.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok
}

// Guard verifies SNAP service calls with tokengate. It is safe for
// concurrent use.
type Guard struct {
	cfg      Config
	endpoint string
	shown    string // endpoint as logged: without a password in the URL
	auth     string // the Authorization header of verify requests
	route    json.RawMessage
}

// New checks cfg and returns a Guard. Errors: a URL that is not http(s),
// missing credentials, a service code outside 1-99, an unknown signature
// or token value, token none without signature asymmetric, a negative
// MaxBody.
func New(cfg Config) (*Guard, error) {
	u, err := url.Parse(cfg.URL)
	switch r := cfg.Route; {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, errors.New("snapguard: Config.URL must be tokengate's http(s) base URL")
	case cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("snapguard: Config.ClientID and ClientSecret are needed (a client with can_introspect)")
	case r.ServiceCode < 1 || r.ServiceCode > 99:
		return nil, errors.New("snapguard: Route.ServiceCode must be 1 to 99")
	case r.Signature != "" && r.Signature != "symmetric" && r.Signature != "asymmetric" && r.Signature != "either":
		return nil, fmt.Errorf("snapguard: Route.Signature %q is not symmetric, asymmetric or either", r.Signature)
	case r.Token != "" && r.Token != "required" && r.Token != "none":
		return nil, fmt.Errorf("snapguard: Route.Token %q is not required or none", r.Token)
	case r.Token == "none" && r.Signature != "asymmetric":
		return nil, errors.New("snapguard: Route.Token none (no access token) needs Route.Signature asymmetric")
	case cfg.MaxBody < 0:
		return nil, errors.New("snapguard: Config.MaxBody is negative")
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout, Transport: tr}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	route, err := json.Marshal(cfg.Route)
	if err != nil {
		return nil, fmt.Errorf("snapguard: %w", err)
	}
	// RFC 6749 §2.3.1: the credentials are form-encoded before Basic.
	basic := url.QueryEscape(cfg.ClientID) + ":" + url.QueryEscape(cfg.ClientSecret)
	endpoint := strings.TrimSuffix(cfg.URL, "/") + VerifyPath
	shown := "(unparsable URL)"
	if u, err := url.Parse(endpoint); err == nil {
		shown = u.Redacted()
	}
	return &Guard{cfg: cfg, endpoint: endpoint, shown: shown,
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(basic)), route: route}, nil
}

// verifiedHeaders are the headers tokengate's verification reads.
var verifiedHeaders = []string{"Authorization", "X-TIMESTAMP", "X-SIGNATURE", "X-PARTNER-ID", "X-EXTERNAL-ID",
	"CHANNEL-ID", "X-DEVICE-ID", "ORIGIN", "Content-Type"}

// verifyRequest is the body of a verify request.
type verifyRequest struct {
	Call  verifyCall      `json:"call"`
	Route json.RawMessage `json:"route"`
}

type verifyCall struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Headers map[string][]string `json:"headers"`
	Body    []byte              `json:"body"` // base64, as encoding/json writes []byte
}

// verdict is the verify endpoint's answer.
type verdict struct {
	Valid           bool   `json:"valid"`
	ClientID        string `json:"client_id"`
	PartnerID       string `json:"partner_id"`
	Scope           string `json:"scope"`
	Subject         string `json:"subject"`
	Status          int    `json:"status"`
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
}

// maxVerdict bounds what is read of the verify endpoint's answer.
const maxVerdict = 64 << 10

// Wrap returns a handler that verifies each call before next sees it.
// A refused call is answered in SNAP's format ({"responseCode",
// "responseMessage"} with the HTTP status of its first three digits, and
// X-TIMESTAMP): tokengate's answer for an invalid call; 400SS00 for a body
// over MaxBody or one that does not arrive; 504SS00 (with Retry-After) when
// tokengate cannot be reached or does not answer in time; 500SS01 when it
// refuses the guard itself (wrong credentials, no can_introspect) or
// answers something else. A verified call reaches next with its body
// restored byte for byte and its Identity in the context.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := g.readBody(r)
		if !ok {
			g.answer(w, http.StatusBadRequest, "00", "Bad Request")
			return
		}
		v, failed := g.verify(r, body)
		switch {
		case failed != 0:
			if failed == http.StatusGatewayTimeout {
				g.answer(w, http.StatusGatewayTimeout, "00", "Timeout")
			} else {
				g.answer(w, http.StatusInternalServerError, "01", "Internal Server Error")
			}
			return
		case !v.Valid:
			g.write(w, v.Status, v.ResponseCode, v.ResponseMessage)
			return
		}
		id := &Identity{ClientID: v.ClientID, PartnerID: v.PartnerID, Subject: v.Subject, Scopes: strings.Fields(v.Scope)}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		next.ServeHTTP(w, r)
	})
}

// readBody reads the whole body, at most MaxBody bytes.
func (g *Guard) readBody(r *http.Request) ([]byte, bool) {
	b, err := reqbody.ReadBytes(r, int(g.cfg.MaxBody))
	return b, err == nil
}

// verify asks tokengate about the call. failed is 0 with a verdict, or
// the kind of failure: 504 (unreachable, timeout, overloaded) or 500.
func (g *Guard) verify(r *http.Request, body []byte) (v verdict, failed int) {
	headers := make(map[string][]string, len(verifiedHeaders))
	for _, name := range verifiedHeaders {
		if vs := r.Header.Values(name); len(vs) > 0 {
			headers[name] = vs
		}
	}
	payload, err := json.Marshal(verifyRequest{
		Call:  verifyCall{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Headers: headers, Body: body},
		Route: g.route,
	})
	if err != nil {
		g.cfg.Logger.Error("snapguard: encoding the verify request", "err", err)
		return v, http.StatusInternalServerError
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, g.endpoint, bytes.NewReader(payload))
	if err != nil {
		g.cfg.Logger.Error("snapguard: verify request", "err", err)
		return v, http.StatusInternalServerError
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", g.auth)
	res, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		g.cfg.Logger.Warn("snapguard: tokengate's verify endpoint cannot be reached", "endpoint", g.shown, "err", err)
		return v, http.StatusGatewayTimeout
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxVerdict))
	switch {
	case err != nil:
		g.cfg.Logger.Warn("snapguard: reading tokengate's answer", "err", err)
		return v, http.StatusGatewayTimeout
	case res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusGatewayTimeout:
		g.cfg.Logger.Warn("snapguard: tokengate is busy or unavailable", "status", res.StatusCode)
		return v, http.StatusGatewayTimeout
	case res.StatusCode != http.StatusOK:
		g.cfg.Logger.Error("snapguard: tokengate refused the verify request (check the guard's client and its can_introspect permission)",
			"status", res.StatusCode, "answer", string(raw[:min(len(raw), 200)]))
		return v, http.StatusInternalServerError
	}
	if err := json.Unmarshal(raw, &v); err != nil || (v.Valid && v.ClientID == "") ||
		(!v.Valid && (v.Status < 400 || v.Status > 599 || !validCode(v.ResponseCode, v.Status))) {
		g.cfg.Logger.Error("snapguard: tokengate's answer is not a verdict", "status", res.StatusCode)
		return verdict{}, http.StatusInternalServerError
	}
	return v, 0
}

// validCode reports whether code is a SNAP responseCode of status.
func validCode(code string, status int) bool {
	if len(code) != 7 || !strings.HasPrefix(code, strconv.Itoa(status)) {
		return false
	}
	for _, c := range []byte(code) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// answer writes a SNAP answer of the guard's own, for the route's service.
func (g *Guard) answer(w http.ResponseWriter, status int, caseCode, message string) {
	code := fmt.Sprintf("%d%02d%s", status, g.cfg.Route.ServiceCode, caseCode)
	g.write(w, status, code, message)
}

// write writes a SNAP answer: {"responseCode","responseMessage"} with the
// status, SNAP's X-TIMESTAMP response header, and Retry-After on 504.
func (g *Guard) write(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(struct {
		ResponseCode    string `json:"responseCode"`
		ResponseMessage string `json:"responseMessage"`
	}{code, message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-TIMESTAMP", g.cfg.Now().Format("2006-01-02T15:04:05-07:00"))
	if status == http.StatusGatewayTimeout {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	w.Write(b)
}
