package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The targets for the guard scenario on this 2-core machine.
const (
	guardTargetRatio       = 0.8 // protected / unprotected requests/s
	guardTargetOverIntro   = 5.0 // protected / introspect-per-request requests/s
	guardTargetRevokeP99   = time.Second
	guardTargetCachedNs    = 2000 // a cached Validate, ns
	guardTargetCachedAlloc = 1
)

// gobenchLine is one result line of `go test -bench`.
type gobenchLine struct {
	name     string // the sub-benchmark, e.g. "mixed-10k-parallel"
	nsOp     float64
	bOp      float64
	allocsOp float64
}

func (l gobenchLine) parallel() bool { return strings.HasSuffix(l.name, "-parallel") }

// runGobench runs the guard package's BenchmarkValidateCached.
func runGobench(ctx context.Context, benchtime string) ([]gobenchLine, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "test", "./guard", "-run", "XXX", "-bench", "ValidateCached", "-benchmem", "-benchtime", benchtime, "-count", "1")
	cmd.Dir = root
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %w: %s", err, lastLines(out, 5))
	}
	lines := parseGobench(out, "BenchmarkValidateCached")
	if len(lines) == 0 {
		return nil, fmt.Errorf("go test -bench printed no BenchmarkValidateCached result: %s", lastLines(out, 5))
	}
	return lines, nil
}

// parseGobench reads the result lines of benchmark bench (its
// sub-benchmarks) from `go test -bench -benchmem` output.
func parseGobench(out []byte, bench string) []gobenchLine {
	var res []gobenchLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], bench+"/") {
			continue
		}
		name := strings.TrimPrefix(f[0], bench+"/")
		// The -N suffix is GOMAXPROCS (absent when it is 1).
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		l := gobenchLine{name: name, nsOp: -1, bOp: -1, allocsOp: -1}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				l.nsOp = v
			case "B/op":
				l.bOp = v
			case "allocs/op":
				l.allocsOp = v
			}
		}
		if l.nsOp >= 0 {
			res = append(res, l)
		}
	}
	return res
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// revokeStats is the revocation-to-refusal latency of a set of revoked
// tokens.
type revokeStats struct {
	n, refused     int
	p50, p99, maxD time.Duration // math.MaxInt64: not refused
	ackP99         time.Duration // p99 from the acknowledgement
}

// neverRefused stands for a token not refused (or not revoked) in time.
const neverRefused = time.Duration(math.MaxInt64)

func (s *guardSummary) revokeStats(kind string) revokeStats {
	var lats, fromAck []time.Duration
	var st revokeStats
	for i, r := range s.revs {
		if kind != "" && r.kind != kind {
			continue
		}
		st.n++
		d, a := neverRefused, neverRefused
		if r.err == "" && s.refused[i] > 0 {
			d = max(0, time.Duration(s.refused[i]-r.t0))
			a = max(0, time.Duration(s.refused[i]-r.ack))
			st.refused++
		}
		lats, fromAck = append(lats, d), append(fromAck, a)
	}
	if len(lats) > 0 {
		p99 := int(math.Ceil(0.99*float64(len(lats)))) - 1
		slices.Sort(lats)
		slices.Sort(fromAck)
		st.p50, st.p99, st.maxD = lats[(len(lats)-1)/2], lats[p99], lats[len(lats)-1]
		st.ackP99 = fromAck[p99]
	}
	return st
}

func fmtLatency(d time.Duration) string {
	if d == neverRefused {
		return "> " + probeFor.String()
	}
	if d == 0 {
		return "0"
	}
	return fmtDur(d)
}

// reportGuard prints the guard section.
func (h *harness) reportGuard() {
	g := h.guard
	pc, okP := h.row(guardRowProtected, "closed")
	if g == nil || !okP {
		return
	}
	fmt.Fprintf(h.out, "\nguard: GET %s, a trivial handler (200, %d-byte JSON) in a resource-server process of its own (the bench binary), %d tokens\n",
		guardProtected, len(guardBody), g.tokens)
	fmt.Fprintf(h.out, "(%d JWT ES256, %d opaque, of 4 clients) presented round-robin: behind guard.Middleware (JWTs verified locally, opaque tokens\n",
		g.jwts, g.tokens-g.jwts)
	fmt.Fprintln(h.out, "introspected once, both cached and checked against the revocation feed); the same handler unprotected; the same handler")
	fmt.Fprintln(h.out, "calling POST /oauth/introspect on every request (net/http keep-alive client, the resource server's Basic credentials).")
	fmt.Fprintf(h.out, "Before the runs each token was presented once on %d connections (first sight): %s, %.0f tokens/s, %d introspections\n",
		h.connsFor("guard"), fmtDur(g.warm), float64(g.tokens)/max(g.warm.Seconds(), 1e-9), g.warmStats.Introspections)
	fmt.Fprintln(h.out, "(the JWTs predate the guard's subscription to the feed, so each is introspected once too).")
	fmt.Fprintln(h.out)
	h.sideBySide("\treq/s (closed)\thalf-rate p50\thalf-rate p99\thandler µs/req\ttokengate µs/req\tgen µs/req\thandler peak RSS\terrors\t", 1,
		[2]string{"protected (guard)", guardRowProtected}, [2]string{"protected, revoking", guardRowRevoke},
		[2]string{"unprotected", guardRowUnprotected}, [2]string{"introspect per request", guardRowIntrospect})
	cpu := func(r result) float64 { return r.serverCPU + r.upCPU + r.genCPU }
	if uc, ok := h.row(guardRowUnprotected, "closed"); ok && uc.rate > 0 {
		fmt.Fprintf(h.out, "  protected/unprotected: rate %.2f, handler CPU per request %.2f×", pc.rate/uc.rate, pc.serverCPU/max(uc.serverCPU, 1e-9))
		if cpu(pc) > 0 {
			fmt.Fprintf(h.out, ", rate implied by CPU per request (handler+tokengate+generator, %.1f against %.1f µs) %.2f", cpu(pc), cpu(uc), cpu(uc)/cpu(pc))
		}
		fmt.Fprintln(h.out)
	}
	if ic, ok := h.row(guardRowIntrospect, "closed"); ok && ic.rate > 0 {
		fmt.Fprintf(h.out, "  protected/introspect per request: rate %.1f×", pc.rate/ic.rate)
		if cpu(pc) > 0 {
			fmt.Fprintf(h.out, ", implied by CPU per request (%.1f against %.1f µs) %.1f×", cpu(pc), cpu(ic), cpu(ic)/cpu(pc))
		}
		fmt.Fprintln(h.out)
	}
	if c := h.ceiling[h.connsFor("guard")]; c > 0 {
		fmt.Fprintf(h.out, "  hello-world ceiling at %d connections: %.0f/s (", h.connsFor("guard"), c)
		sep := ""
		for _, r := range []struct{ label, row string }{{"protected", guardRowProtected}, {"unprotected", guardRowUnprotected}, {"introspect per request", guardRowIntrospect}} {
			if x, ok := h.row(r.row, "closed"); ok {
				fmt.Fprintf(h.out, "%s%s %.2f", sep, r.label, x.rate/c)
				sep = ", "
			}
		}
		fmt.Fprintln(h.out, " of it; it answers a POST")
		fmt.Fprintln(h.out, "  with a form body, a little more work than these GETs: the unprotected handler is the GET hello world)")
	}
	es := g.endStats
	var evs []string
	for _, k := range []string{"hello", "token", "client", "user", "reset"} {
		if n := es.Events[k]; n > 0 {
			evs = append(evs, fmt.Sprintf("%s %d", k, n))
		}
	}
	fmt.Fprintf(h.out, "  guard after the runs: %d cached results (%.1f MB), %d revocations kept, %d introspections in all (%d failed); feed events: %s;\n",
		es.Entries, float64(es.Bytes)/(1<<20), es.Revocations, es.Introspections, es.IntrospectErrors, strings.Join(evs, ", "))
	fmt.Fprintf(h.out, "  resynchronisations %d (the first connection is one), evictions %d, feed left \"up\" %d times\n", es.Resyncs, es.Evicted, es.FeedNotUp)

	if len(g.revs) > 0 {
		fmt.Fprintf(h.out, "\nrevocation to refusal, while the protected handler ran closed-loop at %.0f req/s: from the revocation (the\n", g.revokeRate)
		fmt.Fprintln(h.out, "/oauth/revoke request sent; for `tokengate token revoke --client`, the cutoff it reports) to the first 401 received, by the")
		every := "-"
		if g.revokeRate > 0 {
			every = fmtDur(time.Duration(float64(g.tokens) / g.revokeRate * 1e9))
		}
		fmt.Fprintf(h.out, "load (which presents each token about every %s) or by a probe (each revoked token presented every %s on a connection\n", every, fmtDur(probeEvery))
		fmt.Fprintln(h.out, "of its own until refused). The feed: tokengate reads new events every 200 ms (feed.poll).")
		fmt.Fprintln(h.out)
		w := tabwriter.NewWriter(h.out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "\trevoked\trefused\tp50\tp99\tmax\tp99 from the ack\t")
		for _, k := range append(slices.Clone(revocationKinds), "") {
			st := g.revokeStats(k)
			if st.n == 0 {
				continue
			}
			label := k
			if k == "" {
				label = "all"
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", label, st.n, st.refused, fmtLatency(st.p50), fmtLatency(st.p99), fmtLatency(st.maxD),
				fmtLatency(st.ackP99))
		}
		w.Flush()
		fmt.Fprintf(h.out, "  first 401 received by the load for %d tokens, by a probe for the others; %d probe requests\n", g.byLoad, g.probes)
		fmt.Fprintln(h.out, "  (p99 from the ack: from the revocation's acknowledgement, the 200 of /oauth/revoke or the CLI's exit, to the first 401;")
		fmt.Fprintln(h.out, "  0 when the resource server refused the token before the acknowledgement arrived)")
		for _, r := range g.revs {
			if r.err != "" {
				fmt.Fprintf(h.out, "  a revocation failed (%s): %s\n", r.kind, r.err)
				break
			}
		}
	}

	if g.gobenchCmd != "" {
		fmt.Fprintf(h.out, "\nGo benchmark of a cached validation (%s; after the load runs, with the bench's processes stopped):\n", g.gobenchCmd)
		if g.gobenchErr != "" {
			fmt.Fprintf(h.out, "  failed: %s\n", g.gobenchErr)
		}
		w := tabwriter.NewWriter(h.out, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, l := range g.gobench {
			fmt.Fprintf(w, "  BenchmarkValidateCached/%s\t%.1f ns/op\t%.0f B/op\t%.0f allocs/op\t\n", l.name, l.nsOp, l.bOp, l.allocsOp)
		}
		w.Flush()
		fmt.Fprintln(h.out, "  (-parallel: two goroutines, ns/op is wall time per validation over both)")
	}
}

// guardTargets are the guard scenario's lines of the targets.
func (h *harness) guardTargets(verdict func(bool) string) []string {
	g := h.guard
	pc, ok := h.row(guardRowProtected, "closed")
	if g == nil || !ok {
		return nil
	}
	var out []string
	// A ratio of two runs is only as good as the quieter of them: say when
	// a neighbour's load disturbed one, and what CPU per request implies.
	disturbed := func(other result, format string) string {
		if pc.otherCPU < noisy && other.otherCPU < noisy {
			return ""
		}
		cpu := func(r result) float64 { return r.serverCPU + r.upCPU + r.genCPU }
		s := fmt.Sprintf("; DISTURBED: other processes used %.0f%% and %.0f%% of the machine during the two runs", pc.otherCPU, other.otherCPU)
		if cpu(pc) > 0 {
			s += fmt.Sprintf(", CPU per request implies "+format, cpu(other)/cpu(pc))
		}
		return s
	}
	if uc, ok := h.row(guardRowUnprotected, "closed"); ok && uc.rate > 0 {
		r := pc.rate / uc.rate
		out = append(out, fmt.Sprintf("%s guard protected ≥ %.1f of the unprotected handler's rate: %.2f (%.0f/s against %.0f/s)%s",
			verdict(r >= guardTargetRatio && pc.errs == 0), guardTargetRatio, r, pc.rate, uc.rate, disturbed(uc, "%.2f")))
	}
	if ic, ok := h.row(guardRowIntrospect, "closed"); ok && ic.rate > 0 {
		r := pc.rate / ic.rate
		out = append(out, fmt.Sprintf("%s guard protected ≥ %.0f× the per-request introspection's rate: %.1f× (%.0f/s against %.0f/s)%s",
			verdict(r >= guardTargetOverIntro && pc.errs == 0), guardTargetOverIntro, r, pc.rate, ic.rate, disturbed(ic, "%.1f×")))
	}
	if len(g.revs) > 0 {
		st := g.revokeStats("")
		out = append(out, fmt.Sprintf("%s guard revocation-to-refusal p99 ≤ %s under load: %s (p50 %s, max %s; %d of %d refused)",
			verdict(st.p99 <= guardTargetRevokeP99 && st.refused == st.n), guardTargetRevokeP99, fmtLatency(st.p99),
			fmtLatency(st.p50), fmtLatency(st.maxD), st.refused, st.n))
	}
	if len(g.gobench) > 0 {
		var slow, allocs gobenchLine
		slow.nsOp, allocs.allocsOp = -1, -1
		for _, l := range g.gobench {
			if !l.parallel() && l.nsOp > slow.nsOp {
				slow = l
			}
			if l.allocsOp > allocs.allocsOp {
				allocs = l
			}
		}
		if slow.nsOp >= 0 {
			out = append(out, fmt.Sprintf("%s guard cached validation ≤ %s (Go benchmark, slowest single-goroutine case): %s (%s)",
				verdict(slow.nsOp <= guardTargetCachedNs), fmtNs(guardTargetCachedNs), fmtNs(slow.nsOp), slow.name))
		}
		out = append(out, fmt.Sprintf("%s guard cached validation ≤ %d allocation (Go benchmark, most of any case): %.0f (%s)",
			verdict(allocs.allocsOp <= guardTargetCachedAlloc && allocs.allocsOp >= 0), guardTargetCachedAlloc, allocs.allocsOp, allocs.name))
	} else if g.gobenchErr != "" {
		out = append(out, "MISSED guard cached validation (Go benchmark): it failed: "+firstLine(g.gobenchErr))
	}
	return out
}

func fmtNs(ns float64) string { return fmt.Sprintf("%.2fµs", ns/1e3) }
