package dialect

import (
	"net/http"
	"strings"
	"testing"
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
