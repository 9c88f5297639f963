// Package token mints and checks tokengate's access and refresh tokens:
// opaque tokens (random values with an HMAC tag, stored only as a hash) and
// RFC 9068 JWT access tokens signed with ES256, RS256 or EdDSA.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// Opaque token prefixes.
const (
	PrefixAccess  = "tga_"
	PrefixRefresh = "tgr_"
)

const (
	// opaqueTimeLen bytes of issue time (UNIX milliseconds, big-endian)
	// lead the token body, so storage IDs sort by issue time: a store's
	// B-tree then appends new tokens instead of rewriting a random page per
	// token on every commit. The randomness is the opaqueRandLen bytes after.
	opaqueTimeLen = 6
	opaqueRandLen = 32
	opaqueTagLen  = 16
	prefixLen     = 4
	opaqueRawLen  = opaqueTimeLen + opaqueRandLen + opaqueTagLen
	// 54 bytes is a multiple of 3, so the unpadded base64url body has no
	// spare bits: each token has exactly one valid spelling.
	opaqueBodyLen = opaqueRawLen / 3 * 4
	hashIDLen     = (sha256.Size*8 + 5) / 6
	timeIDLen     = 2 * opaqueTimeLen
)

// OpaqueLen is the length of every opaque token value (76).
const OpaqueLen = prefixLen + opaqueBodyLen

// MinOpaqueKeyLen is the shortest key NewOpaque accepts.
const MinOpaqueKeyLen = 16

// ErrUnknownKind is returned by Mint for a kind other than access or refresh.
var ErrUnknownKind = errors.New("token: unknown token kind")

// Opaque mints and checks opaque tokens: prefix + base64url(6-byte issue
// time || 32 random bytes || first 16 bytes of HMAC-SHA256(key, prefix ||
// time || random bytes)), no padding. Prefixes: "tga_" access tokens,
// "tgr_" refresh tokens.
//
// The tag lets Check reject forged or garbage tokens without a store read;
// it is not what makes a token valid (the stored record is). Opaque is safe
// for concurrent use.
type Opaque struct {
	pool sync.Pool // of *opaqueMAC
}

// opaqueMAC is a keyed HMAC with scratch space: passing a stack buffer to
// hash.Hash.Write would move it to the heap on every call.
type opaqueMAC struct {
	h   hash.Hash
	in  [prefixLen + opaqueTimeLen + opaqueRandLen]byte
	sum [sha256.Size]byte
}

// NewOpaque returns an Opaque keyed with key (32 random bytes are
// recommended; the key is copied). It panics if key is shorter than
// MinOpaqueKeyLen bytes, since such a key is a configuration error.
func NewOpaque(key []byte) *Opaque {
	if len(key) < MinOpaqueKeyLen {
		panic("token: opaque token key too short")
	}
	k := append([]byte(nil), key...)
	o := &Opaque{}
	o.pool.New = func() any { return &opaqueMAC{h: hmac.New(sha256.New, k)} }
	return o
}

func prefixOf(kind oauth.TokenKind) string {
	switch kind {
	case oauth.KindAccess:
		return PrefixAccess
	case oauth.KindRefresh:
		return PrefixRefresh
	}
	return ""
}

func kindOf(value string) (oauth.TokenKind, bool) {
	switch {
	case strings.HasPrefix(value, PrefixAccess):
		return oauth.KindAccess, true
	case strings.HasPrefix(value, PrefixRefresh):
		return oauth.KindRefresh, true
	}
	return "", false
}

// tag appends the truncated HMAC of prefix || body to dst, where body is
// the token's time and random bytes.
func (o *Opaque) tag(dst []byte, prefix string, body []byte) []byte {
	m := o.pool.Get().(*opaqueMAC)
	copy(m.in[:], prefix)
	copy(m.in[prefixLen:], body)
	m.h.Reset()
	m.h.Write(m.in[:])
	dst = append(dst, m.h.Sum(m.sum[:0])[:opaqueTagLen]...)
	o.pool.Put(m)
	return dst
}

// Mint returns a new token value of the given kind and its storage ID. The
// ID is the issue time in hex followed by base64url(SHA-256(value)): the
// only thing ever stored.
func (o *Opaque) Mint(kind oauth.TokenKind) (value, id string, err error) {
	var random [opaqueRandLen]byte
	if _, err := rand.Read(random[:]); err != nil {
		return "", "", err
	}
	return o.mint(kind, uint64(time.Now().UnixMilli()), &random)
}

// mint builds the token for the given time and random part (fixed in fuzz
// tests).
func (o *Opaque) mint(kind oauth.TokenKind, ms uint64, random *[opaqueRandLen]byte) (value, id string, err error) {
	prefix := prefixOf(kind)
	if prefix == "" {
		return "", "", ErrUnknownKind
	}
	var raw [opaqueRawLen]byte
	for i := range opaqueTimeLen {
		raw[i] = byte(ms >> (8 * (opaqueTimeLen - 1 - i)))
	}
	copy(raw[opaqueTimeLen:], random[:])
	o.tag(raw[:opaqueTimeLen+opaqueRandLen], prefix, raw[:opaqueTimeLen+opaqueRandLen])
	var buf [OpaqueLen]byte
	copy(buf[:], prefix)
	base64.RawURLEncoding.Encode(buf[prefixLen:], raw[:])
	return string(buf[:]), idOf(raw[:opaqueTimeLen], buf[:]), nil
}

// Check reports whether value is a token this Opaque minted, without any
// store read: it rejects a wrong prefix, wrong length, bad base64, or a tag
// mismatch (compared in constant time). On success it returns the token's
// storage ID and kind.
func (o *Opaque) Check(value string) (id string, kind oauth.TokenKind, ok bool) {
	if len(value) != OpaqueLen {
		return "", "", false
	}
	kind, ok = kindOf(value)
	if !ok {
		return "", "", false
	}
	var raw [opaqueRawLen]byte
	var body [opaqueBodyLen]byte
	copy(body[:], value[prefixLen:])
	// The base64 decoder skips '\r' and '\n'; with the length fixed above,
	// any skipped byte shows up as a short decode.
	n, err := base64.RawURLEncoding.Decode(raw[:], body[:])
	if err != nil || n != len(raw) {
		return "", "", false
	}
	var want [opaqueTagLen]byte
	o.tag(want[:0], value[:prefixLen], raw[:opaqueTimeLen+opaqueRandLen])
	if !hmac.Equal(want[:], raw[opaqueTimeLen+opaqueRandLen:]) {
		return "", "", false
	}
	var v [OpaqueLen]byte
	copy(v[:], value)
	return idOf(raw[:opaqueTimeLen], v[:]), kind, true
}

// ID computes the storage ID of a token value: for a value shaped like an
// opaque token, the issue time in hex followed by base64url(SHA-256(value));
// for anything else the hash alone. It does not check the tag.
func ID(value string) string {
	var ts []byte
	var raw [opaqueTimeLen]byte
	if len(value) == OpaqueLen && LooksOpaque(value) {
		// The first 8 characters of the body are exactly the time bytes.
		if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(value[prefixLen:prefixLen+8])); err == nil && n == opaqueTimeLen {
			ts = raw[:]
		}
	}
	// Copying a token-sized value to the stack saves the heap copy a
	// string-to-slice conversion would make.
	if len(value) <= 2*OpaqueLen {
		var b [2 * OpaqueLen]byte
		return idOf(ts, b[:copy(b[:], value)])
	}
	return idOf(ts, []byte(value))
}

// idOf is hex(ts) followed by base64url(SHA-256(value)).
func idOf(ts, value []byte) string {
	sum := sha256.Sum256(value)
	var out [timeIDLen + hashIDLen]byte
	n := hex.Encode(out[:], ts)
	base64.RawURLEncoding.Encode(out[n:], sum[:])
	return string(out[:n+hashIDLen])
}

// LooksOpaque reports whether value has an opaque token prefix. It is a
// cheap test to route introspection between opaque tokens and JWTs; it does
// not check the token.
func LooksOpaque(value string) bool {
	_, ok := kindOf(value)
	return ok
}
