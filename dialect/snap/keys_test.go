package snap

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestParsePublicKeyFormats(t *testing.T) {
	pub := &clientKey().PublicKey
	spki := spkiPEM(t, pub)
	for name, p := range map[string]string{
		"SPKI":                spki,
		"PKCS1":               pkcs1PEM(pub),
		"certificate":         certPEM(t, clientKey(), pub),
		"PKCS1 labelled SPKI": strings.ReplaceAll(pkcs1PEM(pub), "RSA PUBLIC KEY", "PUBLIC KEY"),
		"leading text":        "client key for normaltest\n" + spki,
		"certificate chain":   certPEM(t, clientKey(), pub) + certPEM(t, otherKey(), &otherKey().PublicKey),
		"CRLF line endings":   strings.ReplaceAll(spki, "\n", "\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParsePublicKey([]byte(p))
			if err != nil {
				t.Fatal(err)
			}
			if !k.Equal(pub) {
				t.Fatal("parsed a different key")
			}
			norm, err := NormalizePublicKey([]byte(p))
			if err != nil || norm != spki {
				t.Fatalf("NormalizePublicKey = %q, %v; want %q", norm, err, spki)
			}
		})
	}
}

func TestParsePublicKeyRefusals(t *testing.T) {
	ec := ecKey()
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(clientKey())
	for name, c := range map[string]struct {
		pem  string
		want string
	}{
		"1024-bit SPKI":        {spkiPEM(t, &weakKey().PublicKey), "snap: RSA key is 1024 bits; SNAP requires at least 2048"},
		"1024-bit PKCS1":       {pkcs1PEM(&weakKey().PublicKey), "snap: RSA key is 1024 bits; SNAP requires at least 2048"},
		"1024-bit certificate": {certPEM(t, weakKey(), &weakKey().PublicKey), "snap: RSA key is 1024 bits; SNAP requires at least 2048"},
		"EC SPKI":              {spkiPEM(t, &ec.PublicKey), "snap: key is ECDSA; SNAP requires RSA"},
		"EC certificate":       {certPEM(t, ec, &ec.PublicKey), "snap: key is ECDSA; SNAP requires RSA"},
		"Ed25519 SPKI":         {spkiPEM(t, edPub), "snap: key is Ed25519; SNAP requires RSA"},
		"Ed25519 certificate":  {certPEM(t, edPriv, edPub), "snap: key is Ed25519; SNAP requires RSA"},
		"private key":          {string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})), "never its private key"},
		"not PEM":              {"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "no PEM block"},
		"empty":                {"", "no PEM block"},
		"other block":          {string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}})), "unsupported PEM block"},
		"garbage SPKI":         {string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})), "parse PUBLIC KEY"},
		"garbage PKCS1":        {string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: []byte{1, 2, 3}})), "parse RSA PUBLIC KEY"},
		"garbage certificate":  {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})), "parse CERTIFICATE"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePublicKey([]byte(c.pem))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if _, err := NormalizePublicKey([]byte(c.pem)); err == nil {
				t.Fatal("NormalizePublicKey accepted it")
			}
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	k := clientKey()
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
	for name, p := range map[string][]byte{
		"PKCS1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}),
		"PKCS8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	} {
		got, err := ParsePrivateKey(p)
		if err != nil || !got.Equal(k) {
			t.Errorf("%s: %v", name, err)
		}
	}

	ec8, _ := x509.MarshalPKCS8PrivateKey(ecKey())
	weak8, _ := x509.MarshalPKCS8PrivateKey(weakKey())
	for name, c := range map[string]struct {
		pem  []byte
		want string
	}{
		"EC PKCS8":        {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ec8}), "key is ECDSA; SNAP requires RSA"},
		"1024-bit":        {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: weak8}), "RSA key is 1024 bits; SNAP requires at least 2048"},
		"encrypted PKCS8": {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted"},
		"encrypted PKCS1": {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), "encrypted"},
		"public key":      {[]byte(spkiPEM(t, &k.PublicKey)), "unsupported PEM block"},
		"not PEM":         {[]byte("hello"), "no PEM block"},
		"garbage PKCS1":   {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}), "parse RSA PRIVATE KEY"},
		"garbage PKCS8":   {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), "parse PRIVATE KEY"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePrivateKey(c.pem)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
