// Package kek encrypts tokengate's secrets at rest under a key-encryption
// key (KEK): AES-256-GCM with associated data naming the row a value
// belongs to, so a value copied to another row does not decrypt.
//
// A Keyring holds the current KEK, which seals, and older KEKs that are
// still accepted for opening while a rotation is under way. A sealed value
// (an envelope) is self-describing:
//
//	magic "tgk" | version 0x01 | KEK id (8 bytes) | nonce (12 bytes) | ciphertext and GCM tag
//
// The KEK id is a truncated SHA-256 of the KEK under a domain-separation
// label: it names the KEK without revealing it. The associated data given
// to GCM is the envelope's header (magic, version, KEK id) followed by the
// caller's associated data.
package kek

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the size of a KEK: 32 bytes, for AES-256.
const KeySize = 32

const (
	magicLen  = 4
	idLen     = 8
	nonceLen  = 12
	tagLen    = 16
	headerLen = magicLen + idLen
	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = headerLen + nonceLen + tagLen
)

// magic starts every envelope; its last byte is the format version.
var magic = [magicLen]byte{'t', 'g', 'k', 0x01}

// idLabel separates the KEK id's hash from any other use of the key.
const idLabel = "tokengate kek id v1\x00"

// Errors of Open. They never carry key material or plaintext.
var (
	// ErrNotSealed: the value is not an envelope (for example a value
	// stored in clear before encryption at rest).
	ErrNotSealed = errors.New("kek: value is not encrypted")
	// ErrUnknownKEK: the envelope names a KEK the keyring does not hold.
	ErrUnknownKEK = errors.New("kek: value is encrypted under a KEK that is not configured")
	// ErrDecrypt: the envelope does not authenticate: it was altered, or
	// it belongs to another row (other associated data).
	ErrDecrypt = errors.New("kek: value does not decrypt (altered, or moved from another row)")
)

type key struct {
	id   [idLen]byte
	aead cipher.AEAD
}

func newKey(k []byte) (*key, error) {
	if len(k) != KeySize {
		return nil, fmt.Errorf("kek: a KEK is %d bytes, got %d", KeySize, len(k))
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	return &key{id: keyID(k), aead: aead}, nil
}

func keyID(k []byte) [idLen]byte {
	h := sha256.New()
	h.Write([]byte(idLabel))
	h.Write(k)
	var id [idLen]byte
	copy(id[:], h.Sum(nil))
	return id
}

// ID returns the hex id of a KEK, as Keyring.ID and the errors name it. It
// reveals nothing about the key.
func ID(k []byte) string {
	id := keyID(k)
	return hex.EncodeToString(id[:])
}

// Keyring is a current KEK and the older KEKs still accepted for opening.
// It is immutable and safe for concurrent use.
type Keyring struct {
	current *key
	keys    map[[idLen]byte]*key
}

// New returns a keyring that seals with current and opens values sealed
// under current or any of old. Errors: a key that is not KeySize bytes.
func New(current []byte, old ...[]byte) (*Keyring, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, err
	}
	r := &Keyring{current: cur, keys: map[[idLen]byte]*key{cur.id: cur}}
	for _, o := range old {
		k, err := newKey(o)
		if err != nil {
			return nil, fmt.Errorf("old KEK: %w", err)
		}
		if _, dup := r.keys[k.id]; !dup {
			r.keys[k.id] = k
		}
	}
	return r, nil
}

// ID is the hex id of the current KEK.
func (r *Keyring) ID() string { return hex.EncodeToString(r.current.id[:]) }

// Seal encrypts plaintext under the current KEK, bound to ad (the name of
// the row the value is stored in, e.g. "setting:opaque_token_key"). The
// only error is a failure of the system's random source.
func (r *Keyring) Seal(ad string, plaintext []byte) ([]byte, error) {
	k := r.current
	out := make([]byte, headerLen+nonceLen, Overhead+len(plaintext))
	copy(out, magic[:])
	copy(out[magicLen:], k.id[:])
	nonce := out[headerLen : headerLen+nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("kek: random nonce: %w", err)
	}
	return k.aead.Seal(out, nonce, plaintext, aad(out[:headerLen], ad)), nil
}

// Open decrypts a value Seal returned for the same ad, under whichever
// KEK of the keyring sealed it. Errors: ErrNotSealed, ErrUnknownKEK (its
// message names the missing KEK's id), ErrDecrypt.
func (r *Keyring) Open(ad string, sealed []byte) ([]byte, error) {
	if !IsSealed(sealed) {
		return nil, ErrNotSealed
	}
	var id [idLen]byte
	copy(id[:], sealed[magicLen:headerLen])
	k, ok := r.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w (KEK id %x)", ErrUnknownKEK, id)
	}
	nonce := sealed[headerLen : headerLen+nonceLen]
	plain, err := k.aead.Open(nil, nonce, sealed[headerLen+nonceLen:], aad(sealed[:headerLen], ad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

// IsCurrent reports whether sealed is an envelope under the current KEK
// (it does not authenticate it).
func (r *Keyring) IsCurrent(sealed []byte) bool {
	return IsSealed(sealed) && bytes.Equal(sealed[magicLen:headerLen], r.current.id[:])
}

// IsSealed reports whether b has the shape of an envelope: the magic and
// version, and room for a KEK id, a nonce and a tag. It does not
// authenticate b.
func IsSealed(b []byte) bool {
	return len(b) >= Overhead && bytes.Equal(b[:magicLen], magic[:])
}

func aad(header []byte, ad string) []byte {
	out := make([]byte, 0, len(header)+len(ad))
	return append(append(out, header...), ad...)
}

// Generate returns a new random KEK.
func Generate() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("kek: generate: %w", err)
	}
	return k, nil
}
