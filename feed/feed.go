// Package feed serves the revocation feed: a Server-Sent Events stream
// (GET /oauth/revocations, see /work/notes/feed-wire.md and the README) of
// the revocations committed in the store, for resource servers that cache
// token validations and must drop a revoked token within a second.
//
// One poller per node reads the store (oauth.Store.RevocationEvents) every
// Options.Poll and fans the events out to every subscriber of the node, so
// the store's load does not grow with the subscribers. A subscriber that
// resumes from a cursor the poller has already passed reads what it missed
// from the store by itself, then joins the fan-out at the exact event where
// its reading ends: cursors are positions of events (two reads of one event
// give the same cursor), so the join is a comparison of cursors and an
// event is neither skipped nor sent twice.
//
// Bounds: at most Options.MaxSubscribers streams, and at most
// Options.MaxPerSubscriber of them for one subscriber (one resource-server
// client), so that one credential cannot take every slot; each subscriber
// has a queue of at most Options.Buffer events, and one that falls further
// behind is disconnected (it reconnects with its last cursor and catches
// up from the store). When the store cannot be read for
// Options.StaleAfter, every stream is ended and new ones are refused with
// 503 until it can: a subscriber must be able to tell "no revocation" from
// "no news".
package feed

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Source is what the feed reads: oauth.Store's feed methods.
type Source interface {
	RevocationEvents(ctx context.Context, cursor string, limit int) ([]oauth.RevocationEvent, string, error)
	RevocationCursor(ctx context.Context) (string, error)
}

// Options tune a Feed. Zero values take the defaults.
type Options struct {
	// Poll is how often the store is read; default 200ms.
	Poll time.Duration
	// Ping is how often a stream with nothing to send gets a ": ping"
	// comment; default 15s.
	Ping time.Duration
	// Retention is the store's event retention, told to subscribers in
	// the hello event; default oauth.DefaultFeedRetention.
	Retention time.Duration
	// MaxSubscribers bounds the streams open at once; default 1000.
	MaxSubscribers int
	// MaxPerSubscriber bounds the streams one subscriber (see Serve) has
	// open at once; default DefaultMaxPerSubscriber. Beyond it a new
	// stream is refused with 429.
	MaxPerSubscriber int
	// Buffer is how many events may wait for one subscriber before it is
	// disconnected as too slow; default 2048.
	Buffer int
	// Recent is how many of the latest events the feed keeps in memory,
	// so that a subscriber resuming a little behind joins without reading
	// the store; default 1024, at most Buffer.
	Recent int
	// PageSize is the most events one store read returns; default 1000.
	PageSize int
	// StaleAfter is how long the store may fail to answer before every
	// stream is ended and new ones refused; default max(3s, 10 polls).
	StaleAfter time.Duration
	// WriteTimeout bounds one write to a subscriber (a client that stops
	// reading is disconnected after it); default 30s. The server's own
	// write and read timeouts do not apply to streams.
	WriteTimeout time.Duration
	// Logger receives the poller's warnings; default: discard.
	Logger *slog.Logger
	// Now is the clock staleness is judged by; default time.Now.
	Now func() time.Time
}

// DefaultMaxPerSubscriber is Options.MaxPerSubscriber's default. A guard
// holds one stream, but the instances of one resource server usually share
// its client, and a stream whose network path died silently still counts
// until the server's writes to it fail (minutes, not seconds): the bound
// must leave room for every instance that may connect to one node, twice.
const DefaultMaxPerSubscriber = 32

func (o *Options) defaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Poll, 200*time.Millisecond)
	def(&o.Ping, 15*time.Second)
	def(&o.Retention, oauth.DefaultFeedRetention)
	def(&o.StaleAfter, max(3*time.Second, 10*o.Poll))
	def(&o.WriteTimeout, 30*time.Second)
	if o.MaxSubscribers <= 0 {
		o.MaxSubscribers = 1000
	}
	if o.MaxPerSubscriber <= 0 {
		o.MaxPerSubscriber = DefaultMaxPerSubscriber
	}
	if o.Buffer <= 0 {
		o.Buffer = 2048
	}
	if o.Recent <= 0 {
		o.Recent = 1024
	}
	o.Recent = min(o.Recent, o.Buffer)
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Feed is one node's poller and its subscribers. Run polls; ServeHTTP
// serves one subscriber; Close ends every stream. Safe for concurrent use.
type Feed struct {
	src Source
	o   Options

	mu      sync.Mutex
	ready   bool    // pos is known (the first read succeeded)
	pos     string  // cursor after the last event polled
	recent  []*item // the latest events, oldest first
	base    string  // cursor before recent[0] (pos when recent is empty)
	subs    map[*subscriber]struct{}
	streams int            // streams admitted (joining or joined)
	perSub  map[string]int // streams admitted, by subscriber (absent: none)
	lastOK  time.Time      // last successful poll
	stale   bool
	polled  chan struct{} // closed after each poll, then replaced
	closed  bool

	done      chan struct{}
	closeOnce sync.Once

	delivered, dropped, resets, pollErrors, tooMany atomic.Uint64
}

// item is one frame of the stream: an event or a reset.
type item struct {
	cursor string
	frame  []byte // the SSE frame, encoded once for every subscriber
}

type subscriber struct {
	queue []*item
	wake  chan struct{} // buffered 1: the queue has items
	gone  chan struct{} // closed when the feed drops the subscriber
}

// New returns a feed reading src. Nothing is polled until Run.
func New(src Source, o Options) *Feed {
	o.defaults()
	return &Feed{src: src, o: o, subs: map[*subscriber]struct{}{}, perSub: map[string]int{},
		polled: make(chan struct{}), done: make(chan struct{})}
}

// Stats are a feed's counters.
type Stats struct {
	Subscribers int    // streams open
	Delivered   uint64 // events and resets handed to subscribers' connections
	Dropped     uint64 // subscribers disconnected as too slow, or because the store was unreadable
	Resets      uint64 // reset events sent
	PollErrors  uint64 // failed store reads of the poller
	// TooMany counts streams refused because their subscriber had
	// Options.MaxPerSubscriber open.
	TooMany uint64
	// Lag is how long ago the poller last read the store successfully.
	Lag time.Duration
}

// Stats returns the feed's counters.
func (f *Feed) Stats() Stats {
	f.mu.Lock()
	n, last := f.streams, f.lastOK
	f.mu.Unlock()
	var lag time.Duration
	if !last.IsZero() {
		lag = f.o.Now().Sub(last)
	}
	return Stats{Subscribers: n, Delivered: f.delivered.Load(), Dropped: f.dropped.Load(),
		Resets: f.resets.Load(), PollErrors: f.pollErrors.Load(), TooMany: f.tooMany.Load(), Lag: lag}
}

// Run polls the store every Options.Poll until ctx ends or Close.
func (f *Feed) Run(ctx context.Context) {
	t := time.NewTicker(f.o.Poll)
	defer t.Stop()
	for {
		f.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-f.done:
			return
		case <-t.C:
		}
	}
}

// Poll reads the store once (as many pages as it has) and hands the events
// to the subscribers. Run calls it; tests may call it instead of Run. It
// must not be called concurrently with itself.
func (f *Feed) Poll(ctx context.Context) {
	ok := f.poll(ctx)
	now := f.o.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case ok:
		f.lastOK, f.stale = now, false
	case !f.stale && (f.lastOK.IsZero() || now.Sub(f.lastOK) >= f.o.StaleAfter):
		// Subscribers must not take silence for "nothing revoked": end
		// their streams; they reconnect, to this node once it reads the
		// store again or to another.
		f.stale = true
		for s := range f.subs {
			f.drop(s)
		}
		if !f.lastOK.IsZero() {
			f.o.Logger.Warn("revocation feed: the store has not been readable for a while; streams ended", "for", now.Sub(f.lastOK).Round(time.Millisecond))
		}
	}
	close(f.polled)
	f.polled = make(chan struct{})
}

func (f *Feed) poll(ctx context.Context) bool {
	f.mu.Lock()
	ready, pos := f.ready, f.pos
	f.mu.Unlock()
	if !ready {
		c, err := f.src.RevocationCursor(ctx)
		if err != nil {
			f.pollFailed(ctx, err)
			return false
		}
		f.mu.Lock()
		f.ready, f.pos, f.base = true, c, c
		f.mu.Unlock()
		return true
	}
	for {
		events, next, err := f.src.RevocationEvents(ctx, pos, f.o.PageSize)
		if errors.Is(err, oauth.ErrCursorExpired) {
			// The poller itself fell behind the retention (the store was
			// unreadable that long): every subscriber may have missed
			// events.
			c, err := f.src.RevocationCursor(ctx)
			if err != nil {
				f.pollFailed(ctx, err)
				return false
			}
			f.o.Logger.Warn("revocation feed: the poller's cursor expired; every subscriber is told to reset")
			f.mu.Lock()
			f.pos, f.base, f.recent = c, c, nil
			reset := resetItem(c)
			for s := range f.subs {
				f.resets.Add(1)
				f.push(s, reset)
			}
			f.mu.Unlock()
			return true
		}
		if err != nil {
			f.pollFailed(ctx, err)
			return false
		}
		f.publish(events, next)
		pos = next
		if len(events) < f.o.PageSize {
			return true
		}
	}
}

func (f *Feed) pollFailed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	f.pollErrors.Add(1)
	f.o.Logger.Warn("revocation feed: reading the store failed", "err", err)
}

// publish appends events to the recent ones and queues them for every
// subscriber.
func (f *Feed) publish(events []oauth.RevocationEvent, next string) {
	items := make([]*item, 0, len(events))
	for _, e := range events {
		if it := eventItem(e); it != nil {
			items = append(items, it)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recent = append(f.recent, items...)
	if over := len(f.recent) - f.o.Recent; over > 0 {
		f.base = f.recent[over-1].cursor
		f.recent = append(f.recent[:0:0], f.recent[over:]...)
	}
	if len(f.recent) == 0 {
		f.base = next
	}
	f.pos = next
	if len(items) == 0 {
		return
	}
	for s := range f.subs {
		f.push(s, items...)
	}
}

// push queues items for s, or drops s if that overflows its buffer.
// f.mu is held.
func (f *Feed) push(s *subscriber, items ...*item) {
	if len(s.queue)+len(items) > f.o.Buffer {
		f.dropped.Add(1)
		f.drop(s)
		return
	}
	s.queue = append(s.queue, items...)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// drop ends s's stream. f.mu is held.
func (f *Feed) drop(s *subscriber) {
	if _, ok := f.subs[s]; !ok {
		return
	}
	delete(f.subs, s)
	s.queue = nil
	close(s.gone)
}

// after returns the recent events that follow cursor, if the feed knows
// where cursor is: its position, or a recent event's cursor. f.mu is held.
func (f *Feed) after(cursor string) ([]*item, bool) {
	if !f.ready {
		return nil, false
	}
	if cursor == f.pos {
		return nil, true
	}
	if cursor == f.base {
		return f.recent, true
	}
	for i := len(f.recent) - 1; i >= 0; i-- {
		if f.recent[i].cursor == cursor {
			return f.recent[i+1:], true
		}
	}
	return nil, false
}

// join registers s with items queued. f.mu is held.
func (f *Feed) join(items []*item) *subscriber {
	s := &subscriber{queue: append([]*item(nil), items...), wake: make(chan struct{}, 1), gone: make(chan struct{})}
	if len(s.queue) > 0 {
		s.wake <- struct{}{}
	}
	f.subs[s] = struct{}{}
	return s
}

// writeQueued writes (unflushed) what is queued for s.
func (f *Feed) writeQueued(s *subscriber, st *stream) error {
	for _, it := range f.take(s) {
		f.delivered.Add(1)
		if err := st.write(it.frame); err != nil {
			return err
		}
	}
	return nil
}

// take returns s's queued items and empties its queue.
func (f *Feed) take(s *subscriber) []*item {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

func (f *Feed) leave(s *subscriber, who string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s != nil {
		f.drop(s)
	}
	f.streams--
	if f.perSub[who]--; f.perSub[who] <= 0 {
		delete(f.perSub, who)
	}
}

// Close ends every stream and refuses new ones; the poller stops. It is
// what a server calls when it shuts down (streams never end by
// themselves, so a graceful shutdown would wait for them forever).
func (f *Feed) Close() {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		for s := range f.subs {
			f.drop(s)
		}
		f.mu.Unlock()
		close(f.done)
	})
}

// MaxCursorLen is the longest cursor a subscriber may send.
const MaxCursorLen = 64

// validCursor: at most MaxCursorLen printable ASCII characters. (What the
// cursor means is the store's business.)
func validCursor(c string) bool {
	return len(c) <= MaxCursorLen && oauth.VisibleASCII(c)
}

// Serve streams the feed to one subscriber, who (the caller has
// authenticated it: for tokengate, a resource-server client's ID) may have
// at most Options.MaxPerSubscriber streams open at once. The stream starts
// after the Last-Event-ID header's cursor, else the cursor query
// parameter's, else at the current position. It sends hello, then
// (resuming) the events that followed the cursor or a reset, then a ping
// at once, which tells the subscriber it has caught up, then live events
// and a ping every Options.Ping.
//
// Refusals, in RFC 6749's JSON error shape: 400 invalid_request (a
// malformed cursor); 429 temporarily_unavailable with Retry-After (who
// has Options.MaxPerSubscriber streams open); 503 temporarily_unavailable
// with Retry-After (shutting down, the store unreadable, or
// Options.MaxSubscribers streams open).
func (f *Feed) Serve(w http.ResponseWriter, r *http.Request, who string) {
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = r.URL.Query().Get("cursor")
	}
	if !validCursor(cursor) {
		writeError(w, http.StatusBadRequest, "invalid_request", "the cursor is not one this server gives out")
		return
	}
	f.mu.Lock()
	switch {
	case f.closed:
		f.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the server is shutting down")
		return
	case !f.ready || f.stale:
		f.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the revocation feed cannot read the store")
		return
	case f.perSub[who] >= f.o.MaxPerSubscriber:
		// Before the global bound: when this subscriber has its share,
		// waiting for other subscribers to leave would not help it.
		f.mu.Unlock()
		f.tooMany.Add(1)
		writeError(w, http.StatusTooManyRequests, "temporarily_unavailable",
			"this client has "+strconv.Itoa(f.o.MaxPerSubscriber)+" revocation feed streams open on this server already")
		return
	case f.streams >= f.o.MaxSubscribers:
		f.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many subscribers")
		return
	}
	f.streams++
	f.perSub[who]++
	var s *subscriber
	if cursor == "" {
		// Start at now: join at the poller's position.
		s, cursor = f.join(nil), f.pos
	}
	f.mu.Unlock()
	defer func() { f.leave(s, who) }()

	st := &stream{w: w, rc: http.NewResponseController(w), timeout: f.o.WriteTimeout}
	// The server's write timeout bounds responses, not streams: the write
	// deadline is set per write instead (stream.write). The read deadline
	// is cleared too, should the server's read timeout still apply to the
	// request (net/http clears it itself once a body-less request is read;
	// a read error there would cancel the request's context).
	_ = st.rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	hello, _ := json.Marshal(struct {
		Cursor    string `json:"cursor"`
		Retention string `json:"retention"`
	}{cursor, f.o.Retention.String()})
	if st.send(frame("hello", cursor, hello)) != nil {
		return
	}
	if s == nil {
		var err error
		if s, err = f.catchUp(r.Context(), st, cursor); s == nil || err != nil {
			return
		}
	}
	// The subscriber has now been sent everything this node had read when
	// it joined (the catch-up's queue included): a ping at once tells it
	// so. A resuming subscriber cannot tell otherwise (its hello names its
	// own cursor), and until then it must not trust its cache.
	if f.writeQueued(s, st) != nil || st.send(pingFrame) != nil {
		return
	}
	ping := time.NewTicker(f.o.Ping)
	defer ping.Stop()
	for {
		select {
		case <-s.wake:
			if f.writeQueued(s, st) != nil || st.flush() != nil {
				return
			}
		case <-ping.C:
			if st.send(pingFrame) != nil {
				return
			}
		case <-s.gone:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// catchUp sends what follows cursor from the store until it reaches an
// event the poller has passed, and joins the fan-out there. It returns nil
// when the stream must end.
func (f *Feed) catchUp(ctx context.Context, st *stream, cursor string) (*subscriber, error) {
	for {
		f.mu.Lock()
		if f.closed || f.stale {
			f.mu.Unlock()
			return nil, nil
		}
		if items, ok := f.after(cursor); ok {
			s := f.join(items)
			f.mu.Unlock()
			return s, nil
		}
		polled := f.polled
		f.mu.Unlock()

		events, next, err := f.src.RevocationEvents(ctx, cursor, f.o.PageSize)
		if errors.Is(err, oauth.ErrCursorExpired) {
			f.mu.Lock()
			if f.closed || f.stale {
				f.mu.Unlock()
				return nil, nil
			}
			f.resets.Add(1)
			s := f.join([]*item{resetItem(f.pos)})
			f.mu.Unlock()
			return s, nil
		}
		if err != nil {
			return nil, err // the subscriber reconnects
		}
		for _, e := range events {
			if it := eventItem(e); it != nil {
				f.delivered.Add(1)
				if err := st.write(it.frame); err != nil {
					return nil, err
				}
			}
		}
		if err := st.flush(); err != nil {
			return nil, err
		}
		cursor = next
		if len(events) == f.o.PageSize {
			continue
		}
		// Read to the store's end, but the poller has not got there yet
		// (or has gone past its recent events): look again after its next
		// poll.
		select {
		case <-polled:
		case <-ctx.Done():
			return nil, nil
		case <-f.done:
			return nil, nil
		}
	}
}

// pingFrame is the comment sent every Options.Ping, and once right after
// the hello (and a resuming subscriber's catch-up).
var pingFrame = []byte(": ping\n\n")

// stream writes SSE frames to one subscriber.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *stream) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.w.Write(b)
	return err
}

func (s *stream) flush() error { return s.rc.Flush() }

func (s *stream) send(b []byte) error {
	if err := s.write(b); err != nil {
		return err
	}
	return s.flush()
}

// frame is one SSE event. id and data never contain a line break (cursors
// are printable ASCII, data is JSON as encoding/json writes it).
func frame(event, id string, data []byte) []byte {
	b := make([]byte, 0, len(event)+len(id)+len(data)+24)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\nid: "...)
	b = append(b, id...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// beforeFormat is RFC 3339 in UTC with microseconds, the stores' precision.
const beforeFormat = "2006-01-02T15:04:05.000000Z07:00"

// eventItem encodes a revoked event, or returns nil for a type this
// version does not know (it is skipped).
func eventItem(e oauth.RevocationEvent) *item {
	var v any
	before := e.Before.UTC().Format(beforeFormat)
	switch e.Type {
	case oauth.RevokedToken:
		v = struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}{string(e.Type), e.ID}
	case oauth.RevokedClient:
		v = struct {
			Type     string `json:"type"`
			ClientID string `json:"client_id"`
			Before   string `json:"before"`
		}{string(e.Type), e.ID, before}
	case oauth.RevokedUser:
		v = struct {
			Type     string `json:"type"`
			Username string `json:"username"`
			Before   string `json:"before"`
		}{string(e.Type), e.ID, before}
	default:
		return nil
	}
	data, _ := json.Marshal(v) // strings only: cannot fail
	return &item{cursor: e.Cursor, frame: frame("revoked", e.Cursor, data)}
}

func resetItem(cursor string) *item {
	data, _ := json.Marshal(struct {
		Reason string `json:"reason"`
		Cursor string `json:"cursor"`
	}{"cursor expired", cursor})
	return &item{cursor: cursor, frame: frame("reset", cursor, data)}
}

// Retry-After of refused subscriptions, in seconds: 503 (the node cannot
// serve now; another node, or this one in a moment, can) and 429 (a
// stream of the subscriber's has to end first, which takes longer).
const (
	retryUnavailable = 1
	retryTooMany     = 5
)

// writeError answers a refused subscription in RFC 6749's JSON error
// shape; 503s and 429s carry Retry-After.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch status {
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", strconv.Itoa(retryUnavailable))
	case http.StatusTooManyRequests:
		h.Set("Retry-After", strconv.Itoa(retryTooMany))
	}
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
	w.Write(b)
}
