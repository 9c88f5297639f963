package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tokengate/tokengate/dialect/oauth2"
	"github.com/tokengate/tokengate/engine"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
)

// recoverJSON turns a panic into an RFC 6749 server_error instead of a
// dropped connection.
func (s *Server) recoverJSON(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic", "path", r.URL.Path, "panic", p)
				oauth2.WriteError(w, r, oauth.ServerError())
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// authenticated parses an RFC 7662/7009 request, holding a body reader
// while it reads the body, and authenticates its client.
func (s *Server) authenticated(ctx context.Context, w http.ResponseWriter, r *http.Request) (map[string]string, *oauth.Client, *oauth.Error) {
	pass, ok := s.bodies.Enter(w, r)
	if !ok {
		return nil, nil, readersBusy()
	}
	defer pass.Done() // after a panic
	params, e := oauth2.ParseParams(r)
	pass.Done()
	if e != nil {
		s.credentialsRefused(ctx, e)
		return nil, nil, e
	}
	creds, e := oauth2.ClientCredentials(r, params)
	if e != nil {
		s.credentialsRefused(ctx, e)
		return nil, nil, e
	}
	cl, e := s.engine.AuthenticateClient(ctx, creds, "")
	if e != nil {
		return nil, nil, e
	}
	if params["token"] == "" {
		return nil, nil, oauth.Missing("token")
	}
	return params, cl, nil
}

// introspect serves RFC 7662 §2.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(secevent.WithRequest(r.Context(), r.RemoteAddr, r.URL.Path), s.cfg.RequestTimeout)
	defer cancel()
	params, caller, e := s.authenticated(ctx, w, r)
	if e != nil {
		s.metrics.introspect.WithLabelValues(resultLabel(e)).Inc()
		oauth2.WriteError(w, r, e)
		return
	}
	in, err := s.engine.Introspect(ctx, caller, params["token"])
	if err != nil {
		e := s.engine.StoreError(ctx, "introspect", err)
		s.metrics.introspect.WithLabelValues(resultLabel(e)).Inc()
		oauth2.WriteError(w, r, e)
		return
	}
	if !in.Active {
		s.metrics.introspect.WithLabelValues("inactive").Inc()
		oauth2.WriteJSON(w, http.StatusOK, in)
		return
	}
	s.metrics.introspect.WithLabelValues("active").Inc()
	oauth2.WriteJSON(w, http.StatusOK, in)
}

// revoke serves RFC 7009 §2.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(secevent.WithRequest(r.Context(), r.RemoteAddr, r.URL.Path), s.cfg.RequestTimeout)
	defer cancel()
	params, cl, e := s.authenticated(ctx, w, r)
	if e != nil {
		s.metrics.revoke.WithLabelValues(resultLabel(e)).Inc()
		oauth2.WriteError(w, r, e)
		return
	}
	// token_type_hint is only a hint (RFC 7009 §2.1): the token is found
	// whatever its type, so the hint is not needed and not checked.
	_, err := s.engine.Revoke(ctx, cl, params["token"])
	switch {
	case err == nil:
		s.metrics.revoke.WithLabelValues("ok").Inc()
		oauth2.WriteJSON(w, http.StatusOK, struct{}{})
	case errors.Is(err, engine.ErrNotOwner):
		s.metrics.revoke.WithLabelValues(oauth.CodeUnauthorizedClient).Inc()
		oauth2.WriteError(w, r, &oauth.Error{Code: oauth.CodeUnauthorizedClient,
			Cause: oauth.CauseGrantNotAllowed, Description: "the token was not issued to this client"})
	default:
		e := s.engine.StoreError(ctx, "revoke", err)
		s.metrics.revoke.WithLabelValues(resultLabel(e)).Inc()
		oauth2.WriteError(w, r, e)
	}
}

// metadata serves RFC 8414 authorization server metadata.
func (s *Server) metadata(w http.ResponseWriter, _ *http.Request) {
	iss := s.cfg.Issuer
	tokenPath := s.cfg.Endpoints[0].Path
	for _, ep := range s.cfg.Endpoints {
		if ep.Dialect == "oauth2" {
			tokenPath = ep.Path
			break
		}
	}
	authMethods := s.rfc6749AuthMethods
	md := map[string]any{
		"issuer":                                iss,
		"token_endpoint":                        iss + tokenPath,
		"jwks_uri":                              iss + "/.well-known/jwks.json",
		"introspection_endpoint":                iss + "/oauth/introspect",
		"revocation_endpoint":                   iss + "/oauth/revoke",
		"grant_types_supported":                 []string{oauth.GrantClientCredentials, oauth.GrantPassword, oauth.GrantRefreshToken},
		"token_endpoint_auth_methods_supported": authMethods,
		"introspection_endpoint_auth_methods_supported": authMethods,
		"revocation_endpoint_auth_methods_supported":    authMethods,
		// tokengate has no authorization endpoint, so it supports no
		// response types; the member is REQUIRED by RFC 8414 §2.
		"response_types_supported": []string{},
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(md)
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short, so a rotation is picked up quickly by resource servers.
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Write(s.engine.JWKS())
}
