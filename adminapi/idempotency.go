package adminapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

// IdempotencyStore keeps the responses of requests sent with an
// Idempotency-Key, across every node sharing the store (oauth.Store's
// methods of these names). Give the API the store whose recorded
// responses are sealed under the KEK (a *kek.Store): a recorded response
// of a create or a rotation holds the new secret.
type IdempotencyStore interface {
	ClaimIdempotency(ctx context.Context, r *oauth.IdempotencyRecord) (*oauth.IdempotencyRecord, error)
	CompleteIdempotency(ctx context.Context, key, claim string, status int, response []byte, expiresAt time.Time) error
	ReleaseIdempotency(ctx context.Context, key, claim string) error
}

// IdempotencyHeader names the request header carrying the key, and
// ReplayedHeader the response header ("true") of a replayed response.
const (
	IdempotencyHeader = "Idempotency-Key"
	ReplayedHeader    = "Idempotent-Replayed"
)

// Idempotency policy: a response is kept a day; a request still running is
// held this long at most (a node that crashed while running one leaves
// its record, which then stops blocking retries), and given at most
// idempotentTimeout to finish, well within it.
const (
	IdempotencyTTL    = 24 * time.Hour
	pendingTTL        = 2 * time.Minute
	idempotentTimeout = time.Minute
	maxIdempotencyKey = 255
)

// idempotencyKey returns the key of an Idempotency-Key header ("" when
// absent): an sf-string (quoted, as the IETF draft spells it) or the same
// text unquoted, 1 to 255 visible ASCII characters. Errors: *apiError.
func idempotencyKey(h http.Header) (string, error) {
	vs := h.Values(IdempotencyHeader)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", invalidField(IdempotencyHeader, "given more than once")
	}
	k := strings.TrimSpace(vs[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(k)-1; i++ {
			c := k[i]
			if c == '\\' && i+1 < len(k)-1 && (k[i+1] == '"' || k[i+1] == '\\') {
				i++
				c = k[i]
			} else if c == '"' || c == '\\' {
				return "", invalidField(IdempotencyHeader, "not a valid quoted string")
			}
			b.WriteByte(c)
		}
		k = b.String()
	}
	if k == "" || len(k) > maxIdempotencyKey {
		return "", invalidField(IdempotencyHeader, "must be 1 to 255 characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", invalidField(IdempotencyHeader, "must be printable ASCII")
		}
	}
	return k, nil
}

// storeKey is the record key of a caller's idempotency key: a hash of
// both, so every caller has keys of its own and the store keeps neither.
func storeKey(a admin.Actor, key string) string {
	h := sha256.New()
	for _, s := range []string{"tokengate admin API idempotency key", a.Kind, a.ID, key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fingerprint identifies a request: its method, path, query and body,
// byte for byte (a retry sends the same bytes). It is keyed (HMAC-SHA256
// under key): kept in the store in clear for a day, an unkeyed hash of a
// body holding a new password or client secrets would let anyone with a
// copy of the database test guesses of them at SHA-256 speed.
func fingerprint(key []byte, r *http.Request, body string) []byte {
	h := hmac.New(sha256.New, key)
	for _, s := range []string{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// recorded is a response as it is kept (and sealed) for replays.
type recorded struct {
	ContentType string `json:"content_type,omitempty"`
	Location    string `json:"location,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// idempotent runs a route's call at most once per caller and
// Idempotency-Key (see the README's "Idempotency"): the first request with
// a key claims it in the store and runs; a retry with the same key and
// the same request gets the first one's 2xx response again, from any
// node; a retry while the first still runs gets 409 with Retry-After; the
// same key with another request gets 422. Only 2xx responses are kept:
// after an error nothing was done, so the key is released and a retry
// runs again. Without the header the call simply runs.
func (a *API) idempotent(c *call, run func(*call) (*reply, error)) (*reply, error) {
	key, err := idempotencyKey(c.r.Header)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return run(c)
	}
	now := a.now()
	rec := &oauth.IdempotencyRecord{
		Key: storeKey(c.actor, key), Fingerprint: fingerprint(a.fpKey, c.r, c.body), Claim: randomClaim(),
		CreatedAt: now, ExpiresAt: now.Add(pendingTTL),
	}
	prev, err := a.idem.ClaimIdempotency(c.ctx, rec)
	if err != nil {
		return nil, storeProblem("idempotency record", err)
	}
	if prev != nil {
		return a.replay(prev, rec)
	}
	ctx, cancel := context.WithTimeout(c.ctx, idempotentTimeout)
	defer cancel()
	inner := *c
	inner.ctx = ctx
	rep, err := run(&inner)
	// The record is settled even when the caller went away: a retry is
	// what it is for.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
	defer scancel()
	if err != nil || rep.status < 200 || rep.status > 299 {
		if rerr := a.idem.ReleaseIdempotency(sctx, rec.Key, rec.Claim); rerr != nil {
			a.log.Warn("admin API: an idempotency record could not be released; a retry waits for it to expire",
				"err", rerr, "expires_in", pendingTTL)
		}
		return rep, err
	}
	b, err := encodeJSON(rep.body)
	if err != nil {
		return nil, err
	}
	resp, _ := json.Marshal(recorded{ContentType: rep.contentType(), Location: rep.location, Body: b})
	if cerr := a.idem.CompleteIdempotency(sctx, rec.Key, rec.Claim, rep.status, resp, a.now().Add(IdempotencyTTL)); cerr != nil {
		// The request was done: its caller gets the response now, and a
		// retry after the pending record expires would do it again.
		a.log.Warn("admin API: the response to an idempotent request could not be recorded; a retry after the pending record expires would run it again",
			"err", cerr, "expires_in", pendingTTL)
	}
	rep.encoded = b
	return rep, nil
}

// replay answers a request whose key prev holds.
func (a *API) replay(prev, rec *oauth.IdempotencyRecord) (*reply, error) {
	if subtle.ConstantTimeCompare(prev.Fingerprint, rec.Fingerprint) != 1 {
		return nil, &apiError{code: CodeIdempotencyKeyReused,
			detail: "this Idempotency-Key was used for another request (method, path or body); use a new key for a new request",
			fields: []FieldError{{Field: IdempotencyHeader, Message: "already used for another request"}}}
	}
	if prev.Status == 0 {
		return nil, &apiError{code: CodeIdempotencyInProgress, retryAfter: time.Second,
			detail: "a request with this Idempotency-Key is still being processed; retry shortly to get its response"}
	}
	var r recorded
	if err := json.Unmarshal(prev.Response, &r); err != nil {
		return nil, errors.New("a recorded response does not decode")
	}
	return &reply{status: prev.Status, location: r.Location, ctype: r.ContentType, encoded: r.Body, replayed: true}, nil
}

func randomClaim() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
