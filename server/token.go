package server

import (
	"context"
	"net/http"
	"time"

	"github.com/tokengate/tokengate/dialect"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
)

// tokenHandler serves one configured token endpoint.
func (s *Server) tokenHandler(path string, d dialect.Dialect, policy oauth.EndpointPolicy) http.Handler {
	ok := s.metrics.tokenRequests.WithLabelValues(path, "ok")
	latency := s.metrics.tokenSeconds.WithLabelValues(path)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in token endpoint", "endpoint", path, "panic", p)
				d.WriteError(w, r, oauth.ServerError())
			}
		}()
		ctx, cancel := context.WithTimeout(secevent.WithRequest(r.Context(), r.RemoteAddr, path), s.cfg.RequestTimeout)
		defer cancel()
		var req *oauth.TokenRequest
		var e *oauth.Error
		if pass, ok := s.bodies.Enter(w, r); ok {
			defer pass.Done() // after a panic
			req, e = d.DecodeTokenRequest(r)
			pass.Done()
		} else {
			e = readersBusy()
		}
		var resp *oauth.TokenResponse
		if e != nil {
			s.credentialsRefused(ctx, e)
		} else {
			req.Policy = policy
			req.Endpoint = path
			resp, e = s.engine.Token(ctx, req)
		}
		if e != nil {
			s.metrics.tokenRequests.WithLabelValues(path, resultLabel(e)).Inc()
			d.WriteError(w, r, e)
		} else {
			ok.Inc()
			d.WriteToken(w, r, resp)
		}
		latency.Observe(time.Since(start).Seconds())
	})
}

// readersBusy answers a request that found every body reader busy.
func readersBusy() *oauth.Error {
	return oauth.Overloaded("too many requests are being received: retry shortly", time.Second)
}

// resultLabel is an error's metrics label: its OAuth code, except that
// temporarily_unavailable is split by cause, so rate limiting (429), a full
// queue and an unreachable store (503) are counted apart.
func resultLabel(e *oauth.Error) string {
	if e.Code != oauth.CodeTemporarilyUnavail {
		return e.Code
	}
	switch e.Cause {
	case oauth.CauseRateLimited:
		return "rate_limited"
	case oauth.CauseOverloaded:
		return "overloaded"
	default:
		return "unavailable"
	}
}

// credentialsRefused records the security event of a request a dialect
// refused before the engine saw it: malformed or oversized credentials,
// another authentication scheme, a stale SNAP timestamp.
func (s *Server) credentialsRefused(ctx context.Context, e *oauth.Error) {
	var ev secevent.Event
	switch {
	case e.Cause == oauth.CauseStaleRequest:
		ev = secevent.Event{Type: secevent.SnapReplay, Reason: "X-TIMESTAMP outside the allowed window (an old request replayed?)"}
	case e.Cause == oauth.CauseMalformedField && (e.Field == "client_id" || e.Field == "client_secret" || e.Field == "X-CLIENT-KEY" || e.Field == "Authorization"):
		ev = secevent.Event{Type: secevent.ClientIDInvalid, Reason: "malformed or oversized client credentials"}
	case e.Code == oauth.CodeInvalidClient:
		ev = secevent.Event{Type: secevent.ClientAuthFailed, Reason: "client authentication the endpoint does not accept"}
	default:
		return
	}
	s.events.Record(ctx, ev)
}
