package feed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// fakeSource is an in-memory event log with the store's cursor contract:
// a cursor is the decimal seq of an event (or of the last purged one).
type fakeSource struct {
	mu      sync.Mutex
	events  []oauth.RevocationEvent
	seq     int64
	purged  int64
	visible int64 // events after it are not returned yet (-1: all are)
	fail    error

	reads atomic.Int64 // RevocationEvents calls
}

func newSource() *fakeSource { return &fakeSource{visible: -1} }

func (s *fakeSource) add(typ oauth.RevocationType, id string, before time.Time) oauth.RevocationEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	e := oauth.RevocationEvent{Cursor: strconv.FormatInt(s.seq, 10), Type: typ, ID: id, Before: before}
	s.events = append(s.events, e)
	return e
}

func (s *fakeSource) tokens(n int) []oauth.RevocationEvent {
	var out []oauth.RevocationEvent
	for range n {
		out = append(out, s.add(oauth.RevokedToken, fmt.Sprintf("tok-%d", s.seq+1), time.Time{}))
	}
	return out
}

// purge deletes the events up to seq upTo.
func (s *fakeSource) purge(upTo int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = slices.DeleteFunc(s.events, func(e oauth.RevocationEvent) bool { n, _ := strconv.ParseInt(e.Cursor, 10, 64); return n <= upTo })
	s.purged = max(s.purged, upTo)
}

func (s *fakeSource) setFail(err error) { s.mu.Lock(); s.fail = err; s.mu.Unlock() }

func (s *fakeSource) RevocationEvents(_ context.Context, cursor string, limit int) ([]oauth.RevocationEvent, string, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, "", s.fail
	}
	c, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || strconv.FormatInt(c, 10) != cursor || c < s.purged || c > s.seq {
		return nil, "", oauth.ErrCursorExpired
	}
	var out []oauth.RevocationEvent
	for _, e := range s.events {
		n, _ := strconv.ParseInt(e.Cursor, 10, 64)
		if n > c && (s.visible < 0 || n <= s.visible) && len(out) < limit {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out, out[len(out)-1].Cursor, nil
	}
	return nil, cursor, nil
}

func (s *fakeSource) RevocationCursor(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return "", s.fail
	}
	last := s.seq
	if s.visible >= 0 {
		last = min(last, s.visible)
	}
	return strconv.FormatInt(max(last, s.purged), 10), nil
}

// frame is one SSE event or comment as a client parses it.
type sseFrame struct {
	event, id, data string
	comment         string
}

// client is a subscriber over real HTTP.
type client struct {
	t      *testing.T
	resp   *http.Response
	frames chan sseFrame
	ended  chan struct{}
}

func subscribe(t *testing.T, url string, header http.Header) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &client{t: t, resp: resp, frames: make(chan sseFrame, 10000), ended: make(chan struct{})}
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-c.ended })
	if resp.StatusCode != http.StatusOK {
		close(c.ended)
		return c
	}
	go func() {
		defer close(c.ended)
		sc := bufio.NewScanner(resp.Body)
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				c.frames <- f
				f = sseFrame{}
			case strings.HasPrefix(line, ":"):
				f.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "event":
					f.event = v
				case "id":
					f.id = v
				case "data":
					f.data = v
				default:
					t.Errorf("unexpected SSE line %q", line)
				}
			}
		}
	}()
	return c
}

// next returns the next frame that is not a ping.
func (c *client) next() sseFrame {
	c.t.Helper()
	for {
		select {
		case f := <-c.frames:
			if f.comment == "ping" {
				continue
			}
			return f
		case <-c.ended:
			select {
			case f := <-c.frames:
				return f
			default:
			}
			c.t.Fatal("the stream ended")
		case <-time.After(5 * time.Second):
			c.t.Fatal("no frame within 5s")
		}
	}
}

// revoked reads n revoked events and returns their ids (cursors) and data.
func (c *client) revoked(n int) (ids, data []string) {
	c.t.Helper()
	for range n {
		f := c.next()
		if f.event != "revoked" {
			c.t.Fatalf("got %+v, want a revoked event", f)
		}
		ids, data = append(ids, f.id), append(data, f.data)
	}
	return ids, data
}

func (c *client) hello() string {
	c.t.Helper()
	f := c.next()
	if f.event != "hello" {
		c.t.Fatalf("first frame %+v, want hello", f)
	}
	var h struct{ Cursor, Retention string }
	if err := json.Unmarshal([]byte(f.data), &h); err != nil || h.Cursor != f.id {
		c.t.Fatalf("hello %+v: %v", f, err)
	}
	return h.Cursor
}

func (c *client) waitEnd() {
	c.t.Helper()
	select {
	case <-c.ended:
	case <-time.After(5 * time.Second):
		c.t.Fatal("the stream did not end")
	}
}

func cursors(events []oauth.RevocationEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Cursor)
	}
	return out
}

// joined is how many subscribers receive the fan-out.
func (f *Feed) joined() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func waitJoined(t *testing.T, f *Feed, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.joined() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers joined, want %d", f.joined(), n)
		}
		runtime.Gosched()
	}
}

func newFeed(t *testing.T, src Source, o Options) (*Feed, *httptest.Server) {
	t.Helper()
	f := New(src, o)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.Serve(w, r, "") }))
	t.Cleanup(func() { f.Close(); srv.Close() })
	f.Poll(t.Context())
	return f, srv
}

// TestFanOut: subscribers starting at now get every later event in order;
// the store is read once per poll however many subscribe.
func TestFanOut(t *testing.T) {
	src := newSource()
	src.tokens(3) // before anyone subscribed: not sent
	f, srv := newFeed(t, src, Options{})
	var subs []*client
	for range 20 {
		c := subscribe(t, srv.URL, nil)
		if got := c.hello(); got != "3" {
			t.Fatalf("hello cursor %q, want 3 (now)", got)
		}
		subs = append(subs, c)
	}
	waitJoined(t, f, 20)
	readsBefore := src.reads.Load()
	var want []oauth.RevocationEvent
	for range 5 {
		want = append(want, src.tokens(2)...)
		f.Poll(t.Context())
	}
	if n := src.reads.Load() - readsBefore; n != 5 {
		t.Errorf("5 polls for 20 subscribers read the store %d times, want 5", n)
	}
	for i, c := range subs {
		ids, _ := c.revoked(len(want))
		if !slices.Equal(ids, cursors(want)) {
			t.Fatalf("subscriber %d got %v, want %v", i, ids, cursors(want))
		}
	}
	if st := f.Stats(); st.Subscribers != 20 || st.Delivered != 200 {
		t.Errorf("stats %+v", st)
	}
}

// TestWireFormat: each event's frame, byte for byte as the wire format
// document has them.
func TestWireFormat(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{Retention: 36 * time.Hour})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	waitJoined(t, f, 1)
	// hello, then at once a ping: nothing to catch up with.
	want := "event: hello\nid: 0\ndata: {\"cursor\":\"0\",\"retention\":\"36h0m0s\"}\n\n" + ": ping\n\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("%v after %q", err, got)
	}
	if string(got) != want {
		t.Fatalf("stream:\n%s\nwant:\n%s", got, want)
	}
	before := time.Date(2026, 11, 29, 17, 0, 0, 123456789, time.FixedZone("WIB", 7*3600))
	src.add(oauth.RevokedToken, "tok-a", time.Time{})
	src.add(oauth.RevokedClient, `merchant "1"`, before)
	src.add(oauth.RevokedUser, "payer", before.Truncate(time.Second))
	f.Poll(t.Context())
	want = "event: revoked\nid: 1\ndata: {\"type\":\"token\",\"id\":\"tok-a\"}\n\n" +
		"event: revoked\nid: 2\ndata: {\"type\":\"client\",\"client_id\":\"merchant \\\"1\\\"\",\"before\":\"2026-11-29T10:00:00.123456Z\"}\n\n" +
		"event: revoked\nid: 3\ndata: {\"type\":\"user\",\"username\":\"payer\",\"before\":\"2026-11-29T10:00:00.000000Z\"}\n\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("%v after %q", err, got)
	}
	if string(got) != want {
		t.Fatalf("stream:\n%s\nwant:\n%s", got, want)
	}
}

// TestResume: a subscriber resuming from a cursor gets what followed it
// exactly once, whether the cursor is in the feed's memory (no store
// read), behind it (read from the store, then joined), or ahead of the
// poller (joined once the poller gets there); Last-Event-ID wins over
// ?cursor.
func TestResume(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{Recent: 3, PageSize: 2})
	all := src.tokens(8)
	f.Poll(t.Context()) // the feed remembers events 6, 7, 8

	// In memory.
	reads := src.reads.Load()
	mem := subscribe(t, srv.URL+"?cursor=6", nil)
	if got := mem.hello(); got != "6" {
		t.Fatalf("hello %q, want the subscriber's own cursor", got)
	}
	if ids, _ := mem.revoked(2); !slices.Equal(ids, []string{"7", "8"}) {
		t.Fatalf("from a recent cursor: %v", ids)
	}
	if n := src.reads.Load() - reads; n != 0 {
		t.Errorf("resuming from a recent cursor read the store %d times", n)
	}

	// Behind the feed's memory: read from the store, then joined.
	behind := subscribe(t, srv.URL+"?cursor=999", http.Header{"Last-Event-Id": {"1"}})
	behind.hello()
	if ids, _ := behind.revoked(7); !slices.Equal(ids, cursors(all[1:])) {
		t.Fatalf("from behind: %v, want %v", ids, cursors(all[1:]))
	}
	waitJoined(t, f, 2)
	more := src.tokens(2)
	f.Poll(t.Context())
	for _, c := range []*client{mem, behind} {
		if ids, _ := c.revoked(2); !slices.Equal(ids, cursors(more)) {
			t.Fatalf("after joining: %v, want %v", ids, cursors(more))
		}
	}

	// Ahead of the poller: joined once the poller gets there.
	ahead := src.tokens(2) // in the store, not yet polled
	c := subscribe(t, srv.URL+"?cursor="+ahead[0].Cursor, nil)
	c.hello()
	if ids, _ := c.revoked(1); !slices.Equal(ids, []string{ahead[1].Cursor}) {
		t.Fatalf("from ahead: %v", ids)
	}
	f.Poll(t.Context()) // the poller reaches the subscriber's position
	waitJoined(t, f, 3)
	next := src.tokens(1)
	f.Poll(t.Context())
	if ids, _ := c.revoked(1); !slices.Equal(ids, cursors(next)) {
		t.Fatalf("after joining: %v, want %v (no repeat of %v)", ids, cursors(next), ahead[1].Cursor)
	}
}

// TestPingEndsCatchUp: right after the hello and what a resuming
// subscriber missed (from the feed's memory, from the store, or a reset),
// the feed pings at once, long before the periodic ping: a subscriber can
// tell it has caught up (its hello names its own cursor, not the head).
func TestPingEndsCatchUp(t *testing.T) {
	src := newSource()
	// The periodic ping: 15 s. The poller runs (a catch-up from the store
	// joins after a poll).
	f, srv := newFeed(t, src, Options{Recent: 2, PageSize: 2, Poll: 10 * time.Millisecond})
	src.tokens(6)
	src.purge(1)
	f.Poll(t.Context()) // the feed remembers events 5 and 6
	go f.Run(t.Context())
	for _, c := range []struct {
		cursor string
		want   []string // ids of the frames between hello and the ping
	}{
		{"", nil},                                // now: nothing to catch up with
		{"6", nil},                               // at the head
		{"4", []string{"5", "6"}},                // in memory
		{"1", []string{"2", "3", "4", "5", "6"}}, // from the store, then joined
		{"0", []string{"6"}},                     // expired: a reset to the head
	} {
		sub := subscribe(t, srv.URL+"?cursor="+c.cursor, nil)
		start := time.Now()
		if got := sub.hello(); c.cursor != "" && got != c.cursor {
			t.Fatalf("hello %q, want %q", got, c.cursor)
		}
		var ids []string
		for {
			var fr sseFrame
			select {
			case fr = <-sub.frames:
			case <-time.After(5 * time.Second):
				t.Fatalf("cursor %q: no ping after the catch-up", c.cursor)
			}
			if fr.comment == "ping" {
				break
			}
			ids = append(ids, fr.id)
		}
		if !slices.Equal(ids, c.want) {
			t.Errorf("cursor %q: %v before the ping, want %v", c.cursor, ids, c.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("cursor %q: the ping came after %v", c.cursor, d)
		}
	}
}

// TestResumeWhilePolling: subscribers resume from every cursor while the
// poller runs and events keep coming; each reads every event after its
// cursor exactly once.
func TestResumeWhilePolling(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{Recent: 4, PageSize: 3, Poll: time.Millisecond})
	src.tokens(20)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go f.Run(ctx)
	// Events keep coming while the subscribers join (at most 1000, so
	// that none overflows its buffer), and a few after.
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 1000 && f.joined() < 20; i++ {
			src.tokens(1)
			runtime.Gosched()
		}
		src.tokens(10)
	})
	var subs []*client
	for start := range 20 {
		subs = append(subs, subscribe(t, srv.URL+"?cursor="+strconv.Itoa(start), nil))
	}
	wg.Wait()
	src.mu.Lock()
	last := src.seq
	src.mu.Unlock()
	for start, c := range subs {
		c.hello()
		ids, _ := c.revoked(int(last) - start)
		for i, id := range ids {
			if id != strconv.Itoa(start+i+1) {
				t.Fatalf("subscriber from %d: event %d is %s, want %d", start, i, id, start+i+1)
			}
		}
	}
}

// TestExpiredCursor: a cursor the store no longer has (or never had) gets
// hello with that cursor, a reset with the current one, then live events.
func TestExpiredCursor(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{})
	src.tokens(5)
	src.purge(3)
	f.Poll(t.Context())
	var subs []*client
	for _, cur := range []string{"1", "0", "x"} {
		c := subscribe(t, srv.URL+"?cursor="+cur, nil)
		subs = append(subs, c)
		c.hello()
		r := c.next()
		var d struct{ Reason, Cursor string }
		if err := json.Unmarshal([]byte(r.data), &d); err != nil || r.event != "reset" || r.id != "5" || d.Cursor != "5" || d.Reason != "cursor expired" {
			t.Fatalf("cursor %s: got %+v, want a reset to 5", cur, r)
		}
	}
	waitJoined(t, f, 3)
	src.tokens(1)
	f.Poll(t.Context())
	for _, c := range subs {
		if ids, _ := c.revoked(1); ids[0] != "6" {
			t.Fatalf("after the reset: %v", ids)
		}
	}
	if st := f.Stats(); st.Resets != 3 || st.Delivered != 6 {
		t.Errorf("stats %+v", st)
	}
}

// TestPollerCursorExpired: when the poller itself falls behind the
// retention, every subscriber is told to reset.
func TestPollerCursorExpired(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{})
	c := subscribe(t, srv.URL, nil)
	c.hello()
	waitJoined(t, f, 1)
	src.tokens(4)
	src.purge(4) // deleted before the poller read them
	src.tokens(1)
	f.Poll(t.Context())
	r := c.next()
	if r.event != "reset" || r.id != "5" {
		t.Fatalf("got %+v, want a reset to 5", r)
	}
	src.tokens(1)
	f.Poll(t.Context())
	if ids, _ := c.revoked(1); ids[0] != "6" {
		t.Fatalf("after the reset: %v", ids)
	}
}

// blockingWriter is a ResponseWriter whose writes wait until released: a
// subscriber that does not read.
type blockingWriter struct {
	h       http.Header
	release chan struct{}
	wrote   chan struct{}
}

func (w *blockingWriter) Header() http.Header { return w.h }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Write(b []byte) (int, error) {
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	<-w.release
	return len(b), nil
}
func (w *blockingWriter) Flush() {}

// TestSlowSubscriberDropped: a subscriber whose queue overflows is
// disconnected; the others are not held back by it.
func TestSlowSubscriberDropped(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{Buffer: 4})
	w := &blockingWriter{h: http.Header{}, release: make(chan struct{}), wrote: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Serve(w, httptest.NewRequest(http.MethodGet, "/", nil), "")
	}()
	<-w.wrote // blocked writing hello
	fast := subscribe(t, srv.URL, nil)
	fast.hello()
	waitJoined(t, f, 2)
	for range 3 {
		src.tokens(2)
		f.Poll(t.Context())
		fast.revoked(2) // it keeps up
	}
	close(w.release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow subscriber was not disconnected")
	}
	if st := f.Stats(); st.Dropped != 1 || st.Subscribers != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAdmission: at most MaxSubscribers streams; malformed cursors are
// refused.
func TestAdmission(t *testing.T) {
	src := newSource()
	f, srv := newFeed(t, src, Options{MaxSubscribers: 2})
	a, b := subscribe(t, srv.URL, nil), subscribe(t, srv.URL, nil)
	a.hello()
	b.hello()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third subscriber: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, bad := range []string{strings.Repeat("1", 65), "a b", "\x7f"} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Last-Event-ID", bad)
		rec := httptest.NewRecorder()
		f.Serve(rec, req, "")
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_request"`) {
			t.Errorf("cursor %q: %d %s", bad, rec.Code, rec.Body)
		}
	}
}

// TestAdmissionPerSubscriber (issue 11, review 3, point 8): one
// subscriber may hold at most MaxPerSubscriber streams, refused beyond
// with 429 temporarily_unavailable and Retry-After, so it cannot take the
// slots of others; a stream that ends frees its slot.
func TestAdmissionPerSubscriber(t *testing.T) {
	src := newSource()
	f := New(src, Options{MaxSubscribers: 4, MaxPerSubscriber: 2})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Serve(w, r, r.Header.Get("Who"))
	}))
	t.Cleanup(func() { f.Close(); srv.Close() })
	f.Poll(t.Context())
	open := func(who string) *client {
		t.Helper()
		return subscribe(t, srv.URL, http.Header{"Who": {who}})
	}
	refused := func(who string, status int, retryAfter string) {
		t.Helper()
		c := open(who)
		var body struct{ Error string }
		err := json.NewDecoder(c.resp.Body).Decode(&body)
		h := c.resp.Header
		if c.resp.StatusCode != status || h.Get("Retry-After") != retryAfter || h.Get("Content-Type") != "application/json" ||
			err != nil || body.Error != "temporarily_unavailable" {
			t.Fatalf("%s: %d, Retry-After %q, %s, %+v (%v); want %d temporarily_unavailable, Retry-After %s",
				who, c.resp.StatusCode, h.Get("Retry-After"), h.Get("Content-Type"), body, err, status, retryAfter)
		}
	}
	hog := []*client{open("hog"), open("hog")}
	for _, c := range hog {
		c.hello()
	}
	refused("hog", http.StatusTooManyRequests, "5")
	// The others still get in, up to MaxSubscribers.
	open("rs").hello()
	open("other rs").hello()
	refused("late", http.StatusServiceUnavailable, "1")

	// A hog's stream ends: its slot is free again, for anyone.
	hog[0].resp.Body.Close()
	hog[0].waitEnd()
	deadline := time.Now().Add(5 * time.Second)
	for f.Stats().Subscribers != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v after a stream ended, want 3 streams", f.Stats())
		}
		runtime.Gosched()
	}
	open("hog").hello()
	refused("hog", http.StatusTooManyRequests, "5")
	if st := f.Stats(); st.TooMany != 2 {
		t.Errorf("stats %+v, want 2 streams refused as too many", st)
	}
}

// TestStale: a store that cannot be read for StaleAfter ends every stream
// and refuses new ones until it can be read again.
func TestStale(t *testing.T) {
	var clk atomic.Int64
	clk.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clk.Load()) }
	src := newSource()
	f, srv := newFeed(t, src, Options{StaleAfter: time.Second, Now: now})
	c := subscribe(t, srv.URL, nil)
	c.hello()
	src.setFail(fmt.Errorf("store: %w", oauth.ErrUnavailable))
	f.Poll(t.Context())
	clk.Add(int64(999 * time.Millisecond))
	f.Poll(t.Context())
	waitJoined(t, f, 1) // not yet
	clk.Add(int64(time.Millisecond))
	f.Poll(t.Context())
	c.waitEnd()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("while stale: %d", resp.StatusCode)
	}
	if st := f.Stats(); st.PollErrors != 3 || st.Lag != time.Second {
		t.Errorf("stats %+v", st)
	}
	src.setFail(nil)
	f.Poll(t.Context())
	subscribe(t, srv.URL, nil).hello()
}

// TestNotReady: before the first successful read, subscriptions are
// refused (the feed does not know where "now" is).
func TestNotReady(t *testing.T) {
	src := newSource()
	src.setFail(errors.New("down"))
	f := New(src, Options{})
	defer f.Close()
	rec := httptest.NewRecorder()
	f.Serve(rec, httptest.NewRequest(http.MethodGet, "/", nil), "")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("%d", rec.Code)
	}
}

// TestPing: an idle stream gets a ": ping" comment every Ping.
func TestPing(t *testing.T) {
	src := newSource()
	_, srv := newFeed(t, src, Options{Ping: 10 * time.Millisecond})
	c := subscribe(t, srv.URL, nil)
	c.hello()
	for range 2 {
		select {
		case f := <-c.frames:
			if f.comment != "ping" {
				t.Fatalf("got %+v, want a ping", f)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no ping")
		}
	}
}

// TestClose: Close ends every stream, joined or catching up, and refuses
// new ones.
func TestClose(t *testing.T) {
	src := newSource()
	src.visible = 0 // the store holds events the poller cannot see yet
	f, srv := newFeed(t, src, Options{})
	src.tokens(3)
	live := subscribe(t, srv.URL, nil)
	live.hello()
	catching := subscribe(t, srv.URL+"?cursor=2", nil) // ahead of the poller: waits for it
	catching.hello()
	waitJoined(t, f, 1)
	f.Close()
	live.waitEnd()
	catching.waitEnd()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d", resp.StatusCode)
	}
}
