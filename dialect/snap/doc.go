// Package snap implements Bank Indonesia's SNAP BI (Standar Nasional Open
// API Pembayaran) wire format of the token endpoint.
//
// It provides the B2B access token service (service code 73, see
// NewB2B): a JSON body {"grantType":"client_credentials"} authenticated by
// the X-CLIENT-KEY, X-TIMESTAMP and X-SIGNATURE headers, where X-SIGNATURE
// is SHA256withRSA (RSASSA-PKCS1-v1_5) over client_id + "|" + X-TIMESTAMP,
// verified with the public key registered for the client. The signatures
// of SNAP service calls (after the token) are not here: see package
// snapsig for their primitives and package snapcall for their
// verification.
//
//	codes.go          responseCode table, parametrised by service code
//	timestamp.go      X-TIMESTAMP parsing and formatting
//	keys.go           PEM key parsing and normalisation (used by the admin
//	                  service, for the keys merchants register, too)
//	signature.go      string-to-sign, signing, verification
//	authenticator.go  the snap_signature client authentication method and
//	                  its parsed-key cache (registered with the engine)
//	b2b.go            the B2B dialect itself
//
// Request bodies are read with the strict JSON reader every dialect shares
// (internal/jsonx).
//
// Every response, success or error, follows SNAP's rule that the HTTP
// status is the first three digits of responseCode.
package snap
