// Package dialect defines the seam between the token endpoint's wire
// formats and the issuance engine. A dialect turns one wire format into an
// oauth.TokenRequest and writes an oauth.TokenResponse or *oauth.Error back
// in that format; it knows nothing of storage and the engine knows nothing
// of it. A new dialect is one package providing a Factory, plus one line in
// the server's dialect table.
package dialect

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/oauth"
)

// Dialect is one wire format of the token endpoint. Implementations are
// safe for concurrent use.
type Dialect interface {
	// DecodeTokenRequest reads a token request. It returns an *oauth.Error
	// (never another error type) for anything the client got wrong.
	DecodeTokenRequest(r *http.Request) (*oauth.TokenRequest, *oauth.Error)
	// WriteToken writes a successful token response.
	WriteToken(w http.ResponseWriter, r *http.Request, resp *oauth.TokenResponse)
	// WriteError writes an error response in the dialect's own format.
	WriteError(w http.ResponseWriter, r *http.Request, e *oauth.Error)
}

// PolicyDefaulter is implemented by dialects whose wire contract implies
// endpoint defaults (SNAP BI's customary 900-second token lifetime). An
// endpoint's own configuration overrides them.
type PolicyDefaulter interface {
	PolicyDefaults() oauth.EndpointPolicy
}

// AuthMethoder is implemented by dialects that say which client
// authentication methods their requests can carry; the server's metadata
// lists the registered ones of its RFC 6749 endpoint.
type AuthMethoder interface {
	AuthMethods() []string
}

// SetRetryAfter sets Retry-After (RFC 9110 §10.2.3, whole seconds, rounded
// up) when e says how long to wait; every dialect's error writer calls it.
func SetRetryAfter(h http.Header, e *oauth.Error) {
	if e == nil || e.RetryAfter <= 0 {
		return
	}
	h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
}

// Deps is what the server lends a dialect.
type Deps struct {
	Now    func() time.Time
	Logger *slog.Logger
}

// Factory builds a dialect from an endpoint's options (as decoded from the
// configuration; see DecodeOptions) and the server's dependencies.
type Factory func(options map[string]any, deps Deps) (Dialect, error)

// DecodeOptions decodes an endpoint's options into a struct with yaml tags,
// rejecting unknown keys by name.
func DecodeOptions(options map[string]any, into any) error {
	if len(options) == 0 {
		return nil
	}
	raw, err := yaml.Marshal(options)
	if err != nil {
		return fmt.Errorf("options: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	return nil
}

// NoStore sets the RFC 6749 §5.1 cache headers every token response carries,
// whatever its dialect.
func NoStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}
