package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokengate/tokengate/internal/bodygate"
	"github.com/tokengate/tokengate/internal/connlimit"
)

// metrics live on a private registry. Labels carry endpoint paths and
// OAuth error codes only: never a client ID, a token or a secret.
type metrics struct {
	registry      *prometheus.Registry
	tokenRequests *prometheus.CounterVec
	tokenSeconds  *prometheus.HistogramVec
	introspect    *prometheus.CounterVec
	revoke        *prometheus.CounterVec
	feedRefused   *prometheus.CounterVec
	verify        *prometheus.CounterVec
	gcDeleted     prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		registry: reg,
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_token_requests_total",
			Help: "Token endpoint requests by endpoint path and result (ok or the OAuth error code).",
		}, []string{"endpoint", "result"}),
		tokenSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokengate_token_request_duration_seconds",
			Help:    "Token endpoint request latency by endpoint path.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"endpoint"}),
		introspect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_introspection_requests_total",
			Help: "Introspection requests by result (active, inactive or the OAuth error code).",
		}, []string{"result"}),
		revoke: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_revocation_requests_total",
			Help: "Revocation requests by result (ok or the OAuth error code).",
		}, []string{"result"}),
		feedRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_feed_refused_total",
			Help: "Revocation feed subscriptions refused by client authentication, by OAuth error code.",
		}, []string{"result"}),
		verify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_snap_verify_requests_total",
			Help: "SNAP verify endpoint requests by result (valid, the SNAP responseCode of a refused call, or the OAuth error code of a refused request).",
		}, []string{"result"}),
		gcDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokengate_gc_deleted_total",
			Help: "Expired token records, nonces, unpublished signing keys and revocation events past the feed retention deleted by the background cleanup.",
		}),
	}
	m.registry.MustRegister(m.tokenRequests, m.tokenSeconds, m.introspect, m.revoke, m.feedRefused, m.verify, m.gcDeleted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchConnections exports the public listener's connection counts.
func (m *metrics) watchConnections(l *connlimit.Listener) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_connections_open",
			Help: "Connections open on the public listener.",
		}, func() float64 { return float64(l.Stats().Open) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_connections_max",
			Help: "The cap on connections open on the public listener (max_connections).",
		}, func() float64 { return float64(l.Max()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_connections_evicted_total",
			Help: "Idle connections closed to make room at the max_connections cap.",
		}, func() float64 { return float64(l.Stats().Evicted) }),
	)
}

// watchBodies exports the body readers' counts. Requests refused because
// every reader was busy are counted by their endpoint's request metrics,
// as result "overloaded".
func (m *metrics) watchBodies(g *bodygate.Gate) {
	stopped := func(reason string, count func(bodygate.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "tokengate_request_bodies_stopped_total",
			Help:        "Request bodies stopped before their end: cut (to make room for a newcomer when every reader was busy) or timeout (body_timeout passed).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(count(g.Stats())) })
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_body_readers_busy",
			Help: "Request bodies being read now by the token, introspection and revocation endpoints.",
		}, func() float64 { return float64(g.Stats().Busy) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_body_readers_max",
			Help: "The cap on request bodies read at once (max_body_readers).",
		}, func() float64 { return float64(g.Stats().Max) }),
		stopped("cut", func(st bodygate.Stats) uint64 { return st.Cut }),
		stopped("timeout", func(st bodygate.Stats) uint64 { return st.TimedOut }),
	)
}
