// Package codec holds the encodings both SQL stores share, so a row
// written by one means the same as a row written by the other.
package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// secretJSON is a SecretHash as stored: the expiry in UNIX microseconds
// like every other time, not oauth.SecretHash's RFC 3339 text.
type secretJSON struct {
	Hash      []byte `json:"hash"`
	ExpiresAt *int64 `json:"expires_at,omitempty"`
}

// EncodeSecrets encodes a client's secret hashes as JSON.
func EncodeSecrets(l []oauth.SecretHash) []byte {
	out := make([]secretJSON, len(l))
	for i, s := range l {
		out[i].Hash = s.Hash
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
		if v.ExpiresAt != nil {
			out[i].ExpiresAt = time.UnixMicro(*v.ExpiresAt).UTC()
		}
	}
	return out, nil
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
	for _, e := range []error{oauth.ErrNotFound, oauth.ErrAlreadyExists, oauth.ErrTokenInactive, oauth.ErrRefreshReused, oauth.ErrUnavailable} {
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
