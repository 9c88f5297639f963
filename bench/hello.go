package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The bench binary re-executes itself as the helper servers it measures
// against, each a process of its own so its CPU time and memory are
// accounted apart: the hello-world ceiling, for snap-gateway the trivial
// upstream and the bare reverse proxy (gateway.go), and for guard the
// resource server (guard.go).
const (
	// helloEnv, when set to HOST:PORT, makes the binary the ceiling server.
	helloEnv = "BENCH_HELLO_ADDR"
	// upstreamEnv, when set to HOST:PORT, makes it the trivial upstream.
	upstreamEnv = "BENCH_UPSTREAM_ADDR"
	// proxyEnv, when set to HOST:PORT, makes it the bare reverse proxy in
	// front of the upstream URL in proxyTargetEnv.
	proxyEnv       = "BENCH_PROXY_ADDR"
	proxyTargetEnv = "BENCH_PROXY_TARGET"
)

// childEnvs are the variables that select a helper mode; they are never
// passed on to another subprocess.
var childEnvs = []string{helloEnv, upstreamEnv, proxyEnv, proxyTargetEnv, guardEnv, guardIssuerEnv, guardIDEnv, guardSecretEnv}

// runChild runs the helper server the environment asks for; ok is false
// when none is asked for (the binary is the bench itself).
func runChild(ctx context.Context) (code int, ok bool) {
	switch {
	case os.Getenv(helloEnv) != "":
		return serveHello(ctx, os.Getenv(helloEnv)), true
	case os.Getenv(upstreamEnv) != "":
		return serveUpstream(ctx, os.Getenv(upstreamEnv)), true
	case os.Getenv(proxyEnv) != "":
		return serveProxy(ctx, os.Getenv(proxyEnv), os.Getenv(proxyTargetEnv)), true
	case os.Getenv(guardEnv) != "":
		return serveGuard(ctx, os.Getenv(guardEnv)), true
	}
	return 0, false
}

// helloBody is about the size of an opaque token response.
var helloBody = []byte(`{"access_token":"tga_hello0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV","token_type":"Bearer","expires_in":3600}`)

// serveHello runs the minimal net/http server the scenarios are compared
// with: POST answers 200 with a small JSON body; GET /readyz answers 200.
func serveHello(ctx context.Context, addr string) int {
	return serveStatic(ctx, "hello", addr, helloBody)
}

// serveStatic serves body to every POST, "ready" to GET /readyz.
func serveStatic(ctx context.Context, name, addr string, body []byte) int {
	return serveHandler(ctx, name, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/readyz" {
			w.Write([]byte("ready\n"))
			return
		}
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	}))
}

// serveHandler serves h on addr until ctx ends; it returns the exit code.
func serveHandler(ctx context.Context, name, addr string, h http.Handler) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	return 0
}

// startHello starts this executable again as the ceiling server.
func startHello(ctx context.Context, dir string) (*proc, error) {
	return startSelf(ctx, dir, "hello", func(addr string) []string { return []string{helloEnv + "=" + addr} })
}

// startSelf starts this executable again as a helper server on a free
// port, with the environment env(addr) gives, and waits until its
// /readyz answers.
func startSelf(ctx context.Context, dir, name string, env func(addr string) []string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc(name, []string{exe}, childEnv(env(addr)...), addr, filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}
