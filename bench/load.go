package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// source gives each connection of a run its requester. prepare is called
// once before a run with the number of connections.
type source interface {
	prepare(ctx context.Context, addr string, conns int) error
	requester(i int) requester
}

// requester produces one connection's requests and checks the responses.
// It is used by one goroutine only, and a request it returns stays
// unchanged until its next call.
type requester interface {
	// next returns the next request; false when there are no more (the
	// pre-signed SNAP requests ran out).
	next() ([]byte, bool)
	// check reports whether a response is a success.
	check(status int, body []byte) bool
}

// restarter is a requester whose state a failed request may break (a
// refresh-token chain). restart returns a request that rebuilds it, sent
// on the same connection and not measured; restarted takes its response.
type restarter interface {
	restart() []byte
	restarted(status int, body []byte) bool
}

// mode is how a run paces its requests.
type mode int

const (
	closedLoop mode = iota // each connection sends the next request when the previous response arrives
	openLoop               // requests are due on a fixed schedule, whatever the responses do
)

func (m mode) String() string {
	if m == openLoop {
		return "open"
	}
	return "closed"
}

// runSpec is one measured run.
type runSpec struct {
	mode   mode
	conns  int
	rate   float64 // open loop: requests per second over all connections
	warm   time.Duration
	dur    time.Duration
	loops  int    // event loops (OS threads) of the generator
	pid    int    // server process measured (CPU, RSS); 0: none
	up     int    // upstream process whose CPU is measured apart; 0: none
	upName string // what the report calls it ("" : the upstream)
	db     string // command name of database processes whose CPU is measured too, or ""
	perf   string // perf.data path, or ""
	dump   string // CSV path for every request, or ""
}

// record is one request: at is its start (closed loop) or intended send
// time (open loop), end its response time, both since the run's start.
type record struct {
	at, end int64
	ok      bool
}

// result is one row of the report.
type result struct {
	scenario, mode string
	conns          int
	rate           float64 // successful responses per second
	ok, errs       int
	p50, p99, max  time.Duration
	serverCPU      float64 // µs of server CPU per request
	dbCPU          float64 // µs of database CPU per request (PostgreSQL)
	upCPU          float64 // µs of upstream CPU per request (snap-gateway)
	genCPU         float64 // µs of load-generator CPU per request
	peakRSS        int64   // bytes
	otherCPU       float64 // CPU of other processes, % of the machine
	window         time.Duration
	ceiling        float64       // fraction of the hello-world ceiling; 0: unknown
	exhausted      bool          // the pre-signed requests ran out
	genLagP99      time.Duration // open loop: the generator's own lateness, p99
	skipped        string
	notes          []string
}

// cpuSnap is the CPU counters at one instant.
type cpuSnap struct {
	at                 int64 // since the run's start
	server, self, db   int64 // ticks
	up                 int64 // ticks
	sysBusy, sysTotal  int64
	serverErr, selfErr error
	upErr              error
}

func snapCPU(at int64, spec *runSpec, dbComm string) cpuSnap {
	s := cpuSnap{at: at}
	if spec.pid > 0 {
		s.server, s.serverErr = procTicks(strconv.Itoa(spec.pid))
	}
	if spec.up > 0 {
		s.up, s.upErr = procTicks(strconv.Itoa(spec.up))
	}
	s.self, s.selfErr = procTicks("self")
	if dbComm != "" {
		s.db = commTicks(dbComm)
	}
	s.sysBusy, s.sysTotal = systemBusy()
	return s
}

// monitor reads the CPU counters at the window's start and at its end,
// or when sending ends early. It runs on the P that GOMAXPROCS leaves
// beside the event loops.
func monitor(rs *runState, dbComm string) <-chan [2]cpuSnap {
	out := make(chan [2]cpuSnap, 1)
	go func() {
		var a cpuSnap
		t := time.NewTimer(time.Duration(rs.ws - rs.since()))
		defer t.Stop()
		select {
		case <-t.C:
			a = snapCPU(rs.since(), &rs.spec, dbComm)
		case <-rs.ended:
			a = snapCPU(rs.since(), &rs.spec, dbComm)
			out <- [2]cpuSnap{a, a}
			return
		}
		t.Reset(time.Duration(rs.we - rs.since()))
		select {
		case <-t.C:
		case <-rs.ended:
		}
		out <- [2]cpuSnap{a, snapCPU(rs.since(), &rs.spec, dbComm)}
	}()
	return out
}

// runLoad runs one measured run against addr and returns its row (without
// the scenario name and the ceiling).
func runLoad(ctx context.Context, addr string, src source, spec runSpec) (result, error) {
	res := result{mode: spec.mode.String(), conns: spec.conns}
	if spec.loops < 1 {
		spec.loops = 1
	}
	spec.loops = min(spec.loops, spec.conns)
	sa, err := sockaddr(addr)
	if err != nil {
		return res, err
	}
	if err := src.prepare(ctx, addr, spec.conns); err != nil {
		return res, err
	}
	rs := &runState{spec: spec, addr: sa, ws: int64(spec.warm), we: int64(spec.warm + spec.dur), ended: make(chan struct{})}
	rs.deadline = rs.we + int64(15*time.Second)

	loops := make([]*evloop, spec.loops)
	defer func() {
		for _, l := range loops {
			if l != nil {
				l.close()
			}
		}
	}()
	for i := range loops {
		if loops[i], err = newEvloop(rs, i); err != nil {
			return res, err
		}
	}
	for i := range spec.conns {
		if err := loops[i%len(loops)].add(src.requester(i)); err != nil {
			return res, fmt.Errorf("connect to %s: %w", addr, err)
		}
	}
	expect := 4096
	if spec.mode == openLoop {
		// Loop i's requests are due at (i + k*loops)/rate: together, one
		// every 1/rate seconds.
		expect = int(spec.rate*(spec.warm+spec.dur).Seconds())/len(loops) + 16
		for i, l := range loops {
			l.interval = float64(len(loops)) / spec.rate * 1e9
			l.phase = float64(i) / spec.rate * 1e9
			l.total = int(math.Ceil((float64(rs.we) - l.phase) / l.interval))
		}
	}
	for _, l := range loops {
		l.recs = make([]record, 0, expect)
	}

	if spec.pid > 0 {
		if err := resetPeakRSS(spec.pid); err != nil {
			res.notes = append(res.notes, "peak RSS not reset: "+err.Error())
		}
	}
	var perf *proc
	if spec.perf != "" {
		if perf, err = startPerf(spec.pid, spec.perf, spec.warm+spec.dur); err != nil {
			res.notes = append(res.notes, "perf: "+err.Error())
		}
	}
	stopWatch := context.AfterFunc(ctx, func() { rs.halt.Store(true) })
	defer stopWatch()

	rs.start = time.Now()
	monoStart := monotonicNow()
	snaps := monitor(rs, spec.db)
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(l.run)
	}
	wg.Wait()
	elapsedEnd := rs.since()
	rs.end()
	cpu := <-snaps
	if perf != nil {
		perf.stop()
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	for _, l := range loops {
		if l.err != nil {
			return res, l.err
		}
	}

	if spec.dump != "" {
		if err := dumpRecords(spec.dump, loops, monoStart); err != nil {
			res.notes = append(res.notes, "dump: "+err.Error())
		}
	}
	// The window ends early if the requests ran out.
	wEnd := rs.we
	if t := rs.exhausted.Load(); t > 0 && t < rs.we {
		wEnd = t
		res.exhausted = true
	}
	var lats []int64
	for _, l := range loops {
		for _, r := range l.recs {
			// Closed loop: what completed in the window (a long request
			// started in the warm-up counts; one still running at the
			// end does not). Open loop: what was due in the window, late
			// or not.
			var in bool
			if spec.mode == closedLoop {
				in = r.end >= rs.ws && r.end <= wEnd
			} else {
				in = r.at >= rs.ws && r.at < wEnd
			}
			if !in {
				continue
			}
			if r.ok {
				res.ok++
				lats = append(lats, r.end-r.at)
			} else {
				res.errs++
			}
		}
		if spec.mode == openLoop && !res.exhausted {
			res.errs += l.unsent(rs.ws, wEnd) // abandoned when the run was cut short
		}
	}
	if res.errs > 0 {
		for _, l := range loops {
			if l.firstFail != "" {
				res.notes = append(res.notes, "first failure: "+l.firstFail)
				break
			}
		}
	}
	window := time.Duration(wEnd - rs.ws)
	if spec.mode == openLoop && !res.exhausted {
		// Late responses to requests due in the window stretch it.
		window = max(window, time.Duration(elapsedEnd-rs.ws))
	}
	res.window = window
	if window > 0 {
		res.rate = float64(res.ok) / window.Seconds()
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		res.p50 = time.Duration(lats[(len(lats)-1)/2])
		res.p99 = time.Duration(lats[int(math.Ceil(0.99*float64(len(lats))))-1])
		res.max = time.Duration(lats[len(lats)-1])
	}
	a, b := cpu[0], cpu[1]
	n := float64(res.ok + res.errs)
	if n > 0 && b.at > a.at {
		if a.serverErr == nil && b.serverErr == nil && spec.pid > 0 {
			res.serverCPU = float64(b.server-a.server) * 1e6 / clkTck / n
		}
		if a.selfErr == nil && b.selfErr == nil {
			res.genCPU = float64(b.self-a.self) * 1e6 / clkTck / n
		}
		if spec.db != "" {
			res.dbCPU = float64(b.db-a.db) * 1e6 / clkTck / n
		}
		if spec.up > 0 && a.upErr == nil && b.upErr == nil {
			res.upCPU = float64(b.up-a.up) * 1e6 / clkTck / n
		}
		if total := b.sysTotal - a.sysTotal; total > 0 {
			other := (b.sysBusy - a.sysBusy) - (b.self - a.self) - (b.server - a.server) - (b.db - a.db) - (b.up - a.up)
			res.otherCPU = max(0, 100*float64(other)/float64(total))
		}
	}
	if spec.pid > 0 {
		res.peakRSS = peakRSS(spec.pid)
	}
	if spec.mode == openLoop {
		// Lateness with a connection free is the generator's own (it
		// woke late, or the CPUs were busy); it is part of the latencies,
		// so a large p99 here means they overstate the server's.
		var lags []int64
		for _, l := range loops {
			lags = append(lags, l.lags...)
		}
		if len(lags) > 0 {
			slices.Sort(lags)
			res.genLagP99 = time.Duration(lags[len(lags)*99/100])
			res.notes = append(res.notes, fmt.Sprintf("generator lateness (request due, a connection free): p50 %s, p99 %s, max %s",
				fmtDur(time.Duration(lags[len(lags)/2])), fmtDur(res.genLagP99), fmtDur(time.Duration(lags[len(lags)-1]))))
		}
	}
	if noPwait2.Load() && spec.mode == openLoop {
		res.notes = append(res.notes, "kernel without epoll_pwait2: open-loop pacing only millisecond-precise")
	}
	return res, nil
}

// startPerf records the server's stacks for d with perf, if it is installed.
func startPerf(pid int, out string, d time.Duration) (*proc, error) {
	if pid <= 0 {
		return nil, errors.New("no server process")
	}
	argv := []string{"perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out, "--", "sleep", fmt.Sprint(d.Seconds())}
	return startProc("perf", argv, os.Environ(), "", out+".log")
}

// dumpRecords writes every request as CSV: its start (closed loop) or
// intended send time (open loop) in µs since the run's start and on
// CLOCK_MONOTONIC (to line it up with perf or strace timestamps), its
// latency in µs, and whether it succeeded.
func dumpRecords(path string, loops []*evloop, monoStart time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "at_us,monotonic_us,latency_us,ok")
	for _, l := range loops {
		for _, r := range l.recs {
			fmt.Fprintf(w, "%d,%d,%d,%t\n", r.at/1e3, (int64(monoStart)+r.at)/1e3, (r.end-r.at)/1e3, r.ok)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of perf's and strace's
// timestamps.
func monotonicNow() time.Duration {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}
