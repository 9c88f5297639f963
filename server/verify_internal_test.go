package server

import (
	"net/http"
	"strings"
	"testing"
)

const verifySeed = `{"call":{"method":"POST","path":"/v1.0/transfer-va/create-va","query":"a=1",` +
	`"headers":{"x-timestamp":["2026-01-02T10:11:12+07:00"],"Authorization":["Bearer t"]},"body":"e30="},` +
	`"route":{"service_code":27,"scopes":["va"],"signature":"either","token":"required","strip_prefix":"/pg","include_query":true},` +
	`"client_id":"rs","client_secret":"s"}`

func TestParseVerifyRequest(t *testing.T) {
	req, e := parseVerifyRequest(verifySeed)
	if e != nil {
		t.Fatal(e)
	}
	if req.clientID != "rs" || req.clientSecret != "s" || !req.hasSecret {
		t.Errorf("credentials %q %q", req.clientID, req.clientSecret)
	}
	call, route, e, _ := req.decode()
	if e != nil {
		t.Fatal(e)
	}
	if call.Method != "POST" || call.Path != "/v1.0/transfer-va/create-va" || call.RawQuery != "a=1" || string(call.Body) != "{}" {
		t.Errorf("call %+v", call)
	}
	if call.Header["X-Timestamp"][0] != "2026-01-02T10:11:12+07:00" || call.Header["Authorization"][0] != "Bearer t" || len(call.Header) != 2 {
		t.Errorf("headers %v (want canonical names)", call.Header)
	}
	r := route.GatewayRoute
	if r.ServiceCode != 27 || len(r.Scopes) != 1 || r.Scopes[0] != "va" || r.Signature != "either" || r.Token != "required" ||
		r.StripPrefix != "/pg" || !r.IncludeQuery {
		t.Errorf("route %+v", r)
	}
	if len(r.ServiceCodes) != 0 { // so every path's answers carry service code 27
		t.Errorf("service codes by path: %v", r.ServiceCodes)
	}
}

func TestIsJSONType(t *testing.T) {
	for v, want := range map[string]bool{
		"application/json": true, "Application/JSON; charset=utf-8": true, `application/json;charset="UTF-8"`: true,
		"application/json; charset=latin1": false, "text/json": false, "": false, "application/jsonx": false,
	} {
		if got := isJSONType([]string{v}); got != want {
			t.Errorf("%q: %v", v, got)
		}
	}
	if isJSONType(nil) || isJSONType([]string{"application/json", "application/json"}) {
		t.Error("no header, or two, is not one JSON type")
	}
}

// FuzzVerifyRequest: the verify request parser never panics, and what it
// accepts is a call the verifier can take.
func FuzzVerifyRequest(f *testing.F) {
	f.Add(verifySeed)
	f.Add(`{"call":{"method":"GET","path":"/"},"route":{"service_code":1}}`)
	f.Add(`{"call":{"method":"GET","path":"/","headers":{"A":[]}},"route":{"service_code":99,"token":"none","signature":"asymmetric"}}`)
	f.Fuzz(func(t *testing.T, raw string) {
		req, e := parseVerifyRequest(raw)
		if e != nil {
			return
		}
		call, route, e, callerFault := req.decode()
		if callerFault && (e == nil || route == nil) {
			t.Fatalf("a caller's fault without the error and the route: %v %v", e, route)
		}
		if e != nil {
			return
		}
		if call.Method == "" || !strings.HasPrefix(call.Path, "/") || strings.ContainsAny(call.Path, "?# ") {
			t.Fatalf("accepted call %+v", call)
		}
		for k := range call.Header {
			if k != http.CanonicalHeaderKey(k) {
				t.Fatalf("header %q is not canonical", k)
			}
		}
		if c := route.ServiceCode; c < 1 || c > 99 {
			t.Fatalf("service code %d", c)
		}
		if route.Token == "none" && route.Signature != "asymmetric" {
			t.Fatalf("route %+v", route.GatewayRoute)
		}
	})
}
