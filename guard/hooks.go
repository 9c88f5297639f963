package guard

import "time"

// Hooks are optional metrics callbacks; a nil field is not called. They are
// called synchronously (CacheLookup and Validated on every Validate), so
// they must be fast and safe for concurrent use; counters are the intended
// use. No token, secret or identity is ever passed to them.
type Hooks struct {
	// CacheLookup reports whether a Validate found a usable cached result.
	CacheLookup func(f Format, hit bool)
	// Validated reports the outcome of every Validate.
	Validated func(f Format, r Result)
	// Introspected reports every introspection request: its duration and
	// error (nil for an answer, active or not).
	Introspected func(d time.Duration, err error)
	// JWKSFetched reports every JWKS fetch.
	JWKSFetched func(err error)
	// FeedState reports the feed's state changes.
	FeedState func(s FeedStatus)
	// FeedEvent reports every event applied from the feed: "hello",
	// "token", "client", "user", "reset".
	FeedEvent func(kind string)
	// Resynced reports that every cached result was dropped, and why:
	// "reset", "unknown event", "revocations full", "first connection".
	Resynced func(reason string)
	// Evicted reports cache entries dropped to stay within the bounds.
	Evicted func(n int)
}

// Result is the outcome of a validation.
type Result uint8

// Validation outcomes.
const (
	ResultValid       Result = iota
	ResultInvalid            // refused: 401
	ResultUnavailable        // could not be checked: 503
)

func (r Result) String() string {
	switch r {
	case ResultValid:
		return "valid"
	case ResultInvalid:
		return "invalid"
	}
	return "unavailable"
}

// FeedStatus is the state of the revocation feed.
type FeedStatus uint8

// Feed states.
const (
	FeedUp           FeedStatus = iota // connected and caught up: cached results are used
	FeedDown                           // disconnected, reconnecting; cached results still used until FeedDownLimit
	FeedFailClosed                     // down longer than FeedDownLimit: every token is introspected
	FeedUnauthorized                   // the server refused the guard's credentials (401/403)
)

func (s FeedStatus) String() string {
	switch s {
	case FeedUp:
		return "up"
	case FeedDown:
		return "down"
	case FeedFailClosed:
		return "fail_closed"
	}
	return "unauthorized"
}

func (g *Guard) lookup(f Format, hit bool) {
	if h := g.hooks.CacheLookup; h != nil {
		h(f, hit)
	}
}

func (g *Guard) result(f Format, r Result) {
	if h := g.hooks.Validated; h != nil {
		h(f, r)
	}
}

func (g *Guard) feedStateHook(s FeedStatus) {
	if h := g.hooks.FeedState; h != nil {
		h(s)
	}
}

func (g *Guard) feedEventHook(kind string) {
	if h := g.hooks.FeedEvent; h != nil {
		h(kind)
	}
}
