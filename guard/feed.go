package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	feedBackoffMin          = 100 * time.Millisecond
	feedBackoffMax          = 5 * time.Second
	feedBackoffUnauthorized = 30 * time.Second
)

// feedState is the revocation feed as Validate sees it.
type feedState struct {
	up         atomic.Bool  // connected and caught up
	lastUp     atomic.Int64 // UnixNano of the last byte received while up
	failClosed atomic.Bool  // FeedFailClosed was reported for this outage
}

var errFeedUnauthorized = errors.New("the feed refused the guard's credentials (is the client --can-introspect?)")

// feedEvent is the data of a "hello", "revoked" or "reset" event
// (notes/feed-wire.md).
type feedEvent struct {
	Cursor   string `json:"cursor"`
	Type     string `json:"type"`
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	Username string `json:"username"`
	Before   string `json:"before"`
}

// runFeed keeps a subscription to the feed until ctx ends, reconnecting
// with backoff and resuming from the last cursor. started is closed when
// the feed is first up.
func (g *Guard) runFeed(ctx context.Context, started chan struct{}) {
	defer close(g.done)
	var once sync.Once
	sub := &subscriber{g: g, started: func() { once.Do(func() { close(started) }) }}
	backoff := feedBackoffMin
	for {
		err := sub.stream(ctx)
		wasUp := g.feed.up.Swap(false)
		if wasUp {
			g.feedStateHook(FeedDown)
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff
		switch {
		case errors.Is(err, errFeedUnauthorized):
			g.feedStateHook(FeedUnauthorized)
			wait = feedBackoffUnauthorized
		case sub.reachedUp:
			wait, backoff = feedBackoffMin, feedBackoffMin
		default:
			backoff = min(2*backoff, feedBackoffMax)
		}
		g.cfg.Logger.Warn("guard: revocation feed disconnected; reconnecting", "err", err, "retry_in", wait)
		// Full jitter over the upper half, so guards restarted together
		// do not reconnect together.
		wait = wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// subscriber is the feed connection's state; only runFeed's goroutine
// uses it.
type subscriber struct {
	g         *Guard
	started   func()
	cursor    string // resume after this
	reachedUp bool   // the last stream got up
	// the current stream: hello received; caught up with what it missed
	hello    bool
	caughtUp bool
}

// stream runs one connection until it fails.
func (s *subscriber) stream(ctx context.Context) error {
	g := s.g
	s.reachedUp, s.hello, s.caughtUp = false, false, false
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(g.cfg.FeedIdleTimeout, cancel)
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.endpoint.feed, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if s.cursor != "" {
		req.Header.Set("Last-Event-ID", s.cursor)
	}
	g.setClientAuth(req)
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return errFeedUnauthorized
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("feed answered %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return fmt.Errorf("feed answered %q, not text/event-stream", mt)
	}
	r := newSSEReader(resp.Body)
	for {
		ev, err := r.next()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("feed stream stopped (closed, or silent for %s)", g.cfg.FeedIdleTimeout)
			}
			return err
		}
		idle.Reset(g.cfg.FeedIdleTimeout)
		s.handle(ev)
		if g.feed.up.Load() {
			g.feed.lastUp.Store(g.cfg.Now().UnixNano())
		}
	}
}

// handle applies one event.
func (s *subscriber) handle(ev sseEvent) {
	g := s.g
	if ev.comment {
		// The server replays what a resuming subscriber missed right
		// after the hello, then pings at once: a comment after the hello
		// means the replay is over.
		if s.hello {
			s.setCaughtUp()
		}
		return
	}
	var data feedEvent
	var decodeErr error
	switch ev.name {
	case "hello", "revoked", "reset":
		decodeErr = json.Unmarshal([]byte(ev.data), &data)
	default:
		// Unknown events are for newer subscribers; their cursor still
		// counts.
		s.advance(ev)
		return
	}
	now := g.cfg.Now().UnixNano()
	switch ev.name {
	case "hello":
		// hello names where the stream starts: a resuming subscriber's own
		// cursor (the replay of what it missed follows), else "now".
		g.feedEventHook("hello")
		s.hello = true
		if s.cursor == "" {
			// Without a cursor the stream starts now: whatever was cached
			// before may predate a revocation the guard never heard of.
			s.cursor = data.Cursor
			if s.cursor == "" {
				s.cursor = ev.id
			}
			g.resync("first connection")
			s.setCaughtUp()
		}
		return
	case "reset":
		g.feedEventHook("reset")
		g.resync("reset")
		if data.Cursor != "" {
			s.cursor = data.Cursor
		} else if ev.hasID {
			s.cursor = ev.id
		}
		s.setCaughtUp()
		return
	}
	// revoked
	ok := decodeErr == nil
	if ok {
		switch data.Type {
		case "token":
			if ok = data.ID != ""; ok {
				g.feedEventHook("token")
				if !g.rev.revokeID(data.ID, now) {
					g.resync("revocations full")
				}
			}
		case "client", "user":
			before, err := time.Parse(time.RFC3339Nano, data.Before)
			name := data.ClientID
			if data.Type == "user" {
				name = data.Username
			}
			if ok = err == nil && name != ""; ok {
				g.feedEventHook(data.Type)
				if !g.rev.revokeBefore(data.Type == "user", name, before.UnixNano(), now) {
					g.resync("revocations full")
				}
			}
		default:
			ok = false
		}
	}
	if !ok {
		// A revocation the guard cannot apply may concern any token.
		g.cfg.Logger.Warn("guard: revocation event not understood; dropping every cached result", "type", data.Type)
		g.resync("unknown event")
	}
	s.advance(ev)
}

// advance moves the cursor past ev.
func (s *subscriber) advance(ev sseEvent) {
	if ev.hasID {
		s.cursor = ev.id
	}
}

func (s *subscriber) setCaughtUp() {
	if s.caughtUp {
		return
	}
	g := s.g
	s.caughtUp, s.reachedUp = true, true
	g.feed.lastUp.Store(g.cfg.Now().UnixNano())
	g.feed.failClosed.Store(false)
	g.feed.up.Store(true)
	g.feedStateHook(FeedUp)
	s.started()
}

// resync forgets every cached result and revocation: see the package doc.
func (g *Guard) resync(reason string) {
	g.rev.resync(g.cfg.Now().Add(g.cfg.Leeway).UnixNano())
	g.cache.clear()
	if h := g.hooks.Resynced; h != nil {
		h(reason)
	}
}
