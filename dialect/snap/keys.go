package snap

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// MinRSABits is the smallest RSA modulus SNAP BI accepts.
const MinRSABits = 2048

// ParsePublicKey parses a client's RSA public key from PEM: "PUBLIC KEY"
// (SubjectPublicKeyInfo), "RSA PUBLIC KEY" (PKCS #1) or "CERTIFICATE"
// (X.509, whose key is used; its validity dates and issuer are not
// checked, the key is pinned). Only the first PEM block is read, so a
// certificate chain yields its leaf. Non-RSA keys and keys shorter than
// MinRSABits are refused.
func ParsePublicKey(pemBytes []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("snap: no PEM block found (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")
	}
	var pub any
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			// Some tools label PKCS #1 bytes "PUBLIC KEY"; accept them too.
			k1, err1 := x509.ParsePKCS1PublicKey(block.Bytes)
			if err1 != nil {
				return nil, fmt.Errorf("snap: parse PUBLIC KEY: %w", err)
			}
			k = k1
		}
		pub = k
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("snap: parse RSA PUBLIC KEY: %w", err)
		}
		pub = k
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("snap: parse CERTIFICATE: %w", err)
		}
		pub = cert.PublicKey
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("snap: got a %s; register the client's public key, never its private key", block.Type)
	default:
		return nil, fmt.Errorf("snap: unsupported PEM block %q (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	return checkRSA(pub)
}

// NormalizePublicKey parses pemBytes as ParsePublicKey does and returns the
// key as canonical SubjectPublicKeyInfo "PUBLIC KEY" PEM, the form to store
// in oauth.Client.PublicKeyPEM.
func NormalizePublicKey(pemBytes []byte) (string, error) {
	k, err := ParsePublicKey(pemBytes)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("snap: encode public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// ParsePrivateKey parses an RSA private key from PEM: "RSA PRIVATE KEY"
// (PKCS #1) or unencrypted "PRIVATE KEY" (PKCS #8). It is for the
// signing helper of the CLI and for tests; the server never holds a
// client's private key.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("snap: no PEM block found (expected RSA PRIVATE KEY or PRIVATE KEY)")
	}
	var priv any
	switch block.Type {
	case "RSA PRIVATE KEY":
		if _, encrypted := block.Headers["DEK-Info"]; encrypted {
			return nil, errors.New("snap: encrypted PEM keys are not supported; decrypt it first (openssl rsa -in key.pem -out plain.pem)")
		}
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("snap: parse RSA PRIVATE KEY: %w", err)
		}
		priv = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("snap: parse PRIVATE KEY: %w", err)
		}
		priv = k
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("snap: encrypted PKCS #8 keys are not supported; decrypt it first (openssl pkcs8 -in key.pem -out plain.pem)")
	default:
		return nil, fmt.Errorf("snap: unsupported PEM block %q (expected RSA PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
	k, ok := priv.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("snap: key is %s; SNAP requires RSA", keyKind(priv))
	}
	if _, err := checkRSA(&k.PublicKey); err != nil {
		return nil, err
	}
	return k, nil
}

func checkRSA(pub any) (*rsa.PublicKey, error) {
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("snap: key is %s; SNAP requires RSA", keyKind(pub))
	}
	if bits := k.N.BitLen(); bits < MinRSABits {
		return nil, fmt.Errorf("snap: RSA key is %d bits; SNAP requires at least %d", bits, MinRSABits)
	}
	return k, nil
}

func keyKind(k any) string {
	switch k.(type) {
	case *ecdsa.PublicKey, *ecdsa.PrivateKey:
		return "ECDSA"
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "Ed25519"
	case *rsa.PublicKey, *rsa.PrivateKey:
		return "RSA"
	default:
		return fmt.Sprintf("%T", k)
	}
}
