package token

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/tokengate/tokengate/internal/jsonx"
)

// appendClaims appends the JSON object of c. Empty strings and a zero iat
// are left out; one audience is a string, several are an array
// (RFC 7519 §4.1.3).
func appendClaims(b []byte, c *Claims) []byte {
	b = append(b, '{')
	b = appendStringMember(b, "iss", c.Issuer)
	b = appendStringMember(b, "sub", c.Subject)
	if len(c.Audience) == 1 {
		b = appendStringMember(b, "aud", c.Audience[0])
	} else if len(c.Audience) > 1 {
		b = appendMemberName(b, "aud")
		for i, a := range c.Audience {
			if i == 0 {
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			b = jsonx.AppendString(b, a)
		}
		b = append(b, ']')
	}
	b = appendStringMember(b, "client_id", c.ClientID)
	b = appendStringMember(b, "scope", c.Scope)
	b = appendStringMember(b, "jti", c.ID)
	if !c.IssuedAt.IsZero() {
		b = appendMemberName(b, "iat")
		b = strconv.AppendInt(b, c.IssuedAt.Unix(), 10)
	}
	b = appendMemberName(b, "exp")
	b = strconv.AppendInt(b, c.ExpiresAt.Unix(), 10)
	return append(b, '}')
}

// appendMemberName appends `"name":`, preceded by a comma unless it is the
// object's first member (b ends with '{').
func appendMemberName(b []byte, name string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendStringMember(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return jsonx.AppendString(appendMemberName(b, name), v)
}

// wireClaims is the JSON form of Claims for parsing.
type wireClaims struct {
	Iss      string       `json:"iss"`
	Sub      string       `json:"sub"`
	Aud      audience     `json:"aud"`
	ClientID string       `json:"client_id"`
	Scope    string       `json:"scope"`
	Jti      string       `json:"jti"`
	Iat      *numericDate `json:"iat"`
	Exp      *numericDate `json:"exp"`
}

// audience is "aud": a string or an array of strings.
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

// numericDate is RFC 7519's NumericDate: seconds since the epoch, possibly
// fractional. Parsed times are in UTC.
type numericDate time.Time

// maxNumericDate keeps float-to-int conversion well defined (year ~33658).
const maxNumericDate = 1e12

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
		*d = numericDate(time.Unix(i, 0).UTC())
		return nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxNumericDate {
		return errBadDate
	}
	sec, frac := math.Modf(f)
	*d = numericDate(time.Unix(int64(sec), int64(frac*1e9)).UTC())
	return nil
}
