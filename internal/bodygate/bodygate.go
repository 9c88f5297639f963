// Package bodygate bounds the request bodies a server reads at once, and
// how long each may take to arrive, so that clients which declare a body
// and stop sending it can hold neither memory nor connections.
//
// A handler that reads a body calls Enter before reading and Pass.Done as
// soon as it has read it (before it writes its answer). Enter takes one of
// Options.Max reader slots and gives the body Options.Timeout to arrive (a
// read deadline on the connection); the slot is freed the moment the body
// has been read to its end, and the deadline is lifted then, so the rest of
// the request and the next one on the connection run as before. When every
// slot is taken, Enter cuts short the reader that has been reading longest,
// if it has been reading for at least Options.Grace, and gives its slot to
// the newcomer; otherwise Enter refuses, and the handler answers at once
// (503 and Retry-After). A body refused, cut short, timed out or left
// unread ends its HTTP/1 connection after the answer instead of waiting
// for the rest of the body, so such a connection is busy only while a
// slot is held; every other connection is idle or new, which a connection
// cap (internal/connlimit) can close to make room.
package bodygate

import (
	"container/list"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Options configure a Gate.
type Options struct {
	// Max is how many bodies may be read at once; at least 1.
	Max int
	// Timeout is how long a body may take to arrive, from Enter. Default 5s.
	Timeout time.Duration
	// Grace is how long a reader may read before, with every slot taken,
	// a newcomer may cut it short. Default the smaller of 1s and Timeout.
	Grace time.Duration
	// Now is the clock of Grace; default time.Now. Read deadlines are set
	// on the real clock, which is the one the network poller uses.
	Now func() time.Time
}

// Gate hands out reader slots. Safe for concurrent use.
type Gate struct {
	opts Options

	mu       sync.Mutex
	busy     list.List // *Pass holding a slot, oldest first
	refused  uint64
	cut      uint64
	timedOut uint64
}

// New returns a Gate. It panics if o.Max < 1.
func New(o Options) *Gate {
	if o.Max < 1 {
		panic("bodygate: Max must be at least 1")
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = min(time.Second, o.Timeout)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Gate{opts: o}
}

// deadliner is what Enter needs of a response writer: the read deadline of
// its connection (HTTP/1) or stream (HTTP/2).
type deadliner interface{ SetReadDeadline(time.Time) error }

// Pass is one request's hold on a reader slot. The nil *Pass (a request
// without a body) is valid: Done does nothing.
type Pass struct {
	g     *Gate
	w     http.ResponseWriter
	r     *http.Request
	rc    deadliner
	since time.Time

	// Guarded by g.mu.
	elem  *list.Element // in g.busy while the slot is held
	cut   bool          // a newcomer took the slot
	ended bool          // the body reached its end or an error
	eof   bool          // the body was read to its end
	done  bool
}

// aLongTimeAgo is a read deadline in the past: a pending or later read
// fails at once.
var aLongTimeAgo = time.Unix(1, 0)

// Enter takes a reader slot for r's body and sets its read deadline, and
// replaces r.Body with a reader that frees the slot when the body ends or
// fails. A request without a body needs no slot: Enter returns nil, true.
// When every slot is held by a reader younger than Options.Grace, Enter
// returns nil, false, having prepared w to end the connection after the
// answer (see Unread); the caller answers 503 with Retry-After.
func (g *Gate) Enter(w http.ResponseWriter, r *http.Request) (*Pass, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	p := &Pass{g: g, w: w, r: r, rc: http.NewResponseController(w)}
	g.mu.Lock()
	p.since = g.opts.Now()
	if g.busy.Len() >= g.opts.Max {
		oldest := g.busy.Front().Value.(*Pass)
		if p.since.Sub(oldest.since) < g.opts.Grace {
			g.refused++
			g.mu.Unlock()
			Unread(w, r)
			return nil, false
		}
		// Under g.mu the victim still holds its slot, so its handler has
		// not returned and its connection serves no other request yet.
		g.busy.Remove(oldest.elem)
		oldest.elem, oldest.cut = nil, true
		oldest.rc.SetReadDeadline(aLongTimeAgo)
		g.cut++
	}
	p.elem = g.busy.PushBack(p)
	// Under g.mu too, so that a newcomer cutting p short cannot have its
	// past deadline replaced by this one.
	p.rc.SetReadDeadline(time.Now().Add(g.opts.Timeout))
	g.mu.Unlock()
	r.Body = &body{ReadCloser: r.Body, p: p}
	return p, true
}

// Done ends p: it frees the slot if the body did not already, and, unless
// the body was read to its end, prepares w to end the connection after the
// answer (see Unread). Call it after reading the body and before writing
// the answer; calling it again does nothing.
func (p *Pass) Done() {
	if p == nil {
		return
	}
	g := p.g
	g.mu.Lock()
	if p.done {
		g.mu.Unlock()
		return
	}
	p.done = true
	if p.elem != nil {
		g.busy.Remove(p.elem)
		p.elem = nil
	}
	eof := p.eof
	g.mu.Unlock()
	if !eof {
		Unread(p.w, p.r)
	}
}

// finish is called by the body at its end or first error.
func (p *Pass) finish(err error) {
	g := p.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
	if p.elem != nil {
		g.busy.Remove(p.elem)
		p.elem = nil
	}
	if err == io.EOF {
		// Also after a newcomer's cut: the body is whole, and the past
		// deadline would fail net/http's read for the next request.
		p.eof = true
		p.rc.SetReadDeadline(time.Time{})
		return
	}
	if !p.cut && errors.Is(err, os.ErrDeadlineExceeded) {
		g.timedOut++
	}
}

// body frees its pass's slot at its end or first error.
type body struct {
	io.ReadCloser
	p *Pass
}

func (b *body) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if err != nil {
		b.p.finish(err)
	}
	return n, err
}

// Unread prepares w, whose handler will not read (the rest of) r's body,
// to answer at once and then end an HTTP/1 connection: net/http would
// otherwise read what is left of the body after the answer, for as long as
// the connection's read deadline allows, before serving or closing the
// connection. It sets Connection: close and a read deadline in the past;
// call it before writing the answer. What of the body is already buffered
// is still discarded; only the wait for more is cut. An HTTP/2 stream
// needs nothing: its connection never waits for a body.
func Unread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header().Set("Connection", "close")
	http.NewResponseController(w).SetReadDeadline(aLongTimeAgo)
}

// Stats is a snapshot of a Gate's counts.
type Stats struct {
	Busy     int    // slots held now
	Max      int    // Options.Max
	Refused  uint64 // Enter calls refused because every slot was held
	Cut      uint64 // readers cut short to make room for a newcomer
	TimedOut uint64 // bodies that did not arrive within Options.Timeout
}

// Stats returns the current counts.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Busy: g.busy.Len(), Max: g.opts.Max, Refused: g.refused, Cut: g.cut, TimedOut: g.timedOut}
}
