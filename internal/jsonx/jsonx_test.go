package jsonx

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "\"\\\b\f\n\r\t", "\x00\x1f", "\xc3", "a\xffb", "€", "\U0001F4B3", "\xed\xa0\x80", "\u2028\u2029", "<&>"} {
		var got, want string
		if err := json.Unmarshal(AppendString(nil, s), &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, AppendString(nil, s), err)
		}
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &want)
		if got != want {
			t.Errorf("%q decodes to %q, encoding/json gives %q", s, got, want)
		}
	}
}

func TestReadObject(t *testing.T) {
	m, err := ReadObject([]byte(`{"a":"x","b":{"c":1},"n":null}`))
	if err != nil || string(m["a"]) != `"x"` || string(m["b"]) != `{"c":1}` || !IsNull(m["n"]) {
		t.Fatalf("%v %v", m, err)
	}
	var dup *DuplicateKeyError
	if _, err := ReadObject([]byte(`{"a":1,"a":2}`)); !errors.As(err, &dup) || dup.Key != "a" {
		t.Errorf("duplicate: %v", err)
	}
	for _, bad := range []string{``, `[]`, `"s"`, `{"a":1} {}`, `{"a":1}x`, `{"a":}`, `{"a":1`} {
		if _, err := ReadObject([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzReadObject(f *testing.F) {
	for _, s := range []string{`{"grantType":"client_credentials","additionalInfo":{}}`, `{"a":1,"a":2}`, `[1]`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ReadObject(body)
		if err != nil {
			return
		}
		// What it accepts, encoding/json accepts too, with the same members.
		var std map[string]json.RawMessage
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("accepted %q that encoding/json rejects: %v", body, err)
		}
		if len(std) != len(m) {
			t.Fatalf("%q: %d members, encoding/json sees %d", body, len(m), len(std))
		}
	})
}
