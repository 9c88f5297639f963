package snapsig

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"sync"

	"github.com/tokengate/tokengate/dialect/snap"
)

// MaxSignatureLen bounds X-SIGNATURE before it is decoded (the token
// endpoint's bound).
const MaxSignatureLen = snap.MaxSignatureLen

// EndpointURL is the EndpointUrl of the string to sign: path without
// stripPrefix, plus "?" + rawQuery when includeQuery is set and rawQuery is
// not empty. path should be the request target's path as sent (in Go,
// r.URL.EscapedPath()), rawQuery as sent (r.URL.RawQuery, not re-encoded
// or sorted).
//
// stripPrefix is a mount prefix in front of the API base (e.g. "/nicepay")
// that clients do not sign. It is removed only on a segment boundary:
// "/nicepay" strips "/nicepay/v1.0/x" to "/v1.0/x" and "/nicepay" to "/",
// but leaves "/nicepayx/v1.0" alone. A trailing "/" on stripPrefix is
// ignored, so "/nicepay/" and "/nicepay" mean the same.
func EndpointURL(path, rawQuery, stripPrefix string, includeQuery bool) string {
	if p := strings.TrimRight(stripPrefix, "/"); p != "" && strings.HasPrefix(path, p) {
		switch rest := path[len(p):]; {
		case rest == "":
			path = "/"
		case rest[0] == '/':
			path = rest
		}
	}
	if includeQuery && rawQuery != "" {
		return path + "?" + rawQuery
	}
	return path
}

// SymmetricString is the string to sign of the symmetric variant:
// METHOD + ":" + EndpointUrl + ":" + AccessToken + ":" + bodyHash + ":" +
// X-TIMESTAMP, every part exactly as given.
func SymmetricString(method, endpointURL, accessToken, bodyHash, timestamp string) string {
	return method + ":" + endpointURL + ":" + accessToken + ":" + bodyHash + ":" + timestamp
}

// AsymmetricString is the string to sign of the asymmetric variant:
// METHOD + ":" + EndpointUrl + ":" + bodyHash + ":" + X-TIMESTAMP.
func AsymmetricString(method, endpointURL, bodyHash, timestamp string) string {
	return method + ":" + endpointURL + ":" + bodyHash + ":" + timestamp
}

// SignSymmetric returns X-SIGNATURE of the symmetric variant: standard
// Base64 (padded) of HMAC-SHA512 keyed by the client secret.
func SignSymmetric(clientSecret []byte, stringToSign string) string {
	mac := hmac.New(sha512.New, clientSecret)
	mac.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// VerifySymmetric reports whether signature is SignSymmetric(clientSecret,
// stringToSign), comparing the MACs in constant time. Unpadded Base64 is
// accepted; anything else that is not Base64 of 64 bytes is false.
func VerifySymmetric(clientSecret []byte, stringToSign, signature string) bool {
	var got [sha512.Size]byte
	if !decodeMAC(signature, &got) {
		return false
	}
	want := hmacSHA512(clientSecret, stringToSign)
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// decodeMAC decodes a signature that is Base64 of a 64-byte MAC into out,
// as DecodeSignature would, without allocating.
func decodeMAC(s string, out *[sha512.Size]byte) bool {
	var buf [sha512.Size + 2]byte // room for a padded encoding's slack
	if s == "" || len(s) > base64.StdEncoding.EncodedLen(sha512.Size) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isAlnum(c) || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if n, err := enc.Decode(buf[:], []byte(s)); err == nil && n == sha512.Size {
			copy(out[:], buf[:n])
			return true
		}
	}
	return false
}

// maxPooledMAC bounds the buffers kept for hmacSHA512: one grown by a rare
// long string to sign is dropped, not cleared whole on every later call.
const maxPooledMAC = 8 << 10

// macBuffers hold the inner and outer messages of hmacSHA512.
var macBuffers = sync.Pool{New: func() any { return new([]byte) }}

// hmacSHA512 is HMAC-SHA512 (RFC 2104) of msg under key. The gateway
// verifies a symmetric signature on every call; hmac.New would allocate
// two digests and their pads each time, this only borrows a buffer.
func hmacSHA512(key []byte, msg string) [sha512.Size]byte {
	var k [sha512.BlockSize]byte
	if len(key) > len(k) {
		sum := sha512.Sum512(key)
		copy(k[:], sum[:])
		clear(sum[:])
	} else {
		copy(k[:], key)
	}
	bp := macBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	// Room for both messages at once: an append that reallocated would
	// leave a copy of a pad behind, uncleared.
	if need := len(k) + max(len(msg), sha512.Size); cap(b) < need {
		b = make([]byte, 0, need)
	}
	for _, c := range k {
		b = append(b, c^0x36)
	}
	b = append(b, msg...)
	inner := sha512.Sum512(b)
	b = b[:0]
	for _, c := range k {
		b = append(b, c^0x5c)
	}
	b = append(b, inner[:]...)
	mac := sha512.Sum512(b)
	clear(b[:cap(b)]) // the pads are key material
	clear(k[:])
	if cap(b) <= maxPooledMAC {
		*bp = b
		macBuffers.Put(bp)
	}
	return mac
}

// SignAsymmetric returns X-SIGNATURE of the asymmetric variant: standard
// Base64 of SHA256withRSA (RSASSA-PKCS1-v1_5 over SHA-256). It returns an
// error for a nil key or when RSA signing fails.
func SignAsymmetric(priv *rsa.PrivateKey, stringToSign string) (string, error) {
	return snap.SignPKCS1(priv, []byte(stringToSign))
}

// VerifyAsymmetric reports whether signature is a valid SHA256withRSA
// signature of stringToSign by pub's private key. A nil key, or a
// signature that is not Base64, is false.
func VerifyAsymmetric(pub *rsa.PublicKey, stringToSign, signature string) bool {
	if pub == nil {
		return false
	}
	sig, ok := DecodeSignature(signature)
	return ok && snap.VerifyPKCS1(pub, []byte(stringToSign), sig)
}

// DecodeSignature decodes X-SIGNATURE: standard Base64, padded (SNAP's
// format) or not. It refuses the empty string, anything longer than
// MaxSignatureLen and any character outside the Base64 alphabet (the
// decoder alone would skip CR and LF).
func DecodeSignature(s string) ([]byte, bool) {
	if s == "" || len(s) > MaxSignatureLen {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isAlnum(c) || c == '+' || c == '/' || c == '=') {
			return nil, false
		}
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, true
	}
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, true
	}
	return nil, false
}

func isAlnum(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}
