package snap

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// MaxSignatureLen bounds X-SIGNATURE before decoding: Base64 of a
// 12288-bit signature. Real ones are 88 characters (HMAC-SHA512), 344
// (RSA 2048) or 684 (RSA 4096).
const MaxSignatureLen = 2048

// accessTokenStringToSign is what an access token request's X-SIGNATURE
// signs: client_id + "|" + X-TIMESTAMP, the header's exact text.
func accessTokenStringToSign(clientID, timestamp string) []byte {
	return []byte(clientID + "|" + timestamp)
}

// Sign returns X-SIGNATURE for an access token request: standard Base64 of
// SHA256withRSA (RSASSA-PKCS1-v1_5) over clientID + "|" + timestamp.
// timestamp must be sent byte for byte as X-TIMESTAMP.
func Sign(priv *rsa.PrivateKey, clientID, timestamp string) (string, error) {
	return SignPKCS1(priv, accessTokenStringToSign(clientID, timestamp))
}

// SignPKCS1 returns standard Base64 of SHA256withRSA (RSASSA-PKCS1-v1_5)
// over msg: how SNAP signs, an access token request as a service call.
// Errors: a nil key; RSA's.
func SignPKCS1(priv *rsa.PrivateKey, msg []byte) (string, error) {
	if priv == nil {
		return "", errors.New("snap: no private key")
	}
	digest := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// decodeSignature decodes X-SIGNATURE. Standard Base64 with padding is
// SNAP's format; unpadded input is tolerated because the decoded bytes,
// not the text, are what is verified and remembered against replay.
func decodeSignature(s string) ([]byte, bool) {
	if len(s) > MaxSignatureLen {
		return nil, false
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) > 0 {
		return b, true
	}
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil && len(b) > 0 {
		return b, true
	}
	return nil, false
}

// VerifyPKCS1 reports whether sig is a valid SHA256withRSA signature of msg.
func VerifyPKCS1(pub *rsa.PublicKey, msg, sig []byte) bool {
	digest := sha256.Sum256(msg)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
}

// replayKey is the nonce recorded for a signature. PKCS #1 v1.5
// signatures are deterministic, so this is also one per client and
// X-TIMESTAMP text: a client wanting two tokens in the same second must
// vary the timestamp (fractional seconds). The key starts with the
// timestamp (which the signature covers, so it adds no way to collide):
// keys then sort by time and the store appends them instead of writing a
// random page per request.
func replayKey(ts time.Time, sig []byte) string {
	sum := sha256.Sum256(sig)
	return fmt.Sprintf("snap:%013x:", ts.UnixMilli()) + base64.StdEncoding.EncodeToString(sum[:])
}
