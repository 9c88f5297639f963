// Package app is tokengate's composition root: the one place that builds
// the store, the engine, the limits, the security-event log and the HTTP
// server from a configuration. `tokengate serve`, the operator commands and
// the tests all build a node through it, so they cannot drift apart (wtf's
// Main, in a package of its own).
package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/adminapi"
	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/engine"
	"github.com/tokengate/tokengate/gateway"
	"github.com/tokengate/tokengate/internal/logthrottle"
	"github.com/tokengate/tokengate/kek"
	"github.com/tokengate/tokengate/limit"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/portal"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/server"
	"github.com/tokengate/tokengate/snapcall"
	"github.com/tokengate/tokengate/store"
)

// Deps are what the process lends: where logs go and the clock. Zero
// values discard logs and read time.Now. Every part of a node reads Now, so
// a test that sets it controls expiry, grace windows and lockouts.
type Deps struct {
	Logger *slog.Logger
	Now    func() time.Time
}

func (d *Deps) defaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
}

// OpenStore opens the configured store with its secrets (signing keys,
// server settings) sealed under the configured key-encryption key. When
// the KEK is the one generated into the embedded store's data directory it
// logs a warning saying to move it out. Errors: the KEK's configuration
// (none on PostgreSQL, a KEK file readable by others), the store's.
func OpenStore(ctx context.Context, cfg config.Config, d Deps) (*kek.Store, error) {
	d.defaults()
	ring, inDataDir, err := kek.Load(cfg.Secrets, cfg.Store.DataDir, cfg.Store.DSN != "")
	if err != nil {
		return nil, err
	}
	if inDataDir != "" {
		d.Logger.Warn("the key-encryption key is kept beside the data it protects; move it out of the data directory and set secrets.kek_file",
			"path", inDataDir, "kek_id", ring.ID())
	}
	st, err := store.Open(ctx, cfg.Store, cfg.Feed.Retention, d.Now)
	if err != nil {
		return nil, err
	}
	return kek.WrapStore(st, ring), nil
}

// Admin is an open store with the engine and the admin service on it:
// what the operator commands need. It serves no requests.
type Admin struct {
	Config config.Config
	Store  *kek.Store
	Engine *engine.Engine // nil when opened with OpenStoreAdmin
	Admin  *admin.Service
}

// OpenAdmin opens the store and builds the engine and the admin service on
// it, as a server would (same pepper, same keys), without limits or HTTP
// (portal sign-ins through it are throttled in this process only).
// Errors: OpenStore's, the engine's (a signing key or setting that does
// not decrypt).
func OpenAdmin(ctx context.Context, cfg config.Config, d Deps) (*Admin, error) {
	d.defaults()
	st, err := OpenStore(ctx, cfg, d)
	if err != nil {
		return nil, err
	}
	eng, err := newEngine(ctx, cfg, st, d, nil, secevent.Discard)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Admin{Config: cfg, Store: st, Engine: eng, Admin: newAdmin(cfg, st, eng, nil, d)}, nil
}

// OpenStoreAdmin opens the store and an admin service on it without the
// engine, which reads (and would refuse) the very secret values a repair
// may be about: for `kek rotate`, `gc`, `backup`, the audit trail and the
// accounts. Methods that need the engine or the server's pepper (client
// secrets, signing keys, tokens) fail with admin.ErrUnsupported. Errors:
// OpenStore's.
func OpenStoreAdmin(ctx context.Context, cfg config.Config, d Deps) (*Admin, error) {
	d.defaults()
	st, err := OpenStore(ctx, cfg, d)
	if err != nil {
		return nil, err
	}
	return &Admin{Config: cfg, Store: st, Admin: newAdmin(cfg, st, nil, nil, d)}, nil
}

// issuerName is how authenticator apps name this server: the issuer's
// host, or "tokengate".
func issuerName(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "tokengate"
}

// newAdmin builds the admin service on st and eng (nil: none), with
// lockout throttling sign-ins (nil: per process).
func newAdmin(cfg config.Config, st *kek.Store, eng *engine.Engine, lockout limit.Lockout, d Deps) *admin.Service {
	// The service hashes with a password pool of its own (admin.NewPasswords),
	// not the engine's: portal sign-ins must not starve the password grant.
	ad := admin.Deps{
		Store: st, Lockout: lockout, Now: d.Now, GCBatch: cfg.GC.Batch, Issuer: issuerName(cfg.Issuer),
		Passwords: admin.NewPasswords(),
	}
	if eng != nil {
		ec := eng.Config()
		ad.Engine, ad.Secrets = eng, eng.Secrets()
		ad.DefaultAlg, ad.KeyActivationDelay = ec.DefaultAlg, ec.KeyActivationDelay
	}
	return admin.New(ad)
}

// Close closes the store.
func (a *Admin) Close() error { return a.Store.Close() }

// Node is one whole tokengate server: the admin parts plus the limits, the
// security-event log and the HTTP server.
type Node struct {
	*Admin
	Server *server.Server
	// AdminAPI is the admin HTTP API's listener; nil unless admin.listen
	// is set (never on a gateway-only node).
	AdminAPI *adminapi.Server
	Limits   *limit.Limits
	Events   *secevent.Log

	logs   *logthrottle.Handler
	cancel context.CancelFunc
	done   chan struct{}
}

// Open builds a node; nothing listens until Start. Its general log is
// throttled (a flood of identical warnings becomes a count); its security
// events go to d.Logger unthrottled by that, sampled per event type instead.
// The gateway's routes, if any are configured, are served beside the token
// endpoints, and so is the SNAP verify endpoint (POST /snap/v1/verify),
// with the verifier of the gateway's SNAP routes. With portal.listen set,
// the merchant portal is served there.
func Open(ctx context.Context, cfg config.Config, d Deps) (*Node, error) {
	return open(ctx, cfg, d, false)
}

// OpenGateway builds a gateway-only node (`tokengate gateway`): the
// gateway's routes and the health checks (no token endpoints, no verify
// endpoint), on gateway.listen when it is set, on the same store as the
// token servers.
func OpenGateway(ctx context.Context, cfg config.Config, d Deps) (*Node, error) {
	if len(cfg.Gateway.Routes) == 0 {
		return nil, errors.New("gateway.routes: no route is configured")
	}
	return open(ctx, cfg, d, true)
}

func open(ctx context.Context, cfg config.Config, d Deps, gatewayOnly bool) (*Node, error) {
	d.defaults()
	logs := logthrottle.New(d.Logger.Handler(), d.Now, logthrottle.Options{})
	log := slog.New(logs)
	reg := prometheus.NewRegistry()
	events := secevent.New(d.Logger, reg, d.Now, secevent.Options{})
	lim, err := limit.Open(ctx, cfg.RateLimit, log, d.Now)
	if err != nil {
		return nil, err
	}
	st, err := OpenStore(ctx, cfg, Deps{Logger: log, Now: d.Now})
	if err != nil {
		lim.Close()
		return nil, err
	}
	n := &Node{Limits: lim, Events: events, logs: logs}
	fail := func(err error) (*Node, error) {
		st.Close()
		lim.Close()
		return nil, err
	}
	eng, err := newEngine(ctx, cfg, st, Deps{Logger: log, Now: d.Now}, lim, events)
	if err != nil {
		return fail(err)
	}
	n.Admin = &Admin{Config: cfg, Store: st, Engine: eng, Admin: newAdmin(cfg, st, eng, lim.Accounts, d)}
	sd := server.Deps{Logger: log, Now: d.Now, Registry: reg, Events: events, GatewayOnly: gatewayOnly}
	snapCalls, err := snapVerifier(cfg.Gateway, eng, st, d, events)
	if err != nil {
		return fail(err)
	}
	if !gatewayOnly {
		// The verify endpoint, for services that verify their calls
		// themselves, with the verifier of the gateway's SNAP routes.
		sd.SNAPVerifier = snapCalls
	}
	if !gatewayOnly && cfg.Portal.Listen != "" {
		// The portal, on its own listener, goes through the node's admin
		// service (sign-ins throttled by the node's shared lockout) and
		// keeps its sessions in the store.
		p, err := portal.New(cfg, portal.Deps{Admin: n.Admin.Admin, Sessions: st, Logger: log, Now: d.Now})
		if err != nil {
			return fail(err)
		}
		sd.Portal = p
	}
	if len(cfg.Gateway.Routes) > 0 {
		vs := map[string]gateway.Verifier{"bearer": &gateway.BearerVerifier{Tokens: eng}, "snap": snapCalls}
		gw, err := gateway.New(cfg.Gateway, vs, gateway.Deps{Logger: log, Registry: reg, Now: d.Now, BodyTimeout: cfg.BodyTimeout})
		if err != nil {
			return fail(err)
		}
		sd.Gateway = gw
	}
	if n.Server, err = server.New(cfg, st, eng, sd); err != nil {
		return fail(err)
	}
	if cfg.Admin.Listen != "" && !gatewayOnly {
		// Bearer tokens are checked by the engine; idempotent responses
		// are kept in the KEK-sealed store (they may hold new secrets).
		// Their fingerprints are keyed with a key derived from the pepper.
		api := adminapi.New(adminapi.Deps{Service: n.Admin.Admin, Tokens: eng, Idempotency: st, Now: d.Now, Logger: log,
			FingerprintKey: eng.Secrets().DeriveKey(adminapi.FingerprintKeyLabel)})
		n.AdminAPI = adminapi.NewServer(cfg.Admin, api, log)
	}
	return n, nil
}

// Start listens and serves in the background (see server.Start; and the
// admin API's listener, if configured), with the log throttle's and the
// event log's periodic summaries.
func (n *Node) Start() error {
	if err := n.Server.Start(); err != nil {
		return err
	}
	if n.AdminAPI != nil {
		if err := n.AdminAPI.Start(); err != nil {
			n.Server.Close()
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		go n.logs.Run(ctx, 10*time.Second)
		n.Events.Run(ctx, 10*time.Second)
	}()
	return nil
}

// Close stops the server, flushes the log summaries and closes the limits
// and the store.
func (n *Node) Close() error {
	var errs []error
	if n.AdminAPI != nil {
		errs = append(errs, n.AdminAPI.Close())
	}
	errs = append(errs, n.Server.Close())
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
	n.logs.Close()
	errs = append(errs, n.Limits.Close(), n.Store.Close())
	return errors.Join(errs...)
}

// snapVerifier is the verifier of SNAP service calls, for the gateway's
// SNAP routes and the verify endpoint.
func snapVerifier(cfg config.Gateway, eng *engine.Engine, st oauth.Store, d Deps, events secevent.Recorder) (*snapcall.Verifier, error) {
	zone, err := time.LoadLocation(cfg.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("gateway.time_zone: %w", err)
	}
	return snapcall.New(eng, st, snapcall.Config{Window: cfg.TimestampWindow, Zone: zone, Now: d.Now, Events: events}), nil
}

// newEngine builds the engine a configuration describes. lim nil: no rate
// limit and no lockout (the operator commands issue no tokens).
func newEngine(ctx context.Context, cfg config.Config, st oauth.Store, d Deps, lim *limit.Limits, events secevent.Recorder) (*engine.Engine, error) {
	var pepper []byte
	if cfg.Pepper != "" {
		var err error
		if pepper, err = hex.DecodeString(cfg.Pepper); err != nil {
			return nil, errors.New("pepper: not valid hex")
		}
	}
	ec := engine.Config{
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
		PasswordHashPerClient:   cfg.PasswordHashPerClient,
		Authenticators:          []oauth.ClientAuthenticator{snap.NewAuthenticator(d.Logger)},
		Events:                  events,
		Pepper:                  pepper,
		Now:                     d.Now,
		Logger:                  d.Logger,
	}
	if lim != nil {
		ec.RateLimiter, ec.Lockout = lim.Rate, lim.Lockout
	}
	return engine.New(ctx, st, ec)
}
