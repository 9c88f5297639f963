package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// report prints the table of every run so far, its notes and the targets.
func (h *harness) report() {
	if len(h.rows) == 0 && h.flood == nil {
		return
	}
	fmt.Fprintf(h.out, "\ntokengate bench — %s\n", h.started.UTC().Format(time.RFC3339))
	if h.partial {
		fmt.Fprintln(h.out, "PARTIAL: the run was interrupted or failed; the last row may be cut short.")
	}
	fmt.Fprintf(h.out, "machine: %s\n", h.machine)
	if len(h.rows) > 0 {
		h.reportRows()
	}
	h.reportGateway()
	h.reportGuard()
	h.reportFlood()
	if t := h.targets(); len(t) > 0 {
		fmt.Fprintln(h.out, "\ntargets:")
		for _, line := range t {
			fmt.Fprintln(h.out, "  "+line)
		}
	}
}

// reportRows prints the table of the load runs and their notes.
func (h *harness) reportRows() {
	o := h.opts
	fmt.Fprintf(h.out, "runs: %s measured after %s warm-up; closed loop: -c %d (password %d); open loop: half the closed-loop rate on -oc %d connections (password %d), latency from the intended send time; generator: %d event loop(s), GOMAXPROCS %d\n\n",
		o.dur, o.warm, o.conns, passwordConns, o.openConns, passwordConns, o.loops, o.procs)
	w := tabwriter.NewWriter(h.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tmode\tconns\ttok/s\tp50\tp99\tmax\terrors\tsrv µs/req\tgen µs/req\tsrv peak RSS\tother CPU\tof ceiling\t")
	var notes, skipped []string
	for _, r := range h.rows {
		if r.skipped != "" {
			skipped = append(skipped, fmt.Sprintf("%s: skipped: %s", r.scenario, r.skipped))
			continue
		}
		ceil := "-"
		if r.ceiling > 0 {
			ceil = fmt.Sprintf("%.2f", r.ceiling)
		}
		rate := fmt.Sprintf("%.0f", r.rate)
		if r.exhausted {
			rate += "*"
		}
		other := fmt.Sprintf("%.0f%%", r.otherCPU)
		if r.otherCPU >= noisy {
			other += "!"
		}
		p99 := fmtDur(r.p99)
		if r.genLagP99 >= lateGen {
			p99 += "!"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%.0f\t%.1f\t%.0f MB\t%s\t%s\t\n",
			r.scenario, r.mode, r.conns, rate, fmtDur(r.p50), p99, fmtDur(r.max), r.errs,
			r.serverCPU, r.genCPU, float64(r.peakRSS)/(1<<20), other, ceil)
		for _, n := range r.notes {
			notes = append(notes, fmt.Sprintf("%s/%s: %s", r.scenario, r.mode, n))
		}
	}
	w.Flush()
	for _, line := range skipped {
		fmt.Fprintln(h.out, "  "+line)
	}
	fmt.Fprintln(h.out, "\ntok/s: successful responses per second (* the pre-signed requests ran out: rate over the shortened window).")
	fmt.Fprintln(h.out, "srv/gen µs/req: CPU time of the server / load generator per request (/proc utime+stime, 10 ms ticks).")
	fmt.Fprintln(h.out, "srv peak RSS: VmHWM, reset before each run. other CPU: busy time of other processes, % of the machine")
	fmt.Fprintf(h.out, "(! at %.0f%% or more: the machine was not quiet, the row is disturbed).\n", noisy)
	fmt.Fprintf(h.out, "p99 with !: the generator itself sent 1%% of the requests %s or more late (see notes); the latencies include it.\n", fmtDur(lateGen))
	if h.snapNote != "" {
		notes = append(notes, h.snapNote)
	}
	if len(notes) > 0 {
		fmt.Fprintln(h.out, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(h.out, "  "+strings.ReplaceAll(n, "\n", "\n    "))
		}
	}
}

// noisy is the share of the machine other processes may use before a
// row is marked disturbed.
const noisy = 10.0

// lateGen is the generator's p99 lateness from which an open-loop row's
// p99 is marked as overstated.
const lateGen = 2 * time.Millisecond

// row returns the row of a scenario's run, if it ran.
func (h *harness) row(scenario, mode string) (result, bool) {
	for _, r := range h.rows {
		if r.scenario == scenario && r.mode == mode && r.skipped == "" {
			return r, true
		}
	}
	return result{}, false
}

// targets checks the targets against the rows.
func (h *harness) targets() []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "met   "
		}
		return "MISSED"
	}
	rate := func(s string, want float64) {
		if r, ok := h.row(s, "closed"); ok {
			out = append(out, fmt.Sprintf("%s %s ≥ %.0f/s: %.0f/s", verdict(r.rate >= want && !r.exhausted), s, want, r.rate))
		}
	}
	rss := func(s string, limitMB float64, strict bool) {
		var peak int64
		found := false
		for _, m := range []string{"closed", "open"} {
			if r, ok := h.row(s, m); ok {
				peak, found = max(peak, r.peakRSS), true
			}
		}
		if found {
			mb := float64(peak) / (1 << 20)
			ok, rel := mb <= limitMB, "≤"
			if strict {
				ok, rel = mb < limitMB, "<"
			}
			out = append(out, fmt.Sprintf("%s %s server peak RSS %s %.0f MB: %.0f MB", verdict(ok), s, rel, limitMB, mb))
		}
	}
	rate("cc-opaque", 20000)
	if r, ok := h.row("cc-opaque", "open"); ok {
		out = append(out, fmt.Sprintf("%s cc-opaque p99 ≤ 5ms at half rate: %s", verdict(r.p99 <= 5*time.Millisecond && r.errs == 0), fmtDur(r.p99)))
	}
	rss("cc-opaque", 150, false)
	rate("cc-jwt", 25000)
	rss("cc-jwt", 150, false)
	rate("pg-cc-opaque", 10000)
	rss("pg-cc-opaque", 150, false)
	rate("introspect", 30000)
	rate("snap-b2b", 12000)
	rss("password", 500, true)
	if _, ok := h.row("snap-gateway", "closed"); ok {
		rate("snap-gateway", gwTargetRate)
		gw, _ := h.row("snap-gateway", "closed")
		if bare, ok := h.row(bareName, "closed"); ok && bare.rate > 0 {
			ratio := gw.rate / bare.rate
			out = append(out, fmt.Sprintf("%s snap-gateway ≥ %.1f of the bare proxy's rate: %.2f (%.0f/s against %.0f/s)",
				verdict(ratio >= gwTargetRatio && !gw.exhausted), gwTargetRatio, ratio, gw.rate, bare.rate))
		}
		if r, ok := h.row("snap-gateway", "open"); ok {
			out = append(out, fmt.Sprintf("%s snap-gateway p99 ≤ %s at half rate: %s", verdict(r.p99 <= gwTargetP99 && r.errs == 0),
				fmtDur(gwTargetP99), fmtDur(r.p99)))
		}
		rss("snap-gateway", 150, false)
	}
	out = append(out, h.guardTargets(verdict)...)
	if f := h.flood; f != nil {
		out = append(out, fmt.Sprintf("%s flood-client-id server peak RSS < %d MB: %.0f MB", verdict(f.peakRSS > 0 && f.peakRSS < floodRSSLimit),
			floodRSSLimit>>20, float64(f.peakRSS)/(1<<20)))
		out = append(out, fmt.Sprintf("%s flood-client-id all %d requests answered with their path's 4xx: %d wrong, %d 5xx, %d unanswered",
			verdict(f.sent == f.planned && f.wrong == 0 && f.transport == 0), f.planned, f.wrong, f.answered5xx(), f.planned-f.sent+f.transport))
	}
	return out
}

// fmtDur prints a latency compactly: µs below 1 ms, then ms, then s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
}

// sideBySide prints a section's table of scenarios side by side: for each
// {label, scenario}, the closed loop's rate, p50 and p99 of the open loop
// at half that rate, the CPU per request of the server, the process behind
// it and the generator (with cpuDecimals decimals), the peak RSS of both
// loops and their errors. header names the columns (tab-separated).
func (h *harness) sideBySide(header string, cpuDecimals int, rows ...[2]string) {
	w := tabwriter.NewWriter(h.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, header)
	for _, row := range rows {
		c, okC := h.row(row[1], "closed")
		o, okO := h.row(row[1], "open")
		if !okC {
			continue
		}
		p50, p99 := "-", "-"
		peak := c.peakRSS
		if okO {
			p50, p99 = fmtDur(o.p50), fmtDur(o.p99)
			peak = max(peak, o.peakRSS)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%.*f\t%.*f\t%.1f\t%.0f MB\t%d\t\n", row[0], c.rate, p50, p99,
			cpuDecimals, c.serverCPU, cpuDecimals, c.upCPU, c.genCPU, float64(peak)/(1<<20), c.errs+o.errs)
	}
	w.Flush()
}
