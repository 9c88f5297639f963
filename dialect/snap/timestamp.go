package snap

import (
	"errors"
	"time"
)

// timestampLayout is SNAP's X-TIMESTAMP format (ISO 8601 with a numeric
// offset), as in "2024-12-31T10:11:40+07:00".
const timestampLayout = "2006-01-02T15:04:05-07:00"

// maxTimestampLen bounds X-TIMESTAMP before parsing: 19 characters of date
// and time, a dot and nine digits, six of offset.
const maxTimestampLen = len("2006-01-02T15:04:05.123456789+07:00")

// Timestamp formats t the way SNAP expects X-TIMESTAMP, with whole seconds
// and t's own offset: "2024-12-31T10:11:40+07:00" (UTC gives "+00:00").
func Timestamp(t time.Time) string {
	return t.Format(timestampLayout)
}

// ParseTimestamp parses an X-TIMESTAMP value: ISO 8601 date and time with
// an offset ("+07:00") or "Z", with or without fractional seconds, for
// example "2024-12-31T10:11:40+07:00" or "2026-11-23T05:39:09.359Z".
func ParseTimestamp(s string) (time.Time, error) {
	// time.RFC3339 alone would also accept a lower-case 't' or 'z'; SNAP's
	// format is the upper-case profile of RFC 3339 only.
	if len(s) < len("2006-01-02T15:04:05Z") || len(s) > maxTimestampLen || s[10] != 'T' {
		return time.Time{}, errBadTimestamp
	}
	if last := s[len(s)-1]; last != 'Z' && (last < '0' || last > '9') {
		return time.Time{}, errBadTimestamp
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errBadTimestamp
	}
	return t, nil
}

var errBadTimestamp = errors.New("snap: X-TIMESTAMP is not yyyy-MM-ddTHH:mm:ss[.fff](Z|±hh:mm)")
