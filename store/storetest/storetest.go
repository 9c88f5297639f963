// Package storetest is the conformance suite every oauth.Store backend
// runs, in the manner of dex's storage/conformance: a backend's test file
// calls RunTests with a constructor and nothing else backend-specific is
// tested here.
//
// Conventions the suite checks (the oauth.Store contract leaves them open):
//
//   - Times round-trip to within a millisecond (backends may keep
//     microseconds or milliseconds); the zero time round-trips as zero. The
//     time zone of returned times is not checked.
//   - Durations round-trip exactly.
//   - A nil slice and an empty slice are equal (backends may return either).
//   - ListClients and ListUsers order by ID in byte order; the fixtures use
//     lowercase ASCII IDs, so any collation gives the same order.
//   - RevokeFamily("") revokes nothing, and RotateRefreshToken on a reused
//     token without a family revokes that token only.
//   - UseNonce and CreateTokensOnce judge nonce expiry by the clock the
//     store was opened with (it gets no "now"); RunTests gives each store
//     a fake clock and moves it to make nonces expire.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// RunTests runs the conformance suite. newStore must return a new, empty
// store each call (one per subtest) whose clock is now (the backend's
// clock option: nonce expiry is judged by it); RunTests closes the store
// when the subtest ends, so newStore should not. Resources the store lives
// in (a temporary directory, a database schema) can be cleaned up with
// t.Cleanup, which runs after the store is closed.
func RunTests(t *testing.T, newStore func(t *testing.T, now func() time.Time) oauth.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s oauth.Store, clk *clock)
	}{
		{"Clients", testClients},
		{"UpdateClient", testUpdateClient},
		{"UpdateClientConcurrent", testUpdateClientConcurrent},
		{"ClientPartnerIDs", testClientPartnerIDs},
		{"Users", testUsers},
		{"UpdateUser", testUpdateUser},
		{"UpdateUserConcurrent", testUpdateUserConcurrent},
		{"CreateTokens", testCreateTokens},
		{"CreateTokensAllOrNone", testCreateTokensAllOrNone},
		{"RotateRefreshToken", testRotate},
		{"RotateRefreshTokenInactive", testRotateInactive},
		{"RotateRefreshTokenReuse", testRotateReuse},
		{"RotateRefreshTokenReuseWithoutFamily", testRotateReuseWithoutFamily},
		{"RotateRefreshTokenReplacementConflict", testRotateReplacementConflict},
		{"RotateRefreshTokenGrace", testRotateGrace},
		{"RotateRefreshTokenGraceOver", testRotateGraceOver},
		{"RotateRefreshTokenGraceZero", testRotateGraceZero},
		{"RotateRefreshTokenGraceInactive", testRotateGraceInactive},
		{"RotateRefreshTokenCutByNotBefore", testRotateCutByNotBefore},
		{"RevokeToken", testRevokeToken},
		{"RevokeFamily", testRevokeFamily},
		{"UseNonce", testUseNonce},
		{"SigningKeys", testSigningKeys},
		{"Setting", testSetting},
		{"SettingConcurrent", testSettingConcurrent},
		{"Revision", testRevision},
		{"RewriteSecrets", testRewriteSecrets},
		{"RewriteSecretsFailure", testRewriteSecretsFailure},
		{"RewriteSecretsOfClients", testRewriteClientSecrets},
		{"DeleteExpired", testDeleteExpired},
		{"DeleteExpiredSigningKeys", testDeleteExpiredKeys},
		{"Counts", testCounts},
		{"NonceExpiresByStoreClock", testNonceExpiry},
		{"CreateTokensOnce", testCreateTokensOnce},
		{"CreateTokensOnceRace", testCreateTokensOnceRace},
		{"Ping", testPing},
		{"ConcurrentTokenTraffic", testConcurrentTokenTraffic},
		{"ConcurrentRotationRace", testConcurrentRotationRace},
		{"ConcurrentRotationGrace", testConcurrentRotationGrace},
		{"ConcurrentNonceRace", testConcurrentNonceRace},
		{"FeedEvents", testFeedEvents},
		{"FeedRotateReuse", testFeedRotateReuse},
		{"FeedCursors", testFeedCursors},
		{"FeedRetention", testFeedRetention},
		{"FeedRollback", testFeedRollback},
		{"FeedConcurrent", testFeedConcurrent},
		{"Accounts", testAccounts},
		{"UpdateAccount", testUpdateAccount},
		{"UpdateAccountConcurrent", testUpdateAccountConcurrent},
		{"CreateClients", testCreateClients},
		{"Audit", testAudit},
		{"AuditQueries", testAuditQueries},
		{"AuditWithWrites", testAuditWithWrites},
		{"AuditConcurrent", testAuditConcurrent},
		{"Backup", testBackup},
		{"Sessions", testSessions},
		{"SessionsExpire", testSessionsExpire},
		{"SessionsConcurrent", testSessionsConcurrent},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"IdempotencyExpired", testIdempotencyExpired},
		{"IdempotencyRewrite", testIdempotencyRewrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: baseTime()}
			s := newStore(t, clk.Now)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.run(t, s, clk)
		})
	}
}

// zone is a non-UTC zone for fixture times: a backend must store instants,
// whatever zone they were given in.
var zone = time.FixedZone("WIB", 7*60*60)

// clock is the fake clock a store under test reads (its Now is passed to
// newStore); a test moves it with Set instead of waiting.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// baseTime is "now" for a test: wall-clock time with a nanosecond part, in
// a non-UTC zone.
func baseTime() time.Time { return time.Now().In(zone) }

// newID returns a unique ID with a readable prefix.
func newID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// isErr fails the test unless errors.Is(err, want); want nil means success.
func isErr(t *testing.T, err, want error, format string, args ...any) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error: %v", fmt.Sprintf(format, args...), err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error = %v, want %v", fmt.Sprintf(format, args...), err, want)
	}
}

// noErr fails the test if err is not nil.
func noErr(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	isErr(t, err, nil, format, args...)
}

// sameTime reports whether a and b are the same instant to within a
// millisecond, and both or neither zero.
func sameTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	return a.Sub(b).Abs() < time.Millisecond
}

var timeType = reflect.TypeFor[time.Time]()

// diff lists the differences between want and got (pointers to the same
// struct type), field by field: times by sameTime, nil slices equal to
// empty ones, everything else exactly.
func diff(want, got any) []string {
	var out []string
	diffValue("", reflect.ValueOf(want), reflect.ValueOf(got), &out)
	return out
}

func diffValue(path string, w, g reflect.Value, out *[]string) {
	if w.Type() == timeType {
		wt, gt := w.Interface().(time.Time), g.Interface().(time.Time)
		if !sameTime(wt, gt) {
			*out = append(*out, fmt.Sprintf("%s: got %v, want %v", path, gt, wt))
		}
		return
	}
	switch w.Kind() {
	case reflect.Pointer:
		if w.IsNil() || g.IsNil() {
			if w.IsNil() != g.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: got %v, want %v", path, g, w))
			}
			return
		}
		diffValue(path, w.Elem(), g.Elem(), out)
	case reflect.Struct:
		for i := range w.NumField() {
			if f := w.Type().Field(i); f.IsExported() {
				diffValue(path+"."+f.Name, w.Field(i), g.Field(i), out)
			}
		}
	case reflect.Slice:
		if w.Len() != g.Len() {
			*out = append(*out, fmt.Sprintf("%s: got %v, want %v", path, g, w))
			return
		}
		for i := range w.Len() {
			diffValue(fmt.Sprintf("%s[%d]", path, i), w.Index(i), g.Index(i), out)
		}
	default:
		if !reflect.DeepEqual(w.Interface(), g.Interface()) {
			*out = append(*out, fmt.Sprintf("%s: got %#v, want %#v", path, g, w))
		}
	}
}

// checkEqual fails the test if got differs from want.
func checkEqual(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := diff(want, got); len(d) > 0 {
		t.Fatalf("%s differs from what was stored:\n  %s", what, strings.Join(d, "\n  "))
	}
}

// requireAllSet fails the test if a field of the struct v points to is
// zero, so that round-trip fixtures keep covering every field when the
// oauth types gain one. For a slice of structs, each field must be set in
// at least one element.
func requireAllSet(t *testing.T, v any) {
	t.Helper()
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f, fv := rv.Type().Field(i), rv.Field(i)
		if !f.IsExported() {
			continue
		}
		if fv.IsZero() || (fv.Kind() == reflect.Slice && fv.Len() == 0) {
			t.Fatalf("fixture %T leaves field %s zero; set it so the round trip covers it", v, f.Name)
		}
		if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
			et := fv.Type().Elem()
			for j := range et.NumField() {
				if !et.Field(j).IsExported() || et.Field(j).Tag.Get("json") == "-" {
					continue // json:"-": kept in memory only (SecretHash.Plain), never stored
				}
				set := false
				for k := range fv.Len() {
					set = set || !fv.Index(k).Field(j).IsZero()
				}
				if !set {
					t.Fatalf("fixture %T: no element of %s sets %s", v, f.Name, et.Field(j).Name)
				}
			}
		}
	}
}

// ids returns the IDs of clients, for ordering checks.
func clientIDs(cs []*oauth.Client) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func usernames(us []*oauth.User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Username)
	}
	return out
}

func getToken(t *testing.T, s oauth.Store, id string) *oauth.Token {
	t.Helper()
	tok, err := s.GetToken(t.Context(), id)
	noErr(t, err, "GetToken(%s)", id)
	return tok
}

func requireNoToken(t *testing.T, s oauth.Store, id, why string) {
	t.Helper()
	_, err := s.GetToken(t.Context(), id)
	isErr(t, err, oauth.ErrNotFound, "GetToken(%s) %s", id, why)
}

func requireRevoked(t *testing.T, s oauth.Store, id string, at time.Time) {
	t.Helper()
	tok := getToken(t, s, id)
	if tok.RevokedAt.IsZero() {
		t.Fatalf("token %s is not revoked", id)
	}
	if !at.IsZero() && !sameTime(tok.RevokedAt, at) {
		t.Fatalf("token %s RevokedAt = %v, want %v", id, tok.RevokedAt, at)
	}
}

func requireNotRevoked(t *testing.T, s oauth.Store, id string) {
	t.Helper()
	if tok := getToken(t, s, id); !tok.RevokedAt.IsZero() {
		t.Fatalf("token %s was revoked at %v; it should not be", id, tok.RevokedAt)
	}
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// run runs f(i) for i in [0, n) concurrently and waits for all.
func run(n int, f func(i int)) {
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			f(i)
		}()
	}
	for range n {
		<-done
	}
}

// ctxTimeout bounds a store call in concurrency tests so a deadlock fails
// the test instead of hanging it.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
