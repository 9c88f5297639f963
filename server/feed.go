package server

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/oauth2"
	"github.com/tokengate/tokengate/feed"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
)

// newFeed builds the node's revocation feed. At most half the connection
// cap may be streams, so subscribers can never hold every connection
// (streams are active requests: the cap never closes them).
func (s *Server) newFeed(cfg config.Feed) *feed.Feed {
	maxSubs := cfg.MaxSubscribers
	if half := max(1, s.maxConns/2); maxSubs > half {
		s.log.Warn("feed.max_subscribers leaves too few connections for everything else: lowered to half of max_connections",
			"max_subscribers", maxSubs, "max_connections", s.maxConns)
		maxSubs = half
	}
	return feed.New(s.store, feed.Options{
		Poll:             cfg.Poll,
		Retention:        cfg.Retention,
		MaxSubscribers:   maxSubs,
		MaxPerSubscriber: cfg.MaxSubscribersPerClient,
		Logger:           s.log,
		Now:              s.now,
	})
}

// resourceServersOnly is the refusal of a client without the
// resource-server permission (can_introspect) to do what.
func resourceServersOnly(what string) *oauth.Error {
	return &oauth.Error{Code: oauth.CodeUnauthorizedClient, Status: http.StatusForbidden, Cause: oauth.CauseGrantNotAllowed,
		Description: "the client may not " + what + ": it needs the resource-server permission (can_introspect)"}
}

// revocations serves the revocation feed (see package feed) to resource
// servers: clients authenticated by client_secret_basic that have the
// introspection permission. Unauthenticated: 401 with a Basic challenge;
// authenticated without the permission: 403 unauthorized_client; a client
// with feed.max_subscribers_per_client streams open on this node: 429.
func (s *Server) revocations(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(secevent.WithRequest(r.Context(), r.RemoteAddr, r.URL.Path), s.cfg.RequestTimeout)
	creds, e := oauth2.ClientCredentials(r, nil) // the Authorization header only
	var cl *oauth.Client
	if e == nil {
		cl, e = s.engine.AuthenticateClient(ctx, creds, "")
	}
	cancel()
	if e == nil && !cl.CanIntrospect {
		e = resourceServersOnly("read the revocation feed")
	}
	if e != nil {
		s.metrics.feedRefused.WithLabelValues(resultLabel(e)).Inc()
		oauth2.WriteError(w, r, e)
		return
	}
	s.feed.Serve(w, r, cl.ID)
}

// watchFeed exports the feed's counters.
func (m *metrics) watchFeed(f *feed.Feed) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_feed_subscribers",
			Help: "Revocation feed streams open on this node.",
		}, func() float64 { return float64(f.Stats().Subscribers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_feed_events_delivered_total",
			Help: "Revocation feed events (and resets) handed to subscribers.",
		}, func() float64 { return float64(f.Stats().Delivered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_feed_subscribers_dropped_total",
			Help: "Revocation feed subscribers disconnected: too slow to keep up, or the store was unreadable.",
		}, func() float64 { return float64(f.Stats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_feed_resets_total",
			Help: "Reset events sent (a subscriber's cursor had expired).",
		}, func() float64 { return float64(f.Stats().Resets) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_feed_streams_refused_total",
			Help: "Revocation feed streams refused (429) because the client had feed.max_subscribers_per_client streams open on this node.",
		}, func() float64 { return float64(f.Stats().TooMany) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_feed_poll_errors_total",
			Help: "Failed reads of the store by the revocation feed's poller.",
		}, func() float64 { return float64(f.Stats().PollErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_feed_lag_seconds",
			Help: "Time since the revocation feed's poller last read the store.",
		}, func() float64 { return f.Stats().Lag.Seconds() }),
	)
}
