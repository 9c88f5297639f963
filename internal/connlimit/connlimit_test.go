package connlimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// counting wraps a listener and counts the connections it handed out that
// nobody has closed yet, independently of the Listener under test.
type counting struct {
	net.Listener
	mu         sync.Mutex
	open, peak int
}

type countedConn struct {
	net.Conn
	l    *counting
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *counting) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.peak = max(l.peak, l.open)
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

func (l *counting) Peak() int { l.mu.Lock(); defer l.mu.Unlock(); return l.peak }

type fixture struct {
	t      *testing.T
	lim    *Listener
	inner  *counting
	addr   string
	states chan http.ConnState
	clock  *clock
}

// serve runs an http.Server behind a Listener capped at max. Requests to
// /block wait for a value on block.
func serve(t *testing.T, max int, opts Options, block chan struct{}) *fixture {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, inner: &counting{Listener: raw}, addr: raw.Addr().String(),
		states: make(chan http.ConnState, 1000), clock: &clock{now: time.Unix(1_700_000_000, 0)}}
	opts.Now = f.clock.Now
	f.lim = New(f.inner, max, opts)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		f.states <- http.StateActive
		<-block
		io.WriteString(w, "ok")
	})
	srv := &http.Server{Handler: mux, ConnState: func(c net.Conn, s http.ConnState) {
		f.lim.ConnState(c, s)
		if s == http.StateIdle || s == http.StateNew {
			f.states <- s
		}
	}}
	go srv.Serve(f.lim)
	t.Cleanup(func() { srv.Close() })
	return f
}

// waitState waits for the server to report state s for some connection.
func (f *fixture) waitState(s http.ConnState) {
	f.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-f.states:
			if got == s {
				return
			}
		case <-timeout:
			f.t.Fatalf("no connection reached %v", s)
		}
	}
}

type client struct {
	net.Conn
	r *bufio.Reader
}

func (f *fixture) dial() *client {
	f.t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(path string) error {
	_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n")
	return err
}

// response reads one response, waiting up to d.
func (c *client) response(d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err == nil && (res.StatusCode != 200 || string(body) != "ok") {
		err = errors.New("unexpected response " + res.Status)
	}
	return err
}

func (f *fixture) request(c *client, path string) {
	f.t.Helper()
	if err := c.send(path); err != nil {
		f.t.Fatal(err)
	}
	if err := c.response(5 * time.Second); err != nil {
		f.t.Fatal(err)
	}
}

// closedByServer reports whether the server closed c (EOF or reset)
// within 5 seconds.
func closedByServer(c *client) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestEvictsLongestIdleFirst(t *testing.T) {
	f := serve(t, 3, Options{}, nil)
	var cs []*client
	for range 3 {
		c := f.dial()
		f.request(c, "/")
		f.waitState(http.StateIdle)
		cs = append(cs, c)
		f.clock.Add(time.Second)
	}
	a, b, c := cs[0], cs[1], cs[2]
	// At the cap the Listener makes room before the next arrival: the
	// longest idle connection goes.
	if !closedByServer(a) {
		t.Fatal("the longest-idle connection was not closed at the cap")
	}
	d := f.dial()
	f.request(d, "/")
	if !closedByServer(b) {
		t.Fatal("the next longest-idle connection was not closed")
	}
	f.request(c, "/") // the most recently idle connection survived
	f.request(d, "/")
	if p := f.inner.Peak(); p > 3 {
		t.Errorf("%d connections open at once, cap 3", p)
	}
	// c and d; the third slot is held free for the next arrival.
	if s := f.lim.Stats(); s.Evicted != 2 || s.Open != 2 || s.Peak != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestWaitsWhenNoneIdle(t *testing.T) {
	block := make(chan struct{})
	f := serve(t, 2, Options{}, block)
	a, b := f.dial(), f.dial()
	for _, c := range []*client{a, b} {
		if err := c.send("/block"); err != nil {
			t.Fatal(err)
		}
		f.waitState(http.StateActive) // in the handler
	}
	c := f.dial() // completes in the kernel's backlog
	if err := c.send("/"); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if err := c.response(100 * time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("served with every slot busy: %v", err)
	}
	block <- struct{}{} // one of a, b finishes and goes idle: c gets its slot
	if err := c.response(5 * time.Second); err != nil {
		t.Fatalf("waiting connection not served once a slot went idle: %v", err)
	}
	block <- struct{}{}
	for _, x := range []*client{a, b} {
		if err := x.response(5 * time.Second); err != nil {
			t.Error(err)
		}
	}
	if p := f.inner.Peak(); p > 2 {
		t.Errorf("%d connections open at once, cap 2", p)
	}
}

func TestSilentConnectionsMakeRoomAfterGrace(t *testing.T) {
	f := serve(t, 2, Options{NewGrace: 2 * time.Second, Poll: 5 * time.Millisecond}, nil)
	s1 := f.dial()
	f.waitState(http.StateNew)
	s2 := f.dial()
	f.waitState(http.StateNew)
	c := f.dial()
	if err := c.send("/"); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if err := c.response(100 * time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a connection silent for less than the grace was closed to make room: %v", err)
	}
	f.clock.Add(3 * time.Second)
	if err := c.response(5 * time.Second); err != nil {
		t.Fatalf("not served once silent connections passed the grace: %v", err)
	}
	if !closedByServer(s1) || !closedByServer(s2) {
		t.Error("silent connections not closed")
	}
	if p := f.inner.Peak(); p > 2 {
		t.Errorf("%d connections open at once, cap 2", p)
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 1, Options{})
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := l.Accept(); done <- err }() // at the cap, nothing idle: waits
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}

// flaky fails its first Accept with EMFILE, as accept(2) does when the
// process is out of descriptors, then hands out pipe conns.
type flaky struct {
	net.Listener
	fails int
	err   error
}

func (l *flaky) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, l.err
	}
	a, _ := net.Pipe()
	return a, nil
}

func TestAcceptErrorsPassThroughAndFreeTheSlot(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	l := New(&flaky{fails: 3, err: emfile}, 1, Options{})
	for range 3 {
		_, err := l.Accept()
		// http.Server backs off on a net.Error whose Temporary() is true,
		// checked with a type assertion: the error must come back as is.
		if ne, ok := err.(net.Error); err != emfile || !ok || !ne.Temporary() {
			t.Fatalf("Accept error %v (%T), want the inner EMFILE unchanged", err, err)
		}
	}
	done := make(chan error)
	go func() { _, err := l.Accept(); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("failed Accepts kept their slots: the cap of 1 is exhausted")
	}
}

func TestHijackedAndClosedFreeTheirSlot(t *testing.T) {
	l := New(&flaky{}, 2, Options{})
	a, _ := l.Accept()
	b, _ := l.Accept()
	l.ConnState(a, http.StateActive)
	l.ConnState(a, http.StateHijacked)
	l.ConnState(b, http.StateClosed)
	l.ConnState(b, http.StateIdle) // late report about a gone conn: ignored
	if s := l.Stats(); s.Open != 0 || s.Idle != 0 || s.Peak != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestDefaultMaxFromLimit(t *testing.T) {
	for limit, want := range map[uint64]int{
		3000:        2872,
		1024:        896,
		256:         128,
		100:         50,
		1:           1,
		1 << 20:     10000,
		0:           10000, // unknown
		^uint64(0):  10000, // RLIM_INFINITY
		10000 + 128: 10000,
		10000 + 127: 9999,
	} {
		if got := fromLimit(limit); got != want {
			t.Errorf("fromLimit(%d) = %d, want %d", limit, got, want)
		}
	}
	if n := DefaultMax(); n < 1 || n > 10000 {
		t.Errorf("DefaultMax() = %d", n)
	}
}
