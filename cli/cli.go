// Package cli is tokengate's command line: the server and the operator's
// commands on the same store. Run is what main calls, and what tests call
// in-process.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/app"
	"github.com/tokengate/tokengate/config"
)

// IO is where a command reads and writes.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// Now is the clock commands read (nil: time.Now); tests set it.
	Now func() time.Time
}

// Globals are the flags every command accepts.
type Globals struct {
	Config string `help:"YAML configuration file (also TOKENGATE_CONFIG)." placeholder:"FILE"`
	Data   string `help:"Data directory of the embedded store (overrides store.data_dir)." placeholder:"DIR"`
}

type cliArgs struct {
	Globals
	Serve   serveCmd   `cmd:"" help:"Run the server (embedded store in ./tokengate-data unless configured)."`
	Gateway gatewayCmd `cmd:"" help:"Run a gateway-only process (gateway.routes, on gateway.listen or listen) on the same store as the servers."`
	Client  clientCmd  `cmd:"" help:"Manage OAuth clients."`
	User    userCmd    `cmd:"" help:"Manage resource owners for the password grant."`
	Key     keyCmd     `cmd:"" help:"Manage JWT signing keys."`
	KEK     kekCmd     `cmd:"" name:"kek" help:"Manage the key-encryption key that encrypts secrets at rest."`
	Token   tokenCmd   `cmd:"" help:"Inspect or revoke tokens as an operator."`
	Account accountCmd `cmd:"" help:"Manage merchant-portal accounts (operators and merchants)."`
	Audit   auditCmd   `cmd:"" help:"Read and verify the audit trail of every admin action."`
	Migrate migrateCmd `cmd:"" help:"Apply database migrations and exit (the server also applies them at start)."`
	GC      gcCmd      `cmd:"" name:"gc" help:"Delete expired tokens and nonces now."`
	Backup  backupCmd  `cmd:"" help:"Write a consistent copy of the embedded store to a new FILE while the server runs."`
	Snap    snapCmd    `cmd:"" help:"SNAP BI integration helpers."`
}

// run is the state a command runs with.
type run struct {
	ctx     context.Context
	io      IO
	env     []string
	globals *Globals
	addr    string // serve --addr
	now     func() time.Time
}

// exitCode carries kong's requested exit (after --help) out of Parse.
type exitCode int

// Run parses args, runs the command and returns the process exit code. A
// failure is one line on stderr.
func Run(args []string, stdio IO, env []string) (code int) {
	var a cliArgs
	defer func() {
		if p := recover(); p != nil {
			c, ok := p.(exitCode)
			if !ok {
				panic(p)
			}
			code = int(c)
		}
	}()
	parser, err := kong.New(&a,
		kong.Name("tokengate"),
		kong.Description("OAuth 2.0 authorization server for payment APIs."),
		kong.Writers(stdio.Out, stdio.Err),
		kong.Exit(func(c int) { panic(exitCode(c)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintf(stdio.Err, "tokengate: %v\n", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stdio.Err, "tokengate: %s (see tokengate --help)\n", redactArgs(err.Error(), args))
		return 2
	}
	if a.Config == "" {
		a.Config = lookupEnv(env, "TOKENGATE_CONFIG")
	}
	now := stdio.Now
	if now == nil {
		now = time.Now
	}
	// Whoever can open the store is an operator; the audit trail names
	// them by user and host.
	ctx := admin.WithActor(context.Background(), admin.CLIActor())
	r := &run{ctx: ctx, io: stdio, env: env, globals: &a.Globals, now: now}
	if err := kctx.Run(r); err != nil {
		fmt.Fprintf(stdio.Err, "tokengate: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// redactArgs removes the command line's positional words from a parse
// error: a password or token typed where it does not belong must not be
// echoed to the terminal or a log.
func redactArgs(msg string, args []string) string {
	if !strings.HasPrefix(msg, "unexpected argument") {
		return msg
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") && len(a) > 0 {
			msg = strings.ReplaceAll(msg, a, "…")
		}
	}
	return msg
}

func lookupEnv(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// oneLine is err as the one line a failure prints: a field of the admin
// service named by its flag.
func oneLine(err error) string {
	msg := err.Error()
	var (
		ve *admin.ValidationError
		ce *admin.ConflictError
	)
	field := ""
	switch {
	case errors.As(err, &ve):
		field = ve.Field
	case errors.As(err, &ce):
		field = ce.Field
	}
	if flag, ok := fieldFlags[field]; ok && field != "" {
		msg = strings.Replace(msg, field+": ", flag+": ", 1)
	}
	switch admin.ErrorCode(err) {
	case admin.CodeUnavailable:
		msg = "the store is unreachable: " + msg
	}
	return strings.ReplaceAll(msg, "\n", "; ")
}

// fieldFlags are the flags (or arguments) that set the admin service's
// fields.
var fieldFlags = map[string]string{
	"name": "--name", "grants": "--grant", "scopes": "--scope", "default_scopes": "--default-scope",
	"access_ttl": "--access-ttl", "token_format": "--token-format", "signing_alg": "--signing-alg",
	"refresh_with_client_credentials": "--refresh-with-client-credentials", "auth_methods": "--auth-method",
	"endpoints": "--endpoint", "can_introspect": "--can-introspect", "snap_public_key": "the SNAP public key",
	"snap_service_signature": "--snap-service-signature", "partner_id": "--partner-id", "owner_account": "--owner",
	"grace": "--grace", "alg": "--alg", "email": "--email", "role": "--role", "limits.grants": "--limit-grant",
	"limits.scopes": "--limit-scope", "limits.max_clients": "--max-clients", "password": "the password",
	"username": "USERNAME", "client_id": "client ID", "path": "FILE",
}

func (r *run) config() (config.Config, error) {
	return config.Load(r.globals.Config, r.env, config.Overrides{Listen: r.addr, DataDir: r.globals.Data})
}

func (r *run) logger(c config.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(r.io.Err, opts))
	}
	return slog.New(slog.NewTextHandler(r.io.Err, opts))
}

// open opens the store with the engine and the admin service on it, for
// the operator's commands, through the same composition root as serve.
func (r *run) open() (*app.Admin, error) {
	c, err := r.config()
	if err != nil {
		return nil, err
	}
	return app.OpenAdmin(r.ctx, c, app.Deps{Now: r.now})
}

// openStoreOnly opens the store with an admin service on it but no
// engine: for the commands that must work when the engine could not start
// (kek rotate) or do not need it.
func (r *run) openStoreOnly() (*app.Admin, error) {
	c, err := r.config()
	if err != nil {
		return nil, err
	}
	return app.OpenStoreAdmin(r.ctx, c, app.Deps{Now: r.now})
}

func (r *run) printJSON(v any) error {
	enc := json.NewEncoder(r.io.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (r *run) printf(format string, a ...any) { fmt.Fprintf(r.io.Out, format, a...) }

type serveCmd struct {
	Addr string `help:"Listen address (overrides listen)." placeholder:"HOST:PORT"`
}

func (c *serveCmd) Run(r *run) error { return r.serve(c.Addr, app.Open) }

type gatewayCmd struct {
	Addr string `help:"Listen address (overrides gateway.listen and listen)." placeholder:"HOST:PORT"`
}

func (c *gatewayCmd) Run(r *run) error {
	return r.serve("", func(ctx context.Context, cfg config.Config, d app.Deps) (*app.Node, error) {
		if c.Addr != "" {
			cfg.Gateway.Listen = c.Addr
		}
		return app.OpenGateway(ctx, cfg, d)
	})
}

// serve builds a node with open and runs it until a signal.
func (r *run) serve(addr string, open func(context.Context, config.Config, app.Deps) (*app.Node, error)) error {
	r.addr = addr
	cfg, err := r.config()
	if err != nil {
		return err
	}
	log := r.logger(cfg)
	setGCPercent(cfg.GoGCPercent, log)
	node, err := open(r.ctx, cfg, app.Deps{Logger: log, Now: r.now})
	if err != nil {
		return err
	}
	if err := node.Start(); err != nil {
		node.Close()
		return err
	}
	ctx, stop := signalContext(r.ctx)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down")
	return node.Close()
}

// setGCPercent gives the garbage collector the configured target, unless
// the process was started with a GOGC the runtime has applied (a number,
// or "off"; the runtime ignores anything else).
func setGCPercent(percent int, log *slog.Logger) {
	if v := os.Getenv("GOGC"); v != "" {
		if _, err := strconv.Atoi(v); err == nil || v == "off" {
			log.Info("garbage collector target from GOGC; go_gc_percent ignored", "GOGC", v)
			return
		}
		log.Warn("GOGC is not a number or off; go_gc_percent applies", "go_gc_percent", percent)
	}
	debug.SetGCPercent(percent)
}

type migrateCmd struct{}

func (c *migrateCmd) Run(r *run) error {
	cfg, err := r.config()
	if err != nil {
		return err
	}
	st, err := app.OpenStore(r.ctx, cfg, app.Deps{Now: r.now})
	if err != nil {
		return err
	}
	r.printf("migrations applied\n")
	return st.Close()
}

type gcCmd struct {
	JSON bool `name:"json" help:"Machine-readable output."`
}

func (c *gcCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.Admin.CollectGarbage(r.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(rep)
	}
	r.printf("deleted %d expired records; %d tokens and %d nonces remain\n", rep.Deleted, rep.Remaining.Tokens, rep.Remaining.Nonces)
	return nil
}

type backupCmd struct {
	File string `arg:"" placeholder:"FILE" help:"New file to write (never overwritten); keep it as safe as the database, and the KEK apart from it."`
	JSON bool   `name:"json" help:"Machine-readable output."`
}

func (c *backupCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Admin.Backup(r.ctx, c.File); err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(map[string]string{"result": "backed up", "file": c.File})
	}
	r.printf("wrote a consistent copy of the store to %s; restoring it needs the same KEK\n", c.File)
	return nil
}

func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, errors.Unwrap(err))
	}
	return b, nil
}
