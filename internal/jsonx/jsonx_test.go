package jsonx

import (
	"encoding/json"
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
