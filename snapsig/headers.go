package snapsig

import (
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/tokengate/tokengate/bearer"
	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/oauth"
)

// Header names of a service call, spelled as SNAP documents them (HTTP
// header names are case-insensitive; FieldError.Field uses these).
const (
	HeaderAuthorization = "Authorization"
	HeaderTimestamp     = "X-TIMESTAMP"
	HeaderSignature     = "X-SIGNATURE"
	HeaderPartnerID     = "X-PARTNER-ID"
	HeaderExternalID    = "X-EXTERNAL-ID"
	HeaderChannelID     = "CHANNEL-ID"
	HeaderDeviceID      = "X-DEVICE-ID"
	HeaderOrigin        = "ORIGIN"
)

// Limits of the header values ParseHeaders accepts.
const (
	// MaxPartnerIDLen and MaxExternalIDLen are SNAP's String(36).
	MaxPartnerIDLen  = 36
	MaxExternalIDLen = 36
	// ChannelIDLen is CHANNEL-ID's fixed length; providers that state a
	// format say five digits (Midtrans, Durianpay; DANA's SDK sends 95221).
	ChannelIDLen = 5
	// MaxDeviceIDLen and MaxOriginLen bound the optional headers.
	MaxDeviceIDLen = 400
	MaxOriginLen   = 400
	// MaxAccessTokenLen bounds the bearer token (opaque tokens and JWTs
	// tokengate issues are far shorter).
	MaxAccessTokenLen = 4096
)

// Headers are a service call's SNAP headers, parsed and checked for
// presence and format (not for validity against a client).
type Headers struct {
	// AccessToken is the token of "Authorization: Bearer <token>"; "" when
	// the header is absent (or, when no token is needed, not a well-formed
	// Bearer credential).
	AccessToken string
	Timestamp   string    // X-TIMESTAMP as sent: it is signed as text
	Time        time.Time // X-TIMESTAMP parsed
	Signature   string    // X-SIGNATURE, standard Base64 (see DecodeSignature)
	PartnerID   string
	ExternalID  string
	ChannelID   string
	DeviceID    string // optional, "" when absent
	Origin      string // optional, "" when absent
}

// FieldError names the header that is missing (Missing: SNAP's "Invalid
// Mandatory Field {Field}") or malformed ("Invalid Field Format {Field}").
// It never carries the header's value.
type FieldError struct {
	Field   string
	Missing bool
}

func (e *FieldError) Error() string {
	if e.Missing {
		return "snapsig: missing header " + e.Field
	}
	return "snapsig: malformed header " + e.Field
}

// ParseHeaders reads and checks a service call's headers, in this order:
//
//   - Authorization, when needToken: "Bearer <token>" (scheme in any case,
//     token of RFC 6750 b64token characters, at most MaxAccessTokenLen);
//     absent is Missing, another scheme or an empty token malformed. When
//     needToken is false it never fails the call, and AccessToken is set
//     only from a well-formed Bearer credential.
//   - X-TIMESTAMP: ISO 8601 date and time with an offset or "Z" and
//     optional fractional seconds, as the token endpoint accepts
//     (dialect/snap.ParseTimestamp).
//   - X-SIGNATURE: standard Base64, at most MaxSignatureLen characters.
//   - X-PARTNER-ID, X-EXTERNAL-ID: 1 to 36 visible ASCII characters
//     (0x21-0x7E).
//   - CHANNEL-ID: exactly five ASCII digits.
//   - X-DEVICE-ID, ORIGIN: optional; printable ASCII (spaces allowed), at
//     most MaxDeviceIDLen and MaxOriginLen.
//
// A mandatory header that is absent or blank is Missing. A header sent more
// than once is malformed, as is one with control or non-ASCII characters.
// Surrounding spaces and tabs are removed first, as HTTP does. h's keys
// must be canonical (as net/http and Header.Set and Add make them).
func ParseHeaders(h http.Header, needToken bool) (Headers, *FieldError) {
	var out Headers
	var e *FieldError

	if needToken {
		auth, fe := mandatory(h, HeaderAuthorization)
		if fe != nil {
			return Headers{}, fe
		}
		if out.AccessToken = bearerToken(auth); out.AccessToken == "" {
			return Headers{}, malformed(HeaderAuthorization)
		}
	} else if vs := values(h, HeaderAuthorization); len(vs) == 1 {
		out.AccessToken = bearerToken(trimOWS(vs[0]))
	}

	if out.Timestamp, e = mandatory(h, HeaderTimestamp); e != nil {
		return Headers{}, e
	}
	t, err := snap.ParseTimestamp(out.Timestamp)
	if err != nil {
		return Headers{}, malformed(HeaderTimestamp)
	}
	out.Time = t

	if out.Signature, e = mandatory(h, HeaderSignature); e != nil {
		return Headers{}, e
	}
	if _, ok := DecodeSignature(out.Signature); !ok {
		return Headers{}, malformed(HeaderSignature)
	}

	if out.PartnerID, e = mandatory(h, HeaderPartnerID); e != nil {
		return Headers{}, e
	}
	if !visible(out.PartnerID, MaxPartnerIDLen) {
		return Headers{}, malformed(HeaderPartnerID)
	}

	if out.ExternalID, e = mandatory(h, HeaderExternalID); e != nil {
		return Headers{}, e
	}
	if !visible(out.ExternalID, MaxExternalIDLen) {
		return Headers{}, malformed(HeaderExternalID)
	}

	if out.ChannelID, e = mandatory(h, HeaderChannelID); e != nil {
		return Headers{}, e
	}
	if !ValidChannelID(out.ChannelID) {
		return Headers{}, malformed(HeaderChannelID)
	}

	if out.DeviceID, e = optional(h, HeaderDeviceID, MaxDeviceIDLen); e != nil {
		return Headers{}, e
	}
	if out.Origin, e = optional(h, HeaderOrigin, MaxOriginLen); e != nil {
		return Headers{}, e
	}
	return out, nil
}

// ValidChannelID reports whether s is a CHANNEL-ID ParseHeaders accepts:
// exactly ChannelIDLen ASCII digits.
func ValidChannelID(s string) bool {
	if len(s) != ChannelIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// ValidID reports whether s is an X-PARTNER-ID or X-EXTERNAL-ID that
// ParseHeaders accepts: 1 to 36 visible ASCII characters.
func ValidID(s string) bool { return visible(s, MaxExternalIDLen) }

func malformed(field string) *FieldError { return &FieldError{Field: field} }

// canonical maps the header names to their canonical keys in http.Header,
// computed once instead of on every lookup.
var canonical = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{HeaderAuthorization, HeaderTimestamp, HeaderSignature, HeaderPartnerID,
		HeaderExternalID, HeaderChannelID, HeaderDeviceID, HeaderOrigin} {
		m[n] = textproto.CanonicalMIMEHeaderKey(n)
	}
	return m
}()

func values(h http.Header, name string) []string { return h[canonical[name]] }

// mandatory returns the single value of a required header.
func mandatory(h http.Header, name string) (string, *FieldError) {
	vs := values(h, name)
	switch {
	case len(vs) > 1:
		return "", malformed(name)
	case len(vs) == 0 || trimOWS(vs[0]) == "":
		return "", &FieldError{Field: name, Missing: true}
	}
	return trimOWS(vs[0]), nil
}

// optional returns the value of an optional header, "" when absent or
// blank.
func optional(h http.Header, name string, max int) (string, *FieldError) {
	vs := values(h, name)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", malformed(name)
	}
	v := trimOWS(vs[0])
	if len(v) > max {
		return "", malformed(name)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", malformed(name)
		}
	}
	return v, nil
}

// trimOWS removes HTTP's optional whitespace (spaces and tabs) around a
// value; net/http already does for real requests.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// visible reports whether s is 1 to max characters of 0x21-0x7E.
func visible(s string, max int) bool {
	return s != "" && len(s) <= max && oauth.VisibleASCII(s)
}

// bearerToken returns the token of a "Bearer <token>" credential, or "" if auth
// is not one. The token must be RFC 6750's b64token: 1*( ALPHA / DIGIT /
// "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func bearerToken(auth string) string {
	const scheme = "bearer"
	if len(auth) <= len(scheme) || !strings.EqualFold(auth[:len(scheme)], scheme) || auth[len(scheme)] != ' ' {
		return ""
	}
	tok := strings.TrimLeft(auth[len(scheme):], " ")
	if len(tok) > MaxAccessTokenLen || !bearer.B64Token(tok) {
		return ""
	}
	return tok
}
