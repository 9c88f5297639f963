// Package server wires tokengate over HTTP: the configured token endpoints
// (one dialect each), introspection, revocation, discovery, JWKS, health
// and metrics, plus the background cache refresh and cleanup.
package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/dialect/neox"
	"github.com/tokengate/tokengate/dialect/oauth2"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/engine"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store"
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
	store    oauth.Store
	engine   *engine.Engine
	metrics  *metrics
	handler  http.Handler
	http     *http.Server
	pprof    *http.Server
	listener net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// rfc6749AuthMethods are the registered client authentication methods
	// an RFC 6749 request can carry, for the metadata.
	rfc6749AuthMethods []string
}

// Open opens the configured store (see OpenStore) and builds the engine
// and the routes. Nothing listens until Start.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, cfg, st, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// OpenStore opens the configured store with its secrets (signing keys,
// settings) encrypted under the configured key-encryption key; the server
// and the admin CLI both open it this way. When the KEK is the one kept in
// the embedded store's data directory, it logs a warning saying to move
// it out. Errors: the KEK's configuration (for example none on
// PostgreSQL, or a KEK file readable by others), the store's.
func OpenStore(ctx context.Context, cfg config.Config, log *slog.Logger) (*kek.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ring, inDataDir, err := kek.Load(cfg.Secrets, cfg.Store.DataDir, cfg.Store.DSN != "")
	if err != nil {
		return nil, err
	}
	if inDataDir != "" {
		log.Warn("the key-encryption key is kept beside the data it protects; move it out of the data directory and set secrets.kek_file",
			"path", inDataDir, "kek_id", ring.ID())
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	return kek.WrapStore(st, ring), nil
}

// New builds a server on an open store; Close closes the store.
func New(ctx context.Context, cfg config.Config, st oauth.Store, log *slog.Logger) (*Server, error) {
	eng, err := NewEngine(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, store: st, engine: eng, metrics: newMetrics()}
	mux, err := s.routes()
	if err != nil {
		return nil, err
	}
	s.handler = mux
	return s, nil
}

// NewEngine builds the engine a configuration describes; the admin CLI uses
// it too, so both hash secrets with the same pepper.
func NewEngine(ctx context.Context, cfg config.Config, st oauth.Store, log *slog.Logger) (*engine.Engine, error) {
	var pepper []byte
	if cfg.Pepper != "" {
		var err error
		if pepper, err = hex.DecodeString(cfg.Pepper); err != nil {
			return nil, errors.New("pepper: not valid hex")
		}
	}
	limits := openLimits(cfg, log)
	return engine.New(ctx, st, engine.Config{
		Issuer:                  cfg.Issuer,
		Audience:                cfg.Tokens.Audience,
		DefaultAccessTTL:        cfg.Tokens.AccessTTL,
		MaxAccessTTL:            cfg.Tokens.MaxAccessTTL,
		KeyActivationDelay:      cfg.Tokens.KeyActivationDelay,
		RefreshTTL:              cfg.Tokens.RefreshTTL,
		DefaultFormat:           oauth.TokenFormat(cfg.Tokens.Format),
		DefaultAlg:              cfg.Tokens.SigningAlg,
		RefreshReuseGrace:       cfg.Tokens.RefreshReuseGrace,
		PasswordHashConcurrency: cfg.PasswordHashConcurrency,
		PasswordHashQueue:       cfg.PasswordHashQueue,
		Authenticators:          []oauth.ClientAuthenticator{snap.NewAuthenticator(log)},
		RateLimiter:             limits.rate,
		Lockout:                 limits.lockout,
		Pepper:                  pepper,
		Logger:                  log,
	})
}

// Engine is the server's issuance engine.
func (s *Server) Engine() *engine.Engine { return s.engine }

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the configured address and serves in the background,
// with the cache refresh and cleanup loops.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.listener = ln
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.engine.Run(ctx) }()
	go func() { defer s.wg.Done(); s.collectGarbage(ctx) }()
	if s.cfg.PprofAddr != "" {
		if err := s.startPprof(); err != nil {
			s.Close()
			return err
		}
	}
	s.log.Info("tokengate listening", "addr", ln.Addr().String(), "issuer", s.cfg.Issuer)
	return nil
}

// startPprof serves the Go profiler on its own listener, never on the
// public one.
func (s *Server) startPprof() error {
	ln, err := net.Listen("tcp", s.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("pprof_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.pprof.Serve(ln) }()
	s.log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Close stops accepting requests, lets running ones finish (up to 10
// seconds), stops the background loops and closes the store.
func (s *Server) Close() error {
	var errs []error
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, s.http.Shutdown(ctx))
		cancel()
	}
	if s.pprof != nil {
		s.pprof.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	errs = append(errs, s.store.Close())
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
			n, err := CollectGarbage(ctx, s.store, s.cfg.GC.Batch)
			s.metrics.gcDeleted.Add(float64(n))
			if err != nil && ctx.Err() == nil {
				s.log.Warn("cleanup of expired tokens failed", "err", err)
			}
		}
	}
}

// CollectGarbage deletes expired tokens and nonces in batches of batch
// rows, pausing between batches so issuance is never starved of the writer.
func CollectGarbage(ctx context.Context, st oauth.Store, batch int) (int, error) {
	total := 0
	for {
		n, err := st.DeleteExpired(ctx, time.Now(), batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) routes() (*http.ServeMux, error) {
	mux := http.NewServeMux()
	deps := dialect.Deps{Now: time.Now, Logger: s.log}
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
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
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

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.engine.Ready(ctx); err != nil {
		writeText(w, http.StatusServiceUnavailable, "store unreachable\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

// limitSet is the rate limiter and the lockout a configuration describes.
type limitSet struct {
	rate    limit.RateLimiter
	lockout limit.Lockout
}

func openLimits(cfg config.Config, log *slog.Logger) limitSet {
	return limitSet{}
}
