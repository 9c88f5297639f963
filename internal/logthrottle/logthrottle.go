// Package logthrottle keeps a repeated warning from flooding the log: a
// full disk once turned "store failure" into 33,000 identical WARN lines in
// five seconds.
//
// Handler wraps a slog.Handler. Records below Options.Level (default WARN)
// pass through untouched. Records at or above it are limited per (level,
// message): at most Options.Burst per Options.Interval, then one summary
// record "N similar log lines suppressed" when the window ends. Because
// some messages are not constants (net/http's ErrorLog puts the remote
// address in its TLS handshake errors), an overall budget (Options.Total)
// also caps throttled records per window across all messages, and the
// number of messages tracked is bounded (Options.MaxKeys, the least
// recently seen evicted first).
package logthrottle

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Options tune the limits. Zero values take the defaults.
type Options struct {
	// Burst is how many records per (level, message) pass per Interval
	// (default 5).
	Burst int
	// Interval is the window (default 10s).
	Interval time.Duration
	// Total caps the throttled records passed per Interval across all
	// messages (default 200; negative: no overall cap).
	Total int
	// MaxKeys bounds how many (level, message) pairs are tracked (default
	// 1024).
	MaxKeys int
	// Level is the lowest level throttled (default slog.LevelWarn).
	Level slog.Leveler
}

// The defaults of Options.
const (
	DefaultBurst    = 5
	DefaultInterval = 10 * time.Second
	DefaultTotal    = 200
	DefaultMaxKeys  = 1024
)

// maxKeyMsg bounds the bytes of a message kept as a key: messages differing
// only after that are "similar" enough.
const maxKeyMsg = 256

// Handler is a throttling slog.Handler. Handlers derived with WithAttrs and
// WithGroup share its limits. Safe for concurrent use.
type Handler struct {
	inner slog.Handler
	st    *state
}

type key struct {
	level slog.Level
	msg   string
}

// window is a fixed window opened by the first record after the previous
// one ended.
type window struct {
	start      time.Time // zero: none open
	passed     int
	suppressed int
}

type entry struct {
	key key
	win window
}

type state struct {
	root     slog.Handler // summaries go here: no request's attrs or group
	now      func() time.Time
	burst    int
	interval time.Duration
	total    int
	maxKeys  int
	level    slog.Leveler

	mu      sync.Mutex
	entries map[key]*list.Element // of *entry
	lru     list.List             // front: most recently seen
	overall window
}

// summary is a suppressed count to report; overall marks the Total cap's.
type summary struct {
	key     key
	overall bool
	count   int
	start   time.Time
}

// New wraps inner. now is the clock (nil: time.Now).
func New(inner slog.Handler, now func() time.Time, opts Options) *Handler {
	if now == nil {
		now = time.Now
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Total == 0 {
		opts.Total = DefaultTotal
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Level == nil {
		opts.Level = slog.LevelWarn
	}
	return &Handler{inner: inner, st: &state{
		root:     inner,
		now:      now,
		burst:    opts.Burst,
		interval: opts.Interval,
		total:    opts.Total,
		maxKeys:  opts.MaxKeys,
		level:    opts.Level,
		entries:  make(map[key]*list.Element),
	}}
}

// Enabled reports whether the wrapped handler is enabled for level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// WithAttrs returns a Handler adding attrs, sharing h's limits.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), st: h.st}
}

// WithGroup returns a Handler opening group name, sharing h's limits.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), st: h.st}
}

// Handle passes r to the wrapped handler unless its limit is used up, and
// writes the summaries of windows that r finds ended. It returns the
// wrapped handler's error for r, or nil when r was suppressed.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.st.level.Level() {
		return h.inner.Handle(ctx, r)
	}
	t := h.st.now()
	pass, sums := h.st.admit(key{r.Level, r.Message}, t)
	h.st.write(sums, t)
	if !pass {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (w *window) ended(t time.Time, interval time.Duration) bool {
	return !w.start.IsZero() && (t.Sub(w.start) >= interval || t.Before(w.start))
}

// take returns the suppressed count (if any) as a summary and zeroes it;
// with end, the window closes too.
func (w *window) take(k key, overall, end bool) (summary, bool) {
	s := summary{key: k, overall: overall, count: w.suppressed, start: w.start}
	w.suppressed = 0
	if end {
		*w = window{}
	}
	return s, s.count > 0
}

func (st *state) admit(k key, t time.Time) (bool, []summary) {
	var sums []summary
	add := func(s summary, ok bool) {
		if ok {
			sums = append(sums, s)
		}
	}

	st.mu.Lock()
	defer st.mu.Unlock()

	if len(k.msg) > maxKeyMsg {
		k.msg = k.msg[:maxKeyMsg]
	}
	var e *entry
	if el, ok := st.entries[k]; ok {
		st.lru.MoveToFront(el)
		e = el.Value.(*entry)
	} else {
		if len(st.entries) >= st.maxKeys {
			old := st.lru.Back()
			oe := old.Value.(*entry)
			add(oe.win.take(oe.key, false, true))
			st.lru.Remove(old)
			delete(st.entries, oe.key)
		}
		// The key must not pin the record's message: it may be a slice of
		// something much larger (a request body, a read buffer).
		k.msg = strings.Clone(k.msg)
		e = &entry{key: k}
		st.entries[k] = st.lru.PushFront(e)
	}

	if e.win.ended(t, st.interval) {
		add(e.win.take(e.key, false, true))
	}
	if st.overall.ended(t, st.interval) {
		add(st.overall.take(key{}, true, true))
	}
	if e.win.start.IsZero() {
		e.win.start = t
	}
	if st.overall.start.IsZero() {
		st.overall.start = t
	}
	switch {
	case e.win.passed >= st.burst:
		e.win.suppressed++
		return false, sums
	case st.total > 0 && st.overall.passed >= st.total:
		st.overall.suppressed++
		return false, sums
	}
	e.win.passed++
	st.overall.passed++
	return true, sums
}

func (st *state) write(sums []summary, t time.Time) {
	// Summaries belong to no request: context.Background keeps a
	// request-scoped handler from tagging them with the request that
	// happened to trigger them.
	ctx := context.Background()
	for _, s := range sums {
		var r slog.Record
		if s.overall {
			r = slog.NewRecord(t, st.level.Level(), fmt.Sprintf("%d log lines suppressed by the overall limit", s.count), 0)
		} else {
			r = slog.NewRecord(t, s.key.level, fmt.Sprintf("%d similar log lines suppressed", s.count), 0)
			r.AddAttrs(slog.String("message", s.key.msg))
		}
		if !st.root.Enabled(ctx, r.Level) {
			continue
		}
		r.AddAttrs(
			slog.Int("count", s.count),
			slog.Time("window_start", s.start),
			slog.Duration("window", st.interval),
		)
		_ = st.root.Handle(ctx, r)
	}
}

// Flush writes the summary of every window that has ended with records
// suppressed, and forgets messages whose window has ended. Handle does this
// for a message when its next record arrives; call Flush periodically (Run
// does) so the summary of a flood that stopped is written.
func (h *Handler) Flush() {
	st := h.st
	t := st.now()
	var sums []summary
	st.mu.Lock()
	for el := st.lru.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*entry)
		if e.win.ended(t, st.interval) {
			if s, ok := e.win.take(e.key, false, true); ok {
				sums = append(sums, s)
			}
			st.lru.Remove(el)
			delete(st.entries, e.key)
		}
		el = next
	}
	if st.overall.ended(t, st.interval) {
		if s, ok := st.overall.take(key{}, true, true); ok {
			sums = append(sums, s)
		}
	}
	st.mu.Unlock()
	st.write(sums, t)
}

// Close writes the summary of every window holding suppressed records,
// ended or not, and returns nil. The windows stay open, so the Handler
// remains usable and a Close during a flood does not grant a fresh burst.
func (h *Handler) Close() error {
	st := h.st
	t := st.now()
	var sums []summary
	st.mu.Lock()
	for el := st.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if s, ok := e.win.take(e.key, false, false); ok {
			sums = append(sums, s)
		}
	}
	if s, ok := st.overall.take(key{}, true, false); ok {
		sums = append(sums, s)
	}
	st.mu.Unlock()
	st.write(sums, t)
	return nil
}

// Run calls Flush every d until ctx is done, then Close.
func (h *Handler) Run(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	h.run(ctx, t.C)
}

func (h *Handler) run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			h.Close()
			return
		case <-tick:
			h.Flush()
		}
	}
}
