package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

type clientCmd struct {
	Create       clientCreateCmd       `cmd:"" help:"Register a client; prints its client_id and client_secret (shown only this once)."`
	List         clientListCmd         `cmd:"" help:"List clients."`
	Show         clientShowCmd         `cmd:"" help:"Show one client."`
	Update       clientUpdateCmd       `cmd:"" help:"Change a client's settings; flags not given stay as they are."`
	Disable      clientDisableCmd      `cmd:"" help:"Disable a client: it gets no tokens and its tokens introspect inactive."`
	Enable       clientEnableCmd       `cmd:"" help:"Re-enable a disabled client."`
	Delete       clientDeleteCmd       `cmd:"" help:"Delete a client."`
	RotateSecret clientRotateSecretCmd `cmd:"" name:"rotate-secret" help:"Give a client a new secret; the old one works for --grace more."`
	SetSnapKey   clientSetSnapKeyCmd   `cmd:"" name:"set-snap-key" help:"Register the RSA public key that verifies the client's SNAP BI signatures."`
}

// clientView is a client as the CLI shows it: never a secret hash.
type clientView struct {
	ClientID      string   `json:"client_id"`
	Name          string   `json:"name"`
	Grants        []string `json:"grants"`
	Scopes        []string `json:"scopes"`
	DefaultScopes []string `json:"default_scopes"`
	AccessTTL     string   `json:"access_ttl,omitempty"`
	TokenFormat   string   `json:"token_format,omitempty"`
	SigningAlg    string   `json:"signing_alg,omitempty"`
	RefreshWithCC bool     `json:"refresh_with_client_credentials"`
	HasPublicKey  bool     `json:"snap_public_key"`
	AuthMethods   []string `json:"auth_methods"`
	Endpoints     []string `json:"endpoints"` // empty: every endpoint
	CanIntrospect bool     `json:"can_introspect"`
	// SNAPServiceSignature: symmetric, asymmetric, both or none.
	SNAPServiceSignature string `json:"snap_service_signature"`
	PartnerID            string `json:"partner_id"` // the effective X-PARTNER-ID: the client ID unless set
	// TokensNotBefore: tokens issued before it are revoked.
	TokensNotBefore *time.Time `json:"tokens_not_before,omitempty"`
	Disabled        bool       `json:"disabled"`
	Secrets         []string   `json:"secrets"` // "current" or "expires <time>"
	// SecretsRecoverable tells, for each of Secrets, whether the secret
	// itself is kept (encrypted) for SNAP symmetric signatures; never the
	// secret.
	SecretsRecoverable []bool    `json:"secrets_recoverable"`
	Notes              []string  `json:"notes,omitempty"` // what the operator should do
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
}

func viewClient(c *oauth.Client) clientView {
	v := clientView{
		ClientID: c.ID, Name: c.Name, Grants: nonNil(c.Grants), Scopes: nonNil(c.Scopes),
		DefaultScopes: nonNil(c.DefaultScopes), TokenFormat: string(c.TokenFormat), SigningAlg: c.SigningAlg,
		RefreshWithCC: c.RefreshWithClientCredentials, HasPublicKey: c.PublicKeyPEM != "",
		AuthMethods: nonNil(c.EffectiveAuthMethods()), Endpoints: nonNil(c.Endpoints), CanIntrospect: c.CanIntrospect,
		Disabled: c.Disabled, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, Secrets: []string{},
		SNAPServiceSignature: c.SNAPServiceSignature, PartnerID: c.EffectivePartnerID(), SecretsRecoverable: []bool{},
	}
	if v.SNAPServiceSignature == oauth.SNAPSignatureNone {
		v.SNAPServiceSignature = "none"
	}
	if admin.NeedsRecoverableSecret(c) {
		v.Notes = append(v.Notes, admin.NoteSecretNotRecoverable)
	}
	if !c.TokensNotBefore.IsZero() {
		t := c.TokensNotBefore.UTC()
		v.TokensNotBefore = &t
	}
	if c.AccessTTL > 0 {
		v.AccessTTL = c.AccessTTL.String()
	}
	for _, s := range c.Secrets {
		if s.ExpiresAt.IsZero() {
			v.Secrets = append(v.Secrets, "current")
		} else {
			v.Secrets = append(v.Secrets, "expires "+s.ExpiresAt.UTC().Format(time.RFC3339))
		}
		v.SecretsRecoverable = append(v.SecretsRecoverable, s.Recoverable())
	}
	return v
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (r *run) showClient(c *oauth.Client, asJSON bool) error {
	v := viewClient(c)
	if asJSON {
		return r.printJSON(v)
	}
	state := "enabled"
	if v.Disabled {
		state = "disabled"
	}
	ttl := v.AccessTTL
	if ttl == "" {
		ttl = "(endpoint or server default)"
	}
	format := v.TokenFormat
	if format == "" {
		format = "(server default)"
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "client_id:\t%s\nname:\t%s\nstate:\t%s\ngrants:\t%s\nscopes:\t%s\ndefault scopes:\t%s\naccess ttl:\t%s\ntoken format:\t%s\n",
		v.ClientID, v.Name, state, strings.Join(v.Grants, " "), strings.Join(v.Scopes, " "),
		strings.Join(v.DefaultScopes, " "), ttl, format)
	if v.SigningAlg != "" {
		fmt.Fprintf(w, "signing alg:\t%s\n", v.SigningAlg)
	}
	endpoints := strings.Join(v.Endpoints, " ")
	if endpoints == "" {
		endpoints = "(every endpoint)"
	}
	fmt.Fprintf(w, "auth methods:\t%s\nendpoints:\t%s\ncan introspect:\t%t\n",
		strings.Join(v.AuthMethods, " "), endpoints, v.CanIntrospect)
	partner := v.PartnerID
	if partner == v.ClientID {
		partner += " (the client ID)"
	}
	secrets := make([]string, len(v.Secrets))
	for i, s := range v.Secrets {
		secrets[i] = s + " (recoverable: " + yesNo(v.SecretsRecoverable[i]) + ")"
	}
	fmt.Fprintf(w, "refresh with client_credentials:\t%t\nsnap public key:\t%t\nsnap service signature:\t%s\npartner id:\t%s\nsecrets:\t%s\n",
		v.RefreshWithCC, v.HasPublicKey, v.SNAPServiceSignature, partner, strings.Join(secrets, ", "))
	if v.TokensNotBefore != nil {
		fmt.Fprintf(w, "tokens revoked before:\t%s\n", v.TokensNotBefore.Format(time.RFC3339Nano))
	}
	fmt.Fprintf(w, "created:\t%s\n", v.CreatedAt.UTC().Format(time.RFC3339))
	for _, n := range v.Notes {
		fmt.Fprintf(w, "note:\t%s\n", n)
	}
	return w.Flush()
}

type clientCreateCmd struct {
	Name          string        `required:"" help:"Display name (e.g. the merchant)."`
	Grant         []string      `required:"" help:"Allowed grant type; repeat for several (client_credentials, password, refresh_token)."`
	Scope         []string      `help:"Allowed scope; repeat for several."`
	DefaultScope  []string      `name:"default-scope" help:"Scope granted when a request names none; repeat for several."`
	AccessTTL     time.Duration `name:"access-ttl" help:"Access-token lifetime for this client (e.g. 15m); default: endpoint or server default."`
	TokenFormat   string        `name:"token-format" enum:",opaque,jwt" default:"" help:"opaque or jwt; default: server default."`
	SigningAlg    string        `name:"signing-alg" enum:",ES256,RS256,EdDSA" default:"" help:"JWT algorithm: ES256, RS256 or EdDSA; default: server default."`
	RefreshWithCC bool          `name:"refresh-with-client-credentials" help:"Also issue refresh tokens for client_credentials (needs --grant refresh_token)."`
	SnapPublicKey string        `name:"snap-public-key" placeholder:"FILE" help:"PEM RSA public key (SPKI, PKCS#1 or X.509 certificate, >= 2048 bits) verifying the client's SNAP BI signatures."`
	AuthMethod    []string      `name:"auth-method" help:"Client authentication method the client may use; repeat for several (client_secret_basic, client_secret_post, snap_signature). Default: snap_signature with --snap-public-key, else the two secret methods."`
	Endpoint      []string      `name:"endpoint" placeholder:"PATH" help:"Token endpoint path the client may use; repeat for several. Default: every endpoint."`
	CanIntrospect bool          `name:"can-introspect" help:"Let the client introspect tokens issued to other clients (a resource server)."`
	SnapSignature string        `name:"snap-service-signature" enum:",symmetric,asymmetric,both,none" default:"" help:"How the client signs SNAP service calls: symmetric (HMAC-SHA512 keyed with its secret, which is then kept recoverable, encrypted under the KEK), asymmetric (its RSA key; needs --snap-public-key), both, or none (the default)."`
	PartnerID     string        `name:"partner-id" placeholder:"ID" help:"The client's SNAP X-PARTNER-ID (at most 36 printable ASCII characters, unique among clients); default: the client ID."`
	JSON          bool          `name:"json" help:"Print {\"client_id\",\"client_secret\"} as JSON."`
}

// snapSignature maps the --snap-service-signature value to the stored one.
func snapSignature(flag string) string {
	if flag == "none" {
		return oauth.SNAPSignatureNone
	}
	return flag
}

func (c *clientCreateCmd) Run(r *run) error {
	var publicKey string
	if c.SnapPublicKey != "" {
		var err error
		if publicKey, err = readSnapKey(c.SnapPublicKey); err != nil {
			return err
		}
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	spec := admin.ClientSpec{
		PublicKeyPEM: publicKey,
		Name:         c.Name, Grants: splitAll(c.Grant), Scopes: splitAll(c.Scope), DefaultScopes: splitAll(c.DefaultScope),
		AccessTTL: c.AccessTTL, TokenFormat: oauth.TokenFormat(c.TokenFormat), SigningAlg: c.SigningAlg,
		RefreshWithClientCredentials: c.RefreshWithCC,
		AuthMethods:                  splitAll(c.AuthMethod), Endpoints: splitAll(c.Endpoint), CanIntrospect: c.CanIntrospect,
		SNAPServiceSignature: snapSignature(c.SnapSignature), PartnerID: c.PartnerID,
	}
	cl, sec, err := s.Admin.CreateClient(r.ctx, spec)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(map[string]string{"client_id": cl.ID, "client_secret": sec})
	}
	r.printf("client_id:     %s\nclient_secret: %s\n\nThe secret is shown only this once: store it now.\n", cl.ID, sec)
	return nil
}

// splitAll lets "--scope a --scope b" and "--scope 'a b'" or "a,b" mean the same.
func splitAll(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })...)
	}
	return out
}

type clientListCmd struct {
	JSON bool `name:"json" help:"Machine-readable output."`
}

func (c *clientListCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	cls, err := s.Store.ListClients(r.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		views := make([]clientView, 0, len(cls))
		for _, cl := range cls {
			views = append(views, viewClient(cl))
		}
		return r.printJSON(views)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLIENT_ID\tNAME\tSTATE\tGRANTS\tSCOPES")
	for _, cl := range cls {
		state := "enabled"
		if cl.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", cl.ID, cl.Name, state, strings.Join(cl.Grants, ","), strings.Join(cl.Scopes, " "))
	}
	return w.Flush()
}

type clientShowCmd struct {
	ID   string `arg:"" help:"Client ID."`
	JSON bool   `name:"json" help:"Machine-readable output."`
}

func (c *clientShowCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	cl, err := s.Store.GetClient(r.ctx, c.ID)
	if err != nil {
		return fmt.Errorf("client %s: %w", c.ID, err)
	}
	return r.showClient(cl, c.JSON)
}

type clientUpdateCmd struct {
	ID             string   `arg:"" help:"Client ID."`
	Name           string   `help:"New display name."`
	Grant          []string `help:"Replace the allowed grants; repeat for several."`
	Scope          []string `help:"Replace the allowed scopes; repeat for several."`
	DefaultScope   []string `name:"default-scope" help:"Replace the default scopes; repeat for several."`
	NoDefaultScope bool     `name:"no-default-scope" help:"Remove all default scopes."`
	AccessTTL      string   `name:"access-ttl" help:"New access-token lifetime (e.g. 15m); 0 for the endpoint or server default." placeholder:"DURATION"`
	TokenFormat    string   `name:"token-format" enum:",opaque,jwt,default" default:"" help:"opaque, jwt, or default (the server's)."`
	SigningAlg     string   `name:"signing-alg" enum:",ES256,RS256,EdDSA,default" default:"" help:"ES256, RS256, EdDSA, or default (the server's)."`
	RefreshWithCC  string   `name:"refresh-with-client-credentials" enum:",true,false" default:"" help:"true or false."`
	AuthMethod     []string `name:"auth-method" help:"Replace the allowed client authentication methods; repeat for several."`
	Endpoint       []string `name:"endpoint" placeholder:"PATH" help:"Replace the allowed token endpoint paths; repeat for several."`
	AnyEndpoint    bool     `name:"any-endpoint" help:"Remove the endpoint restriction."`
	CanIntrospect  string   `name:"can-introspect" enum:",true,false" default:"" help:"true or false: may introspect other clients' tokens."`
	SnapSignature  string   `name:"snap-service-signature" enum:",symmetric,asymmetric,both,none" default:"" help:"symmetric, asymmetric, both or none: how the client signs SNAP service calls. A secret becomes recoverable only at the next rotate-secret."`
	PartnerID      string   `name:"partner-id" placeholder:"ID" help:"New SNAP X-PARTNER-ID (at most 36 printable ASCII characters, unique among clients)."`
	NoPartnerID    bool     `name:"no-partner-id" help:"Use the client ID as the X-PARTNER-ID again."`
	JSON           bool     `name:"json" help:"Print the updated client as JSON."`
}

func (c *clientUpdateCmd) Run(r *run) error {
	var ttl time.Duration
	if c.AccessTTL != "" {
		var err error
		if ttl, err = time.ParseDuration(c.AccessTTL); err != nil {
			return fmt.Errorf("--access-ttl: %q is not a duration like 15m", c.AccessTTL)
		}
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.Admin.UpdateClient(r.ctx, c.ID, func(cl *oauth.Client) error {
		if c.Name != "" {
			cl.Name = c.Name
		}
		if c.Grant != nil {
			cl.Grants = splitAll(c.Grant)
		}
		if c.Scope != nil {
			cl.Scopes = splitAll(c.Scope)
		}
		if c.DefaultScope != nil {
			cl.DefaultScopes = splitAll(c.DefaultScope)
		}
		if c.NoDefaultScope {
			cl.DefaultScopes = nil
		}
		if c.AccessTTL != "" {
			cl.AccessTTL = ttl
		}
		switch c.TokenFormat {
		case "":
		case "default":
			cl.TokenFormat = ""
		default:
			cl.TokenFormat = oauth.TokenFormat(c.TokenFormat)
		}
		switch c.SigningAlg {
		case "":
		case "default":
			cl.SigningAlg = ""
		default:
			cl.SigningAlg = c.SigningAlg
		}
		if c.RefreshWithCC != "" {
			cl.RefreshWithClientCredentials = c.RefreshWithCC == "true"
		}
		if c.AuthMethod != nil {
			cl.AuthMethods = splitAll(c.AuthMethod)
		}
		if c.Endpoint != nil {
			cl.Endpoints = splitAll(c.Endpoint)
		}
		if c.AnyEndpoint {
			cl.Endpoints = nil
		}
		if c.CanIntrospect != "" {
			cl.CanIntrospect = c.CanIntrospect == "true"
		}
		if c.SnapSignature != "" {
			cl.SNAPServiceSignature = snapSignature(c.SnapSignature)
		}
		if c.PartnerID != "" {
			cl.PartnerID = c.PartnerID
		}
		if c.NoPartnerID {
			cl.PartnerID = ""
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("client %s: %w", c.ID, err)
	}
	cl, err := s.Store.GetClient(r.ctx, c.ID)
	if err != nil {
		return err
	}
	return r.showClient(cl, c.JSON)
}

type clientIDArg struct {
	ID   string `arg:"" help:"Client ID."`
	JSON bool   `name:"json" help:"Machine-readable output."`
}

func (r *run) done(asJSON bool, id, what string) error {
	if asJSON {
		return r.printJSON(map[string]string{"client_id": id, "result": what})
	}
	r.printf("client %s %s\n", id, what)
	return nil
}

type clientDisableCmd struct{ clientIDArg }

func (c *clientDisableCmd) Run(r *run) error { return r.setClientDisabled(c.clientIDArg, true) }

type clientEnableCmd struct{ clientIDArg }

func (c *clientEnableCmd) Run(r *run) error { return r.setClientDisabled(c.clientIDArg, false) }

func (r *run) setClientDisabled(a clientIDArg, disabled bool) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Admin.SetClientDisabled(r.ctx, a.ID, disabled); err != nil {
		return fmt.Errorf("client %s: %w", a.ID, err)
	}
	if disabled {
		return r.done(a.JSON, a.ID, "disabled")
	}
	return r.done(a.JSON, a.ID, "enabled")
}

type clientDeleteCmd struct{ clientIDArg }

func (c *clientDeleteCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Store.DeleteClient(r.ctx, c.ID); err != nil {
		return fmt.Errorf("client %s: %w", c.ID, err)
	}
	return r.done(c.JSON, c.ID, "deleted")
}

type clientRotateSecretCmd struct {
	ID    string        `arg:"" help:"Client ID."`
	Grace time.Duration `default:"0s" help:"How long the previous secret keeps working (e.g. 24h); 0 stops it at once."`
	JSON  bool          `name:"json" help:"Print {\"client_id\",\"client_secret\"} as JSON."`
}

func (c *clientRotateSecretCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	sec, err := s.Admin.RotateSecret(r.ctx, c.ID, c.Grace)
	if err != nil {
		return fmt.Errorf("client %s: %w", c.ID, err)
	}
	if c.JSON {
		return r.printJSON(map[string]string{"client_id": c.ID, "client_secret": sec})
	}
	r.printf("client_id:     %s\nclient_secret: %s\n\nThe secret is shown only this once: store it now.", c.ID, sec)
	if c.Grace > 0 {
		r.printf(" The previous secret works until %s.", time.Now().Add(c.Grace).UTC().Format(time.RFC3339))
	}
	r.printf("\n")
	return nil
}
