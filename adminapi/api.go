// Package adminapi is tokengate's admin HTTP API: JSON under /admin/v1/,
// on a listener of its own (admin.listen), a thin skin over the admin
// service. Every handler decodes its request, calls one admin.Service
// method with the caller as the Actor, and encodes the result; every error
// is mapped to an RFC 9457 problem in one place (problemOf and
// problemTypes).
//
// Callers authenticate with an access token of this server whose client
// holds the tokengate:admin scope (Authorization: Bearer; checked by the
// engine on every call, so a revocation applies at once), or with a client
// certificate the listener's client CA issued. Either way they act as
// operators. Creates and rotations take an Idempotency-Key header (see
// idempotent). The API is described by an OpenAPI 3.1 document served at
// /admin/v1/openapi.json (openapi.yaml in this package).
package adminapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

// Prefix is the path every route of the API starts with.
const Prefix = "/admin/v1"

// Deps are what an API is built from.
type Deps struct {
	// Service is the admin service every call goes through.
	Service *admin.Service
	// Tokens checks bearer access tokens (the engine).
	Tokens Tokens
	// Idempotency keeps idempotent responses: the KEK-sealed store.
	Idempotency IdempotencyStore
	// FingerprintKey keys the fingerprints of idempotent requests kept
	// beside their responses (HMAC-SHA256), so that the store, which keeps
	// them in clear, does not hold a fast hash of the passwords and
	// secrets in their bodies. The same on every node sharing the store,
	// and not stored in it in clear: derive it from the pepper
	// (secret.Hasher.DeriveKey with FingerprintKeyLabel). At least 16
	// bytes.
	FingerprintKey []byte
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger receives internal errors (never a request's data); nil:
	// discarded.
	Logger *slog.Logger
}

// API is the admin API's HTTP handler.
type API struct {
	svc    *admin.Service
	tokens Tokens
	idem   IdempotencyStore
	fpKey  []byte
	now    func() time.Time
	log    *slog.Logger
	mux    *http.ServeMux
}

// FingerprintKeyLabel is the label Deps.FingerprintKey is derived from
// the pepper with.
const FingerprintKeyLabel = "admin API idempotency fingerprint"

// New returns the API on d. Service, Tokens, Idempotency and
// FingerprintKey are required; New panics without a FingerprintKey (a
// fingerprint left unkeyed would leak request bodies).
func New(d Deps) *API {
	if len(d.FingerprintKey) < 16 {
		panic("adminapi: New needs a FingerprintKey of at least 16 bytes")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{svc: d.Service, tokens: d.Tokens, idem: d.Idempotency, fpKey: bytes.Clone(d.FingerprintKey), now: d.Now, log: d.Logger, mux: http.NewServeMux()}
	for _, rt := range a.routes() {
		a.mux.Handle(rt.Method+" "+rt.Path, a.handler(rt))
	}
	return a
}

// Route is one route of the API.
type Route struct {
	Method, Path string // Path is a net/http pattern's path ("/admin/v1/clients/{id}")
	// Public routes need no credentials (the OpenAPI document and the
	// problem types).
	Public bool
	// Idempotent routes honour the Idempotency-Key header.
	Idempotent bool
	// Limit bounds the request body (0: maxBody).
	Limit int
	run   func(*call) (*reply, error)
}

// Routes lists every route the API serves, as it registers them: what a
// test compares with the OpenAPI document.
func Routes() []Route {
	var a API
	out := a.routes()
	for i := range out {
		out[i].run = nil
	}
	return out
}

// call is one request on its way to the service: its context carries the
// actor (admin.WithActor).
type call struct {
	ctx   context.Context
	r     *http.Request
	body  string
	actor admin.Actor
}

// reply is what a handler answers: a status and a body encoded as JSON
// (none for 204), or for a replay the recorded bytes.
type reply struct {
	status   int
	body     any
	location string // the Location of a created object
	// encoded is the body already encoded (a replay, or an idempotent
	// response that was recorded); ctype its content type.
	encoded  []byte
	ctype    string
	replayed bool
}

func (rep *reply) contentType() string {
	if rep.ctype != "" {
		return rep.ctype
	}
	if rep.status == http.StatusNoContent {
		return ""
	}
	return "application/json"
}

func ok(body any) (*reply, error) { return &reply{status: http.StatusOK, body: body}, nil }

// ServeHTTP routes r. An unknown path is a 404 problem, a known path with
// another method a 405 problem with Allow.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern == "" {
		a.noRoute(w, r)
		return
	}
	a.mux.ServeHTTP(w, r)
}

var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (a *API) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range methods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeProblem(w, newProblem(admin.CodeNotFound, "no such route: see "+Prefix+"/openapi.json"), nil, 0)
		return
	}
	if slices.Contains(allow, http.MethodGet) {
		allow = append(allow, http.MethodHead)
	}
	h := http.Header{"Allow": {strings.Join(allow, ", ")}}
	writeProblem(w, newProblem(CodeMethodNotAllowed, r.Method+" is not a method of this route"), h, 0)
}

// handler is rt's whole request path: authenticate, read the body, run
// (idempotently where it applies), answer.
func (a *API) handler(rt Route) http.Handler {
	limit := rt.Limit
	if limit == 0 {
		limit = maxBody
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{ctx: r.Context(), r: r}
		if !rt.Public {
			actor, err := a.authenticate(c.ctx, r)
			if err != nil {
				a.fail(w, err)
				return
			}
			c.actor, c.ctx = actor, admin.WithActor(c.ctx, actor)
		}
		body, err := readBody(r, limit)
		if err != nil {
			a.fail(w, err)
			return
		}
		if body != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			a.fail(w, invalidField("", "this route takes no request body"))
			return
		}
		c.body = body
		var rep *reply
		if rt.Idempotent {
			rep, err = a.idempotent(c, rt.run)
		} else {
			rep, err = rt.run(c)
		}
		if err != nil {
			a.fail(w, err)
			return
		}
		a.write(w, rep)
	})
}

// write answers rep.
func (a *API) write(w http.ResponseWriter, rep *reply) {
	h := w.Header()
	h.Set("Cache-Control", "no-store") // bodies may hold a secret shown once
	h.Set("X-Content-Type-Options", "nosniff")
	if rep.location != "" {
		h.Set("Location", rep.location)
	}
	if rep.replayed {
		h.Set(ReplayedHeader, "true")
	}
	b := rep.encoded
	if b == nil && rep.status != http.StatusNoContent {
		var err error
		if b, err = encodeJSON(rep.body); err != nil {
			a.fail(w, err)
			return
		}
	}
	if ct := rep.contentType(); ct != "" {
		h.Set("Content-Type", ct)
	}
	w.WriteHeader(rep.status)
	w.Write(b)
}

// fail answers err as a problem: the one place errors become statuses.
func (a *API) fail(w http.ResponseWriter, err error) {
	p, logged := problemOf(err)
	switch {
	case !logged:
	case p.Status == http.StatusServiceUnavailable:
		a.log.Warn("admin API: unavailable", "err", err)
	default:
		// The error's text may name stored values: the log, not the caller.
		a.log.Error("admin API: internal error", "err", err)
	}
	var (
		h          http.Header
		retryAfter time.Duration
		ae         *apiError
		le         *admin.LockedError
	)
	if errors.As(err, &ae) {
		h, retryAfter = ae.header, ae.retryAfter
	}
	if errors.As(err, &le) {
		retryAfter = le.RetryAfter
	}
	writeProblem(w, p, h, retryAfter)
}

// storeProblem is the error of a failed store call the API makes itself:
// unavailable, or internal.
func storeProblem(what string, err error) error {
	if errors.Is(err, oauth.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return &apiError{code: admin.CodeUnavailable, detail: what + ": the store cannot be reached now, retry shortly"}
	}
	return fmt.Errorf("%s: %w", what, err)
}
