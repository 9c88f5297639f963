package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
)

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var ae *apiError
	if !errors.As(err, &ae) || ae.code != admin.CodeInvalid {
		t.Fatalf("error %v is not a validation problem", err)
	}
	out := map[string]string{}
	for _, f := range ae.fields {
		out[f.Field] = f.Message
	}
	return out
}

func TestDecodeObject(t *testing.T) {
	var spec admin.ClientSpec
	if err := decodeObject(`{"name":"acme","grants":["client_credentials"],"access_ttl":"15m","can_introspect":true}`, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Name != "acme" || len(spec.Grants) != 1 || time.Duration(spec.AccessTTL) != 15*time.Minute || !spec.CanIntrospect {
		t.Fatalf("decoded %+v", spec)
	}
	var patch admin.ClientPatch
	if err := decodeObject(`{"scopes":[],"partner_id":""}`, &patch); err != nil {
		t.Fatal(err)
	}
	if patch.Scopes == nil || len(*patch.Scopes) != 0 || patch.PartnerID == nil || *patch.PartnerID != "" || patch.Name != nil {
		t.Fatalf("patch %+v: [] and \"\" must be values, absent members nil", patch)
	}
	if err := decodeObject("", &patch); err != nil {
		t.Fatalf("an empty body: %v", err)
	}

	// Every member at fault is named, with what is wrong.
	got := fieldsOf(t, decodeObject(`{"name":1,"grants":"x","colour":"red","scopes":null,"access_ttl":"soon"}`, &spec))
	want := map[string]string{"name": "wrong type (want a string)", "grants": "wrong type (want a list of strings)",
		"colour": "unknown field", "access_ttl": `"soon" is not a duration like "15m"`}
	for f, msg := range want {
		if got[f] != msg {
			t.Errorf("field %s: %q, want %q", f, got[f], msg)
		}
	}
	if !strings.Contains(got["scopes"], "null is not a value") {
		t.Errorf("null: %q", got["scopes"])
	}
	// Nested objects are strict too and name the nested field.
	var acc admin.AccountSpec
	got = fieldsOf(t, decodeObject(`{"limits":{"max_clients":"many"}}`, &acc))
	if got["limits.max_clients"] != "wrong type (want an integer)" {
		t.Errorf("nested type: %v", got)
	}
	got = fieldsOf(t, decodeObject(`{"limits":{"max_client":3}}`, &acc))
	if got["limits.max_client"] != "unknown field" {
		t.Errorf("nested unknown: %v", got)
	}

	// Strict JSON: repeated members, trailing data, invalid UTF-8, not an
	// object.
	for _, body := range []string{`{"name":"a","name":"b"}`, `{"name":"a"} x`, "{\"name\":\"\xff\"}", `["name"]`, `{"name":`} {
		if err := decodeObject(body, &spec); err == nil {
			t.Errorf("%q was accepted", body)
		} else {
			fieldsOf(t, err)
		}
	}
	// A long or unprintable member name is not echoed.
	got = fieldsOf(t, decodeObject(`{"`+strings.Repeat("s", 100)+`":1}`, &spec))
	if _, ok := got["(a member name)"]; !ok {
		t.Errorf("a long member name: %v", got)
	}
}

func TestIdempotencyKeyHeader(t *testing.T) {
	for v, want := range map[string]string{
		"abc-123":           "abc-123",
		`"8e03978e-40d5"`:   "8e03978e-40d5",
		`"with \"quotes\""`: `with "quotes"`,
		" padded ":          "padded",
		"a b":               "a b",
	} {
		got, err := idempotencyKey(http.Header{IdempotencyHeader: {v}})
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"", `""`, strings.Repeat("k", 256), "caf\u00e9", "a\x01b", `"a"b"`, `"a\"`} {
		if got, err := idempotencyKey(http.Header{IdempotencyHeader: {v}}); err == nil {
			t.Errorf("%q was accepted as %q", v, got)
		} else if f := fieldsOf(t, err); f[IdempotencyHeader] == "" {
			t.Errorf("%q: the problem does not name the header: %v", v, f)
		}
	}
	if _, err := idempotencyKey(http.Header{IdempotencyHeader: {"a", "b"}}); err == nil {
		t.Error("two headers were accepted")
	}
	if k, err := idempotencyKey(http.Header{}); k != "" || err != nil {
		t.Errorf("no header: %q, %v", k, err)
	}
}

func TestStoreKeyIsPerCaller(t *testing.T) {
	a := admin.Actor{Kind: admin.ActorAPI, ID: "ops"}
	b := admin.Actor{Kind: admin.ActorAPI, ID: "ops2"}
	if storeKey(a, "k") == storeKey(b, "k") || storeKey(a, "k") == storeKey(a, "k2") || storeKey(a, "k") != storeKey(a, "k") {
		t.Fatal("store keys must be one per caller and key")
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if storeKey(admin.Actor{ID: "ab"}, "c") == storeKey(admin.Actor{ID: "a"}, "bc") {
		t.Fatal("ambiguous store key")
	}
}

// TestProblemStatuses: the one mapping from the service's error codes to
// statuses.
func TestProblemStatuses(t *testing.T) {
	for err, want := range map[error]int{
		&admin.ValidationError{Field: "scopes", Message: "bad"}: 400,
		admin.ErrNotFound:                           404,
		&admin.ConflictError{Field: "partner_id"}:   409,
		admin.ErrForbidden:                          403,
		admin.ErrUnauthenticated:                    401,
		admin.ErrUnavailable:                        503,
		admin.ErrUnsupported:                        501,
		&admin.LockedError{RetryAfter: time.Second}: 429,
		errors.New("disk on fire: /var/lib/x"):      500,
	} {
		p, _ := problemOf(err)
		if p.Status != want || p.Type != ProblemBase+p.Code || p.Title == "" {
			t.Errorf("%v: %+v, want status %d", err, p, want)
		}
		if want == 500 && strings.Contains(p.Detail, "disk") {
			t.Errorf("an internal error's text reached the problem: %q", p.Detail)
		}
	}
	p, _ := problemOf(&admin.ValidationError{Field: "scopes", Message: "bad"})
	if len(p.Errors) != 1 || p.Errors[0].Field != "scopes" || p.Errors[0].Message != "bad" {
		t.Errorf("validation problem errors: %+v", p.Errors)
	}
	ies := admin.ImportErrors{{Record: 2, Line: 5, ClientID: "m2", Err: &admin.ValidationError{Field: "grants", Message: "none"}}}
	p, _ = problemOf(ies)
	if p.Status != 400 || len(p.Errors) != 1 || p.Errors[0] != (FieldError{Field: "grants", Message: "none", Record: 2, Line: 5, ClientID: "m2"}) {
		t.Errorf("import problem: %+v", p)
	}
}

func FuzzDecodeObject(f *testing.F) {
	f.Add(`{"name":"acme","grants":["client_credentials"],"access_ttl":"15m"}`)
	f.Add(`{"limits":{"max_clients":3,"grants":["password"]},"email":"a@b"}`)
	f.Add(`{"scopes":null}`)
	f.Add(`{"a":1,"a":2}`)
	f.Add("{\"\xff\":1}")
	f.Fuzz(func(t *testing.T, body string) {
		var spec admin.ClientSpec
		checkDecodeError(t, decodeObject(body, &spec))
		var acc admin.AccountSpec
		checkDecodeError(t, decodeObject(body, &acc))
		var patch admin.ClientPatch
		checkDecodeError(t, decodeObject(body, &patch))
	})
}

// checkDecodeError: decodeObject fails only with a validation problem
// whose fields are printable and short.
func checkDecodeError(t *testing.T, err error) {
	if err == nil {
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) || ae.code != admin.CodeInvalid || len(ae.fields) == 0 {
		t.Fatalf("error %v is not a validation problem", err)
	}
	for _, f := range ae.fields {
		if len(f.Field) > 64+len(".")+64 || f.Message == "" {
			t.Fatalf("field error %+v", f)
		}
	}
}

func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"abc", `"abc"`, `"a\"b"`, `""`, "\x00", strings.Repeat("x", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		k, err := idempotencyKey(http.Header{IdempotencyHeader: {v}})
		if err != nil {
			return
		}
		if k == "" || len(k) > maxIdempotencyKey {
			t.Fatalf("%q gave key %q", v, k)
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e {
				t.Fatalf("%q gave a key with byte %#x", v, k[i])
			}
		}
	})
}

// The text of an unavailable store's error (hosts, the driver's words)
// is not the caller's: the problem says only that the service is
// unavailable, and the log keeps the detail.
func TestUnavailableProblemHidesTheStoreError(t *testing.T) {
	var logged bytes.Buffer
	a := &API{log: slog.New(slog.NewTextHandler(&logged, nil))}
	err := fmt.Errorf("client c1: %w: %w", admin.ErrUnavailable,
		errors.New("failed to connect to `host=db-7.internal user=tokengate`: dial tcp 10.0.3.7:5432: connection refused"))
	w := httptest.NewRecorder()
	a.fail(w, err)
	var p Problem
	if e := json.Unmarshal(w.Body.Bytes(), &p); e != nil {
		t.Fatal(e)
	}
	if w.Code != 503 || p.Code != admin.CodeUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("answer: %d %+v", w.Code, p)
	}
	for _, leak := range []string{"db-7", "10.0.3.7", "tokengate", "c1"} {
		if strings.Contains(w.Body.String(), leak) {
			t.Errorf("the problem shows %q: %s", leak, w.Body.String())
		}
	}
	if !strings.Contains(logged.String(), "db-7.internal") {
		t.Errorf("the log lost the detail: %s", logged.String())
	}
}
