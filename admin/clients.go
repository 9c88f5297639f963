package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// ClientSpec is a new client, as an operator or a merchant describes it
// (and as the admin API's create request body decodes into it).
type ClientSpec struct {
	Name          string   `json:"name"`
	Grants        []string `json:"grants"`
	Scopes        []string `json:"scopes"`
	DefaultScopes []string `json:"default_scopes"`
	// AccessTTL is the access-token lifetime; 0: the endpoint's or the
	// server's default.
	AccessTTL Duration `json:"access_ttl"`
	// TokenFormat is "opaque" or "jwt"; "": the server's default.
	TokenFormat string `json:"token_format"`
	// SigningAlg is ES256, RS256 or EdDSA; "": the server's default.
	SigningAlg                   string `json:"signing_alg"`
	RefreshWithClientCredentials bool   `json:"refresh_with_client_credentials"`
	// AuthMethods are the client authentication methods the client may
	// use; empty: snap_signature for a client with a SNAP public key, else
	// client_secret_basic and client_secret_post. The result is stored
	// explicitly, so a SNAP key added later does not change them.
	AuthMethods []string `json:"auth_methods"`
	// Endpoints restricts the client to these token endpoint paths;
	// empty: every endpoint.
	Endpoints []string `json:"endpoints"`
	// CanIntrospect lets the client introspect other clients' tokens (a
	// resource server). Operators only.
	CanIntrospect bool `json:"can_introspect"`
	// SNAPPublicKey is the PEM RSA public key (>= 2048 bits) verifying the
	// client's SNAP signatures; "" for none.
	SNAPPublicKey string `json:"snap_public_key"`
	// SNAPServiceSignature is how the client signs SNAP service calls:
	// symmetric, asymmetric, both, or none ("" too). A symmetric client's
	// secret is kept recoverable, sealed under the KEK.
	SNAPServiceSignature string `json:"snap_service_signature"`
	// PartnerID is the client's SNAP X-PARTNER-ID; "": its client ID.
	// Operators only.
	PartnerID string `json:"partner_id"`
	// OwnerAccount is the owning merchant account's ID; "" for none. A
	// merchant's clients are always its own.
	OwnerAccount string `json:"owner_account"`
}

// ClientPatch changes a client: each field that is not nil replaces the
// client's, the others stay as they are (an admin API PATCH body decodes
// into it). An empty list clears a list; "" clears a text field (the
// server's default format or algorithm, no partner ID, no owner).
type ClientPatch struct {
	Name                         *string   `json:"name,omitempty"`
	Grants                       *[]string `json:"grants,omitempty"`
	Scopes                       *[]string `json:"scopes,omitempty"`
	DefaultScopes                *[]string `json:"default_scopes,omitempty"`
	AccessTTL                    *Duration `json:"access_ttl,omitempty"`
	TokenFormat                  *string   `json:"token_format,omitempty"`
	SigningAlg                   *string   `json:"signing_alg,omitempty"`
	RefreshWithClientCredentials *bool     `json:"refresh_with_client_credentials,omitempty"`
	AuthMethods                  *[]string `json:"auth_methods,omitempty"`
	Endpoints                    *[]string `json:"endpoints,omitempty"`
	// CanIntrospect, PartnerID and OwnerAccount: operators only.
	CanIntrospect *bool `json:"can_introspect,omitempty"`
	// SNAPServiceSignature: a client switched to symmetric gets a
	// recoverable secret only at its next RotateSecret (see the view's
	// notes).
	SNAPServiceSignature *string `json:"snap_service_signature,omitempty"`
	PartnerID            *string `json:"partner_id,omitempty"`
	OwnerAccount         *string `json:"owner_account,omitempty"`
}

// ClientView is a client as the service shows it: every setting, the
// state of its secrets, never a secret, its hash or its sealed form.
type ClientView struct {
	ClientID      string   `json:"client_id"`
	Name          string   `json:"name"`
	OwnerAccount  string   `json:"owner_account"` // "" for none
	Grants        []string `json:"grants"`
	Scopes        []string `json:"scopes"`
	DefaultScopes []string `json:"default_scopes"`
	// AccessTTL: 0 (absent) means the endpoint's or the server's default.
	AccessTTL   Duration `json:"access_ttl,omitempty"`
	TokenFormat string   `json:"token_format,omitempty"` // "": the server's default
	SigningAlg  string   `json:"signing_alg,omitempty"`  // "": the server's default
	// RefreshWithClientCredentials issues refresh tokens for
	// client_credentials too.
	RefreshWithClientCredentials bool `json:"refresh_with_client_credentials"`
	// AuthMethods are the methods the client may authenticate with (the
	// defaults spelled out when none are stored).
	AuthMethods []string `json:"auth_methods"`
	// Endpoints: empty means every endpoint.
	Endpoints     []string `json:"endpoints"`
	CanIntrospect bool     `json:"can_introspect"`
	// SNAPPublicKey is the registered SNAP public key (PEM), "" for none;
	// SNAPKeyFingerprint its SHA-256 fingerprint (see SNAPKeyFingerprint).
	SNAPPublicKey      string `json:"snap_public_key,omitempty"`
	SNAPKeyFingerprint string `json:"snap_key_fingerprint,omitempty"`
	// SNAPServiceSignature: symmetric, asymmetric, both or none.
	SNAPServiceSignature string `json:"snap_service_signature"`
	// PartnerID is the effective X-PARTNER-ID: the client ID unless set.
	PartnerID string `json:"partner_id"`
	Disabled  bool   `json:"disabled"`
	// TokensNotBefore: tokens issued before it are revoked; nil for none
	// beyond the client's creation (no token issued before a client was
	// created is ever honoured, so a new client does not inherit the
	// tokens of a deleted one of the same ID).
	TokensNotBefore *time.Time `json:"tokens_not_before,omitempty"`
	// Secrets: the current secret first, then those replaced by
	// rotations (at most MaxSecrets in all), each valid until its
	// ExpiresAt.
	Secrets []SecretView `json:"secrets"`
	// Notes tell an operator what to do (a secret SNAP cannot use).
	Notes     []string  `json:"notes,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SecretView is the state of one client secret: never the secret.
type SecretView struct {
	// State is "current", or "previous" for a secret a rotation
	// replaced, valid until ExpiresAt.
	State     string     `json:"state"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Recoverable: the secret itself is kept (sealed under the KEK) for
	// SNAP symmetric signatures.
	Recoverable bool `json:"recoverable"`
}

// NoteSecretNotRecoverable is what an operator is told about a client
// registered for symmetric SNAP service signatures whose current secret is
// not recoverable (see NeedsRecoverableSecret).
const NoteSecretNotRecoverable = "the secret of this client is not recoverable; " +
	"run client rotate-secret to give it one the SNAP signatures can use"

// NeedsRecoverableSecret reports whether c is registered for symmetric
// SNAP service signatures but its current secret is kept only as a hash
// (a client that was registered before, or switched to symmetric since):
// its service calls cannot be verified until its next RotateSecret.
func NeedsRecoverableSecret(c *oauth.Client) bool {
	return c.SNAPSymmetric() && !c.HasRecoverableSecret()
}

// NewClientView returns the view of c.
func NewClientView(c *oauth.Client) *ClientView {
	v := &ClientView{
		ClientID: c.ID, Name: c.Name, OwnerAccount: c.OwnerAccount, Grants: nonNil(slices.Clone(c.Grants)),
		Scopes: nonNil(slices.Clone(c.Scopes)), DefaultScopes: nonNil(slices.Clone(c.DefaultScopes)),
		AccessTTL: Duration(c.AccessTTL), TokenFormat: string(c.TokenFormat), SigningAlg: c.SigningAlg,
		RefreshWithClientCredentials: c.RefreshWithClientCredentials,
		AuthMethods:                  nonNil(slices.Clone(c.EffectiveAuthMethods())), Endpoints: nonNil(slices.Clone(c.Endpoints)),
		CanIntrospect: c.CanIntrospect, SNAPPublicKey: c.PublicKeyPEM, SNAPKeyFingerprint: SNAPKeyFingerprint(c.PublicKeyPEM),
		SNAPServiceSignature: c.SNAPServiceSignature, PartnerID: c.EffectivePartnerID(), Disabled: c.Disabled,
		Secrets: []SecretView{}, CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
	}
	if v.SNAPServiceSignature == oauth.SNAPSignatureNone {
		v.SNAPServiceSignature = "none"
	}
	if NeedsRecoverableSecret(c) {
		v.Notes = append(v.Notes, NoteSecretNotRecoverable)
	}
	// A TokensNotBefore before CreatedAt is the creation's own
	// (createdNotBefore): it revokes nothing a client could have issued.
	if !c.TokensNotBefore.IsZero() && !c.TokensNotBefore.Before(c.CreatedAt) {
		t := c.TokensNotBefore.UTC()
		v.TokensNotBefore = &t
	}
	for _, cur := range []bool{true, false} {
		for i := range c.Secrets {
			s := &c.Secrets[i]
			if s.ExpiresAt.IsZero() != cur {
				continue
			}
			sv := SecretView{State: "current", Recoverable: s.Recoverable()}
			if !cur {
				t := s.ExpiresAt.UTC()
				sv.State, sv.ExpiresAt = "previous", &t
			}
			v.Secrets = append(v.Secrets, sv)
		}
	}
	return v
}

// createdNotBefore is the TokensNotBefore of a client created at now, so
// that no token issued before the client existed is honoured: the tokens
// of a deleted client stay dead when its ID is registered again (created
// or imported), access and refresh, opaque and JWT. A JWT's issue time is
// known to the millisecond only (token.JTITime), so the instant is now's
// millisecond, lest the client's first JWTs be refused; and a microsecond
// before it, so that a revocation at the very instant of creation is
// still told apart from it (NewClientView).
func createdNotBefore(now time.Time) time.Time {
	return now.Truncate(time.Millisecond).Add(-time.Microsecond)
}

func clientNotFound(id string) error { return fmt.Errorf("client %s: %w", id, ErrNotFound) }

// clientErr translates a store error about client id: a taken partner ID
// is a *ConflictError for partner_id.
func clientErr(id, partnerID string, err error) error {
	if errors.Is(err, oauth.ErrAlreadyExists) {
		if partnerID != "" && partnerID != id {
			return &ConflictError{Field: "partner_id", Message: partnerID + " is already the partner ID or the client ID of another client"}
		}
		return &ConflictError{Field: "client_id", Message: "client " + id + " already exists, or its ID is another client's partner ID"}
	}
	return storeErr("client "+id, err)
}

// CreateClient registers a client and returns its view and its secret,
// which is shown this once and never stored (only its keyed hash, and for
// a client with symmetric SNAP service signatures the secret sealed under
// the KEK). A merchant's client is owned by its account and must stay
// within its limits. Errors: ErrUnauthenticated; *ValidationError (a
// setting; a merchant's setting beyond its limits or reserved to
// operators: can_introspect, partner_id, owner_account);
// ErrForbidden (a merchant at its max_clients, or without snap_keys for a
// SNAP key); *ConflictError (partner_id taken); ErrUnavailable.
func (s *Service) CreateClient(ctx context.Context, spec ClientSpec) (*ClientView, string, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, "", err
	}
	if s.secrets == nil {
		return nil, "", errNoEngine
	}
	c, err := s.clientFromSpec(ctx, p, spec, NewClientID())
	if err != nil {
		return nil, "", err
	}
	if !p.operator() {
		if err := s.checkMerchantCount(ctx, p, 1); err != nil {
			return nil, "", err
		}
	}
	sec, err := secret.NewClientSecret()
	if err != nil {
		return nil, "", err
	}
	c.Secrets = []oauth.SecretHash{s.newSecret(sec, c.SNAPServiceSignature)}
	v := NewClientView(c)
	ev := s.event(p, "client.create", ObjectClient, c.ID, c.OwnerAccount, nil, v)
	if err := s.audited(ctx, func(ctx context.Context) error { return s.store.CreateClient(ctx, c) }, ev); err != nil {
		return nil, "", clientErr(c.ID, c.PartnerID, err)
	}
	return v, sec, nil
}

// newClient is the client spec describes, with id, created at now: its
// settings only (no secret, no owner check), validated. Errors: a
// *ValidationError.
func newClient(id string, spec ClientSpec, now time.Time) (*oauth.Client, error) {
	c := &oauth.Client{
		ID: id, Name: spec.Name, Grants: dedupe(spec.Grants), Scopes: dedupe(spec.Scopes),
		DefaultScopes: dedupe(spec.DefaultScopes), AccessTTL: time.Duration(spec.AccessTTL),
		TokenFormat: oauth.TokenFormat(spec.TokenFormat), SigningAlg: spec.SigningAlg,
		RefreshWithClientCredentials: spec.RefreshWithClientCredentials,
		AuthMethods:                  dedupe(spec.AuthMethods), Endpoints: dedupe(spec.Endpoints), CanIntrospect: spec.CanIntrospect,
		SNAPServiceSignature: snapSignatureValue(spec.SNAPServiceSignature), PartnerID: spec.PartnerID,
		OwnerAccount: spec.OwnerAccount, TokensNotBefore: createdNotBefore(now), CreatedAt: now, UpdatedAt: now,
	}
	if spec.SNAPPublicKey != "" {
		pemText, _, err := NormalizeSNAPKey([]byte(spec.SNAPPublicKey))
		if err != nil {
			return nil, err
		}
		c.PublicKeyPEM = pemText
	}
	// Stored explicitly, so a later change (a SNAP key added) does not
	// silently change how the client authenticates.
	c.AuthMethods = slices.Clone(c.EffectiveAuthMethods())
	if err := Validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

// clientFromSpec builds and validates the client spec describes for p,
// without secrets.
func (s *Service) clientFromSpec(ctx context.Context, p *principal, spec ClientSpec, id string) (*oauth.Client, error) {
	c, err := newClient(id, spec, s.now())
	if err != nil {
		return nil, err
	}
	if p.operator() {
		if err := s.checkOwner(ctx, c.OwnerAccount); err != nil {
			return nil, err
		}
		return c, nil
	}
	if spec.OwnerAccount != "" && spec.OwnerAccount != p.accountID() {
		return nil, invalid("owner_account", "a merchant's clients are its own")
	}
	c.OwnerAccount = p.accountID()
	if err := operatorOnly(fieldSet{"can_introspect", c.CanIntrospect}, fieldSet{"partner_id", c.PartnerID != ""}); err != nil {
		return nil, err
	}
	if err := checkLimits(p.account, c, allClientFields); err != nil {
		return nil, err
	}
	return c, nil
}

// checkOwner checks that an owner account given by an operator exists.
func (s *Service) checkOwner(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if _, err := s.store.GetAccount(ctx, id); err != nil {
		if errors.Is(err, oauth.ErrNotFound) {
			return invalid("owner_account", "no account %s", id)
		}
		return storeErr("account "+id, err)
	}
	return nil
}

// Fields of a client a merchant's limits bound.
type clientFields struct{ grants, scopes, snap bool }

var allClientFields = clientFields{grants: true, scopes: true, snap: true}

// checkLimits checks the fields of c that a merchant sets against its
// account's limits.
func checkLimits(acc *oauth.Account, c *oauth.Client, f clientFields) error {
	l := acc.Limits
	if f.grants {
		for _, g := range c.Grants {
			if !slices.Contains(l.Grants, g) {
				return invalid("grants", "your account may not use the %s grant (it may use: %s)", g, listOrNone(l.Grants))
			}
		}
	}
	if f.scopes {
		for _, sc := range c.Scopes {
			if !slices.Contains(l.Scopes, sc) {
				return invalid("scopes", "your account may not use the scope %q (it may use: %s)", sc, listOrNone(l.Scopes))
			}
		}
	}
	if f.snap && !l.SNAPKeys && (c.PublicKeyPEM != "" || c.SNAPServiceSignature != oauth.SNAPSignatureNone) {
		return fmt.Errorf("%w: your account may not register SNAP keys or SNAP service signatures", ErrForbidden)
	}
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// checkMerchantCount refuses a merchant that would own more than its
// max_clients with n more. Two creates racing each other may both pass:
// the bound is a policy, not a security boundary.
func (s *Service) checkMerchantCount(ctx context.Context, p *principal, n int) error {
	all, err := s.store.ListClients(ctx)
	if err != nil {
		return storeErr("clients", err)
	}
	owned := 0
	for _, c := range all {
		if c.OwnerAccount == p.accountID() {
			owned++
		}
	}
	if owned+n > p.account.Limits.MaxClients {
		return fmt.Errorf("%w: your account may own at most %d clients and owns %d", ErrForbidden, p.account.Limits.MaxClients, owned)
	}
	return nil
}

// newSecret is the stored form of a new secret sec: its hash, and for a
// client with symmetric SNAP service signatures the secret itself, which
// the store seals (kek.Store).
func (s *Service) newSecret(sec, snapServiceSignature string) oauth.SecretHash {
	h := oauth.SecretHash{Hash: s.secrets.Hash(sec)}
	if (&oauth.Client{SNAPServiceSignature: snapServiceSignature}).SNAPSymmetric() {
		h.Plain = []byte(sec)
	}
	return h
}

// visibleClient returns client id if p may see it. Errors: ErrNotFound
// (missing, or another merchant's), ErrUnavailable.
func (s *Service) visibleClient(ctx context.Context, p *principal, id string) (*oauth.Client, error) {
	c, err := s.store.GetClient(ctx, id)
	if err != nil {
		return nil, storeErr("client "+id, err)
	}
	if !p.operator() && c.OwnerAccount != p.accountID() {
		return nil, clientNotFound(id)
	}
	return c, nil
}

// GetClient returns the view of client id. Errors: ErrUnauthenticated,
// ErrNotFound (missing, or not the merchant's own), ErrUnavailable.
func (s *Service) GetClient(ctx context.Context, id string) (*ClientView, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.visibleClient(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return NewClientView(c), nil
}

// ClientQuery selects clients for ListClients. Zero fields select every
// client the actor may see.
type ClientQuery struct {
	// NameContains keeps clients whose name contains it, ignoring case.
	NameContains string
	// Disabled keeps only disabled clients (true) or only enabled ones
	// (false).
	Disabled *bool
	// OwnerAccount keeps the clients of this account (a merchant sees only
	// its own anyway).
	OwnerAccount string
	// AuthMethod keeps clients that may authenticate with this method.
	AuthMethod string
	// After is the cursor: only clients whose ID sorts after it (a
	// ClientPage's Next).
	After string
	// Limit is the page size; <= 0: 100; at most 1000.
	Limit int
}

// ClientPage is a page of ListClients: Next is the After of the next
// page, "" when this is the last.
type ClientPage struct {
	Clients []*ClientView `json:"clients"`
	Next    string        `json:"next,omitempty"`
}

// ListClients returns the clients q selects that the actor may see,
// ordered by ID, one page at a time. Filtering happens in the service, on
// a read of every client: fine for the thousands of clients a payment
// company has. Errors: ErrUnauthenticated, ErrUnavailable.
func (s *Service) ListClients(ctx context.Context, q ClientQuery) (*ClientPage, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	all, err := s.store.ListClients(ctx)
	if err != nil {
		return nil, storeErr("clients", err)
	}
	needle := strings.ToLower(q.NameContains)
	page := &ClientPage{Clients: []*ClientView{}}
	for _, c := range all {
		switch {
		case !p.operator() && c.OwnerAccount != p.accountID():
		case q.After != "" && c.ID <= q.After:
		case needle != "" && !strings.Contains(strings.ToLower(c.Name), needle):
		case q.Disabled != nil && c.Disabled != *q.Disabled:
		case q.OwnerAccount != "" && c.OwnerAccount != q.OwnerAccount:
		case q.AuthMethod != "" && !c.AllowsAuthMethod(q.AuthMethod):
		default:
			if len(page.Clients) == limit {
				page.Next = page.Clients[limit-1].ClientID
				return page, nil
			}
			page.Clients = append(page.Clients, NewClientView(c))
		}
	}
	return page, nil
}

// changeClient applies change to client id for p, validates the result,
// and stores it with an audit event of action whose before and after are
// the client's views. change may return an error to refuse. Errors:
// ErrNotFound (missing, or not the merchant's own), change's,
// *ValidationError, *ConflictError (partner_id), ErrUnavailable.
func (s *Service) changeClient(ctx context.Context, p *principal, id, action string, change func(*oauth.Client) error) (*ClientView, error) {
	return s.changeClientMoving(ctx, p, id, action, nil, change)
}

// ownerMove is the owner an update gives a client (to) and the owner it
// had when read before the write (from).
type ownerMove struct{ from, to string }

// changeClientMoving is changeClient for a change that may move the client
// from one merchant account to another (move; nil for none). Each account
// sees the move in its audit trail: the old owner an event with the client
// as it was its own and only the changed fields after; the new owner one
// with only the changed fields before and the client as it is its own
// now, so neither sees more of the other's than the change. It refuses
// with a *ConflictError if the owner is no longer move.from.
func (s *Service) changeClientMoving(ctx context.Context, p *principal, id, action string, move *ownerMove, change func(*oauth.Client) error) (*ClientView, error) {
	var (
		after     *ClientView
		partnerID string
	)
	evs := []*oauth.AuditEvent{s.event(p, action, ObjectClient, id, "", nil, nil)}
	twoOwners := move != nil && move.from != move.to && move.from != "" && move.to != ""
	if twoOwners {
		evs = append(evs, s.event(p, action, ObjectClient, id, move.to, nil, nil))
	}
	err := s.audited(ctx, func(ctx context.Context) error {
		return s.store.UpdateClient(ctx, id, func(c *oauth.Client) error {
			if !p.operator() && c.OwnerAccount != p.accountID() {
				return clientNotFound(id)
			}
			if move != nil && c.OwnerAccount != move.from {
				return &ConflictError{Field: "owner_account", Message: "the client's owner changed meanwhile; try again"}
			}
			before := NewClientView(c)
			if err := change(c); err != nil {
				return err
			}
			c.Grants, c.Scopes, c.DefaultScopes = dedupe(c.Grants), dedupe(c.Scopes), dedupe(c.DefaultScopes)
			c.AuthMethods, c.Endpoints = dedupe(c.AuthMethods), dedupe(c.Endpoints)
			if err := Validate(c); err != nil {
				return err
			}
			if !c.SNAPSymmetric() {
				for i := range c.Secrets {
					c.Secrets[i].Plain, c.Secrets[i].Sealed = nil, nil
				}
			}
			partnerID = c.PartnerID
			c.UpdatedAt = s.now()
			after = NewClientView(c)
			b, a := jsonOf(before), jsonOf(after)
			if twoOwners {
				evs[0].Account, evs[0].Before, evs[0].After = move.from, b, changedFields(a, b)
				evs[1].Before, evs[1].After = changedFields(b, a), a
				return nil
			}
			evs[0].Before, evs[0].After, evs[0].Account = b, a, c.OwnerAccount
			if evs[0].Account == "" {
				evs[0].Account = before.OwnerAccount
			}
			return nil
		})
	}, evs...)
	if err != nil {
		return nil, clientErr(id, partnerID, err)
	}
	return after, nil
}

// changedFields returns the members of the JSON object doc whose values
// differ from those of other (null for a member only other has): what of
// doc a change touched.
func changedFields(doc, other []byte) []byte {
	var d, o map[string]json.RawMessage
	if json.Unmarshal(doc, &d) != nil || json.Unmarshal(other, &o) != nil {
		return nil
	}
	out := map[string]json.RawMessage{}
	for k, v := range d {
		if !bytes.Equal(v, o[k]) {
			out[k] = v
		}
	}
	for k := range o {
		if _, ok := d[k]; !ok {
			out[k] = json.RawMessage("null")
		}
	}
	return jsonOf(out)
}

// UpdateClient applies patch to client id (nil fields stay as they are)
// and returns the result. A client that is not (or no longer) registered
// for symmetric SNAP service signatures keeps no recoverable secret; one
// switched to symmetric gets one only at its next RotateSecret (its view
// says so in Notes). A merchant may change only its own clients, within
// its limits, and not can_introspect, partner_id or owner_account. A
// client given to another account is recorded in the audit trails of both
// (see changeClientMoving); its credentials stay as they are. Errors:
// ErrUnauthenticated; ErrNotFound; *ValidationError; ErrForbidden (SNAP
// settings without snap_keys); *ConflictError (partner_id taken; the
// owner changed by someone else meanwhile); ErrUnavailable.
func (s *Service) UpdateClient(ctx context.Context, id string, patch ClientPatch) (*ClientView, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	if !p.operator() {
		if err := operatorOnly(fieldSet{"can_introspect", patch.CanIntrospect != nil},
			fieldSet{"partner_id", patch.PartnerID != nil}, fieldSet{"owner_account", patch.OwnerAccount != nil}); err != nil {
			return nil, err
		}
	}
	var move *ownerMove
	if p.operator() && patch.OwnerAccount != nil {
		if err := s.checkOwner(ctx, *patch.OwnerAccount); err != nil {
			return nil, err
		}
		c, err := s.store.GetClient(ctx, id)
		if err != nil {
			return nil, storeErr("client "+id, err)
		}
		move = &ownerMove{from: c.OwnerAccount, to: *patch.OwnerAccount}
	}
	return s.changeClientMoving(ctx, p, id, "client.update", move, func(c *oauth.Client) error {
		applyPatch(c, patch)
		if p.operator() {
			return nil
		}
		return checkLimits(p.account, c, clientFields{
			grants: patch.Grants != nil, scopes: patch.Scopes != nil, snap: patch.SNAPServiceSignature != nil,
		})
	})
}

func applyPatch(c *oauth.Client, p ClientPatch) {
	set := func(dst *[]string, src *[]string) {
		if src != nil {
			*dst = slices.Clone(*src)
		}
	}
	if p.Name != nil {
		c.Name = *p.Name
	}
	set(&c.Grants, p.Grants)
	set(&c.Scopes, p.Scopes)
	set(&c.DefaultScopes, p.DefaultScopes)
	set(&c.AuthMethods, p.AuthMethods)
	set(&c.Endpoints, p.Endpoints)
	if p.AccessTTL != nil {
		c.AccessTTL = time.Duration(*p.AccessTTL)
	}
	if p.TokenFormat != nil {
		c.TokenFormat = oauth.TokenFormat(*p.TokenFormat)
	}
	if p.SigningAlg != nil {
		c.SigningAlg = *p.SigningAlg
	}
	if p.RefreshWithClientCredentials != nil {
		c.RefreshWithClientCredentials = *p.RefreshWithClientCredentials
	}
	if p.CanIntrospect != nil {
		c.CanIntrospect = *p.CanIntrospect
	}
	if p.SNAPServiceSignature != nil {
		c.SNAPServiceSignature = snapSignatureValue(*p.SNAPServiceSignature)
	}
	if p.PartnerID != nil {
		c.PartnerID = *p.PartnerID
	}
	if p.OwnerAccount != nil {
		c.OwnerAccount = *p.OwnerAccount
	}
}

// SetClientDisabled disables or re-enables a client and returns it.
// Either change revokes every token the client holds (TokensNotBefore):
// disabling, so the tokens stay dead; enabling, so that tokens a node
// issued in the second or two before it saw the disable do not come back
// to life either. Errors: ErrUnauthenticated, ErrNotFound, ErrUnavailable.
func (s *Service) SetClientDisabled(ctx context.Context, id string, disabled bool) (*ClientView, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	action := "client.enable"
	if disabled {
		action = "client.disable"
	}
	return s.changeClient(ctx, p, id, action, func(c *oauth.Client) error {
		if disabled != c.Disabled {
			c.TokensNotBefore = s.now()
		}
		c.Disabled = disabled
		return nil
	})
}

// RevokeClientTokens revokes every token, access and refresh, opaque and
// JWT, issued to the client until now, in one write: tokens issued before
// the client's TokensNotBefore are inactive on every node once it has seen
// the change (within about a second). It returns that instant. Errors:
// ErrUnauthenticated, ErrNotFound, ErrUnavailable.
func (s *Service) RevokeClientTokens(ctx context.Context, id string) (time.Time, error) {
	p, err := s.who(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var at time.Time
	_, err = s.changeClient(ctx, p, id, "client.revoke_tokens", func(c *oauth.Client) error {
		at = s.now()
		c.TokensNotBefore = at
		return nil
	})
	return at, err
}

// SetSNAPKey registers the public key that verifies the client's SNAP
// signatures (PEM: PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE; RSA of at
// least 2048 bits), replacing any, and lets the client authenticate with
// snap_signature. The view shows its fingerprint. Errors:
// ErrUnauthenticated; *ValidationError (snap_public_key); ErrForbidden (a
// merchant without snap_keys); ErrNotFound; ErrUnavailable.
func (s *Service) SetSNAPKey(ctx context.Context, id string, pemBytes []byte) (*ClientView, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	pemText, _, err := NormalizeSNAPKey(pemBytes)
	if err != nil {
		return nil, err
	}
	if !p.operator() && !p.account.Limits.SNAPKeys {
		return nil, fmt.Errorf("%w: your account may not register SNAP keys", ErrForbidden)
	}
	return s.changeClient(ctx, p, id, "client.set_snap_key", func(c *oauth.Client) error {
		c.PublicKeyPEM = pemText
		if len(c.AuthMethods) > 0 && !slices.Contains(c.AuthMethods, oauth.AuthSNAPSignature) {
			c.AuthMethods = append(c.AuthMethods, oauth.AuthSNAPSignature)
		}
		return nil
	})
}

// SecretRotation is the result of RotateSecret: the new secret, shown
// this once.
type SecretRotation struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// PreviousExpiresAt is when the replaced secret stops working (nil: it
	// stopped at once, with every earlier one).
	PreviousExpiresAt *time.Time `json:"previous_expires_at,omitempty"`
}

// MaxGrace is the longest grace period RotateSecret accepts.
const MaxGrace = 90 * 24 * time.Hour

// MaxSecrets is how many secrets a client holds at most after a rotation
// with grace: the new one and those of earlier rotations still within
// their grace.
const MaxSecrets = 3

// RotateSecret gives a client a new secret. With grace 0 every other
// secret stops at once (an incident: the secret leaked). With grace > 0
// the current secret keeps working for grace, and the secrets replaced by
// earlier rotations keep working until their own grace ends — a rotation
// sent twice (a double submit, a retry) does not cut off the secret the
// merchant still uses — up to MaxSecrets secrets in all, the most
// recently replaced kept first. For a client with symmetric SNAP service
// signatures the new secret is recoverable, and so are the previous ones
// during their grace if they were. Errors: ErrUnauthenticated;
// *ValidationError (grace negative or over MaxGrace); ErrNotFound;
// ErrUnavailable.
func (s *Service) RotateSecret(ctx context.Context, id string, grace time.Duration) (*SecretRotation, error) {
	p, err := s.who(ctx)
	if err != nil {
		return nil, err
	}
	if grace < 0 || grace > MaxGrace {
		return nil, invalid("grace", "must be between 0 and %v", MaxGrace)
	}
	if s.secrets == nil {
		return nil, errNoEngine
	}
	sec, err := secret.NewClientSecret()
	if err != nil {
		return nil, err
	}
	now := s.now()
	_, err = s.changeClient(ctx, p, id, "client.rotate_secret", func(c *oauth.Client) error {
		next := []oauth.SecretHash{s.newSecret(sec, c.SNAPServiceSignature)}
		if grace > 0 {
			// The current secret first, then the earlier ones as they
			// are kept: most recently replaced first.
			for _, current := range []bool{true, false} {
				for _, old := range c.Secrets {
					switch {
					case old.ExpiresAt.IsZero() != current, len(next) == MaxSecrets:
					case current:
						old.ExpiresAt = now.Add(grace) // its recoverable copy, if any, goes along
						next = append(next, old)
					case now.Before(old.ExpiresAt):
						next = append(next, old)
					}
				}
			}
		}
		c.Secrets = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &SecretRotation{ClientID: id, ClientSecret: sec}
	if grace > 0 {
		t := now.Add(grace).UTC()
		r.PreviousExpiresAt = &t
	}
	return r, nil
}

// DeleteClient deletes a client: it authenticates nowhere any more, and
// its tokens are inactive everywhere, for good: a client created (or
// imported) later with the same ID honours no token issued before it. Errors: ErrUnauthenticated,
// ErrNotFound, ErrUnavailable.
func (s *Service) DeleteClient(ctx context.Context, id string) error {
	p, err := s.who(ctx)
	if err != nil {
		return err
	}
	c, err := s.visibleClient(ctx, p, id)
	if err != nil {
		return err
	}
	ev := s.event(p, "client.delete", ObjectClient, id, c.OwnerAccount, NewClientView(c), nil)
	err = s.audited(ctx, func(ctx context.Context) error { return s.store.DeleteClient(ctx, id) }, ev)
	return storeErr("client "+id, err)
}

// fieldSet is a field of a request, and whether the request sets it.
type fieldSet struct {
	name string
	set  bool
}

// operatorOnly refuses the first of fields (in order) that is set: a
// merchant may not set them.
func operatorOnly(fields ...fieldSet) error {
	for _, f := range fields {
		if f.set {
			return invalid(f.name, "only an operator may set this")
		}
	}
	return nil
}
