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

// helloEnv, when set to HOST:PORT, makes the bench binary the ceiling
// server instead of the benchmark.
const helloEnv = "BENCH_HELLO_ADDR"

// helloBody is about the size of an opaque token response.
var helloBody = []byte(`{"access_token":"tga_hello0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV","token_type":"Bearer","expires_in":3600}`)

// serveHello runs the minimal net/http server the scenarios are compared
// with: POST answers 200 with a small JSON body; GET /readyz answers 200.
func serveHello(ctx context.Context, addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		return 1
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			w.Write(helloBody)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "hello:", err)
		return 1
	}
	return 0
}

// startHello starts this executable again as the ceiling server.
func startHello(ctx context.Context, dir string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("hello", []string{exe}, childEnv(helloEnv+"="+addr), addr, filepath.Join(dir, "hello.log"))
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}
