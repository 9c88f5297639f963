// Package server wires tokengate over HTTP: the configured token endpoints
// (one dialect each), introspection, revocation, discovery, JWKS and health
// on the public listener (HTTPS when configured, with a connection cap);
// metrics, the profiler and health on the optional operations listener;
// plus the background cache refresh and cleanup.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/dialect/neox"
	"github.com/tokengate/tokengate/dialect/oauth2"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/engine"
	"github.com/tokengate/tokengate/feed"
	"github.com/tokengate/tokengate/internal/bodygate"
	"github.com/tokengate/tokengate/internal/certreload"
	"github.com/tokengate/tokengate/internal/connlimit"
	"github.com/tokengate/tokengate/internal/tlspolicy"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
)

// Dialects maps a configuration's dialect name to its factory. A new
// dialect is one package and one line here.
var Dialects = map[string]dialect.Factory{
	"oauth2":   oauth2.New,
	"snap-b2b": snap.NewB2B,
	"neox":     neox.New,
}

// Server is one tokengate node.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	now      func() time.Time
	events   secevent.Recorder
	store    oauth.Store
	engine   *engine.Engine
	metrics  *metrics
	handler  http.Handler
	http     *http.Server
	listener net.Listener
	conns    *connlimit.Listener
	maxConns int                  // the connection cap (max_connections or derived)
	bodies   *bodygate.Gate       // bounds the request bodies read at once
	feed     *feed.Feed           // the revocation feed; nil on a gateway-only node
	certs    *certreload.Reloader // nil without TLS
	ops      *http.Server         // nil without ops_listen
	opsLn    net.Listener
	portal   http.Handler // nil: no portal
	portalS  *http.Server // the portal's server once started
	portalLn net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// gateway serves the gateway routes; gatewayOnly: nothing else.
	gateway     http.Handler
	gatewayOnly bool
	// snapCalls serves the SNAP verify endpoint; nil: not served.
	snapCalls SNAPVerifier
	// rfc6749AuthMethods are the registered client authentication methods
	// an RFC 6749 request can carry, for the metadata.
	rfc6749AuthMethods []string

	// listen opens the listeners; tests wrap it to watch connections.
	listen func(network, addr string) (net.Listener, error)
	// readTimeout and writeTimeout bound a request's reading and its
	// response (15s); tests shorten them.
	readTimeout, writeTimeout time.Duration
}

// Deps are what the composition root lends a server.
type Deps struct {
	Logger   *slog.Logger
	Now      func() time.Time
	Registry *prometheus.Registry // the metrics registry; nil: a new one
	Events   secevent.Recorder    // security events of the HTTP layer; nil: none
	// Gateway, when set, serves every path the token server does not. If
	// it is a BodyReader, the bodies of the calls it reads are left to it.
	Gateway http.Handler
	// GatewayOnly serves the gateway and the health checks only (no token
	// endpoints, no verify endpoint), on gateway.listen when it is set.
	GatewayOnly bool
	// SNAPVerifier, when set, serves POST /snap/v1/verify (VerifyPath)
	// with it: the verifier of the gateway's SNAP routes.
	SNAPVerifier SNAPVerifier
	// Portal, when set, is served on portal.listen (HTTPS when tls is
	// configured, with the public listener's certificate and policy).
	Portal http.Handler
}

// New builds a node's HTTP side on an open store and engine: the token
// endpoints, introspection, revocation, discovery, health and metrics.
// Nothing listens until Start. The store stays the caller's to close.
func New(cfg config.Config, st oauth.Store, eng *engine.Engine, d Deps) (*Server, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.Events == nil {
		d.Events = secevent.Discard
	}
	s := &Server{cfg: cfg, log: d.Logger, now: d.Now, store: st, engine: eng, metrics: newMetrics(d.Registry), events: d.Events,
		gateway: d.Gateway, gatewayOnly: d.GatewayOnly, snapCalls: d.SNAPVerifier, portal: d.Portal, listen: net.Listen,
		readTimeout: 15 * time.Second, writeTimeout: 15 * time.Second}
	if d.GatewayOnly && cfg.Gateway.Listen != "" {
		s.cfg.Listen = cfg.Gateway.Listen
	}
	s.maxConns = s.maxConnections()
	s.bodies = bodygate.New(bodygate.Options{Max: s.maxBodyReaders(), Timeout: cfg.BodyTimeout, Now: d.Now})
	s.metrics.watchBodies(s.bodies)
	if !d.GatewayOnly {
		s.feed = s.newFeed(cfg.Feed)
		s.metrics.watchFeed(s.feed)
	}
	mux, err := s.routes()
	if err != nil {
		return nil, err
	}
	s.handler = s.unreadBodies(mux)
	return s, nil
}

// Engine is the server's issuance engine.
func (s *Server) Engine() *engine.Engine { return s.engine }

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the configured address (and the operations address, if
// any) and serves in the background, with the cache refresh, cleanup and
// certificate reload loops. It returns an error if an address cannot be
// listened on or the TLS files do not load; nothing is left listening
// then, and Close still closes the store.
func (s *Server) Start() error {
	ln, err := s.listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	public := ln
	var tlsCfg *tls.Config
	if s.cfg.TLS.Enabled() {
		s.certs, err = certreload.New(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile, certreload.Options{Logger: s.log})
		if err != nil {
			ln.Close()
			return err
		}
		tlsCfg = tlspolicy.Server(s.certs.GetCertificate)
		public = tls.NewListener(ln, tlsCfg)
	}
	if s.cfg.OpsListen != "" {
		if s.opsLn, err = s.listen("tcp", s.cfg.OpsListen); err != nil {
			ln.Close()
			return fmt.Errorf("ops_listen: %w", err)
		}
		s.ops = &http.Server{
			Handler:           s.opsRoutes(),
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       s.cfg.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	if s.portal != nil && s.cfg.Portal.Listen != "" {
		if s.portalLn, err = s.listen("tcp", s.cfg.Portal.Listen); err != nil {
			ln.Close()
			if s.opsLn != nil {
				s.opsLn.Close()
			}
			return fmt.Errorf("portal.listen: %w", err)
		}
		s.portalS = s.httpServer(s.portal, tlsCfg)
	}
	s.listener = ln
	s.conns = connlimit.New(public, s.maxConns, connlimit.Options{})
	s.metrics.watchConnections(s.conns)
	s.http = s.httpServer(s.handler, tlsCfg)
	s.http.ConnState = s.conns.ConnState
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.engine.Run(ctx) }()
	go func() { defer s.wg.Done(); s.collectGarbage(ctx) }()
	if s.feed != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.feed.Run(ctx) }()
	}
	if s.certs != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.certs.Run(ctx, certPoll) }()
	}
	if s.ops != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.ops.Serve(s.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("serve ops", "err", err)
			}
		}()
		s.log.Info("operations listener (metrics, pprof, health)", "addr", s.opsLn.Addr().String())
	}
	if s.portalS != nil {
		portalLn := s.portalLn
		if tlsCfg != nil {
			portalLn = tls.NewListener(portalLn, tlsCfg)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.portalS.Serve(portalLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("serve portal", "err", err)
			}
		}()
		s.log.Info("merchant portal listening", "addr", s.portalLn.Addr().String(), "tls", tlsCfg != nil)
		if host, _, _ := net.SplitHostPort(s.cfg.Portal.Listen); tlsCfg == nil && !tlspolicy.Loopback(host) {
			s.log.Warn("the portal serves plain HTTP: its cookies are Secure, so browsers sign in only over HTTPS (set tls, or end TLS in front of it) or on localhost",
				"addr", s.portalLn.Addr().String())
		}
	}
	s.log.Info("tokengate listening", "addr", ln.Addr().String(), "issuer", s.cfg.Issuer,
		"tls", s.certs != nil, "max_connections", s.conns.Max(), "idle_timeout", s.cfg.IdleTimeout,
		"max_body_readers", s.bodies.Stats().Max, "body_timeout", s.cfg.BodyTimeout)
	return nil
}

// maxConnections is the configured cap, or one derived from the
// descriptor limit.
func (s *Server) maxConnections() int {
	n := s.cfg.MaxConnections
	if n == 0 {
		return connlimit.DefaultMax()
	}
	if limit := connlimit.DescriptorLimit(); limit != 0 && uint64(n)+connlimit.Headroom > limit {
		s.log.Warn("max_connections leaves too few file descriptors: accept may fail with EMFILE before the cap is reached",
			"max_connections", n, "rlimit_nofile", limit)
	}
	return n
}

// maxBodyReaders is the configured bound on bodies read at once, or half
// the connection cap (at most 256). It stays below the connection cap, so
// that connections stalled in a body can never hold all of them: every
// other connection is idle or new, which the cap closes to make room.
func (s *Server) maxBodyReaders() int {
	n := s.cfg.MaxBodyReaders
	if n == 0 {
		return min(256, max(1, s.maxConns/2))
	}
	if n >= s.maxConns && s.maxConns > 1 {
		s.log.Warn("max_body_readers must be below max_connections: lowered", "max_body_readers", n, "max_connections", s.maxConns)
		return s.maxConns - 1
	}
	return n
}

// BodyReader is a handler that reads (some) request bodies itself, bounded
// and through its own body reader slots, as the gateway does for its
// routes: the server then keeps those calls' connections alive instead of
// ending them as it does for routes that leave a body unread.
type BodyReader interface {
	// ReadsBody reports whether the handler reads r's body.
	ReadsBody(r *http.Request) bool
}

// unreadBodies wraps the public routes: a request with a body to a route
// that does not read bodies (anything but the token, introspection,
// revocation and verify endpoints and the gateway's routes, or no route at
// all) is answered without waiting for its body, and its connection closed,
// so a client trickling such a body cannot keep a connection busy for the
// whole read timeout.
func (s *Server) unreadBodies(mux *http.ServeMux) http.Handler {
	reads := map[string]bool{}
	if !s.gatewayOnly {
		reads["/oauth/introspect"], reads["/oauth/revoke"], reads[VerifyPath] = true, true, s.snapCalls != nil
		for _, ep := range s.cfg.Endpoints {
			reads[ep.Path] = true
		}
	}
	// The gateway reads the bodies of its routes' calls (through its own
	// body gate): their connections stay open for the next call.
	gw, _ := s.gateway.(BodyReader)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && !reads[r.URL.Path] && (gw == nil || !gw.ReadsBody(r)) {
			bodygate.Unread(w, r)
		}
		mux.ServeHTTP(w, r)
	})
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.listener.Addr().String() }

// OpsAddr is the operations listener's address, "" without ops_listen.
func (s *Server) OpsAddr() string {
	if s.opsLn == nil {
		return ""
	}
	return s.opsLn.Addr().String()
}

// httpServer is the HTTP server of the public listener or the portal's,
// serving h with the listener's timeouts and limits.
func (s *Server) httpServer(h http.Handler, tlsCfg *tls.Config) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.readTimeout,
		WriteTimeout:      s.writeTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		// Accept errors such as EMFILE are logged here; net/http retries
		// them with a backoff of up to a second, so they do not spin.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// PortalAddr is the portal listener's address, "" without a portal.
func (s *Server) PortalAddr() string {
	if s.portalLn == nil {
		return ""
	}
	return s.portalLn.Addr().String()
}

// ReloadTLS re-reads the certificate and key files now, as the server
// also does every few seconds by itself. It returns an error if TLS is not
// configured or the files on disk are refused (the previous certificate
// is still served then).
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return errors.New("tls: not configured")
	}
	return s.certs.Reload()
}

// Close stops accepting requests, ends the revocation feed's streams, lets
// running requests finish (up to 10 seconds), and stops the operations
// listener and the background loops.
func (s *Server) Close() error {
	var errs []error
	if s.feed != nil {
		s.feed.Close() // streams never end by themselves: Shutdown would wait for them
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, s.http.Shutdown(ctx))
		cancel()
	}
	if s.ops != nil {
		s.ops.Close()
	}
	if s.portalS != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, s.portalS.Shutdown(ctx))
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) collectGarbage(ctx context.Context) {
	t := time.NewTicker(s.cfg.GC.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := CollectGarbage(ctx, s.store, s.cfg.GC.Batch, s.now)
			s.metrics.gcDeleted.Add(float64(n))
			if err != nil && ctx.Err() == nil {
				s.log.Warn("cleanup of expired tokens failed", "err", err)
			}
		}
	}
}

// CollectGarbage deletes expired tokens and nonces, signing keys no
// longer published, and revocation events older than the feed retention,
// in batches of batch rows (see oauth.DeleteAllExpired).
func CollectGarbage(ctx context.Context, st oauth.Store, batch int, now func() time.Time) (int, error) {
	return oauth.DeleteAllExpired(ctx, st, batch, now)
}

func (s *Server) routes() (*http.ServeMux, error) {
	mux := http.NewServeMux()
	// Load balancers probe the public port; the operations listener
	// serves these two as well.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.gateway != nil {
		// Every path no other route claims: the gateway routes by prefix
		// and answers 404 for the rest.
		mux.Handle("/", s.gateway)
	}
	if s.gatewayOnly {
		return mux, nil
	}
	deps := dialect.Deps{Now: s.now, Logger: s.log}
	for i, ep := range s.cfg.Endpoints {
		factory, ok := Dialects[ep.Dialect]
		if !ok {
			return nil, fmt.Errorf("endpoints[%d].dialect: unknown dialect %q (known: %s)", i, ep.Dialect, dialectNames())
		}
		d, err := factory(ep.Options, deps)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d] (%s): %w", i, ep.Path, err)
		}
		policy := oauth.EndpointPolicy{}
		if pd, ok := d.(dialect.PolicyDefaulter); ok {
			policy = pd.PolicyDefaults()
		}
		if ep.AccessTTL > 0 {
			policy.AccessTTL = ep.AccessTTL
		}
		if ep.DefaultScopes != nil {
			policy.DefaultScopes = ep.DefaultScopes
		}
		mux.Handle(ep.Path, s.tokenHandler(ep.Path, d, policy))
	}
	for _, m := range s.engine.AuthMethods() {
		if m == oauth.AuthSecretBasic || m == oauth.AuthSecretPost {
			s.rfc6749AuthMethods = append(s.rfc6749AuthMethods, m)
		}
	}
	mux.Handle("/oauth/introspect", s.recoverJSON(http.HandlerFunc(s.introspect)))
	mux.Handle("/oauth/revoke", s.recoverJSON(http.HandlerFunc(s.revoke)))
	mux.Handle("GET /oauth/revocations", s.recoverJSON(http.HandlerFunc(s.revocations)))
	if s.snapCalls != nil {
		mux.Handle(VerifyPath, s.recoverJSON(http.HandlerFunc(s.snapVerify)))
	}
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	return mux, nil
}

func dialectNames() string {
	names := ""
	for n := range Dialects {
		if names != "" {
			names += ", "
		}
		names += n
	}
	return names
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(body))
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.engine.Ready(ctx); err != nil {
		writeText(w, http.StatusServiceUnavailable, "store unreachable\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}
