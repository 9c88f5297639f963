package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tokengate/tokengate/internal/jsonx"
	"github.com/tokengate/tokengate/oauth"
)

// rsaKeyBits is the size of generated RSA keys, and the smallest accepted.
const rsaKeyBits = 2048

// ErrUnknownAlg is returned for an algorithm tokengate does not offer.
var ErrUnknownAlg = errors.New("token: unknown signing algorithm")

// GenerateKey makes a new current signing key for alg: ES256 (P-256),
// RS256 (RSA-2048) or EdDSA (Ed25519). PrivateKeyPEM is PKCS#8 PEM, ID is
// the key's RFC 7638 JWK thumbprint (SHA-256, base64url), CreatedAt is now.
func GenerateKey(alg string, now time.Time) (*oauth.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case oauth.AlgES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case oauth.AlgRS256:
		priv, err = rsa.GenerateKey(rand.Reader, rsaKeyBits)
	case oauth.AlgEdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, ErrUnknownAlg
	}
	if err != nil {
		return nil, fmt.Errorf("token: generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("token: encode %s key: %w", alg, err)
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return &oauth.SigningKey{
		ID:            kid,
		Alg:           alg,
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		CreatedAt:     now,
	}, nil
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("token: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// parsedKey is a SigningKey ready to sign and verify.
type parsedKey struct {
	id      string
	alg     string
	current bool
	created time.Time
	pub     crypto.PublicKey
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	rsa     *rsa.PrivateKey
	// header is base64url(protected header) + ".", the constant start of
	// every token this key signs.
	header string
}

// parseKey checks that k's PEM holds a PKCS#8 key of the type its Alg
// names. Errors name the key ID, never key material.
func parseKey(k *oauth.SigningKey) (*parsedKey, error) {
	if k == nil {
		return nil, errors.New("token: nil signing key")
	}
	if k.ID == "" {
		return nil, errors.New("token: signing key without an ID")
	}
	bad := func(why string) error { return fmt.Errorf("token: signing key %q (%s): %s", k.ID, k.Alg, why) }
	block, _ := pem.Decode(k.PrivateKeyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, bad("not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, bad("cannot parse PKCS#8 key")
	}
	pk := &parsedKey{id: k.ID, alg: k.Alg, current: k.Current(), created: k.CreatedAt}
	switch k.Alg {
	case oauth.AlgES256:
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, bad("not a P-256 key")
		}
		pk.ec, pk.pub = ec, &ec.PublicKey
	case oauth.AlgRS256:
		r, ok := key.(*rsa.PrivateKey)
		if !ok || r.N.BitLen() < rsaKeyBits {
			return nil, bad("not an RSA key of at least 2048 bits")
		}
		pk.rsa, pk.pub = r, &r.PublicKey
	case oauth.AlgEdDSA:
		ed, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, bad("not an Ed25519 key")
		}
		pk.ed, pk.pub = ed, ed.Public()
	default:
		return nil, bad("unknown algorithm")
	}
	h := appendMemberName([]byte{'{'}, "alg")
	h = jsonx.AppendString(h, k.Alg)
	h = appendStringMember(h, "kid", k.ID)
	h = appendStringMember(h, "typ", jwtType)
	h = append(h, '}')
	pk.header = base64.RawURLEncoding.EncodeToString(h) + "."
	return pk, nil
}

// sign returns the JWS signature of input (RFC 7518 §3): raw r||s for
// ES256, PKCS #1 v1.5 for RS256, Ed25519 for EdDSA.
func (k *parsedKey) sign(input []byte) ([]byte, error) {
	switch {
	case k.ec != nil:
		digest := sha256.Sum256(input)
		der, err := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
		if err != nil {
			return nil, err
		}
		return derToRawP256(der)
	case k.ed != nil:
		return ed25519.Sign(k.ed, input), nil
	case k.rsa != nil:
		digest := sha256.Sum256(input)
		return rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, digest[:])
	}
	return nil, ErrUnknownAlg
}

// derToRawP256 converts an ASN.1 ECDSA signature to the fixed 64-byte
// r||s form JWS uses.
func derToRawP256(der []byte) ([]byte, error) {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		len(r) > 32 || len(s) > 32 {
		return nil, errors.New("token: malformed ECDSA signature")
	}
	out := make([]byte, 64)
	copy(out[32-len(r):32], r)
	copy(out[64-len(s):], s)
	return out, nil
}
