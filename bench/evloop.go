package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The measured runs use an epoll event loop on raw non-blocking sockets,
// one locked OS thread per loop, instead of a goroutine per connection:
//
//   - it costs the shared CPUs less per request (no goroutine parking,
//     no extra read returning EAGAIN, no runtime netpoller);
//   - the open loop's schedule is kept to the microsecond: it waits with
//     epoll_pwait2's nanosecond timeout, whereas a sleeping goroutine is
//     woken by the runtime's netpoller, whose timeout is in whole
//     milliseconds, up to ~1 ms late — an error that would be charged to
//     the server's latency.

// lconn is one connection of an event loop.
type lconn struct {
	idx  int32 // in evloop.conns; the epoll event's data
	fd   int   // -1 while closed
	req  requester
	rs   restarter // nil unless req is one
	in   []byte
	n    int    // bytes of in filled
	out  []byte // the unsent rest of the request in flight
	busy bool
	at   int64 // the request in flight: its start (closed loop) or intended send time (open loop)

	repairing  bool  // the request in flight is a restart, not measured
	needRepair bool  // the next request must be a restart
	downUntil  int64 // closed and waiting to reconnect until then (0: not down)
}

// runState is what the loops of one run share.
type runState struct {
	spec      runSpec
	addr      syscall.SockaddrInet4
	start     time.Time
	ws, we    int64         // the measurement window, since start
	deadline  int64         // after it, requests in flight are abandoned
	stop      atomic.Bool   // send no new request (requests ran out)
	halt      atomic.Bool   // abandon everything now (interrupted)
	exhausted atomic.Int64  // when the requests ran out (0: never)
	ended     chan struct{} // closed when the requests ran out or the loops ended
	endOnce   sync.Once
}

// end marks the end of sending, early or not.
func (s *runState) end() { s.endOnce.Do(func() { close(s.ended) }) }

func (s *runState) since() int64 { return int64(time.Since(s.start)) }

func (s *runState) ranOut(now int64) {
	s.exhausted.CompareAndSwap(0, now)
	s.stop.Store(true)
	s.end()
}

// evloop is one event loop: a share of the run's connections and, in the
// open loop, a share of its schedule.
type evloop struct {
	rs      *runState
	id      int
	epfd    int
	conns   []*lconn
	idle    []*lconn // open loop: connections free to send
	recs    []record
	scratch []byte
	events  []syscall.EpollEvent

	// Open loop: this loop's k-th request is due at phase + k*interval.
	phase, interval float64
	total           int // requests due before the window ends
	sent            int // requests sent so far (in schedule order)

	nbusy, ndown int     // connections with a request in flight, waiting to reconnect
	lags         []int64 // open loop: how late requests left although a connection was free
	hadIdle      bool    // a connection was free when the loop last went to sleep
	firstFail    string  // what the first failed request got
	err          error
}

// dialFD opens a non-blocking TCP connection with Nagle off. Connecting
// on loopback completes at once, so it is done blocking.
func dialFD(addr *syscall.SockaddrInet4) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for {
		err = syscall.Connect(fd, addr)
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func sockaddr(hostport string) (syscall.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || !ap.Addr().Is4() {
		return syscall.SockaddrInet4{}, errors.New("bench: need an IPv4 HOST:PORT, got " + hostport)
	}
	return syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}

func newEvloop(rs *runState, id int) (*evloop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &evloop{rs: rs, id: id, epfd: epfd, events: make([]syscall.EpollEvent, 256)}, nil
}

// add dials a connection for requester r and registers it.
func (l *evloop) add(r requester) error {
	c := &lconn{idx: int32(len(l.conns)), fd: -1, req: r, in: make([]byte, readBufSize)}
	c.rs, _ = r.(restarter)
	l.conns = append(l.conns, c)
	return l.connect(c)
}

func (l *evloop) connect(c *lconn) error {
	fd, err := dialFD(&l.rs.addr)
	if err != nil {
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: c.idx}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return err
	}
	c.fd, c.n, c.out = fd, 0, nil
	return nil
}

func (l *evloop) closeConn(c *lconn) {
	if c.fd >= 0 {
		syscall.Close(c.fd) // also leaves the epoll set
		c.fd = -1
	}
}

func (l *evloop) close() {
	for _, c := range l.conns {
		l.closeConn(c)
	}
	syscall.Close(l.epfd)
}

// run drives the loop until its share of the run is done.
func (l *evloop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rs := l.rs
	open := rs.spec.mode == openLoop
	if open {
		l.idle = append(l.idle[:0], l.conns...)
	} else {
		now := rs.since()
		for _, c := range l.conns {
			l.next(c, now)
		}
	}
	for {
		now := rs.since()
		if rs.halt.Load() || now > rs.deadline {
			l.abandon(now)
			return
		}
		l.retryDown(now)
		if open {
			l.dispatch(now)
		}
		if l.done(now) {
			return
		}
		wait := l.wakeAt(now) - now
		l.hadIdle = len(l.idle) > 0
		n, err := epollWait(l.epfd, l.events, time.Duration(max(wait, 0)))
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			l.err = err
			rs.halt.Store(true)
			continue
		}
		for _, ev := range l.events[:n] {
			c := l.conns[ev.Fd]
			if c.fd < 0 {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 && len(c.out) > 0 {
				l.flush(c)
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 && c.fd >= 0 {
				l.readable(c)
			}
		}
	}
}

// wakeAt is when the loop must look again even if no socket is ready.
func (l *evloop) wakeAt(now int64) int64 {
	rs := l.rs
	t := now + int64(50*time.Millisecond)
	if rs.spec.mode == openLoop && l.sent < l.total && len(l.idle) > 0 {
		t = min(t, l.due(l.sent))
	}
	if l.ndown > 0 {
		for _, c := range l.conns {
			if c.downUntil > 0 {
				t = min(t, c.downUntil)
			}
		}
	}
	return max(t, now)
}

// due is the intended send time of this loop's k-th request.
func (l *evloop) due(k int) int64 { return int64(l.phase + float64(k)*l.interval) }

// dispatch sends every request that is due on the free connections, the
// oldest first; the rest wait for a connection, their latency running.
func (l *evloop) dispatch(now int64) {
	for l.sent < l.total && len(l.idle) > 0 && !l.rs.stop.Load() {
		at := l.due(l.sent)
		if at > now {
			return
		}
		c := l.idle[len(l.idle)-1]
		l.idle = l.idle[:len(l.idle)-1]
		if c.needRepair {
			l.repair(c, now)
			continue
		}
		req, ok := c.req.next()
		if !ok {
			l.idle = append(l.idle, c)
			l.rs.ranOut(now)
			return
		}
		l.sent++
		if l.hadIdle {
			// Not queued for a connection: any lateness is the generator's.
			l.lags = append(l.lags, l.rs.since()-at)
		}
		l.send(c, req, at)
	}
}

// next sends a closed-loop connection's next request, if the run goes on.
func (l *evloop) next(c *lconn, now int64) {
	rs := l.rs
	if rs.stop.Load() || now > rs.we || c.downUntil > 0 {
		return
	}
	if c.needRepair {
		l.repair(c, now)
		return
	}
	req, ok := c.req.next()
	if !ok {
		rs.ranOut(now)
		return
	}
	l.send(c, req, now)
}

// release makes a connection whose response arrived free again.
func (l *evloop) release(c *lconn, now int64) {
	if c.downUntil > 0 {
		return // retryDown brings it back
	}
	if l.rs.spec.mode == openLoop {
		l.idle = append(l.idle, c)
		return
	}
	l.next(c, now)
}

func (l *evloop) repair(c *lconn, now int64) {
	c.needRepair = false
	c.repairing = true
	l.send(c, c.rs.restart(), now)
}

func (l *evloop) send(c *lconn, req []byte, at int64) {
	l.setBusy(c, true)
	c.at = at
	if c.fd < 0 {
		if err := l.connect(c); err != nil {
			l.fail(c, err)
			return
		}
	}
	n, err := writeFD(c.fd, req)
	if err != nil {
		l.fail(c, err)
		return
	}
	if n < len(req) {
		c.out = req[n:]
		l.watchOut(c, true)
	}
}

func (l *evloop) watchOut(c *lconn, on bool) {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: c.idx}
	if on {
		ev.Events |= syscall.EPOLLOUT
	}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		l.fail(c, err)
	}
}

func (l *evloop) flush(c *lconn) {
	n, err := writeFD(c.fd, c.out)
	if err != nil {
		l.fail(c, err)
		return
	}
	c.out = c.out[n:]
	if len(c.out) == 0 {
		l.watchOut(c, false)
	}
}

// readable reads what arrived; one read is enough with level-triggered
// epoll: an incomplete response is continued on the next event.
func (l *evloop) readable(c *lconn) {
	if !c.busy {
		// Nothing is expected: the server closed an idle connection.
		l.closeConn(c)
		return
	}
	if c.n == len(c.in) {
		l.fail(c, errTooLarge)
		return
	}
	m, err := readFD(c.fd, c.in[c.n:])
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return
	case err != nil:
		l.fail(c, err)
		return
	case m == 0:
		l.fail(c, io.ErrUnexpectedEOF)
		return
	}
	c.n += m
	r, ok, err := parseResponse(c.in[:c.n], &l.scratch)
	if err != nil {
		l.fail(c, err)
		return
	}
	if !ok {
		return
	}
	now := l.rs.since()
	l.setBusy(c, false)
	c.n = 0
	if c.repairing {
		c.repairing = false
		if !c.rs.restarted(r.status, r.body) {
			c.needRepair = true
		}
	} else {
		good := c.req.check(r.status, r.body)
		l.recs = append(l.recs, record{at: c.at, end: now, ok: good})
		if !good && l.firstFail == "" {
			l.firstFail = fmt.Sprintf("HTTP %d %.200q", r.status, r.body)
		}
		if !good && c.rs != nil {
			c.needRepair = true
		}
	}
	if r.closeConn {
		l.closeConn(c)
	}
	l.release(c, now)
}

// fail ends the request in flight on c as an error and closes c; c
// reconnects for its next request, after a pause if it cannot.
func (l *evloop) fail(c *lconn, err error) {
	now := l.rs.since()
	if c.busy && !c.repairing {
		l.recs = append(l.recs, record{at: c.at, end: now, ok: false})
		if l.firstFail == "" {
			l.firstFail = err.Error()
		}
	}
	l.setBusy(c, false)
	c.repairing, c.n, c.out = false, 0, nil
	if c.rs != nil {
		c.needRepair = true // the chain's state is unknown
	}
	l.closeConn(c)
	if err := l.connect(c); err != nil {
		l.setDown(c, now+int64(10*time.Millisecond))
		return
	}
	l.release(c, now)
}

func (l *evloop) setBusy(c *lconn, busy bool) {
	if c.busy != busy {
		c.busy = busy
		if busy {
			l.nbusy++
		} else {
			l.nbusy--
		}
	}
}

// setDown marks c closed until t (0: up again).
func (l *evloop) setDown(c *lconn, t int64) {
	switch {
	case c.downUntil == 0 && t > 0:
		l.ndown++
	case c.downUntil > 0 && t == 0:
		l.ndown--
	}
	c.downUntil = t
}

// retryDown reconnects connections whose pause is over.
func (l *evloop) retryDown(now int64) {
	if l.ndown == 0 {
		return
	}
	for _, c := range l.conns {
		if c.downUntil == 0 || c.downUntil > now {
			continue
		}
		if err := l.connect(c); err != nil {
			l.setDown(c, now+int64(10*time.Millisecond))
			continue
		}
		l.setDown(c, 0)
		l.release(c, now)
	}
}

// done reports whether the loop's share of the run is over.
func (l *evloop) done(now int64) bool {
	if l.nbusy > 0 {
		return false
	}
	if l.rs.stop.Load() {
		return true
	}
	if l.rs.spec.mode == openLoop {
		return l.sent >= l.total
	}
	return now > l.rs.we
}

// abandon ends every request in flight as an error.
func (l *evloop) abandon(now int64) {
	for _, c := range l.conns {
		if c.busy && !c.repairing {
			l.recs = append(l.recs, record{at: c.at, end: now, ok: false})
			if l.firstFail == "" {
				l.firstFail = "no response before the run was stopped"
			}
		}
		l.setBusy(c, false)
		l.closeConn(c)
	}
}

// unsent counts this loop's scheduled requests in [from, to) that were
// never sent.
func (l *evloop) unsent(from, to int64) int {
	n := 0
	for k := l.sent; k < l.total; k++ {
		if at := l.due(k); at >= from && at < to {
			n++
		}
	}
	return n
}

// epollWait waits up to d with epoll_pwait2's nanosecond timeout, or
// epoll_wait's milliseconds (rounded up) on kernels before 5.11.
//
// It is a raw system call: the runtime does not see the thread block, so
// sysmon does not hand the loop's P to another thread and then poll every
// 20 µs while it sleeps — which measurably cost the shared CPUs. The loop
// owns its OS thread and GOMAXPROCS leaves a P for the other goroutines;
// a preemption signal ends the wait early with EINTR.
func epollWait(epfd int, events []syscall.EpollEvent, d time.Duration) (int, error) {
	if !noPwait2.Load() {
		ts := syscall.NsecToTimespec(int64(d))
		n, _, errno := syscall.RawSyscall6(sysEpollPwait2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		if errno == 0 {
			return int(n), nil
		}
		if errno != syscall.ENOSYS {
			return 0, errno
		}
		noPwait2.Store(true)
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(ms), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// readFD and writeFD are non-blocking reads and writes as raw system
// calls: they never block, so telling the runtime is pure overhead.
func readFD(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func writeFD(fd int, b []byte) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, errno
	}
}

// sysEpollPwait2 is epoll_pwait2's number, the same on every Linux
// architecture (it postdates the unified syscall table).
const sysEpollPwait2 = 441

// noPwait2 is set when the kernel lacks epoll_pwait2; pacing is then only
// millisecond-precise, which the report says.
var noPwait2 atomic.Bool
