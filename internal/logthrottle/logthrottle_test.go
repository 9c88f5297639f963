package logthrottle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	w.mu.Lock()
	s := w.b.String()
	w.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type fixture struct {
	h     *Handler
	log   *slog.Logger
	out   *lockedBuffer
	clock *clock
}

func newFixture(opts Options) *fixture {
	f := &fixture{out: &lockedBuffer{}, clock: newClock()}
	f.h = New(slog.NewJSONHandler(f.out, &slog.HandlerOptions{Level: slog.LevelDebug}), f.clock.now, opts)
	f.log = slog.New(f.h)
	return f
}

func msgs(lines []map[string]any) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l["msg"].(string))
	}
	return out
}

func count(lines []map[string]any, msg string) int {
	n := 0
	for _, l := range lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// summaries returns the suppressed counts reported per message ("" for the
// overall limit).
func summaries(lines []map[string]any) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		m := l["msg"].(string)
		switch {
		case strings.HasSuffix(m, " similar log lines suppressed"):
			out[l["message"].(string)] += int(l["count"].(float64))
			if m != fmt.Sprintf("%d similar log lines suppressed", int(l["count"].(float64))) {
				panic("summary text and count disagree: " + m)
			}
		case strings.HasSuffix(m, " log lines suppressed by the overall limit"):
			out[""] += int(l["count"].(float64))
		}
	}
	return out
}

func TestRepeatedWarningIsThrottled(t *testing.T) {
	f := newFixture(Options{Burst: 5, Interval: 10 * time.Second})
	for i := range 33_000 {
		f.log.Warn("store failure", "op", "CreateToken", "err", "no space left on device")
		if i%1000 == 0 {
			f.clock.advance(100 * time.Millisecond) // 3.3 s in all: one window
		}
	}
	lines := f.out.lines(t)
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5: %v", len(lines), msgs(lines))
	}
	if lines[0]["op"] != "CreateToken" || lines[0]["level"] != "WARN" {
		t.Errorf("passed line lost its content: %v", lines[0])
	}
	f.clock.advance(10 * time.Second)
	f.log.Warn("store failure", "op", "CreateToken")
	lines = f.out.lines(t)
	want := []string{"store failure", "store failure", "store failure", "store failure", "store failure",
		"32995 similar log lines suppressed", "store failure"}
	if strings.Join(msgs(lines), "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", msgs(lines), want)
	}
	s := lines[5]
	if s["message"] != "store failure" || s["count"] != float64(32995) || s["level"] != "WARN" || s["window"] != float64(10*time.Second) {
		t.Errorf("summary %v", s)
	}
	start, _ := time.Parse(time.RFC3339Nano, s["window_start"].(string))
	if !start.Equal(newClock().now()) {
		t.Errorf("window_start %v", start)
	}
}

func TestFlushWritesSummaryOfEndedWindowsOnly(t *testing.T) {
	f := newFixture(Options{Burst: 2, Interval: time.Minute})
	for range 10 {
		f.log.Error("database unreachable")
	}
	f.h.Flush()
	if n := len(f.out.lines(t)); n != 2 {
		t.Fatalf("Flush inside the window wrote: %d lines, want 2", n)
	}
	f.clock.advance(time.Minute)
	f.h.Flush()
	lines := f.out.lines(t)
	if len(lines) != 3 || lines[2]["msg"] != "8 similar log lines suppressed" || lines[2]["level"] != "ERROR" {
		t.Fatalf("lines %v", lines)
	}
	if len(f.h.st.entries) != 0 {
		t.Errorf("%d keys kept after their window ended and was flushed", len(f.h.st.entries))
	}
	f.h.Flush()
	f.h.Close()
	if n := len(f.out.lines(t)); n != 3 {
		t.Errorf("%d lines after a second Flush and Close, want 3", n)
	}
	// A new window opens with a fresh burst.
	for range 3 {
		f.log.Error("database unreachable")
	}
	if n := count(f.out.lines(t), "database unreachable"); n != 4 {
		t.Errorf("%d lines, want 4 (2 + a new burst of 2)", n)
	}
}

func TestInfoAndDebugPassUntouched(t *testing.T) {
	f := newFixture(Options{Burst: 1, Total: 1})
	for range 1000 {
		f.log.Info("token issued")
		f.log.Debug("cache hit")
	}
	lines := f.out.lines(t)
	if count(lines, "token issued") != 1000 || count(lines, "cache hit") != 1000 || len(lines) != 2000 {
		t.Errorf("%d INFO, %d DEBUG, %d lines; want 1000, 1000, 2000",
			count(lines, "token issued"), count(lines, "cache hit"), len(lines))
	}
}

func TestLevelOption(t *testing.T) {
	f := newFixture(Options{Burst: 1, Level: slog.LevelError})
	for range 10 {
		f.log.Warn("retrying")
		f.log.Error("gave up")
	}
	lines := f.out.lines(t)
	if count(lines, "retrying") != 10 || count(lines, "gave up") != 1 {
		t.Errorf("%d WARN, %d ERROR; want 10, 1", count(lines, "retrying"), count(lines, "gave up"))
	}
}

func TestLevelsAreSeparateKeys(t *testing.T) {
	f := newFixture(Options{Burst: 2})
	for range 5 {
		f.log.Warn("store failure")
		f.log.Error("store failure")
	}
	f.h.Close()
	lines := f.out.lines(t)
	warn, errs := 0, 0
	for _, l := range lines {
		if l["msg"] == "store failure" {
			switch l["level"] {
			case "WARN":
				warn++
			case "ERROR":
				errs++
			}
		}
	}
	if warn != 2 || errs != 2 {
		t.Errorf("%d WARN and %d ERROR lines, want 2 each", warn, errs)
	}
	if n := count(lines, "3 similar log lines suppressed"); n != 2 {
		t.Errorf("%d summaries of 3, want 2: %v", n, msgs(lines))
	}
}

func TestDerivedHandlersShareLimits(t *testing.T) {
	f := newFixture(Options{Burst: 5})
	withOp := f.log.With("op", "Revoke")
	grouped := f.log.WithGroup("req").With("id", "r1")
	for range 3 {
		withOp.Warn("store timeout")
	}
	for range 3 {
		grouped.Warn("store timeout", "n", 1)
	}
	f.h.Close()
	lines := f.out.lines(t)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 5 + 1 summary: %v", len(lines), msgs(lines))
	}
	for i := range 3 {
		if lines[i]["op"] != "Revoke" {
			t.Errorf("line %d lost WithAttrs: %v", i, lines[i])
		}
	}
	for i := 3; i < 5; i++ {
		g, _ := lines[i]["req"].(map[string]any)
		if g["id"] != "r1" || g["n"] != float64(1) {
			t.Errorf("line %d lost WithGroup: %v", i, lines[i])
		}
	}
	s := lines[5]
	if s["msg"] != "1 similar log lines suppressed" || s["message"] != "store timeout" {
		t.Errorf("summary %v", s)
	}
	if _, ok := s["req"]; ok {
		t.Errorf("summary carries a derived handler's group: %v", s)
	}
}

func TestKeySetIsBounded(t *testing.T) {
	f := newFixture(Options{Burst: 5, MaxKeys: 4, Total: -1})
	for i := range 10 {
		for range 7 {
			f.log.Warn(fmt.Sprintf("message %d", i))
		}
		if n := len(f.h.st.entries); n > 4 || f.h.st.lru.Len() != n {
			t.Fatalf("%d keys in the map, %d in the list; bound 4", n, f.h.st.lru.Len())
		}
	}
	f.h.Close()
	lines := f.out.lines(t)
	sums := summaries(lines)
	for i := range 10 {
		m := fmt.Sprintf("message %d", i)
		if count(lines, m) != 5 || sums[m] != 2 {
			t.Errorf("%s: %d lines, %d suppressed; want 5, 2 (evicted keys report their count)", m, count(lines, m), sums[m])
		}
	}
}

func TestEvictionIsLeastRecentlySeen(t *testing.T) {
	f := newFixture(Options{Burst: 1, MaxKeys: 2, Total: -1})
	f.log.Warn("a")
	f.log.Warn("b")
	f.log.Warn("a") // suppressed; a is now the most recent
	f.log.Warn("c") // evicts b, not a
	f.log.Warn("a") // still limited: a kept its window
	lines := f.out.lines(t)
	if want := []string{"a", "b", "c"}; strings.Join(msgs(lines), "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", msgs(lines), want)
	}
}

func TestOverallLimitCapsVaryingMessages(t *testing.T) {
	// net/http's ErrorLog writes each TLS handshake error with the remote
	// address in the message, so every line is a new key.
	f := newFixture(Options{Burst: 5, Total: 20, Interval: 10 * time.Second})
	errLog := slog.NewLogLogger(f.h, slog.LevelWarn)
	for i := range 1000 {
		errLog.Printf("http: TLS handshake error from 192.0.2.%d:%d: EOF", i%250, 40000+i)
	}
	if n := len(f.out.lines(t)); n != 20 {
		t.Fatalf("%d lines, want 20", n)
	}
	f.clock.advance(10 * time.Second)
	f.h.Flush()
	lines := f.out.lines(t)
	if len(lines) != 21 || lines[20]["msg"] != "980 log lines suppressed by the overall limit" || lines[20]["level"] != "WARN" {
		t.Fatalf("last of %d lines: %v", len(lines), lines[len(lines)-1])
	}
	if n := len(f.h.st.entries); n != 0 {
		t.Errorf("%d keys left after Flush, want 0", n)
	}
}

func TestLongMessagesShareAKeyThatDoesNotPinThem(t *testing.T) {
	f := newFixture(Options{Burst: 1, Total: -1})
	body := []byte(strings.Repeat("x", 300) + "A" + strings.Repeat("y", 1<<16))
	f.log.Warn(string(body[:301]))
	f.log.Warn(strings.Repeat("x", 300) + "B")
	if n := len(f.out.lines(t)); n != 1 {
		t.Errorf("%d lines, want 1: messages equal in their first 256 bytes are similar", n)
	}
	for k := range f.h.st.entries {
		if len(k.msg) != maxKeyMsg {
			t.Errorf("key of %d bytes, want %d", len(k.msg), maxKeyMsg)
		}
	}
}

func TestConcurrentHandleExact(t *testing.T) {
	f := newFixture(Options{Burst: 5})
	const goroutines, each = 50, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			l := f.log.With("g", g)
			for range each {
				l.Warn("store failure")
				l.Info("request")
			}
		})
	}
	wg.Wait()
	f.h.Close()
	lines := f.out.lines(t)
	if n := count(lines, "store failure"); n != 5 {
		t.Errorf("%d WARN lines, want 5", n)
	}
	if n := count(lines, "request"); n != goroutines*each {
		t.Errorf("%d INFO lines, want %d", n, goroutines*each)
	}
	if s := summaries(lines)["store failure"]; s != goroutines*each-5 {
		t.Errorf("suppressed %d, want %d", s, goroutines*each-5)
	}
}

func TestConcurrentHandleWithFlushAndMovingClock(t *testing.T) {
	f := newFixture(Options{Burst: 5, MaxKeys: 8, Total: 30, Interval: time.Second})
	const goroutines, each = 50, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				f.log.Warn(fmt.Sprintf("failure %d", (g+i)%12))
				if g == 0 {
					f.clock.advance(10 * time.Millisecond)
					if i%50 == 0 {
						f.h.Flush()
					}
				}
			}
		})
	}
	wg.Wait()
	f.h.Close()
	lines := f.out.lines(t)
	passed := 0
	for _, m := range msgs(lines) {
		if strings.HasPrefix(m, "failure ") {
			passed++
		}
	}
	suppressed := 0
	for _, n := range summaries(lines) {
		suppressed += n
	}
	if passed+suppressed != goroutines*each {
		t.Errorf("%d passed + %d suppressed != %d records: a count was lost", passed, suppressed, goroutines*each)
	}
	if len(f.h.st.entries) > 8 {
		t.Errorf("%d keys, bound 8", len(f.h.st.entries))
	}
}

func TestRunFlushesOnTickAndClosesOnCancel(t *testing.T) {
	f := newFixture(Options{Burst: 1, Interval: time.Second})
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.h.run(ctx, tick)
		close(done)
	}()
	f.log.Warn("w")
	f.log.Warn("w")
	f.clock.advance(time.Second)
	tick <- time.Time{}
	tick <- time.Time{} // the loop took this one, so the first Flush is done
	lines := f.out.lines(t)
	if want := []string{"w", "1 similar log lines suppressed"}; strings.Join(msgs(lines), "|") != strings.Join(want, "|") {
		t.Fatalf("after a tick: %q, want %q", msgs(lines), want)
	}
	f.log.Warn("v")
	f.log.Warn("v")
	cancel()
	<-done
	lines = f.out.lines(t)
	if n := len(lines); n != 4 || lines[3]["msg"] != "1 similar log lines suppressed" || lines[3]["message"] != "v" {
		t.Errorf("after cancel: %q, want Close's summary of v last", msgs(lines))
	}
}

type errHandler struct{ slog.Handler }

func (errHandler) Handle(context.Context, slog.Record) error { return fmt.Errorf("disk full") }

func TestHandleReturnsInnerErrorOnlyForPassedRecords(t *testing.T) {
	h := New(errHandler{slog.DiscardHandler}, newClock().now, Options{Burst: 1})
	r := slog.NewRecord(time.Time{}, slog.LevelWarn, "m", 0)
	if err := h.Handle(context.Background(), r); err == nil {
		t.Error("passed record: inner error not returned")
	}
	if err := h.Handle(context.Background(), r); err != nil {
		t.Errorf("suppressed record returned %v", err)
	}
}
