// Package codec holds the encodings both SQL stores share, so a row
// written by one means the same as a row written by the other.
package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// secretJSON is a SecretHash as stored: the expiry in UNIX microseconds
// like every other time, not oauth.SecretHash's RFC 3339 text.
// Sealed is the recoverable secret as the caller gave it (encrypted by
// the kek.Store decorator): opaque bytes to the store. Plain is never
// encoded.
type secretJSON struct {
	Hash      []byte `json:"hash"`
	ExpiresAt *int64 `json:"expires_at,omitempty"`
	Sealed    []byte `json:"sealed,omitempty"`
}

// EncodeSecrets encodes a client's secret hashes (and sealed secrets) as
// JSON.
func EncodeSecrets(l []oauth.SecretHash) []byte {
	out := make([]secretJSON, len(l))
	for i, s := range l {
		out[i].Hash = s.Hash
		out[i].Sealed = s.Sealed
		if !s.ExpiresAt.IsZero() {
			us := s.ExpiresAt.UnixMicro()
			out[i].ExpiresAt = &us
		}
	}
	b, _ := json.Marshal(out) // cannot fail
	return b
}

// DecodeSecrets is EncodeSecrets' inverse.
func DecodeSecrets(b []byte) ([]oauth.SecretHash, error) {
	var in []secretJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("corrupt stored secrets: %w", err)
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]oauth.SecretHash, len(in))
	for i, v := range in {
		if len(v.Hash) > 0 {
			out[i].Hash = v.Hash
		}
		if len(v.Sealed) > 0 {
			out[i].Sealed = v.Sealed
		}
		if v.ExpiresAt != nil {
			out[i].ExpiresAt = time.UnixMicro(*v.ExpiresAt).UTC()
		}
	}
	return out, nil
}

// limitsJSON is AccountLimits as stored.
type limitsJSON struct {
	Grants     []string `json:"grants,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
	MaxClients int      `json:"max_clients,omitempty"`
	SNAPKeys   bool     `json:"snap_keys,omitempty"`
}

// EncodeLimits encodes an account's limits as JSON.
func EncodeLimits(l oauth.AccountLimits) []byte {
	b, _ := json.Marshal(limitsJSON(l)) // cannot fail
	return b
}

// DecodeLimits is EncodeLimits' inverse; empty lists decode as nil.
func DecodeLimits(b []byte) (oauth.AccountLimits, error) {
	var l limitsJSON
	if err := json.Unmarshal(b, &l); err != nil {
		return oauth.AccountLimits{}, fmt.Errorf("corrupt stored account limits: %w", err)
	}
	if len(l.Grants) == 0 {
		l.Grants = nil
	}
	if len(l.Scopes) == 0 {
		l.Scopes = nil
	}
	return oauth.AccountLimits(l), nil
}

// SplitScopes decodes a stored space-joined scope list.
func SplitScopes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// IsContractError reports whether err already is one of the errors the
// oauth.Store contract names, so a store's error mapping leaves it alone.
func IsContractError(err error) bool {
	for _, e := range []error{oauth.ErrNotFound, oauth.ErrAlreadyExists, oauth.ErrTokenInactive, oauth.ErrRefreshReused, oauth.ErrUnavailable, oauth.ErrCursorExpired} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// TypicalClient is a client record of typical size and shape. A store
// decodes its encoding when GetClient finds no client, so that a miss costs
// what a hit costs and timing does not tell which client IDs exist.
func TypicalClient() *oauth.Client {
	t := time.Unix(1_700_000_000, 0)
	return &oauth.Client{
		ID: "00000000000000000000000000000000", Name: "typical merchant",
		Secrets:     []oauth.SecretHash{{Hash: make([]byte, 32)}},
		Grants:      []string{oauth.GrantClientCredentials},
		Scopes:      []string{"payments", "refunds"},
		AuthMethods: []string{oauth.AuthSecretBasic, oauth.AuthSecretPost},
		CreatedAt:   t, UpdatedAt: t,
	}
}

// RewriteSealed passes the Sealed value of each secret in b (a client's
// secrets as EncodeSecrets wrote them) to rewrite with its name,
// oauth.ClientSecretSecret(clientID, hash), and returns the list encoded
// again with what rewrite returned, and how many values it rewrote. When
// no secret has a Sealed value, rewrite is not called and out is nil.
// Errors: a corrupt list, or rewrite's error.
func RewriteSealed(clientID string, b []byte, rewrite func(name string, v []byte) ([]byte, error)) (out []byte, n int, err error) {
	l, err := DecodeSecrets(b)
	if err != nil {
		return nil, 0, err
	}
	for i := range l {
		if len(l[i].Sealed) == 0 {
			continue
		}
		v, err := rewrite(oauth.ClientSecretSecret(clientID, l[i].Hash), l[i].Sealed)
		if err != nil {
			return nil, 0, err
		}
		l[i].Sealed = v
		n++
	}
	if n == 0 {
		return nil, 0, nil
	}
	return EncodeSecrets(l), n, nil
}

// MaxCursorLen is the longest revocation cursor a store parses; longer
// input is refused before any parsing.
const MaxCursorLen = 64

// DefaultFeedLimit is how many revocation events a read returns when its
// caller asks for fewer than one.
const DefaultFeedLimit = 1000

// FormatCursor is the cursor of a place in a store's revocation feed: its
// position, in canonical decimal.
func FormatCursor(pos int64) string { return strconv.FormatInt(pos, 10) }

// ParseCursor reads a cursor in the canonical form FormatCursor writes,
// and nothing else (a cursor of another form gets its subscriber a reset).
func ParseCursor(c string) (int64, bool) {
	if len(c) == 0 || len(c) > MaxCursorLen {
		return 0, false
	}
	pos, err := strconv.ParseInt(c, 10, 64)
	if err != nil || pos < 0 || FormatCursor(pos) != c {
		return 0, false
	}
	return pos, true
}

// NotBeforeChanged reports whether an update of TokensNotBefore from old
// to new is a revocation the feed reports: a non-zero instant other than
// the stored one (compared at the stores' precision, microseconds).
func NotBeforeChanged(old, new time.Time) bool {
	return !new.IsZero() && (old.IsZero() || old.UnixMicro() != new.UnixMicro())
}
