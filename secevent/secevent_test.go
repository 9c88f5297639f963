package secevent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clock is a fake clock safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// lines parses the JSON log lines written so far.
func (w *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(w.String()), "\n") {
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
	log   *Log
	out   *lockedBuffer
	reg   *prometheus.Registry
	clock *clock
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{out: &lockedBuffer{}, reg: prometheus.NewRegistry(), clock: newClock()}
	logger := slog.New(slog.NewJSONHandler(f.out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.log = New(logger, f.reg, f.clock.now, opts)
	return f
}

// counts gathers tokengate_security_events_total by type, failing on any
// label other than "type".
func (f *fixture) counts(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_security_events_total" {
			t.Fatalf("unexpected metric family %q", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "type" {
				t.Fatalf("labels %v, want only type", m.GetLabel())
			}
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func byMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

func TestFloodInOneWindowWritesBurstLinesAndOneSummary(t *testing.T) {
	f := newFixture(t, Options{Burst: 10, Interval: 10 * time.Second})
	ctx := context.Background()
	const n = 100_000
	for i := range n {
		f.log.Record(ctx, Event{Type: PasswordFailed, ClientID: "app", Username: "alice",
			Remote: "192.0.2.7:51234", Endpoint: "/oauth/token", Reason: "wrong password"})
		if i%1000 == 0 {
			f.clock.advance(time.Millisecond) // still well inside the window
		}
	}
	if got := len(f.out.lines(t)); got != 10 {
		t.Fatalf("%d lines before the window ends, want 10", got)
	}
	f.log.Flush() // window not over: nothing to write
	if got := len(f.out.lines(t)); got != 10 {
		t.Fatalf("Flush inside the window wrote lines: %d, want 10", got)
	}
	f.clock.advance(10 * time.Second)
	f.log.Flush()
	lines := f.out.lines(t)
	events, sums := byMsg(lines, "security event"), byMsg(lines, "security events suppressed")
	if len(events) != 10 || len(sums) != 1 || len(lines) != 11 {
		t.Fatalf("%d event lines, %d summaries, %d lines; want 10, 1, 11", len(events), len(sums), len(lines))
	}
	e := events[0]
	want := map[string]any{"level": "WARN", "type": "password_failed", "client_id": "app", "username": "alice",
		"remote": "192.0.2.7", "endpoint": "/oauth/token", "reason": "wrong password"}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("event %s = %v, want %v", k, e[k], v)
		}
	}
	s := sums[0]
	if s["type"] != "password_failed" || s["count"] != float64(n-10) || s["level"] != "WARN" {
		t.Errorf("summary = %v, want type password_failed, count %d, WARN", s, n-10)
	}
	if s["window"] != float64(10*time.Second) {
		t.Errorf("summary window = %v, want 10s", s["window"])
	}
	if c := f.counts(t); c["password_failed"] != n {
		t.Errorf("counter = %v, want %d", c["password_failed"], n)
	}
	// Nothing left to report.
	f.log.Flush()
	if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(f.out.lines(t)); got != 11 {
		t.Errorf("%d lines after a second Flush and Close, want 11", got)
	}
}

func TestSummaryWrittenByNextEventAfterWindow(t *testing.T) {
	f := newFixture(t, Options{Burst: 2, Interval: time.Minute})
	ctx := context.Background()
	for range 5 {
		f.log.Record(ctx, Event{Type: RateLimited, ClientID: "c1", Reason: "rate limit"})
	}
	f.clock.advance(time.Minute)
	f.log.Record(ctx, Event{Type: RateLimited, ClientID: "c1", Reason: "rate limit"})
	lines := f.out.lines(t)
	var kinds []string
	for _, l := range lines {
		kinds = append(kinds, l["msg"].(string))
	}
	want := []string{"security event", "security event", "security events suppressed", "security event"}
	if strings.Join(kinds, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", kinds, want)
	}
	if lines[2]["count"] != float64(3) {
		t.Errorf("summary count %v, want 3", lines[2]["count"])
	}
	start, _ := time.Parse(time.RFC3339Nano, lines[2]["window_start"].(string))
	if !start.Equal(newClock().now()) {
		t.Errorf("window_start %v, want %v", start, newClock().now())
	}
}

func TestTypesAreSampledSeparately(t *testing.T) {
	f := newFixture(t, Options{Burst: 3, Interval: time.Minute})
	ctx := context.Background()
	for range 100 {
		f.log.Record(ctx, Event{Type: RateLimited})
		f.log.Record(ctx, Event{Type: Overloaded})
	}
	if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}
	lines := f.out.lines(t)
	per := map[string]int{}
	for _, l := range byMsg(lines, "security event") {
		per[l["type"].(string)]++
	}
	if per["rate_limited"] != 3 || per["overloaded"] != 3 {
		t.Errorf("lines per type %v, want 3 each", per)
	}
	sums := byMsg(lines, "security events suppressed")
	if len(sums) != 2 || sums[0]["count"] != float64(97) || sums[1]["count"] != float64(97) {
		t.Errorf("summaries %v, want two of 97", sums)
	}
	c := f.counts(t)
	if c["rate_limited"] != 100 || c["overloaded"] != 100 {
		t.Errorf("counters %v, want 100 rate_limited and 100 overloaded (429 and 503 apart)", c)
	}
}

func TestCloseMidWindowDoesNotGrantANewBurst(t *testing.T) {
	f := newFixture(t, Options{Burst: 2, Interval: time.Minute})
	ctx := context.Background()
	for range 4 {
		f.log.Record(ctx, Event{Type: SnapReplay})
	}
	f.log.Close() // summary of 2
	for range 4 {
		f.log.Record(ctx, Event{Type: SnapReplay})
	}
	f.log.Close() // summary of 4, no new lines
	lines := f.out.lines(t)
	if got := len(byMsg(lines, "security event")); got != 2 {
		t.Errorf("%d event lines, want 2", got)
	}
	sums := byMsg(lines, "security events suppressed")
	if len(sums) != 2 || sums[0]["count"] != float64(2) || sums[1]["count"] != float64(4) {
		t.Errorf("summaries %v, want counts 2 then 4", sums)
	}
}

func TestEveryTypeHasASeriesFromTheStart(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.counts(t)
	if len(c) != len(Types()) {
		t.Errorf("%d series, want %d", len(c), len(Types()))
	}
	for _, typ := range Types() {
		if v, ok := c[string(typ)]; !ok || v != 0 {
			t.Errorf("series %s = %v, %v; want 0, present", typ, v, ok)
		}
		if !typ.Valid() {
			t.Errorf("%s not Valid", typ)
		}
	}
}

func TestUnknownTypeIsCountedUnderUnknown(t *testing.T) {
	f := newFixture(t, Options{})
	f.log.Record(context.Background(), Event{Type: Type("client_secret=hunter2")})
	if Type("client_secret=hunter2").Valid() {
		t.Error("a made-up type is Valid")
	}
	c := f.counts(t)
	if c["unknown"] != 1 {
		t.Errorf("counters %v, want unknown=1", c)
	}
	if strings.Contains(f.out.String(), "hunter2") {
		t.Errorf("the unknown type's value reached the log: %s", f.out.String())
	}
	if l := f.out.lines(t); len(l) != 1 || l[0]["type"] != "unknown" {
		t.Errorf("lines %v, want one of type unknown", l)
	}
}

func TestSecondLogOnOneRegistrySharesTheCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := New(nil, reg, nil, Options{})
	b := New(nil, reg, nil, Options{})
	a.Record(context.Background(), Event{Type: TokenRevoked})
	b.Record(context.Background(), Event{Type: TokenRevoked})
	f := &fixture{reg: reg}
	if c := f.counts(t); c["token_revoked"] != 2 {
		t.Errorf("token_revoked = %v, want 2", c["token_revoked"])
	}
}

func TestNewPanicsOnAConflictingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "tokengate_security_events_total", Help: "x"}))
	defer func() {
		if recover() == nil {
			t.Error("New did not panic on a conflicting collector")
		}
	}()
	New(nil, reg, nil, Options{})
}

func TestSecretsInBadFieldsNeverReachTheOutput(t *testing.T) {
	secret := "sk_live_" + strings.Repeat("Zq9", 100) // 308 bytes: too long
	binary := "tok\x00en-4f3c2b1a9e8d"                // short but unprintable
	utf := "tök-7d1e55aa90"                           // non-ASCII
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			out := &lockedBuffer{}
			var h slog.Handler = slog.NewJSONHandler(out, nil)
			if format == "text" {
				h = slog.NewTextHandler(out, nil)
			}
			reg := prometheus.NewRegistry()
			l := New(slog.New(h), reg, newClock().now, Options{Burst: 100})
			ctx := context.Background()
			for _, v := range []string{secret, binary, utf} {
				l.Record(ctx, Event{Type: ClientAuthFailed, ClientID: v, Username: v, Remote: v, Endpoint: "/oauth/token", Reason: "unknown client"})
			}
			l.Record(ctx, Event{Type: ClientIDInvalid, ClientID: secret, Endpoint: "/oauth/token/" + secret, Reason: "client_id too long"})
			l.Close()

			var metrics bytes.Buffer
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				metrics.WriteString(mf.String())
			}
			for name, s := range map[string]string{"log": out.String(), "metrics": metrics.String()} {
				for _, needle := range []string{"Zq9Zq9", "sk_live", "4f3c2b1a9e8d", "7d1e55aa90"} {
					if strings.Contains(s, needle) {
						t.Errorf("%s contains %q:\n%s", name, needle, s)
					}
				}
			}
			if got := strings.Count(out.String(), "(invalid)"); got != 11 {
				t.Errorf("%d (invalid) markers, want 11:\n%s", got, out.String())
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"merchant-01", "merchant-01"},
		{"with space", "with space"},
		{long, long},
		{long + "a", invalid},
		{"tab\there", invalid},
		{"del\x7f", invalid},
		{"é", invalid},
	} {
		if got := sanitizeID(c.in); got != c.want {
			t.Errorf("sanitizeID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.1:443", "192.0.2.1"},
		{"[2001:db8::1]:8443", "2001:db8::1"},
		{"[fe80::1%eth0]:80", "fe80::1"},
		{"::ffff:192.0.2.9", "192.0.2.9"},
		{"example.com:80", invalid},
		{"secret-token", invalid},
	} {
		if got := sanitizeRemote(c.in); got != c.want {
			t.Errorf("sanitizeRemote(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"/oauth/token", "/oauth/token"},
		{"/oauth/token\n", invalid},
		{"/" + strings.Repeat("x", 127), "/" + strings.Repeat("x", 127)},
		{"/" + strings.Repeat("x", 128), invalid},
	} {
		if got := sanitizeEndpoint(c.in); got != c.want {
			t.Errorf("sanitizeEndpoint(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"wrong secret", "wrong secret"},
		{"/a\nb\xff", "/a?b?"},
		{strings.Repeat("x", 128), strings.Repeat("x", 128)},
		{strings.Repeat("x", 129), strings.Repeat("x", 125) + "..."},
	} {
		if got := sanitizeText(c.in); got != c.want {
			t.Errorf("sanitizeText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "client", "1.2.3.4:5", "[::1]:80", "\xff\x00", strings.Repeat("z", 300)} {
		f.Add(s)
	}
	printable := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return false
			}
		}
		return true
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id := sanitizeID(s); id != invalid && id != s {
			t.Errorf("sanitizeID(%q) = %q: neither the input nor (invalid)", s, id)
		} else if id == s && (len(s) > maxIDLen || !printable(s)) {
			t.Errorf("sanitizeID passed %q", s)
		}
		if r := sanitizeRemote(s); r != "" && r != invalid && (len(r) > 64 || !printable(r) || strings.ContainsAny(r, "%[]")) {
			t.Errorf("sanitizeRemote(%q) = %q", s, r)
		}
		if e := sanitizeEndpoint(s); e != invalid && e != s {
			t.Errorf("sanitizeEndpoint(%q) = %q: neither the input nor (invalid)", s, e)
		}
		if x := sanitizeText(s); len(x) > maxTextLen || !printable(x) {
			t.Errorf("sanitizeText(%q) = %q", s, x)
		}
	})
}

func TestConcurrentRecord(t *testing.T) {
	f := newFixture(t, Options{Burst: 10, Interval: 10 * time.Second})
	const goroutines, each = 50, 2000
	types := Types()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ctx := context.Background()
			for i := range each {
				f.log.Record(ctx, Event{Type: types[(g+i)%len(types)], ClientID: "c", Reason: "r"})
				if g == 0 && i == each/2 {
					f.log.Flush()
				}
			}
		})
	}
	wg.Wait()
	f.log.Close()

	total := 0.0
	for _, v := range f.counts(t) {
		total += v
	}
	if total != goroutines*each {
		t.Errorf("counters sum to %v, want %d", total, goroutines*each)
	}
	lines := f.out.lines(t)
	events := byMsg(lines, "security event")
	if len(events) != 10*len(types) {
		t.Errorf("%d event lines, want %d (10 per type)", len(events), 10*len(types))
	}
	suppressed := 0
	for _, s := range byMsg(lines, "security events suppressed") {
		suppressed += int(s["count"].(float64))
	}
	if len(events)+suppressed != goroutines*each {
		t.Errorf("lines %d + suppressed %d != %d events", len(events), suppressed, goroutines*each)
	}
}

func TestDiscardAndNilLogger(t *testing.T) {
	Discard.Record(context.Background(), Event{Type: RefreshReuse})
	l := New(nil, nil, nil, Options{})
	l.Record(context.Background(), Event{Type: RefreshReuse})
	l.Flush()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDisabledLevelStillCounts(t *testing.T) {
	out := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	l := New(slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelError})), reg, newClock().now, Options{Burst: 1})
	for range 5 {
		l.Record(context.Background(), Event{Type: UserLocked, Username: "bob"})
	}
	l.Close()
	if out.String() != "" {
		t.Errorf("WARN lines written to an ERROR-level logger: %s", out.String())
	}
	f := &fixture{reg: reg}
	if c := f.counts(t); c["user_locked"] != 5 {
		t.Errorf("user_locked = %v, want 5", c["user_locked"])
	}
}

func TestRunFlushesOnTickAndClosesOnCancel(t *testing.T) {
	f := newFixture(t, Options{Burst: 1, Interval: time.Second})
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.log.run(ctx, tick)
		close(done)
	}()
	f.log.Record(ctx, Event{Type: RefreshReuse})
	f.log.Record(ctx, Event{Type: RefreshReuse})
	f.clock.advance(time.Second)
	tick <- time.Time{}
	tick <- time.Time{} // the loop took this one, so the first Flush is done
	if sums := byMsg(f.out.lines(t), "security events suppressed"); len(sums) != 1 || sums[0]["type"] != "refresh_reuse" {
		t.Fatalf("after a tick: summaries %v, want one for refresh_reuse", sums)
	}
	f.log.Record(ctx, Event{Type: TokenRevoked})
	f.log.Record(ctx, Event{Type: TokenRevoked})
	cancel()
	<-done
	sums := byMsg(f.out.lines(t), "security events suppressed")
	if len(sums) != 2 || sums[1]["type"] != "token_revoked" || sums[1]["count"] != float64(1) {
		t.Errorf("after cancel: summaries %v, want Close's token_revoked summary last", sums)
	}
}

func TestWithRequestFillsRemoteAndEndpoint(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := WithRequest(context.Background(), "[2001:db8::7]:50000", "/v1.0/access-token/b2b")
	f.log.Record(ctx, Event{Type: SnapSignatureFailed, ClientID: "m1", Reason: "signature mismatch"})
	f.log.Record(ctx, Event{Type: SnapReplay, Remote: "192.0.2.1", Endpoint: "/other", Reason: "nonce seen"})
	lines := f.out.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if lines[0]["remote"] != "2001:db8::7" || lines[0]["endpoint"] != "/v1.0/access-token/b2b" {
		t.Errorf("from the context: %v", lines[0])
	}
	if lines[1]["remote"] != "192.0.2.1" || lines[1]["endpoint"] != "/other" {
		t.Errorf("the event's own fields must win: %v", lines[1])
	}
}
