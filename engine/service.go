package engine

import (
	"context"
	"fmt"

	"github.com/tokengate/tokengate/oauth"
)

// What a verifier of SNAP service calls needs from the engine, without
// HTTP: the calling client, found by its X-PARTNER-ID, with the secrets
// its symmetric signatures are keyed with (oauth.Client.ServiceSecrets).
// It reads through the engine's bounded client caches, which follow
// changes made elsewhere (the CLI, other nodes) within
// CacheRefreshInterval, so a steady stream of calls costs no store read.

// ClientByPartnerID returns the client whose effective partner ID
// (oauth.Client.EffectivePartnerID: its PartnerID, or its ID when it has
// none) is partnerID, whatever its state: the caller checks Disabled, and
// TokensNotBefore against its token. Its recoverable secrets are in clear
// (Plain) when the engine's store is a kek.Store, as every node's is. The
// client may be shared with other callers: do not modify it. A partnerID
// no client can have is not looked up. Errors: oauth.ErrNotFound; the
// store's, including a recoverable secret that does not open (see
// kek.Store.GetClientByPartnerID).
func (e *Engine) ClientByPartnerID(ctx context.Context, partnerID string) (*oauth.Client, error) {
	if !lookupKey(partnerID) {
		return nil, fmt.Errorf("partner: %w", oauth.ErrNotFound)
	}
	cl, gen, ok := e.partners.get(partnerID)
	if ok {
		return cl, nil
	}
	cl, err := e.store.GetClientByPartnerID(ctx, partnerID)
	if err != nil {
		return nil, err
	}
	// Keyed by the record's own partner ID, never the caller's string.
	e.partners.put(gen, cl.EffectivePartnerID(), cl)
	return cl, nil
}

// lookupKey reports whether s may be a client ID or an effective partner
// ID (which is a client ID when the client has no partner ID).
func lookupKey(s string) bool {
	return s != "" && len(s) <= oauth.MaxClientIDLen && oauth.ValidCredentialText(s)
}
