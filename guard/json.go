package guard

import (
	"encoding/json"
	"errors"
	"math"
	"time"
)

// audience is "aud": a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(data, &ss); err != nil {
		return err
	}
	*a = ss
	return nil
}

func (a audience) contains(s string) bool {
	for _, v := range a {
		if v == s {
			return true
		}
	}
	return false
}

// numericDate is RFC 7519's NumericDate (seconds since the epoch, maybe
// fractional) as UnixNano.
type numericDate int64

// maxNumericDate keeps the conversion to UnixNano in range (year 2262).
const maxNumericDate = math.MaxInt64 / int64(time.Second)

var errBadDate = errors.New("bad NumericDate")

func (d *numericDate) UnmarshalJSON(data []byte) error {
	// json.Number would also take a quoted number; a NumericDate is not one.
	if len(data) == 0 || data[0] == '"' {
		return errBadDate
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return err
	}
	if i, err := n.Int64(); err == nil {
		if i > maxNumericDate || i < -maxNumericDate {
			return errBadDate
		}
		*d = numericDate(i * int64(time.Second))
		return nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.Abs(f) >= float64(maxNumericDate) {
		return errBadDate
	}
	sec, frac := math.Modf(f)
	*d = numericDate(int64(sec)*int64(time.Second) + int64(frac*1e9))
	return nil
}

// claims are the claims of an RFC 9068 access token the guard reads.
type claims struct {
	Iss      string       `json:"iss"`
	Sub      string       `json:"sub"`
	Aud      audience     `json:"aud"`
	ClientID string       `json:"client_id"`
	Scope    string       `json:"scope"`
	Jti      string       `json:"jti"`
	Iat      *numericDate `json:"iat"`
	Exp      *numericDate `json:"exp"`
	Nbf      *numericDate `json:"nbf"`
}

// parseClaims parses a JWT payload. Only a JSON object with the claims of
// the right types is accepted.
func parseClaims(payload []byte) (*claims, error) {
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// introspection is an RFC 7662 §2.2 answer.
type introspection struct {
	Active    bool         `json:"active"`
	Scope     string       `json:"scope"`
	ClientID  string       `json:"client_id"`
	Username  string       `json:"username"`
	TokenType string       `json:"token_type"`
	Exp       *numericDate `json:"exp"`
	Iat       *numericDate `json:"iat"`
	Nbf       *numericDate `json:"nbf"`
	Sub       string       `json:"sub"`
	Aud       audience     `json:"aud"`
	Iss       string       `json:"iss"`
	Jti       string       `json:"jti"`
}

func parseIntrospection(body []byte) (*introspection, error) {
	var in introspection
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	return &in, nil
}
