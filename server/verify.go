package server

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/dialect/oauth2"
	"github.com/tokengate/tokengate/gateway"
	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/internal/reqbody"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/snapcall"
)

// VerifyPath is the SNAP verify endpoint: services that verify SNAP
// service calls themselves (rather than behind the gateway) send each call
// here and get the caller's identity or the SNAP answer to give.
const VerifyPath = "/snap/v1/verify"

// SNAPVerifier verifies SNAP service calls: snapcall.Verifier, the one
// the gateway's SNAP routes use.
type SNAPVerifier interface {
	Verify(ctx context.Context, c *gateway.Call, r *gateway.Route) (*gateway.Identity, gateway.Refusal)
	Failure(r *gateway.Route, path string, f gateway.Failure) gateway.Refusal
}

// verifyOverhead bounds what a verify request holds besides the call's
// body (base64): the path, query, headers and route parameters.
const verifyOverhead = 64 << 10

// maxVerifyHeaders bounds the header values of a call.
const maxVerifyHeaders = 100

// verifyLimit is the largest verify request: a call body of max_body,
// base64-encoded, plus the rest.
func verifyLimit(maxBody int64) int {
	return int(base64.StdEncoding.EncodedLen(int(maxBody))) + verifyOverhead
}

// verifyValid is the answer for a call that passed every check.
type verifyValid struct {
	Valid     bool   `json:"valid"`
	ClientID  string `json:"client_id"`
	PartnerID string `json:"partner_id"`
	Scope     string `json:"scope"`
	Subject   string `json:"subject"`
}

// verifyRefused is the answer for a call to refuse: the SNAP answer the
// service gives its caller (HTTP status, responseCode, responseMessage).
type verifyRefused struct {
	Valid           bool   `json:"valid"`
	Status          int    `json:"status"`
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
}

// snapVerify serves POST /snap/v1/verify. The caller authenticates as an
// RFC 6749 client (client_secret_basic, or client_id and client_secret
// members for client_secret_post) with the resource-server permission
// (can_introspect). The body is
//
//	{"call":  {"method", "path", "query", "headers": {name: [values]}, "body": base64},
//	 "route": {"service_code", "scopes", "signature", "token", "strip_prefix", "include_query"}}
//
// The answer is 200 with {"valid": true, "client_id", "partner_id",
// "scope", "subject"} or {"valid": false, "status", "responseCode",
// "responseMessage"}; a verify request that is itself wrong gets an
// RFC 6749 error (400, 401, 403, 405, 413, 503).
func (s *Server) snapVerify(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(secevent.WithRequest(r.Context(), r.RemoteAddr, r.URL.Path), s.cfg.RequestTimeout)
	defer cancel()
	fail := func(e *oauth.Error) {
		s.metrics.verify.WithLabelValues(resultLabel(e)).Inc()
		oauth2.WriteError(w, r, e)
	}
	if r.Method != http.MethodPost {
		fail(&oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusMethodNotAllowed, Cause: oauth.CauseBadRequest,
			Description: "the method must be POST"})
		return
	}
	if !isJSONType(r.Header["Content-Type"]) {
		fail(&oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusBadRequest, Cause: oauth.CauseBadRequest,
			Field: "Content-Type", Description: "the Content-Type must be application/json"})
		return
	}
	pass, ok := s.bodies.Enter(w, r)
	if !ok {
		fail(readersBusy())
		return
	}
	defer pass.Done() // after a panic
	raw, err := reqbody.Read(r, verifyLimit(s.cfg.Gateway.MaxBody))
	pass.Done()
	switch {
	case errors.Is(err, reqbody.ErrTooLarge):
		fail(&oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusRequestEntityTooLarge, Cause: oauth.CauseBadRequest,
			Description: "the request is too large (the call's body is bounded by gateway.max_body)"})
		return
	case err != nil:
		fail(oauth.BadRequest("the request body could not be read"))
		return
	}
	req, e := parseVerifyRequest(raw)
	if e != nil {
		fail(e)
		return
	}
	params := map[string]string{}
	if req.clientID != "" {
		params["client_id"] = req.clientID
	}
	if req.hasSecret {
		params["client_secret"] = req.clientSecret
	}
	creds, e := oauth2.ClientCredentials(r, params)
	if e != nil {
		s.credentialsRefused(ctx, e)
		fail(e)
		return
	}
	caller, e := s.engine.AuthenticateClient(ctx, creds, "")
	if e != nil {
		fail(e)
		return
	}
	if !caller.CanIntrospect {
		s.events.Record(ctx, secevent.Event{Type: secevent.IntrospectionDenied, ClientID: caller.ID,
			Reason: "SNAP call verification without the resource-server permission"})
		fail(resourceServersOnly("verify SNAP calls"))
		return
	}
	call, route, e, callerFault := req.decode()
	if callerFault {
		// What the service's caller sent is unusable: the caller gets the
		// route's Bad Request, and the service did nothing wrong.
		s.writeVerdict(w, nil, s.snapCalls.Failure(route, "", gateway.BadRequest))
		return
	}
	if e != nil {
		fail(e)
		return
	}
	if int64(len(call.Body)) > s.cfg.Gateway.MaxBody {
		s.writeVerdict(w, nil, s.snapCalls.Failure(route, call.Path, gateway.BodyTooLarge))
		return
	}
	id, refusal := s.snapCalls.Verify(ctx, call, route)
	s.writeVerdict(w, id, refusal)
}

func (s *Server) writeVerdict(w http.ResponseWriter, id *gateway.Identity, refusal gateway.Refusal) {
	if refusal != nil {
		s.metrics.verify.WithLabelValues(refusal.Result()).Inc()
		a, ok := refusal.(*snapcall.Answer)
		if !ok {
			oauth2.WriteError(w, nil, oauth.ServerError())
			return
		}
		oauth2.WriteJSON(w, http.StatusOK, verifyRefused{Status: a.Status, ResponseCode: a.ResponseCode, ResponseMessage: a.ResponseMessage})
		return
	}
	s.metrics.verify.WithLabelValues("valid").Inc()
	oauth2.WriteJSON(w, http.StatusOK, verifyValid{Valid: true, ClientID: id.ClientID, PartnerID: id.PartnerID,
		Scope: strings.Join(id.Scopes, " "), Subject: id.Subject})
}

// isJSONType reports whether a Content-Type header is one application/json
// (in UTF-8, the only charset JSON has).
func isJSONType(v []string) bool {
	if len(v) != 1 {
		return false
	}
	mt, params, _ := strings.Cut(v[0], ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		return false
	}
	for p := range strings.SplitSeq(params, ";") {
		name, value, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "charset") && !strings.EqualFold(strings.Trim(strings.TrimSpace(value), `"`), "utf-8") {
			return false
		}
	}
	return true
}

// verifyRequest is a verify request's JSON, read but not yet checked
// beyond its syntax: the client's credentials come first, so that nothing
// is said about the rest to a caller that has not authenticated.
type verifyRequest struct {
	clientID, clientSecret string
	hasSecret              bool
	call, route            jsonx.Object
}

func badField(field, why string) *oauth.Error {
	return &oauth.Error{Code: oauth.CodeInvalidRequest, Cause: oauth.CauseMalformedField, Field: field,
		Description: "malformed parameter: " + field + ": " + why}
}

// parseVerifyRequest reads the top level of a verify request. Errors:
// invalid_request for JSON that is not one object, unknown members,
// members of the wrong type, and a missing call or route.
func parseVerifyRequest(raw string) (*verifyRequest, *oauth.Error) {
	o, err := jsonx.ReadObject(raw)
	if err != nil {
		return nil, oauth.BadRequest("the body must be one JSON object (RFC 8259, UTF-8, no repeated names)")
	}
	req := &verifyRequest{}
	var hasCall, hasRoute bool
	for name, v := range o.All() {
		var ok bool
		switch name {
		case "client_id":
			req.clientID, ok = v.Str()
		case "client_secret":
			req.clientSecret, ok = v.Str()
			req.hasSecret = true
		case "call":
			req.call, ok = v.Object()
			hasCall = true
		case "route":
			req.route, ok = v.Object()
			hasRoute = true
		default:
			return nil, badField(name, "unknown member (call, route, client_id, client_secret)")
		}
		if !ok {
			return nil, badField(name, "wrong type")
		}
	}
	switch {
	case !hasCall:
		return nil, oauth.Missing("call")
	case !hasRoute:
		return nil, oauth.Missing("route")
	}
	return req, nil
}

// decode checks the route parameters, then the call. Errors: invalid_request
// naming the member (call.path, route.signature...). callerFault reports
// that the error is in what the original caller sent (an overlong path, too
// many headers, a method that is no token) rather than in how the service
// built the request: the service should then answer its caller the SNAP
// Bad Request of the route, which the handler gives as a verdict.
func (req *verifyRequest) decode() (call *gateway.Call, route *gateway.Route, e *oauth.Error, callerFault bool) {
	rc := config.GatewayRoute{}
	hasCode := false
	for name, v := range req.route.All() {
		field := "route." + name
		var ok bool
		switch name {
		case "service_code":
			n, err := strconv.Atoi(v.Raw())
			ok = v.Kind() == jsonx.KindNumber && err == nil && n >= 1 && n <= 99
			rc.ServiceCode, hasCode = n, true
		case "scopes":
			rc.Scopes, ok = v.StringArray()
			for _, sc := range rc.Scopes {
				ok = ok && sc != "" && oauth.ValidCredentialText(sc) && !strings.ContainsAny(sc, " \"\\")
			}
		case "signature":
			rc.Signature, ok = v.Str()
			ok = ok && (rc.Signature == "" || rc.Signature == "symmetric" || rc.Signature == "asymmetric" || rc.Signature == "either")
		case "token":
			rc.Token, ok = v.Str()
			ok = ok && (rc.Token == "" || rc.Token == "required" || rc.Token == "none")
		case "strip_prefix":
			rc.StripPrefix, ok = v.Str()
			ok = ok && (rc.StripPrefix == "" || (strings.HasPrefix(rc.StripPrefix, "/") && oauth.VisibleASCII(rc.StripPrefix)))
		case "include_query":
			ok = v.Kind() == jsonx.KindBool
			rc.IncludeQuery = v.Raw() == "true"
		case "signature_once":
			ok = v.Kind() == jsonx.KindBool
			rc.SignatureOnce = v.Raw() == "true"
		default:
			return nil, nil, badField(field, "unknown member (service_code, scopes, signature, token, strip_prefix, include_query, signature_once)"), false
		}
		if !ok {
			return nil, nil, badField(field, routeParamHelp[name]), false
		}
	}
	if !hasCode {
		return nil, nil, oauth.Missing("route.service_code"), false
	}
	if rc.Token == "none" && rc.Signature != "asymmetric" {
		return nil, nil, badField("route.token", "none (no access token) needs signature asymmetric"), false
	}
	route = &gateway.Route{GatewayRoute: rc}
	call = &gateway.Call{Header: http.Header{}}
	var hasMethod, hasPath bool
	for name, v := range req.call.All() {
		field := "call." + name
		switch name {
		case "method":
			m, ok := v.Str()
			if !ok || m == "" || len(m) > 32 || !isToken(m) {
				return nil, route, badField(field, "an HTTP method"), true
			}
			call.Method, hasMethod = m, true
		case "path":
			p, ok := v.Str()
			if ok && len(p) > 8<<10 {
				return nil, route, badField(field, "at most 8 KiB"), true
			}
			if !ok || !strings.HasPrefix(p, "/") || !oauth.VisibleASCII(p) || strings.ContainsAny(p, "?#") {
				return nil, nil, badField(field, "the request path as received, starting with / (without the query)"), false
			}
			call.Path, hasPath = p, true
		case "query":
			q, ok := v.Str()
			if !ok || len(q) > 8<<10 || (q != "" && !oauth.VisibleASCII(q)) || strings.Contains(q, "#") {
				return nil, route, badField(field, "the raw query string as received, without '?'"), true
			}
			call.RawQuery = q
		case "headers":
			h, ok := v.Object()
			if !ok {
				return nil, nil, badField(field, `an object {"Name": ["value", ...]}`), false
			}
			n := 0
			for hn, hv := range h.All() {
				vals, ok := hv.StringArray()
				if !ok || !isToken(hn) {
					return nil, nil, badField(field, `an object {"Name": ["value", ...]}`), false
				}
				for _, s := range vals {
					if n++; n > maxVerifyHeaders {
						return nil, route, badField(field, "at most 100 header values"), true
					}
					if !validHeaderValue(s) {
						return nil, nil, badField(field, "header values without control characters"), false
					}
					call.Header.Add(hn, s)
				}
			}
		case "body":
			b64, ok := v.Str()
			if !ok {
				return nil, nil, badField(field, "standard base64"), false
			}
			b, err := base64.StdEncoding.Strict().DecodeString(b64)
			if err != nil {
				return nil, nil, badField(field, "standard base64"), false
			}
			call.Body = b
		default:
			return nil, nil, badField(field, "unknown member (method, path, query, headers, body)"), false
		}
	}
	switch {
	case !hasMethod:
		return nil, nil, oauth.Missing("call.method"), false
	case !hasPath:
		return nil, nil, oauth.Missing("call.path"), false
	}

	return call, route, nil, false
}

var routeParamHelp = map[string]string{
	"service_code":   "a number from 1 to 99",
	"scopes":         "an array of scope tokens",
	"signature":      "symmetric, asymmetric or either",
	"token":          "required or none",
	"strip_prefix":   "a path prefix starting with /",
	"include_query":  "true or false",
	"signature_once": "true or false",
}

// isToken reports whether s is an RFC 9110 token (a method or header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s may be an HTTP header value: no
// control characters but tab (RFC 9110 field-value).
func validHeaderValue(s string) bool {
	for _, c := range []byte(s) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
