package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// source gives each connection of a run its requester. prepare is called
// once before a run with the number of connections.
type source interface {
	prepare(ctx context.Context, addr string, conns int) error
	requester(i int) requester
}

// requester produces one connection's requests and checks the responses.
// It is used by one goroutine only.
type requester interface {
	// next returns the next request; false when there are no more (the
	// pre-signed SNAP requests ran out).
	next() ([]byte, bool)
	// check reports whether a response is a success.
	check(status int, body []byte) bool
}

// recoverer is a requester that must repair its state after a failed
// request (a broken refresh-token chain), outside the measurement.
type recoverer interface {
	recover(c *conn) error
}

// mode is how a run paces its requests.
type mode int

const (
	closedLoop mode = iota // each connection sends the next request when the previous response arrives
	openLoop               // requests leave on a fixed schedule, whatever the responses do
)

func (m mode) String() string {
	if m == openLoop {
		return "open"
	}
	return "closed"
}

// runSpec is one measured run.
type runSpec struct {
	mode  mode
	conns int
	rate  float64 // open loop: requests per second over all connections
	warm  time.Duration
	dur   time.Duration
	pid   int    // server process measured (CPU, RSS); 0: none
	perf  string // perf.data path, or ""
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
	genCPU         float64 // µs of load-generator CPU per request
	peakRSS        int64   // bytes
	otherCPU       float64 // CPU of other processes, % of the machine
	window         time.Duration
	ceiling        float64 // fraction of the hello-world ceiling; 0: unknown
	exhausted      bool    // the pre-signed requests ran out
	skipped        string
	notes          []string
}

// cpuSnap is the CPU counters at one instant.
type cpuSnap struct {
	at                  int64 // since the run's start
	server, self        int64 // ticks
	sysBusy, sysTotal   int64
	serverErr, selfErrs error
}

func snapCPU(at int64, pid int) cpuSnap {
	s := cpuSnap{at: at}
	if pid > 0 {
		s.server, s.serverErr = procTicks(strconv.Itoa(pid))
	}
	s.self, s.selfErrs = procTicks("self")
	s.sysBusy, s.sysTotal = systemBusy()
	return s
}

// runLoad runs one measured run against addr and returns its row (without
// the scenario name and the ceiling).
func runLoad(ctx context.Context, addr string, src source, spec runSpec) (result, error) {
	res := result{mode: spec.mode.String(), conns: spec.conns}
	if err := src.prepare(ctx, addr, spec.conns); err != nil {
		return res, err
	}
	conns := make([]*conn, spec.conns)
	reqs := make([]requester, spec.conns)
	for i := range conns {
		conns[i] = newConn(addr)
		if err := conns[i].dial(); err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return res, fmt.Errorf("connect: %w", err)
		}
		reqs[i] = src.requester(i)
	}
	if spec.pid > 0 {
		if err := resetPeakRSS(spec.pid); err != nil {
			res.notes = append(res.notes, "peak RSS not reset: "+err.Error())
		}
	}
	var perf *proc
	if spec.perf != "" {
		var err error
		perf, err = startPerf(spec.pid, spec.perf, spec.warm+spec.dur)
		if err != nil {
			res.notes = append(res.notes, "perf: "+err.Error())
		}
	}

	ws, we := int64(spec.warm), int64(spec.warm+spec.dur)
	var (
		stop      atomic.Bool  // interrupted, or the requests ran out
		exhausted atomic.Int64 // when the requests ran out (0: never)
		wg        sync.WaitGroup
		recs      = make([][]record, spec.conns)
		missed    = make([]int, spec.conns) // open loop: scheduled in the window but never sent
	)
	perConn := 1024
	if spec.mode == openLoop {
		perConn = int(spec.rate*(spec.warm+spec.dur).Seconds())/spec.conns + 16
	}
	start := time.Now()
	since := func() int64 { return int64(time.Since(start)) }

	// The monitor reads the CPU counters at the window's edges: the end is
	// the window's, or earlier when the requests ran out.
	earlyEnd := make(chan struct{})
	var closeEarly sync.Once
	endEarly := func() { closeEarly.Do(func() { close(earlyEnd) }) }
	snaps := make(chan [2]cpuSnap, 1)
	go func() {
		var a cpuSnap
		select {
		case <-time.After(time.Duration(ws)):
			a = snapCPU(since(), spec.pid)
		case <-earlyEnd:
			a = snapCPU(since(), spec.pid)
			snaps <- [2]cpuSnap{a, a}
			return
		}
		select {
		case <-time.After(time.Duration(we - since())):
		case <-earlyEnd:
		}
		snaps <- [2]cpuSnap{a, snapCPU(since(), spec.pid)}
	}()
	// Interrupt: stop sending, and unblock reads by closing the sockets.
	// A server that stops answering is treated the same way 15 s after the
	// window, so a run always ends.
	watchdog := time.AfterFunc(time.Duration(we)+15*time.Second, func() {
		stop.Store(true)
		endEarly()
		for _, c := range conns {
			c.kill()
		}
	})
	defer watchdog.Stop()
	go func() {
		select {
		case <-ctx.Done():
			watchdog.Reset(0)
		case <-earlyEnd:
		}
	}()
	ranOut := func() {
		exhausted.CompareAndSwap(0, since())
		stop.Store(true)
		endEarly()
	}

	for i := range spec.conns {
		recs[i] = make([]record, 0, perConn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := conns[i], reqs[i]
			rc, _ := r.(recoverer)
			var out []record
			defer func() { recs[i] = out }()
			out = recs[i]
			if spec.mode == closedLoop {
				for !stop.Load() {
					req, ok := r.next()
					if !ok {
						ranOut()
						return
					}
					t1 := since()
					status, body, err := c.do(req)
					good := err == nil && r.check(status, body)
					t2 := since()
					out = append(out, record{at: t1, end: t2, ok: good})
					if !good {
						handleFailure(c, rc, err)
					}
					if t2 > we {
						return
					}
				}
				return
			}
			// Open loop: connection i owns every conns-th slot of the
			// schedule, offset by i.
			interval := float64(spec.conns) / spec.rate * 1e9
			for k := 0; ; k++ {
				at := int64((float64(k) + float64(i)/float64(spec.conns)) * interval)
				if at >= we {
					return
				}
				if stop.Load() {
					if at >= ws {
						missed[i] += int(math.Ceil(float64(we-at) / interval))
					}
					return
				}
				if d := at - since(); d > 0 {
					time.Sleep(time.Duration(d))
				}
				req, ok := r.next()
				if !ok {
					ranOut()
					return
				}
				status, body, err := c.do(req)
				good := err == nil && r.check(status, body)
				out = append(out, record{at: at, end: since(), ok: good})
				if !good {
					handleFailure(c, rc, err)
				}
			}
		}()
	}
	wg.Wait()
	endEarly()
	cpu := <-snaps
	elapsedEnd := since()
	for _, c := range conns {
		c.close()
	}
	if perf != nil {
		perf.stop()
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	// The window ends early if the requests ran out.
	wEnd := we
	if t := exhausted.Load(); t > 0 && t < we {
		wEnd = t
		res.exhausted = true
	}
	var lats []int64
	for i, rs := range recs {
		for _, r := range rs {
			var in bool
			if spec.mode == closedLoop {
				in = r.at >= ws && r.end <= wEnd
			} else {
				in = r.at >= ws && r.at < wEnd
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
		res.errs += missed[i]
	}
	window := time.Duration(wEnd - ws)
	if spec.mode == openLoop {
		// Late responses to requests scheduled in the window stretch it.
		window = max(window, time.Duration(elapsedEnd-ws))
		if res.exhausted {
			window = time.Duration(wEnd - ws)
		}
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
		if a.selfErrs == nil && b.selfErrs == nil {
			res.genCPU = float64(b.self-a.self) * 1e6 / clkTck / n
		}
		if total := b.sysTotal - a.sysTotal; total > 0 {
			other := (b.sysBusy - a.sysBusy) - (b.self - a.self) - (b.server - a.server)
			res.otherCPU = max(0, 100*float64(other)/float64(total))
		}
	}
	if spec.pid > 0 {
		res.peakRSS = peakRSS(spec.pid)
	}
	return res, nil
}

// handleFailure resets a connection after an I/O error (the next request
// dials again) and lets a stateful requester repair itself.
func handleFailure(c *conn, rc recoverer, err error) {
	if err != nil {
		c.close()
		// Do not spin against a server that refuses connections.
		if c.dial() != nil {
			time.Sleep(10 * time.Millisecond)
			return
		}
	}
	if rc != nil {
		if rc.recover(c) != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// startPerf records the server's stacks for d with perf, if it is installed.
func startPerf(pid int, out string, d time.Duration) (*proc, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("no server process")
	}
	argv := []string{"perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out, "--", "sleep", fmt.Sprint(d.Seconds())}
	return startProc("perf", argv, os.Environ(), "", out+".log")
}
