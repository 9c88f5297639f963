package adminapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/certreload"
	"github.com/tokengate/tokengate/internal/tlspolicy"
)

// Server is the admin API's listener (admin.listen): HTTPS when
// admin.tls is set, asking for client certificates when
// admin.tls.client_ca_file is.
type Server struct {
	cfg     config.Admin
	handler http.Handler
	log     *slog.Logger

	ln     net.Listener
	http   *http.Server
	certs  *certreload.Reloader
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewServer returns the listener of cfg serving h; nothing listens until
// Start.
func NewServer(cfg config.Admin, h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, handler: h, log: log}
}

// certPoll is how often the certificate files are checked for a
// replacement even when no handshake asks.
const certPoll = 30 * time.Second

// Start listens on cfg.Listen and serves in the background. Errors: the
// address cannot be listened on; the certificate, key or client CA files
// do not load (nothing is left listening then).
func (s *Server) Start() error {
	var tlsCfg *tls.Config
	if s.cfg.TLS.Enabled() {
		var err error
		if s.certs, err = certreload.New(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile, certreload.Options{Logger: s.log}); err != nil {
			return fmt.Errorf("admin.tls: %w", err)
		}
		tlsCfg = tlspolicy.Server(s.certs.GetCertificate)
		if f := s.cfg.TLS.ClientCAFile; f != "" {
			pem, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("admin.tls.client_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("admin.tls.client_ca_file: %s holds no PEM certificate", f)
			}
			// A certificate is optional (a bearer token will do), but one
			// that is sent must verify against the CA, for client
			// authentication, or the handshake fails.
			tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	s.ln = ln
	var served net.Listener = ln
	if tlsCfg != nil {
		served = tls.NewListener(ln, tlsCfg)
	} else if host, _, _ := net.SplitHostPort(ln.Addr().String()); !tlspolicy.Loopback(host) {
		s.log.Warn("the admin API listens without TLS on an address that is not loopback: its access tokens travel in clear; set admin.tls",
			"addr", ln.Addr().String())
	}
	s.http = &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       time.Minute, // an import file may be large
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(served); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve admin API", "err", err)
		}
	}()
	if s.certs != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.certs.Run(ctx, certPoll) }()
	}
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil,
		"client_certificates", tlsCfg != nil && tlsCfg.ClientCAs != nil)
	return nil
}

// Addr is the address the listener listens on ("" before Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops accepting requests and lets running ones finish (up to 10
// seconds).
func (s *Server) Close() error {
	if s.http == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	s.cancel()
	s.wg.Wait()
	return err
}
