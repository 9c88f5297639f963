package oauth

import "time"

// IdempotencyRecord is the outcome of a request sent with an idempotency
// key (the admin API's Idempotency-Key header), kept so that a retry of
// the request is answered with the first response instead of being
// carried out again, on whichever node it lands.
type IdempotencyRecord struct {
	// Key identifies the caller and its key together (the admin API
	// stores a hash of both): at most MaxIdempotencyKeyLen bytes.
	Key string
	// Fingerprint identifies the request (a hash of its method, path and
	// body): a retry must carry the same one.
	Fingerprint []byte
	// Claim is a random value naming the attempt that holds the record
	// while its request runs; Complete and Release name it, so that an
	// attempt whose claim expired and was taken over cannot overwrite the
	// new one's.
	Claim string
	// Status is the response's HTTP status, 0 while the request runs (a
	// pending record).
	Status int
	// Response is the recorded response (headers and body, encoded by the
	// caller). It may hold a secret shown once (a new client secret), so
	// like a signing key it is opaque bytes to a store: the kek.Store
	// decorator seals it on every write and opens it on every read
	// (IdempotencySecret).
	Response []byte
	// CreatedAt is when the request was first received; ExpiresAt when
	// the record stops counting: soon for a pending record (so that one
	// left by a crashed node does not block retries for long), a day or
	// so for a completed one.
	CreatedAt, ExpiresAt time.Time
}

// MaxIdempotencyKeyLen bounds IdempotencyRecord.Key.
const MaxIdempotencyKeyLen = 128

// IdempotencySecret is the name RewriteSecrets gives the recorded
// response of the idempotency record key, and the associated data that
// binds its encrypted value to that key.
func IdempotencySecret(key string) string { return "idempotency:" + key }
