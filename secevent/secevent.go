// Package secevent records security events: failed client authentication,
// wrong passwords and lockouts, SNAP signature failures and replays, refresh
// token reuse, revocations, rate limiting and overload, refused
// introspection and refused authentication methods or endpoints.
//
// Each event increments the Prometheus counter
// tokengate_security_events_total{type} and is written as one structured
// WARN log line ("security event"). Logging is sampled per event type: at
// most Options.Burst lines per Options.Interval, the rest counted and
// reported in one "security events suppressed" line per type and window, so
// a flood of events cannot become a flood of log lines. The counter is never
// sampled.
//
// No field of an Event may carry a secret, a token or a password; the
// request-derived fields (client ID, username, remote address, endpoint) are
// sanitized here as a second line of defence: a client ID or username that is
// longer than 256 bytes or not printable ASCII is logged as "(invalid)",
// never in part.
package secevent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Type names a kind of security event. The set is closed: the constants
// below are the only values a Log knows; any other value is counted and
// logged as "unknown".
type Type string

// The event types. Each is the value of the "type" label of the counter and
// of the "type" attribute of the log line.
const (
	// ClientAuthFailed: client authentication failed (unknown client, wrong
	// secret, disabled client, malformed credentials).
	ClientAuthFailed Type = "client_auth_failed"
	// ClientIDInvalid: client credentials (client_id, X-CLIENT-KEY or a
	// Basic header) were refused before any lookup because they are
	// malformed or too long (the memory-exhaustion probe of issue 8.1).
	ClientIDInvalid Type = "client_id_invalid"
	// PasswordFailed: a password grant presented a wrong password or an
	// unknown or disabled username.
	PasswordFailed Type = "password_failed"
	// UserLocked: a username was locked after repeated failures, or a
	// request for a locked username was refused.
	UserLocked Type = "user_locked"
	// SnapSignatureFailed: a SNAP X-SIGNATURE did not verify (or the client
	// has no public key registered).
	SnapSignatureFailed Type = "snap_signature_failed"
	// SnapReplay: a signed SNAP request was refused as a replay (its
	// signature was used before).
	SnapReplay Type = "snap_replay"
	// RefreshReuse: a rotated refresh token was presented again after the
	// grace window and its family was revoked.
	RefreshReuse Type = "refresh_reuse"
	// TokenRevoked: a token was revoked through the revocation endpoint.
	TokenRevoked Type = "token_revoked"
	// JWTPolicyViolation: a JWT whose signature verifies was refused because
	// its lifetime exceeds max_access_ttl or its scope is not allowed for its
	// client: a sign that a signing key may be in someone else's hands.
	JWTPolicyViolation Type = "jwt_policy_violation"
	// RateLimited: a request was refused with 429 by the per-client rate limit.
	RateLimited Type = "rate_limited"
	// Overloaded: a request was refused with 503 because a bounded queue
	// (e.g. the password hashing queue) was full.
	Overloaded Type = "overloaded"
	// IntrospectionDenied: a client introspected a token issued to another
	// client without the introspection permission.
	IntrospectionDenied Type = "introspection_denied"
	// AuthMethodNotAllowed: a client authenticated with a method it is not
	// registered for.
	AuthMethodNotAllowed Type = "auth_method_not_allowed"
	// EndpointNotAllowed: a client used a token endpoint it is not
	// registered for.
	EndpointNotAllowed Type = "endpoint_not_allowed"
)

// unknownType labels events whose Type is not one of the constants.
const unknownType Type = "unknown"

var allTypes = []Type{
	ClientAuthFailed, ClientIDInvalid, PasswordFailed, UserLocked,
	SnapSignatureFailed, SnapReplay, RefreshReuse, TokenRevoked,
	JWTPolicyViolation, RateLimited, Overloaded,
	IntrospectionDenied, AuthMethodNotAllowed, EndpointNotAllowed,
}

var typeIndex = func() map[Type]int {
	m := make(map[Type]int, len(allTypes))
	for i, t := range allTypes {
		m[t] = i
	}
	return m
}()

// Types returns every event type, in a stable order.
func Types() []Type { return slices.Clone(allTypes) }

// Valid reports whether t is one of the event type constants.
func (t Type) Valid() bool {
	_, ok := typeIndex[t]
	return ok
}

// Event is one security event. Fill what is known; empty fields are left
// out of the log line. Reason must be a fixed phrase from the code (e.g.
// "wrong secret"), never request data.
type Event struct {
	Type     Type
	ClientID string // the client the request claimed or authenticated as
	Username string // for password failures and lockouts
	Remote   string // remote address; "host:port" is accepted, only the IP is logged
	Endpoint string // request path
	Reason   string
}

type requestKey struct{}

type requestInfo struct{ remote, endpoint string }

// WithRequest returns a copy of ctx carrying the request's remote address
// and endpoint path. Log.Record uses them for an Event that leaves Remote
// or Endpoint empty, so code that never sees the HTTP request (the engine)
// can record events with them.
func WithRequest(ctx context.Context, remote, endpoint string) context.Context {
	return context.WithValue(ctx, requestKey{}, requestInfo{remote, endpoint})
}

// Recorder records security events. Implementations are safe for
// concurrent use and do not block on I/O for long.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// Discard is a Recorder that drops every event.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Record(context.Context, Event) {}

// Options tune the log sampling. Zero values take the defaults.
type Options struct {
	// Burst is how many log lines each event type may write per Interval
	// (default 10).
	Burst int
	// Interval is the sampling window (default 10s).
	Interval time.Duration
}

const (
	// DefaultBurst is Options.Burst's default.
	DefaultBurst = 10
	// DefaultInterval is Options.Interval's default.
	DefaultInterval = 10 * time.Second
)

// Log is the Recorder the server uses: a counter per type plus sampled log
// lines. Its memory is fixed: one small state per event type, nothing per
// client or per remote address.
type Log struct {
	h        slog.Handler
	now      func() time.Time
	burst    int
	interval time.Duration
	counters *prometheus.CounterVec
	slots    []*slot // one per known type, then one for unknown types
}

// slot is the sampling state of one event type: a fixed window that opens
// at the first event after the previous window ended.
type slot struct {
	typ     Type
	counter prometheus.Counter

	mu         sync.Mutex
	start      time.Time // zero: no open window
	logged     int
	suppressed int
}

// New returns a Log writing to log (nil: nowhere) and registering the
// counter tokengate_security_events_total on reg (nil: not registered). If
// reg already holds that counter (a second Log on one registry), the
// existing one is shared. now is the clock (nil: time.Now).
//
// New panics if reg refuses the counter for another reason (a different
// collector already uses the name): that is a programming error.
func New(log *slog.Logger, reg prometheus.Registerer, now func() time.Time, opts Options) *Log {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_security_events_total",
		Help: "Security events by type (see the README's Security events table). Never sampled.",
	}, []string{"type"})
	if reg != nil {
		if err := reg.Register(cv); err != nil {
			var are prometheus.AlreadyRegisteredError
			existing, ok := cv, false
			if errors.As(err, &are) {
				existing, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				panic(fmt.Sprintf("secevent: register counter: %v", err))
			}
			cv = existing
		}
	}
	l := &Log{
		h:        log.Handler(),
		now:      now,
		burst:    opts.Burst,
		interval: opts.Interval,
		counters: cv,
	}
	// Every known type's series exists from the start (at 0), so a rate()
	// alert sees the first event instead of a series appearing.
	for _, t := range allTypes {
		l.slots = append(l.slots, &slot{typ: t, counter: cv.WithLabelValues(string(t))})
	}
	l.slots = append(l.slots, &slot{typ: unknownType})
	return l
}

var _ Recorder = (*Log)(nil)

func (l *Log) slot(t Type) *slot {
	if i, ok := typeIndex[t]; ok {
		return l.slots[i]
	}
	return l.slots[len(l.slots)-1]
}

// Record counts e and, unless its type has used up its lines for the
// current window, writes it as one WARN line. It writes to the log only on
// the sampled path, so a flood costs a counter increment and a mutex per
// event.
func (l *Log) Record(ctx context.Context, e Event) {
	if ctx == nil {
		ctx = context.Background()
	}
	s := l.slot(e.Type)
	if s.counter != nil {
		s.counter.Inc()
	} else {
		l.counters.WithLabelValues(string(unknownType)).Inc()
	}
	t := l.now()

	s.mu.Lock()
	var prev summary
	if !s.start.IsZero() && (t.Sub(s.start) >= l.interval || t.Before(s.start)) {
		prev = s.takeLocked(true)
	}
	if s.start.IsZero() {
		s.start = t
	}
	write := s.logged < l.burst
	if write {
		s.logged++
	} else {
		s.suppressed++
	}
	s.mu.Unlock()

	if prev.count > 0 {
		l.writeSummary(s.typ, prev, t)
	}
	if write && l.h.Enabled(ctx, slog.LevelWarn) {
		if ri, ok := ctx.Value(requestKey{}).(requestInfo); ok {
			if e.Remote == "" {
				e.Remote = ri.remote
			}
			if e.Endpoint == "" {
				e.Endpoint = ri.endpoint
			}
		}
		r := slog.NewRecord(t, slog.LevelWarn, "security event", 0)
		r.AddAttrs(slog.String("type", string(s.typ)))
		if v := sanitizeID(e.ClientID); v != "" {
			r.AddAttrs(slog.String("client_id", v))
		}
		if v := sanitizeID(e.Username); v != "" {
			r.AddAttrs(slog.String("username", v))
		}
		if v := sanitizeRemote(e.Remote); v != "" {
			r.AddAttrs(slog.String("remote", v))
		}
		if v := sanitizeEndpoint(e.Endpoint); v != "" {
			r.AddAttrs(slog.String("endpoint", v))
		}
		r.AddAttrs(slog.String("reason", sanitizeText(e.Reason)))
		_ = l.h.Handle(ctx, r)
	}
}

type summary struct {
	count int
	start time.Time
}

// takeLocked returns the window's suppressed count and zeroes it. With
// closeWindow the window ends too (the next event opens a new one);
// without it the window stays open with its lines used up, so a Close in
// the middle of a flood does not grant a fresh burst.
func (s *slot) takeLocked(closeWindow bool) summary {
	sum := summary{count: s.suppressed, start: s.start}
	s.suppressed = 0
	if closeWindow {
		s.start = time.Time{}
		s.logged = 0
	}
	return sum
}

func (l *Log) writeSummary(t Type, sum summary, now time.Time) {
	// A summary belongs to no request: context.Background keeps a
	// request-scoped handler from tagging it with the request that
	// happened to trigger it.
	ctx := context.Background()
	if !l.h.Enabled(ctx, slog.LevelWarn) {
		return
	}
	r := slog.NewRecord(now, slog.LevelWarn, "security events suppressed", 0)
	r.AddAttrs(
		slog.String("type", string(t)),
		slog.Int("count", sum.count),
		slog.Time("window_start", sum.start),
		slog.Duration("window", l.interval),
	)
	_ = l.h.Handle(ctx, r)
}

// Flush writes the summary of every window that has ended and still holds
// suppressed events. Record does this itself when the next event of the
// same type arrives; call Flush periodically (e.g. every Interval) so the
// summary of a flood that stopped is not held back until the next event.
func (l *Log) Flush() {
	t := l.now()
	for _, s := range l.slots {
		s.mu.Lock()
		var sum summary
		if !s.start.IsZero() && (t.Sub(s.start) >= l.interval || t.Before(s.start)) {
			sum = s.takeLocked(true)
		}
		s.mu.Unlock()
		if sum.count > 0 {
			l.writeSummary(s.typ, sum, t)
		}
	}
}

// Close writes the summary of every window holding suppressed events,
// ended or not. It always returns nil. The Log stays usable: later events
// are counted and sampled as before.
func (l *Log) Close() error {
	t := l.now()
	for _, s := range l.slots {
		s.mu.Lock()
		sum := s.takeLocked(false)
		s.mu.Unlock()
		if sum.count > 0 {
			l.writeSummary(s.typ, sum, t)
		}
	}
	return nil
}

const (
	maxIDLen   = 256
	maxTextLen = 128
	invalid    = "(invalid)"
)

// sanitizeID returns v if it is at most 256 bytes of printable ASCII, and
// "(invalid)" otherwise: never a part of v, since an over-long or binary
// "client ID" may well be a secret or a token sent in the wrong field.
func sanitizeID(v string) string { return printableOrInvalid(v, maxIDLen) }

// sanitizeEndpoint is sanitizeID for paths, bounded to 128 bytes: the
// configured endpoints are short, so a longer path is not one of them and
// is not logged, even in part.
func sanitizeEndpoint(v string) string { return printableOrInvalid(v, maxTextLen) }

func printableOrInvalid(v string, max int) string {
	if len(v) > max {
		return invalid
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return invalid
		}
	}
	return v
}

// sanitizeRemote returns the IP of v ("ip" or "ip:port", an IPv6 zone
// dropped), or "(invalid)" when v is not an address.
func sanitizeRemote(v string) string {
	if v == "" {
		return ""
	}
	if len(v) > maxIDLen {
		return invalid
	}
	host := v
	if h, _, err := net.SplitHostPort(v); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return invalid
	}
	return a.WithZone("").Unmap().String()
}

// sanitizeText bounds a phrase from the code to 128 bytes of printable ASCII:
// other bytes become '?', and a longer value is cut and ends in "...".
func sanitizeText(v string) string {
	cut := len(v) > maxTextLen
	if cut {
		v = v[:maxTextLen-3]
	}
	b := []byte(v)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if cut {
		b = append(b, "..."...)
	}
	return string(b)
}

// Run calls Flush every d until ctx is done, then Close.
func (l *Log) Run(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	l.run(ctx, t.C)
}

func (l *Log) run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			l.Close()
			return
		case <-tick:
			l.Flush()
		}
	}
}
