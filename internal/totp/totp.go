// Package totp implements time-based one-time passwords (RFC 6238) as
// authenticator apps use them: HMAC-SHA-1, 30-second steps, 6 digits,
// with the standard library only.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"hash"
	"net/url"
	"strconv"
	"time"
)

// Parameters of the codes this package makes and accepts.
const (
	Digits    = 6
	Period    = 30 // seconds per step
	Skew      = 1  // steps accepted either side of now (clock drift, typing time)
	SecretLen = 20 // bytes of a new secret: SHA-1's block-size recommendation (RFC 4226 §4)
)

// Step returns the RFC 6238 time step of t: whole Periods since the UNIX
// epoch (T0 = 0).
func Step(t time.Time) int64 { return t.Unix() / Period }

// HOTP is RFC 4226's HOTP value of counter under key with hash h, as a
// digits-long decimal string (with leading zeros). RFC 6238 is HOTP with
// the time step as counter.
func HOTP(h func() hash.Hash, key []byte, counter int64, digits int) string {
	mac := hmac.New(h, key)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(counter))
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f // dynamic truncation (RFC 4226 §5.3)
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	s := strconv.FormatUint(uint64(v%mod), 10)
	for len(s) < digits {
		s = "0" + s
	}
	return s
}

// Code returns the code of secret for step.
func Code(secret []byte, step int64) string { return HOTP(sha1.New, secret, step, Digits) }

// Verify reports whether code is secret's code for a step within Skew of
// now's and after lastStep (a code, once accepted, is not accepted again:
// RFC 6238 §5.2), and returns the step it matched. Every candidate step is
// computed and compared in constant time, so timing tells nothing about
// which step matched or how close a wrong code was. Anything but exactly
// Digits ASCII digits is refused.
func Verify(secret []byte, code string, now time.Time, lastStep int64) (step int64, ok bool) {
	if len(code) != Digits || len(secret) == 0 {
		return 0, false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, false
		}
	}
	cur := Step(now)
	for s := cur - Skew; s <= cur+Skew; s++ {
		match := subtle.ConstantTimeCompare([]byte(Code(secret, s)), []byte(code)) == 1
		if match && s > lastStep && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}

// NewSecret returns a new random secret of SecretLen bytes.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretLen)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// EncodeSecret is secret as authenticator apps take it typed in: base32
// (RFC 4648) without padding.
func EncodeSecret(secret []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
}

// URI is the otpauth:// URI (the de facto Key URI Format of Google
// Authenticator) that enrolls secret in an authenticator app, usually
// shown as a QR code: the label is "issuer:account".
func URI(issuer, account string, secret []byte) string {
	q := url.Values{}
	q.Set("secret", EncodeSecret(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", strconv.Itoa(Digits))
	q.Set("period", strconv.Itoa(Period))
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: q.Encode()}
	return u.String()
}
