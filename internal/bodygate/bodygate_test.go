package bodygate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// writer is a response writer that records its read deadline.
type writer struct {
	*httptest.ResponseRecorder
	mu       sync.Mutex
	deadline time.Time
	sets     int
}

func newWriter() *writer { return &writer{ResponseRecorder: httptest.NewRecorder()} }

func (w *writer) SetReadDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	w.sets++
	return nil
}

func (w *writer) Deadline() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.deadline }

func (w *writer) past() bool {
	d := w.Deadline()
	return !d.IsZero() && d.Before(time.Now())
}

func post(body io.Reader) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
	r.Body = io.NopCloser(body)
	r.ContentLength = 10
	return r
}

func TestEnterBoundsReadersAndRefusesAtOnce(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	g := New(Options{Max: 2, Timeout: 5 * time.Second, Now: clk.Now})
	w1, w2, w3 := newWriter(), newWriter(), newWriter()
	p1, ok1 := g.Enter(w1, post(strings.NewReader("a")))
	p2, ok2 := g.Enter(w2, post(strings.NewReader("b")))
	if !ok1 || !ok2 || p1 == nil || p2 == nil {
		t.Fatal("the first two readers were refused")
	}
	if d := time.Until(w1.Deadline()); d < 4*time.Second || d > 5*time.Second {
		t.Errorf("reader's deadline %v away, want Timeout", d)
	}
	if st := g.Stats(); st.Busy != 2 {
		t.Errorf("busy %d, want 2", st.Busy)
	}
	clk.Advance(999 * time.Millisecond) // within Grace
	p3, ok3 := g.Enter(w3, post(strings.NewReader("c")))
	if ok3 || p3 != nil {
		t.Fatal("a third reader was let in with two slots held")
	}
	if w3.Header().Get("Connection") != "close" || !w3.past() {
		t.Errorf("refused request: Connection %q, deadline %v: the connection would wait for its body",
			w3.Header().Get("Connection"), w3.Deadline())
	}
	if w1.past() || w2.past() {
		t.Error("a reader within Grace was cut short")
	}
	if st := g.Stats(); st.Refused != 1 || st.Busy != 2 {
		t.Errorf("stats %+v, want 1 refused, 2 busy", st)
	}
}

func TestNewcomerCutsTheOldestReaderAfterGrace(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	g := New(Options{Max: 2, Now: clk.Now})
	w1, w2, w3 := newWriter(), newWriter(), newWriter()
	r1 := post(strings.NewReader("stalled"))
	p1, _ := g.Enter(w1, r1)
	clk.Advance(500 * time.Millisecond)
	g.Enter(w2, post(strings.NewReader("b")))
	clk.Advance(600 * time.Millisecond) // the first has read 1.1s, the second 0.6s
	p3, ok := g.Enter(w3, post(strings.NewReader("c")))
	if !ok || p3 == nil {
		t.Fatal("newcomer refused although the oldest reader has read longer than Grace")
	}
	if !w1.past() {
		t.Error("the oldest reader was not cut short")
	}
	if w2.past() || w3.past() {
		t.Error("a reader other than the oldest was cut short")
	}
	if st := g.Stats(); st.Cut != 1 || st.Busy != 2 || st.Refused != 0 {
		t.Errorf("stats %+v, want 1 cut, 2 busy", st)
	}
	// The victim's read fails (its deadline passed) and its Done ends the
	// connection, without freeing a slot it no longer holds.
	r1.Body.(*body).ReadCloser = io.NopCloser(iotestErr(os.ErrDeadlineExceeded))
	if _, err := io.ReadAll(r1.Body); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
	p1.Done()
	if st := g.Stats(); st.Busy != 2 || st.TimedOut != 0 {
		t.Errorf("after the victim's Done: %+v, want 2 busy and no timeout counted", st)
	}
	if w1.Header().Get("Connection") != "close" {
		t.Error("the victim's connection is kept alive with its body unread")
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func iotestErr(err error) io.Reader { return errReader{err} }

func TestSlotFreedAtEndOfBodyAndDeadlineLifted(t *testing.T) {
	g := New(Options{Max: 1})
	w := newWriter()
	r := post(strings.NewReader("grant_type=x"))
	p, ok := g.Enter(w, r)
	if !ok {
		t.Fatal("refused")
	}
	if b, err := io.ReadAll(r.Body); err != nil || string(b) != "grant_type=x" {
		t.Fatalf("body %q, %v", b, err)
	}
	if st := g.Stats(); st.Busy != 0 {
		t.Errorf("slot still held after the body ended: %+v", st)
	}
	if !w.Deadline().IsZero() {
		t.Errorf("read deadline %v left after the body ended: keep-alive and the request context would suffer", w.Deadline())
	}
	// The slot is free for the next request before this one is Done.
	if _, ok := g.Enter(newWriter(), post(strings.NewReader("x"))); !ok {
		t.Error("slot not free after the first body ended")
	}
	p.Done()
	p.Done()
	if w.Header().Get("Connection") != "" {
		t.Errorf("Connection %q after a body read to its end", w.Header().Get("Connection"))
	}
	if st := g.Stats(); st.Busy != 1 {
		t.Errorf("busy %d, want 1 (the second request's)", st.Busy)
	}
}

func TestDoneWithBodyUnreadEndsConnection(t *testing.T) {
	g := New(Options{Max: 1})
	w := newWriter()
	r := post(strings.NewReader(strings.Repeat("x", 100)))
	p, _ := g.Enter(w, r)
	io.ReadFull(r.Body, make([]byte, 10)) // stops before the end, e.g. over a limit
	p.Done()
	if st := g.Stats(); st.Busy != 0 {
		t.Errorf("busy %d after Done", st.Busy)
	}
	if w.Header().Get("Connection") != "close" || !w.past() {
		t.Errorf("Connection %q, deadline %v: net/http would wait for the rest of the body", w.Header().Get("Connection"), w.Deadline())
	}
}

func TestTimeoutCountedOnce(t *testing.T) {
	g := New(Options{Max: 1})
	r := post(iotestErr(os.ErrDeadlineExceeded))
	p, _ := g.Enter(newWriter(), r)
	r.Body.Read(make([]byte, 8))
	r.Body.Read(make([]byte, 8))
	p.Done()
	if st := g.Stats(); st.TimedOut != 1 || st.Busy != 0 {
		t.Errorf("stats %+v, want 1 timeout, 0 busy", st)
	}
}

func TestNoBodyNeedsNoSlot(t *testing.T) {
	g := New(Options{Max: 1})
	g.Enter(newWriter(), post(strings.NewReader("x")))
	w := newWriter()
	p, ok := g.Enter(w, httptest.NewRequest(http.MethodPost, "/", nil))
	if !ok || p != nil {
		t.Errorf("a request without a body: %v, %v", p, ok)
	}
	p.Done()
	if w.sets != 0 || w.Header().Get("Connection") != "" {
		t.Error("a request without a body had its connection touched")
	}
}

func TestUnreadLeavesHTTP2Alone(t *testing.T) {
	w := newWriter()
	r := post(strings.NewReader("x"))
	r.ProtoMajor, r.ProtoMinor = 2, 0
	Unread(w, r)
	if w.sets != 0 || w.Header().Get("Connection") != "" {
		t.Error("Unread touched an HTTP/2 stream")
	}
}

func TestConcurrentReadersNeverExceedMax(t *testing.T) {
	const max = 4
	g := New(Options{Max: max, Grace: time.Hour})
	var inside, peak atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				r := post(strings.NewReader(fmt.Sprint(i)))
				p, ok := g.Enter(newWriter(), r)
				if !ok {
					continue
				}
				n := inside.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				inside.Add(-1) // before the body ends, which frees the slot
				io.ReadAll(r.Body)
				p.Done()
			}
		}()
	}
	wg.Wait()
	if peak.Load() > max {
		t.Errorf("%d readers at once, Max %d", peak.Load(), max)
	}
	if st := g.Stats(); st.Busy != 0 {
		t.Errorf("%d slots still held", st.Busy)
	}
}

// TestOverRealConnections runs the gate in a real HTTP/1 server: a body
// that stops arriving fails at Timeout and its connection closes; a
// request refused for want of a slot is answered at once and its
// connection closes without waiting for its body; a body read to its end
// keeps the connection alive for the next request.
func TestOverRealConnections(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	g := New(Options{Max: 1, Timeout: 300 * time.Millisecond, Grace: time.Hour, Now: clk.Now})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := g.Enter(w, r)
		if !ok {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		b, err := io.ReadAll(r.Body)
		p.Done()
		if err != nil {
			http.Error(w, "could not read the body", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "read %d", len(b))
	}))
	srv.Config.ReadTimeout = time.Minute
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	send := func(c net.Conn, declared int, body string) {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", declared, body)
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	answer := func(br *bufio.Reader) (*http.Response, string) {
		t.Helper()
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	closed := func(c net.Conn, br *bufio.Reader) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := br.ReadByte()
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}

	// Keep-alive after a body read to its end.
	c, br := dial()
	for range 2 {
		send(c, 5, "hello")
		if res, body := answer(br); res.StatusCode != 200 || body != "read 5" || res.Close {
			t.Fatalf("%d %q close=%v", res.StatusCode, body, res.Close)
		}
	}

	stalled, sbr := dial()
	began := time.Now()
	send(stalled, 100, "part")
	waitBusy(t, g, 1)

	refused, rbr := dial()
	send(refused, 100, "part")
	res, _ := answer(rbr)
	if res.StatusCode != 503 || !res.Close {
		t.Errorf("refused request: %d close=%v", res.StatusCode, res.Close)
	}
	if !closed(refused, rbr) {
		t.Error("the refused connection was kept open waiting for its body")
	}
	if d := time.Since(began); d > 250*time.Millisecond {
		t.Errorf("refused after %v: it waited", d)
	}

	res, _ = answer(sbr)
	took := time.Since(began)
	if res.StatusCode != 400 || !res.Close {
		t.Errorf("stalled body: %d close=%v", res.StatusCode, res.Close)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("stalled body answered after %v, want about Timeout (300ms)", took)
	}
	if !closed(stalled, sbr) {
		t.Error("the stalled connection stayed open")
	}
	if st := g.Stats(); st.Busy != 0 || st.TimedOut != 1 || st.Refused != 1 {
		t.Errorf("stats %+v", st)
	}
}

func waitBusy(t *testing.T, g *Gate, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); g.Stats().Busy != n; {
		if time.Now().After(deadline) {
			t.Fatalf("busy %d, want %d", g.Stats().Busy, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
