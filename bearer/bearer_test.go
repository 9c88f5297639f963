package bearer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestChallenge(t *testing.T) {
	for _, c := range []struct {
		e    *Error
		want string
	}{
		{Missing(), `Bearer realm="r"`},
		{InvalidRequest("bad header"), `Bearer realm="r", error="invalid_request", error_description="bad header"`},
		{InvalidToken(`expired "x"`), `Bearer realm="r", error="invalid_token", error_description="expired ?x?"`},
		{InsufficientScope("tokengate:admin"), `Bearer realm="r", error="insufficient_scope", ` +
			`error_description="the access token does not grant the scope this resource needs", scope="tokengate:admin"`},
		{Unavailable(), ""},
	} {
		if got := c.e.Challenge("r"); got != c.want {
			t.Errorf("%+v: Challenge = %q, want %q", c.e, got, c.want)
		}
		// Write sends the same challenge.
		w := httptest.NewRecorder()
		c.e.Write(w, "r")
		if got := w.Header().Get("WWW-Authenticate"); got != c.want || w.Code != c.e.Status {
			t.Errorf("%+v: Write sent %d with %q", c.e, w.Code, got)
		}
	}
	if got := Missing().Challenge("a\"b"); got != `Bearer realm="a?b"` {
		t.Errorf("realm quoting: %q", got)
	}
	w := httptest.NewRecorder()
	Unavailable().Write(w, "r")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Errorf("unavailable: %d %v", w.Code, w.Header())
	}
}
