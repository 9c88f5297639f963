package dialect

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func TestDecodeOptions(t *testing.T) {
	var o struct {
		CreatedAt bool   `yaml:"created_at"`
		TokenType string `yaml:"token_type"`
	}
	if err := DecodeOptions(map[string]any{"created_at": true, "token_type": "bearer"}, &o); err != nil {
		t.Fatal(err)
	}
	if !o.CreatedAt || o.TokenType != "bearer" {
		t.Errorf("decoded %+v", o)
	}
	err := DecodeOptions(map[string]any{"created_att": true}, &o)
	if err == nil || !strings.Contains(err.Error(), "created_att") {
		t.Errorf("unknown option: %v", err)
	}
	if err := DecodeOptions(nil, &o); err != nil {
		t.Errorf("no options: %v", err)
	}
}

func TestNoStore(t *testing.T) {
	h := http.Header{}
	NoStore(h)
	if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("headers %v", h)
	}
}

func TestSetRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		want string // "" for no header
	}{
		{0, ""},
		{-time.Second, ""},
		{time.Nanosecond, "1"},
		{999 * time.Millisecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{1500 * time.Millisecond, "2"},
		{2 * time.Second, "2"},
		{time.Hour, "3600"},
	} {
		h := http.Header{}
		SetRetryAfter(h, &oauth.Error{Code: oauth.CodeTemporarilyUnavail, RetryAfter: tt.wait})
		got, present := h["Retry-After"]
		if tt.want == "" && present || tt.want != "" && (len(got) != 1 || got[0] != tt.want) {
			t.Errorf("%v: Retry-After %q, want %q", tt.wait, got, tt.want)
		}
	}
	h := http.Header{}
	SetRetryAfter(h, nil)
	if len(h) != 0 {
		t.Errorf("nil error: %v", h)
	}
	// A value already set is replaced, not repeated.
	h = http.Header{"Retry-After": {"9"}}
	SetRetryAfter(h, &oauth.Error{RetryAfter: 3 * time.Second})
	if got := h["Retry-After"]; len(got) != 1 || got[0] != "3" {
		t.Errorf("replaced: %q", got)
	}
}
