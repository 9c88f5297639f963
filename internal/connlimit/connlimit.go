// Package connlimit caps the connections an http.Server holds open, so a
// flood of idle keep-alive (or silent) connections cannot exhaust the
// process's file descriptors and lock out new clients.
//
// At the cap, Accept makes room before it accepts: it closes the connection
// that has been idle longest (an HTTP keep-alive connection between
// requests, or a new connection that has sent nothing for Options.NewGrace).
// Only when no connection is idle does Accept wait; the new connection then
// waits in the kernel's listen backlog, which costs no descriptor, until a
// connection closes or goes idle. So the number of open connections never
// exceeds the cap, and a new client is served as long as any held
// connection is idle.
package connlimit

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options tune a Listener; the zero value is usable.
type Options struct {
	// NewGrace is how long a new connection may go without sending a
	// request before it may be closed to make room. Default 2s.
	NewGrace time.Duration
	// Poll is how often a waiting Accept re-checks when nothing signals
	// it (a silent new connection becomes closable with no event).
	// Default 250ms.
	Poll time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Listener wraps a net.Listener with the cap. Its ConnState method must be
// the http.Server's ConnState hook (or be called by it): that is how the
// Listener learns which connections are idle and which have closed. The
// conns it returns are the inner listener's, unwrapped (net/http needs to
// see a *tls.Conn as such). Safe for concurrent use.
type Listener struct {
	inner net.Listener
	max   int
	opts  Options

	mu       sync.Mutex
	conns    map[net.Conn]*entry
	fresh    list.List // *entry in StateNew, oldest accept first
	idle     list.List // *entry in StateIdle, longest idle first
	reserved int       // Accepts that have made room and wait in the inner Accept
	peak     int
	evicted  uint64

	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type entry struct {
	conn  net.Conn
	since time.Time     // accepted at (fresh) or idle since (idle)
	elem  *list.Element // in fresh or idle; nil while active
	list  *list.List
}

// New caps inner at max open connections. It panics if max < 1.
func New(inner net.Listener, max int, opts Options) *Listener {
	if max < 1 {
		panic("connlimit: max must be at least 1")
	}
	if opts.NewGrace <= 0 {
		opts.NewGrace = 2 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Listener{
		inner: inner, max: max, opts: opts,
		conns: make(map[net.Conn]*entry),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// Accept waits for room under the cap (closing the longest-idle connection
// if there is one), then accepts. Errors of the inner listener are returned
// unchanged, so http.Server still backs off on temporary ones such as
// EMFILE instead of spinning. After Close it returns net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		select {
		case <-l.done:
			return nil, net.ErrClosed
		default:
		}
		l.mu.Lock()
		if len(l.conns)+l.reserved < l.max {
			l.reserved++
			l.mu.Unlock()
			break
		}
		if victim := l.victimLocked(); victim != nil {
			l.removeLocked(victim)
			l.evicted++
			l.reserved++
			l.mu.Unlock()
			closeRaw(victim.conn)
			break
		}
		l.mu.Unlock()
		t := time.NewTimer(l.opts.Poll)
		select {
		case <-l.wake:
		case <-t.C:
		case <-l.done:
		}
		t.Stop()
	}
	c, err := l.inner.Accept()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved--
	if err != nil {
		return nil, err
	}
	e := &entry{conn: c, since: l.opts.Now()}
	l.conns[c] = e
	l.pushLocked(e, &l.fresh)
	l.peak = max(l.peak, len(l.conns))
	return c, nil
}

// victimLocked is the connection idle longest: the oldest of the
// longest-idle keep-alive connection and the oldest new connection that
// has been silent for NewGrace. Nil if there is none.
func (l *Listener) victimLocked() *entry {
	var v *entry
	if f := l.idle.Front(); f != nil {
		v = f.Value.(*entry)
	}
	if f := l.fresh.Front(); f != nil {
		e := f.Value.(*entry)
		if l.opts.Now().Sub(e.since) >= l.opts.NewGrace && (v == nil || e.since.Before(v.since)) {
			v = e
		}
	}
	return v
}

// closeRaw closes the socket under c. For a *tls.Conn that skips the
// close_notify alert, whose write could block Accept on a peer that does
// not read.
func closeRaw(c net.Conn) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		nc.NetConn().Close()
		return
	}
	c.Close()
}

func (l *Listener) pushLocked(e *entry, to *list.List) {
	if e.elem != nil {
		e.list.Remove(e.elem)
	}
	e.elem, e.list = nil, nil
	if to != nil {
		e.elem, e.list = to.PushBack(e), to
	}
}

func (l *Listener) removeLocked(e *entry) {
	l.pushLocked(e, nil)
	delete(l.conns, e.conn)
}

// ConnState records c's state; use it as http.Server.ConnState. Conns this
// Listener did not accept, or has already closed, are ignored.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.conns[c]
	if !ok {
		return
	}
	switch s {
	case http.StateActive:
		l.pushLocked(e, nil)
		return
	case http.StateIdle:
		e.since = l.opts.Now()
		l.pushLocked(e, &l.idle)
	case http.StateClosed, http.StateHijacked:
		l.removeLocked(e)
	default:
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close closes the inner listener and wakes a waiting Accept. Accepted
// connections are left to the http.Server.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Max is the cap.
func (l *Listener) Max() int { return l.max }

// Stats is a snapshot of a Listener's counts.
type Stats struct {
	Open    int    // connections accepted and not yet closed
	Idle    int    // of which idle between requests
	Peak    int    // highest Open so far
	Evicted uint64 // connections closed to make room
}

// Stats returns the current counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Open: len(l.conns), Idle: l.idle.Len(), Peak: l.peak, Evicted: l.evicted}
}
