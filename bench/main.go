// Command bench measures a real tokengate server under load, by itself:
//
//	go run ./bench [-d 5s] [-c 64] [-pg DSN|off] [-only a,b] [-skip-ceiling]
//
// It builds the tokengate binary, runs it as a subprocess on 127.0.0.1 (so
// the server's CPU time and memory are measured apart from the load
// generator's), registers clients with the CLI, and runs each scenario
// twice: closed-loop at maximum throughput, then open-loop at half that
// rate with latency measured from each request's intended send time (no
// coordinated omission). A minimal net/http server, measured the same way,
// gives the ceiling each scenario is compared with. See BENCHMARKS.md.
//
// The load generator shares the machine's CPUs with the server, so it is
// built to cost little: an epoll event loop on raw non-blocking sockets
// (evloop.go) sends precomputed HTTP/1.1 requests on keep-alive
// connections and parses responses just enough to check them. It is
// Linux-only, like the /proc accounting.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The helper servers are this binary again (see startSelf).
	if code, ok := runChild(ctx); ok {
		os.Exit(code)
	}
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	dur           time.Duration
	warm          time.Duration
	conns         int
	openConns     int
	pg            string
	only          []string
	skipCeiling   bool
	procs         int
	loops         int
	snapClients   int
	gwClients     int
	snapRate      int
	introTokens   int
	floodRequests int
	floodDur      time.Duration
	guardTokens   int
	guardRevokes  int
	guardBench    string
	perfDir       string
	dumpDir       string
	verbose       bool
}

// Main runs the benchmark with args (without the program name) and returns
// the exit code: 0 when every scenario ran (targets missed or not), 1 when
// the harness failed, 2 on bad flags, 130 when interrupted.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	h := &harness{opts: o, out: stdout, log: stderr}
	err = h.run(ctx)
	// Whatever ran is reported, even after a failure or an interrupt.
	h.partial = err != nil || ctx.Err() != nil
	h.report()
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "bench: interrupted")
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.dur, "d", 5*time.Second, "measured duration of each run (a warm-up comes before it)")
	fs.DurationVar(&o.warm, "warmup", time.Second, "warm-up before each measured run (not counted)")
	fs.IntVar(&o.conns, "c", 64, "connections of the closed-loop runs (the password grant always uses 64)")
	fs.IntVar(&o.openConns, "oc", 0, "connections of the open-loop runs (0: twice -c)")
	fs.StringVar(&o.pg, "pg", "", "PostgreSQL DSN for the pg-cc-opaque scenario; \"off\" skips it (default: $TOKENGATE_TEST_POSTGRES)")
	only := fs.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
	fs.BoolVar(&o.skipCeiling, "skip-ceiling", false, "do not measure the net/http hello-world ceiling")
	fs.IntVar(&o.loops, "loops", 1, "event loops (OS threads) of the load generator")
	fs.IntVar(&o.procs, "procs", 0, "GOMAXPROCS of the load generator during runs (0: -loops + 1; the server keeps its default)")
	fs.IntVar(&o.snapClients, "snap-clients", 4, "SNAP clients (RSA-2048 keys) the pre-signed requests are spread over")
	fs.IntVar(&o.gwClients, "gw-clients", 4, "SNAP clients (each with its secret and one B2B token) the snap-gateway calls are spread over")
	fs.IntVar(&o.snapRate, "snap-rate", 0, "expected SNAP closed-loop rate for sizing the pre-signing (0: calibrate with a short burst)")
	fs.IntVar(&o.introTokens, "introspect-tokens", 4096, "opaque tokens pre-issued for the introspection scenario")
	fs.IntVar(&o.floodRequests, "flood-requests", 30000, "requests of the flood-client-id scenario")
	fs.DurationVar(&o.floodDur, "flood-d", 10*time.Second, "the time the flood-client-id requests are spread over")
	fs.IntVar(&o.guardTokens, "guard-tokens", 10000, "distinct tokens of the guard scenario (half JWT, half opaque)")
	fs.IntVar(&o.guardRevokes, "guard-revocations", 200, "tokens the guard scenario revokes one by one during its revocation run (two clients are also revoked whole)")
	fs.StringVar(&o.guardBench, "guard-benchtime", "1s", "-benchtime of the guard scenario's `go test ./guard -bench ValidateCached`; \"off\" skips it")
	fs.StringVar(&o.perfDir, "perf", "", "record `perf record -g` of the server during each closed-loop run into this directory (slows the server)")
	fs.StringVar(&o.dumpDir, "dump", "", "write every request of every run (start or intended time, latency, ok) as CSV into this directory")
	fs.BoolVar(&o.verbose, "v", false, "print progress details")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return o, errors.New("usage")
	}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(scenarioNames(), s) {
				fmt.Fprintf(stderr, "bench: -only: unknown scenario %q (known: %s)\n", s, strings.Join(scenarioNames(), ", "))
				return o, errors.New("usage")
			}
			o.only = append(o.only, s)
		}
	}
	if o.pg == "" {
		o.pg = os.Getenv("TOKENGATE_TEST_POSTGRES")
	}
	if o.pg == "off" {
		o.pg = ""
	}
	if o.dur <= 0 || o.warm < 0 || o.conns < 1 || o.openConns < 0 || o.procs < 0 || o.loops < 1 || o.snapClients < 1 || o.gwClients < 1 || o.introTokens < 1 ||
		o.floodRequests < 1 || o.floodDur <= 0 || o.guardTokens < 40 || o.guardRevokes < 0 {
		fmt.Fprintln(stderr, "bench: -d, -c, -procs, -snap-clients, -gw-clients, -introspect-tokens, -flood-requests and -flood-d must be positive, -guard-tokens at least 40")
		return o, errors.New("usage")
	}
	if o.procs == 0 {
		o.procs = o.loops + 1
	}
	if o.openConns == 0 {
		o.openConns = 2 * o.conns
	}
	return o, nil
}

// selected reports whether scenario name is to run.
func (o *options) selected(name string) bool {
	return len(o.only) == 0 || slices.Contains(o.only, name)
}

// machineInfo describes the machine for the report.
func machineInfo() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
