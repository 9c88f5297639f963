// Package snapcall verifies SNAP BI service calls (create virtual account,
// QRIS, transfer, status, refund...): the headers, the timestamp window, the
// B2B access token, X-PARTNER-ID against the token's client, the signature
// (symmetric HMAC-SHA512 with the client secret, or asymmetric SHA256withRSA
// with the client's public key), the route's scopes, and X-EXTERNAL-ID
// once per partner per calendar day, durably and on every node. It knows no
// HTTP plumbing: the gateway and the verify endpoint hand it a call and a
// route, and it returns the caller's identity or the exact SNAP answer.
package snapcall

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/gateway"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secevent"
	"github.com/tokengate/tokengate/snapsig"
)

// Engine is what the verifier needs of the issuance engine.
type Engine interface {
	// AccessToken returns an honoured access token's record and client,
	// (nil, nil, nil) for anything else; an error when the store failed.
	AccessToken(ctx context.Context, value string) (*oauth.Token, *oauth.Client, error)
	// ClientByPartnerID returns the client of a SNAP partner ID.
	// Errors: oauth.ErrNotFound, the store's.
	ClientByPartnerID(ctx context.Context, partnerID string) (*oauth.Client, error)
}

// Nonces records one-time values durably on every node sharing the store
// (oauth.Store.UseNonce, group-committed).
type Nonces interface {
	UseNonce(ctx context.Context, key string, expiresAt time.Time) error
}

// Config is the verifier's policy.
type Config struct {
	// Window is how far X-TIMESTAMP may be from the clock, either way.
	Window time.Duration
	// Zone is the time zone whose calendar day an X-EXTERNAL-ID is unique
	// in (SNAP: "unique in the same day"); Asia/Jakarta by default.
	Zone   *time.Location
	Now    func() time.Time
	Events secevent.Recorder
}

// Verifier is the gateway.Verifier of `auth: snap` routes. It is safe for
// concurrent use.
type Verifier struct {
	cfg    Config
	engine Engine
	nonces Nonces
	keys   snap.KeyCache
}

var _ gateway.Verifier = (*Verifier)(nil)

// New returns a Verifier.
func New(engine Engine, nonces Nonces, cfg Config) *Verifier {
	if cfg.Window <= 0 {
		cfg.Window = 5 * time.Minute
	}
	if cfg.Zone == nil {
		cfg.Zone = jakarta()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Events == nil {
		cfg.Events = secevent.Discard
	}
	return &Verifier{cfg: cfg, engine: engine, nonces: nonces}
}

func jakarta() *time.Location {
	if z, err := time.LoadLocation("Asia/Jakarta"); err == nil {
		return z
	}
	return time.FixedZone("WIB", 7*3600) // Indonesia keeps no daylight saving
}

// Verify implements gateway.Verifier: the checks in the order a SNAP
// provider answers them, and only then X-EXTERNAL-ID, so a refused call
// spends nothing.
func (v *Verifier) Verify(ctx context.Context, c *gateway.Call, r *gateway.Route) (*gateway.Identity, gateway.Refusal) {
	svc := serviceCode(r, c.Path)
	needToken := r.Token != "none"
	h, fe := snapsig.ParseHeaders(c.Header, needToken)
	if fe != nil {
		if fe.Missing {
			return nil, answer(svc, caseMandatory, "{"+fe.Field+"}")
		}
		return nil, answer(svc, caseFormat, "{"+fe.Field+"}")
	}
	if len(c.Body) > 0 && !isJSON(c.Header.Get("Content-Type")) {
		return nil, answer(svc, caseFormat, "{Content-Type}")
	}
	now := v.cfg.Now()
	if h.Time.Before(now.Add(-v.cfg.Window)) || h.Time.After(now.Add(v.cfg.Window)) {
		v.event(ctx, secevent.SnapReplay, "", "X-TIMESTAMP outside the allowed window (an old call replayed?)")
		return nil, answer(svc, caseUnauthorized, "[X-TIMESTAMP]")
	}
	minified, err := snapsig.Minify(c.Body)
	if err != nil {
		return nil, answer(svc, caseFormat, "{body}")
	}
	bodyHash := snapsig.BodyHash(minified)
	if c.RawQuery != "" && !r.IncludeQuery {
		// The signature would not cover it, and the upstream would act on
		// it: a query nobody signed could be changed on the way.
		return nil, answer(svc, caseFormat, "{query}")
	}
	endpoint := snapsig.EndpointURL(c.Path, c.RawQuery, r.StripPrefix, r.IncludeQuery)

	var (
		tok *oauth.Token
		cl  *oauth.Client
	)
	if needToken {
		tok, cl, err = v.engine.AccessToken(ctx, h.AccessToken)
		if err != nil {
			return nil, storeFailed(svc)
		}
		if tok == nil {
			v.event(ctx, secevent.ClientAuthFailed, "", "invalid, expired or revoked B2B access token")
			return nil, answer(svc, caseInvalidToken, "")
		}
		if h.PartnerID != cl.EffectivePartnerID() {
			v.event(ctx, secevent.ClientAuthFailed, cl.ID, "X-PARTNER-ID is not the token's client")
			return nil, answer(svc, caseUnauthorized, "[X-PARTNER-ID]")
		}
	} else {
		cl, err = v.engine.ClientByPartnerID(ctx, h.PartnerID)
		switch {
		case errors.Is(err, oauth.ErrNotFound):
			v.event(ctx, secevent.ClientAuthFailed, "", "unknown X-PARTNER-ID")
			return nil, answer(svc, caseUnauthorized, "[Unknown partner]")
		case err != nil:
			return nil, storeFailed(svc)
		case cl.Disabled:
			v.event(ctx, secevent.ClientAuthFailed, cl.ID, "client disabled")
			return nil, answer(svc, caseUnauthorized, "[Client disabled]")
		}
	}
	if !v.signatureValid(r, cl, c.Method, endpoint, h, bodyHash, now) {
		v.event(ctx, secevent.SnapSignatureFailed, cl.ID, "service-call X-SIGNATURE did not verify")
		return nil, answer(svc, caseUnauthorized, "[Signature]")
	}
	id := &gateway.Identity{ClientID: cl.ID, PartnerID: cl.EffectivePartnerID(), Subject: cl.ID}
	if tok != nil {
		id.Subject, id.Scopes = tok.Subject, tok.Scopes
		for _, s := range r.Scopes {
			if !slices.Contains(tok.Scopes, s) {
				return nil, answer(svc, caseUnauthorized, "[Scope not allowed]")
			}
		}
	} else if len(r.Scopes) > 0 {
		// Without a token, the client's registered scopes stand in for it.
		for _, s := range r.Scopes {
			if !slices.Contains(cl.Scopes, s) {
				return nil, answer(svc, caseUnauthorized, "[Scope not allowed]")
			}
		}
		id.Scopes = r.Scopes
	}
	// A signature_once route spends the signature first: a call refused
	// for reusing its X-EXTERNAL-ID then leaves a signature spent that only
	// this very call (refused the same way again) could use.
	if r.SignatureOnce {
		key, expires := signatureKey(h.Signature, h.Time, v.cfg.Window)
		if err := v.nonces.UseNonce(ctx, key, expires); err != nil {
			if errors.Is(err, oauth.ErrAlreadyExists) {
				v.event(ctx, secevent.SnapReplay, cl.ID, "X-SIGNATURE used before")
				return nil, answer(svc, caseConflict, "")
			}
			return nil, storeFailed(svc)
		}
	}
	// Spent last, in the store's group-commit path: one write per call,
	// refused on every node the same day. The day is the one of the
	// signed X-TIMESTAMP, not of the clock: a call signed at 23:58 and
	// replayed byte for byte at 00:02 (inside the window) is a replay of
	// that day's call, not a new call of the next day.
	key, expires := externalIDKey(h.PartnerID, h.ExternalID, h.Time.In(v.cfg.Zone), v.cfg.Window)
	if err := v.nonces.UseNonce(ctx, key, expires); err != nil {
		if errors.Is(err, oauth.ErrAlreadyExists) {
			v.event(ctx, secevent.SnapReplay, cl.ID, "X-EXTERNAL-ID reused the same day")
			return nil, answer(svc, caseConflict, "")
		}
		return nil, storeFailed(svc)
	}
	return id, nil
}

// signatureKey is the nonce of a signature (signature_once routes): kept
// for twice the window after its timestamp, past any moment it could be
// accepted again; it starts with the time so the store appends it.
func signatureKey(signature string, ts time.Time, window time.Duration) (string, time.Time) {
	sum := sha256.Sum256([]byte(signature))
	return fmt.Sprintf("snaps:%013x:%s", ts.UnixMilli(), base64.RawURLEncoding.EncodeToString(sum[:])), ts.Add(2 * window)
}

// externalIDKey is the nonce that makes an X-EXTERNAL-ID unique per
// partner per calendar day (in the verifier's zone) of the call's
// X-TIMESTAMP. It starts with the day, so keys sort by time and the store
// appends them; it is kept until the day is over plus the timestamp
// window, the last moment a call stamped that day is accepted.
func externalIDKey(partner, externalID string, local time.Time, window time.Duration) (string, time.Time) {
	y, m, d := local.Date()
	next := time.Date(y, m, d+1, 0, 0, 0, 0, local.Location())
	return fmt.Sprintf("snapx:%04d%02d%02d:%d:%s:%s", y, m, d, len(partner), partner, externalID), next.Add(window)
}

// signatureValid checks X-SIGNATURE in the variants both the route and the
// client allow.
func (v *Verifier) signatureValid(r *gateway.Route, cl *oauth.Client, method, endpoint string, h snapsig.Headers, bodyHash string, now time.Time) bool {
	variant := r.Signature
	if variant == "" {
		variant = "symmetric"
	}
	if (variant == "symmetric" || variant == "either") && cl.SNAPSymmetric() && h.AccessToken != "" {
		s := snapsig.SymmetricString(method, endpoint, h.AccessToken, bodyHash, h.Timestamp)
		ok := false
		for _, secret := range cl.ServiceSecrets(now) {
			if snapsig.VerifySymmetric(secret, s, h.Signature) {
				ok = true
			}
		}
		if ok {
			return true
		}
	}
	if (variant == "asymmetric" || variant == "either") && cl.SNAPAsymmetric() && cl.PublicKeyPEM != "" {
		key, err := v.keys.Get(cl.PublicKeyPEM)
		if err == nil && snapsig.VerifyAsymmetric(key, snapsig.AsymmetricString(method, endpoint, bodyHash, h.Timestamp), h.Signature) {
			return true
		}
	}
	return false
}

// serviceCode is the SNAP service code of the route's answers for path.
func serviceCode(r *gateway.Route, path string) int {
	if c, ok := r.ServiceCodes[path]; ok {
		return c
	}
	return r.ServiceCode
}

// storeFailed answers a call that could not be checked (the store is
// unreachable or slow): SNAP has no 503 row; 504 "Timeout" tells the caller
// to retry, and nothing was spent.
func storeFailed(svc int) gateway.Refusal {
	return answer(svc, caseTimeout, "")
}

func (v *Verifier) event(ctx context.Context, t secevent.Type, clientID, reason string) {
	v.cfg.Events.Record(ctx, secevent.Event{Type: t, ClientID: clientID, Reason: reason})
}

// Failure implements gateway.Verifier: the gateway's own failures in
// SNAP's format.
func (v *Verifier) Failure(r *gateway.Route, path string, f gateway.Failure) gateway.Refusal {
	svc := serviceCode(r, path)
	switch f {
	case gateway.BodyTooLarge, gateway.BodyUnreadable, gateway.BadRequest:
		return answer(svc, caseBadRequest, "")
	case gateway.UpstreamTimeout, gateway.ReadersBusy:
		return answer(svc, caseTimeout, "")
	default:
		return answer(svc, caseExternalError, "")
	}
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}
