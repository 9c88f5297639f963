package token

import (
	"encoding/hex"
	"time"

	"github.com/tokengate/tokengate/secret"
)

// jtiTimeLen is the hex length of the issue time a JTI starts with.
const jtiTimeLen = 2 * opaqueTimeLen

// NewJTI returns a JWT ID for a token issued at: the issue time in UNIX
// milliseconds (12 hex digits) followed by 128 random bits. The time makes
// stored JWT records sort by issue time, as opaque token IDs do, and gives
// the issue time more precisely than "iat" (whole seconds), so a
// "revoke everything before T" does not catch tokens issued later in the
// same second.
func NewJTI(at time.Time) string {
	ms := uint64(at.UnixMilli())
	var b [opaqueTimeLen]byte
	for i := range b {
		b[i] = byte(ms >> (8 * (opaqueTimeLen - 1 - i)))
	}
	return hex.EncodeToString(b[:]) + secret.NewID(16)
}

// JTITime returns the issue time NewJTI put in jti, if it has one and it
// lies within the second iat names (so a JTI can only refine "iat", never
// contradict it).
func JTITime(jti string, iat time.Time) (time.Time, bool) {
	if len(jti) <= jtiTimeLen {
		return time.Time{}, false
	}
	var b [opaqueTimeLen]byte
	if _, err := hex.Decode(b[:], []byte(jti[:jtiTimeLen])); err != nil {
		return time.Time{}, false
	}
	var ms uint64
	for _, c := range b {
		ms = ms<<8 | uint64(c)
	}
	at := time.UnixMilli(int64(ms)).UTC()
	if at.Before(iat) || !at.Before(iat.Add(time.Second)) {
		return time.Time{}, false
	}
	return at, true
}
