// Package tlspolicy is the TLS policy of tokengate's listeners (the public
// one and the admin API's) and clients, in one place.
package tlspolicy

import (
	"crypto/tls"
	"net"
)

// Loopback reports whether host (a name or an IP, without a port) is this
// machine: "localhost" or a loopback address, the only places plain HTTP
// may go without a warning or an explicit opt-in.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server is a listener's TLS policy: TLS 1.2 or later; for 1.2 only ECDHE
// key exchange (forward secrecy) with AEAD ciphers, AES-GCM or
// ChaCha20-Poly1305, so no CBC, RC4, 3DES or static RSA key exchange.
// TLS 1.3's suites are all AEAD and not configurable in Go. HTTP/2 and
// HTTP/1.1 are offered by ALPN. Only GetCertificate is set: with
// Certificates set, crypto/tls would skip it for clients that send no
// server name.
func Server(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, // required by HTTP/2 (RFC 9113 §9.2.2)
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
