// Package snapsig holds the primitives of Bank Indonesia SNAP service-call
// signatures, shared by the merchant side (snapclient, the CLI) and the
// verifier: body minification and hashing, the string to sign of both
// variants, signing and verification, and parsing of the service-call
// headers.
//
// A service call carries
//
//	Authorization: Bearer <B2B access token>   (absent in "asymmetric without get token")
//	X-TIMESTAMP:   2024-12-31T10:11:40+07:00
//	X-SIGNATURE:   Base64 signature of the string to sign
//	X-PARTNER-ID, X-EXTERNAL-ID, CHANNEL-ID    (and optionally X-DEVICE-ID, ORIGIN)
//
// The string to sign is
//
//	symmetric:  METHOD:EndpointUrl:AccessToken:lower(hex(SHA-256(minify(body)))):X-TIMESTAMP
//	            signed with HMAC-SHA512 keyed by the client secret
//	asymmetric: METHOD:EndpointUrl:lower(hex(SHA-256(minify(body)))):X-TIMESTAMP
//	            signed with SHA256withRSA (RSASSA-PKCS1-v1_5) by the client's private key
//
// where EndpointUrl is the request path relative to the API base (see
// EndpointURL) and minify removes the whitespace outside JSON strings (see
// Minify). Nothing here keeps state or reads a clock: freshness, replay of
// X-EXTERNAL-ID and token checks belong to the verifier.
package snapsig
