// Package gateway puts tokengate in front of payment APIs: a reverse proxy
// whose routes each verify every call (a SNAP service signature, or an
// RFC 6750 bearer token) before it reaches the upstream, forward the
// verified ones byte for byte with identity headers the upstream can trust,
// and answer the others in the route's own format. How a call is verified
// is a Verifier's business, one per kind of route; the gateway does the
// HTTP: routing, bounded bodies, header hygiene, proxying, metrics.
package gateway

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/bodygate"
	"github.com/tokengate/tokengate/internal/reqbody"
	"github.com/tokengate/tokengate/secevent"
)

// Identity headers the gateway sets on a verified call. The same headers
// arriving from outside (any header starting with IdentityHeaderPrefix, in
// any case, with '-' or '_') are removed first, so an upstream can trust
// them.
const (
	IdentityHeaderPrefix = "X-Tokengate-"
	HeaderClientID       = "X-Tokengate-Client-Id"
	HeaderPartnerID      = "X-Tokengate-Partner-Id"
	HeaderScope          = "X-Tokengate-Scope"
	HeaderSubject        = "X-Tokengate-Subject"
)

// Identity is who a verified call comes from.
type Identity struct {
	ClientID  string
	PartnerID string   // SNAP routes
	Subject   string   // the token's subject: a user, or the client
	Scopes    []string // the access token's scopes
}

// Call is an inbound call as a Verifier sees it: no HTTP plumbing.
type Call struct {
	Method   string
	Path     string // as received (not unescaped)
	RawQuery string
	Header   http.Header
	Body     []byte // the whole body, as sent
}

// Refusal is a Verifier's answer to a call it does not let through. It
// writes itself in the route's format.
type Refusal interface {
	Write(w http.ResponseWriter)
	// Result is the metrics label of the refusal (e.g. a SNAP responseCode
	// or an RFC 6750 error code): bounded, never request data.
	Result() string
}

// Failure is something the gateway itself could not do for a call.
type Failure int

const (
	BodyTooLarge        Failure = iota // over gateway.max_body
	BodyUnreadable                     // the body did not arrive
	UpstreamTimeout                    // the upstream did not answer in time
	UpstreamUnreachable                // the upstream refused or failed the connection
	ReadersBusy                        // every body reader is busy: retry shortly
	BadRequest                         // a path that is not canonical, a protocol upgrade, trailers
)

// Verifier verifies the calls of one kind of route ("snap", "bearer").
// Implementations are safe for concurrent use.
type Verifier interface {
	// Verify returns the caller's identity, or the refusal to answer. A
	// refused call must change nothing (no one-time value is spent).
	Verify(ctx context.Context, c *Call, r *Route) (*Identity, Refusal)
	// Failure is the answer when the gateway cannot complete a call.
	Failure(r *Route, path string, f Failure) Refusal
}

// Route is a configured route, ready to serve.
type Route struct {
	config.GatewayRoute
	upstream *url.URL
	verifier Verifier
	proxy    *httputil.ReverseProxy
	requests *prometheus.CounterVec
	seconds  prometheus.Observer
}

// Deps are what the composition root lends the gateway.
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: metrics are not exported
	// Transport reaches the upstreams; nil: a transport for many
	// concurrent calls to few hosts.
	Transport http.RoundTripper
	// Now is the clock of the body readers' grace (nil: time.Now).
	Now func() time.Time
	// BodyTimeout is how long a call's body may take to arrive (0: 5s).
	BodyTimeout time.Duration
}

// Gateway is an http.Handler for every configured route. It is safe for
// concurrent use.
type Gateway struct {
	routes  []*Route // longest prefix first
	maxBody int64
	bodies  *bodygate.Gate
	log     *slog.Logger
	// upstreamTimeout bounds the upstream's answer (gateway.upstream_timeout).
	upstreamTimeout time.Duration
	// answerTime is how long a call's answer may take to arrive from the
	// upstream and be written once its headers are due: a forwarded call
	// ends at upstreamTimeout + answerTime, however its upstream behaves.
	answerTime time.Duration
}

// defaultAnswerTime is answerTime (the public listener's own write
// timeout).
const defaultAnswerTime = 15 * time.Second

// New builds the gateway of cfg with a verifier per kind of route ("snap",
// "bearer"). Errors: a route whose kind has no verifier.
func New(cfg config.Gateway, verifiers map[string]Verifier, d Deps) (*Gateway, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	transport := d.Transport
	if transport == nil {
		transport = newTransport(cfg.UpstreamTimeout)
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_gateway_requests_total",
		Help: "Gateway calls by route prefix and result (ok, a refusal's code, or an upstream failure).",
	}, []string{"route", "result"})
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokengate_gateway_request_duration_seconds",
		Help:    "Gateway call latency by route prefix, upstream included.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	if d.Registry != nil {
		if err := d.Registry.Register(requests); err != nil {
			return nil, fmt.Errorf("gateway metrics: %w", err)
		}
		if err := d.Registry.Register(seconds); err != nil {
			return nil, fmt.Errorf("gateway metrics: %w", err)
		}
	}
	g := &Gateway{maxBody: cfg.MaxBody, log: d.Logger, upstreamTimeout: cfg.UpstreamTimeout, answerTime: defaultAnswerTime,
		bodies: bodygate.New(bodygate.Options{Max: cfg.MaxReaders, Timeout: cmp.Or(d.BodyTimeout, 5*time.Second), Now: d.Now})}
	for i, rc := range cfg.Routes {
		kind := rc.Auth
		if kind == "" {
			kind = "snap"
		}
		v, ok := verifiers[kind]
		if !ok {
			return nil, fmt.Errorf("gateway.routes[%d]: no verifier for auth %q", i, kind)
		}
		u, err := url.Parse(rc.Upstream)
		if err != nil {
			return nil, fmt.Errorf("gateway.routes[%d].upstream: %w", i, err)
		}
		r := &Route{GatewayRoute: rc, upstream: u, verifier: v, requests: requests,
			seconds: seconds.WithLabelValues(rc.Prefix)}
		r.proxy = g.newProxy(r, transport)
		g.routes = append(g.routes, r)
	}
	slices.SortStableFunc(g.routes, func(a, b *Route) int { return len(b.Prefix) - len(a.Prefix) })
	return g, nil
}

// Prefixes are the routes' path prefixes, to mount the gateway at.
func (g *Gateway) Prefixes() []string {
	var p []string
	for _, r := range g.routes {
		p = append(p, r.Prefix)
	}
	return p
}

// ReadsBody reports whether r is a call to one of the gateway's routes,
// whose body the gateway reads itself (bounded by max_body, through its own
// reader slots, ending the connection when a body is refused or left
// unread). It implements server.BodyReader.
func (g *Gateway) ReadsBody(r *http.Request) bool { return g.route(r.URL.EscapedPath()) != nil }

// route finds the route of path: the longest prefix that matches, ending
// at a segment boundary ("/api" covers "/api" and "/api/x", not "/apix").
func (g *Gateway) route(path string) *Route {
	for _, r := range g.routes {
		if strings.HasPrefix(path, r.Prefix) &&
			(strings.HasSuffix(r.Prefix, "/") || len(path) == len(r.Prefix) || path[len(r.Prefix)] == '/') {
			return r
		}
	}
	return nil
}

// canonicalPath reports whether an escaped path means the same to every
// upstream as it does to the gateway's prefix match: no dot-segments, no
// percent-encoded unreserved character or separator (%2F, %5C, %2E, %70...),
// no backslash. An upstream that decodes and normalises paths would
// otherwise route "/api/%70ayouts/run" or "/api/x/%2e%2e/payouts/run" to a
// handler another route (with other scopes) protects, or that no route
// covers.
func canonicalPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, '\\') {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) {
			return false
		}
		c, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
		if err != nil || unreserved(byte(c)) || c == '/' || c == '\\' {
			return false
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// upgrades reports whether a request asks to switch protocols (WebSocket,
// h2c...): after a 101 the proxy would splice the connections, and every
// byte sent afterwards would reach the upstream unverified.
func upgrades(h http.Header) bool {
	if len(h["Upgrade"]) > 0 {
		return true
	}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// ServeHTTP verifies a call and forwards it, or answers the refusal.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	path := req.URL.EscapedPath()
	r := g.route(path)
	if r == nil {
		http.NotFound(w, req)
		return
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.log.Error("panic in gateway", "route", r.Prefix, "panic", p)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		r.seconds.Observe(time.Since(start).Seconds())
	}()
	if !canonicalPath(path) || upgrades(req.Header) || len(req.Trailer) > 0 {
		bodygate.Unread(w, req)
		g.refuse(w, r, r.verifier.Failure(r, path, BadRequest))
		return
	}
	pass, ok := g.bodies.Enter(w, req)
	if !ok {
		g.refuse(w, r, r.verifier.Failure(r, path, ReadersBusy))
		return
	}
	defer pass.Done() // the slot is free once the body is read; this ends a connection whose body was not
	body, f := g.readBody(req)
	if f >= 0 {
		pass.Done()
		g.refuse(w, r, r.verifier.Failure(r, path, f))
		return
	}
	// The listener's read and write timeouts count from the start of the
	// request and know nothing of the upstream: a call whose upstream
	// takes longer would be cancelled (the connection's read deadline
	// cancels the request) or lose its answer. The call may now take the
	// upstream's time plus the time to write the answer.
	deadline := time.Now().Add(g.upstreamTimeout + g.answerTime)
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)
	// The upstream's whole answer too: the transport bounds only the wait
	// for its headers, and a body that stalls would hold this call, its
	// connections and its goroutines for as long as the upstream likes.
	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	defer cancel()
	call := &Call{Method: req.Method, Path: path, RawQuery: req.URL.RawQuery, Header: req.Header, Body: body}
	// Security events name the caller's address and the route (not the
	// path, which the caller chose).
	id, refusal := r.verifier.Verify(secevent.WithRequest(req.Context(), req.RemoteAddr, r.Prefix), call, r)
	if refusal != nil {
		g.refuse(w, r, refusal)
		return
	}
	req = req.WithContext(context.WithValue(ctx, forwardKey{}, &forward{id: id, body: body, path: path}))
	r.proxy.ServeHTTP(w, req)
}

func (g *Gateway) refuse(w http.ResponseWriter, r *Route, ref Refusal) {
	r.requests.WithLabelValues(r.Prefix, ref.Result()).Inc()
	ref.Write(w)
}

// readBody reads the whole body, at most maxBody bytes; f is -1 on success.
func (g *Gateway) readBody(req *http.Request) (body []byte, f Failure) {
	body, err := reqbody.ReadBytes(req, int(g.maxBody))
	switch {
	case errors.Is(err, reqbody.ErrTooLarge):
		return nil, BodyTooLarge
	case err != nil:
		return nil, BodyUnreadable
	}
	return body, -1
}

// forward is what the proxy needs of a verified call.
type forward struct {
	id   *Identity
	body []byte
	path string
}

type forwardKey struct{}

func (g *Gateway) newProxy(r *Route, transport http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport:  transport,
		BufferPool: copyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			fw := pr.In.Context().Value(forwardKey{}).(*forward)
			// The upstream's own host, not the caller's: a caller-chosen Host
			// would pick another virtual host behind an ingress. The
			// caller's is in X-Forwarded-Host.
			pr.SetURL(r.upstream)
			pr.Out.Trailer = nil // the body is whole; trailers could carry forged identity headers
			// One map with room for what is added below: filling the
			// clone of the caller's headers would grow it twice a call.
			h := make(http.Header, len(pr.Out.Header)+addedHeaders)
			for k, v := range pr.Out.Header {
				if !isIdentityHeader(k) {
					h[k] = v
				}
			}
			pr.Out.Header = h
			pr.SetXForwarded()
			h.Set(HeaderClientID, fw.id.ClientID)
			if fw.id.PartnerID != "" {
				h.Set(HeaderPartnerID, fw.id.PartnerID)
			}
			if fw.id.Subject != "" {
				h.Set(HeaderSubject, fw.id.Subject)
			}
			h.Set(HeaderScope, strings.Join(fw.id.Scopes, " "))
			// The bytes the caller sent, read once for verification.
			pr.Out.Body = io.NopCloser(bytes.NewReader(fw.body))
			pr.Out.ContentLength = int64(len(fw.body))
			pr.Out.TransferEncoding = nil // the length is known: sent as Content-Length, not chunked
			pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(fw.body)), nil }
			if len(fw.body) == 0 {
				pr.Out.Body = http.NoBody // else the transport would send an empty body chunked
			}
		},
		ModifyResponse: func(res *http.Response) error {
			if res.StatusCode == http.StatusSwitchingProtocols {
				return errUpgrade // never splice connections (see upgrades)
			}
			r.requests.WithLabelValues(r.Prefix, "ok").Inc()
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			fw, _ := req.Context().Value(forwardKey{}).(*forward)
			path := req.URL.EscapedPath()
			if fw != nil {
				path = fw.path
			}
			f := UpstreamUnreachable
			if isTimeout(err) {
				f = UpstreamTimeout
			}
			if req.Context().Err() != nil && !isTimeout(err) {
				return // the caller went away: nobody to answer
			}
			g.log.Warn("gateway: upstream failed", "route", r.Prefix, "timeout", f == UpstreamTimeout, "err", err)
			g.refuse(w, r, r.verifier.Failure(r, path, f))
		},
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// addedHeaders is how many headers a forwarded call may gain: the three
// X-Forwarded-* and the four identity headers.
const addedHeaders = 7

// copyBuffers lends the proxies the buffers they copy upstream answers
// through. Without a pool, httputil.ReverseProxy allocates 32 KiB for every
// call: at thousands of calls a second that garbage sets the pace of the
// collector, whose every cycle scans the stacks of all the connections'
// goroutines.
var copyBuffers = &bufferPool{}

// copyBufferSize is ReverseProxy's own default.
const copyBufferSize = 32 << 10

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		buf = buf[:copyBufferSize]
		b.p.Put(&buf)
	}
}

// isIdentityHeader reports whether a header name is, or may pass for at
// the upstream, one of the identity headers: it starts with
// IdentityHeaderPrefix in any case, with '_' in place of any '-' (CGI,
// WSGI, PHP and Rack servers map both to the same variable, so
// X_Tokengate_Client_Id would reach the application as the client ID).
func isIdentityHeader(name string) bool {
	if len(name) < len(IdentityHeaderPrefix) {
		return false
	}
	for i := range len(IdentityHeaderPrefix) {
		c, p := name[i], IdentityHeaderPrefix[i]
		if p == '-' {
			if c != '-' && c != '_' {
				return false
			}
		} else if c|0x20 != p|0x20 {
			return false
		}
	}
	return true
}

var errUpgrade = errors.New("gateway: the upstream switched protocols")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// newTransport is a transport for many concurrent calls to a few upstream
// hosts: keep-alive connections enough for them, and the upstream's answer
// bounded by timeout.
func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}
