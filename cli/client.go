package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokengate/tokengate/admin"
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
	Import       clientImportCmd       `cmd:"" help:"Register existing clients, with their IDs and secrets, from a JSON file (see the README); all or nothing, idempotent."`
	Export       clientExportCmd       `cmd:"" help:"Write every client in the import format, without secrets."`
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (r *run) showClient(v *admin.ClientView, asJSON bool) error {
	if asJSON {
		return r.printJSON(v)
	}
	state := "enabled"
	if v.Disabled {
		state = "disabled"
	}
	ttl := "(endpoint or server default)"
	if v.AccessTTL != 0 {
		ttl = time.Duration(v.AccessTTL).String()
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
	if v.OwnerAccount != "" {
		fmt.Fprintf(w, "owner account:\t%s\n", v.OwnerAccount)
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
		state := "current"
		if s.ExpiresAt != nil {
			state = "expires " + s.ExpiresAt.Format(time.RFC3339)
		}
		secrets[i] = state + " (recoverable: " + yesNo(s.Recoverable) + ")"
	}
	key := "none"
	if v.SNAPKeyFingerprint != "" {
		key = "SHA-256 " + v.SNAPKeyFingerprint
	}
	fmt.Fprintf(w, "refresh with client_credentials:\t%t\nsnap public key:\t%s\nsnap service signature:\t%s\npartner id:\t%s\nsecrets:\t%s\n",
		v.RefreshWithClientCredentials, key, v.SNAPServiceSignature, partner, strings.Join(secrets, ", "))
	if v.TokensNotBefore != nil {
		fmt.Fprintf(w, "tokens revoked before:\t%s\n", v.TokensNotBefore.Format(time.RFC3339Nano))
	}
	fmt.Fprintf(w, "created:\t%s\n", v.CreatedAt.Format(time.RFC3339))
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
	Owner         string        `name:"owner" placeholder:"ACCOUNT_ID" help:"The merchant account that owns the client (see account list)."`
	JSON          bool          `name:"json" help:"Print {\"client_id\",\"client_secret\"} as JSON."`
}

func (c *clientCreateCmd) Run(r *run) error {
	spec := admin.ClientSpec{
		Name: c.Name, Grants: splitAll(c.Grant), Scopes: splitAll(c.Scope), DefaultScopes: splitAll(c.DefaultScope),
		AccessTTL: admin.Duration(c.AccessTTL), TokenFormat: c.TokenFormat, SigningAlg: c.SigningAlg,
		RefreshWithClientCredentials: c.RefreshWithCC,
		AuthMethods:                  splitAll(c.AuthMethod), Endpoints: splitAll(c.Endpoint), CanIntrospect: c.CanIntrospect,
		SNAPServiceSignature: c.SnapSignature, PartnerID: c.PartnerID, OwnerAccount: c.Owner,
	}
	if c.SnapPublicKey != "" {
		raw, err := readFile(c.SnapPublicKey)
		if err != nil {
			return err
		}
		spec.SNAPPublicKey = string(raw)
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	v, sec, err := s.Admin.CreateClient(r.ctx, spec)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(map[string]string{"client_id": v.ClientID, "client_secret": sec})
	}
	r.printf("client_id:     %s\nclient_secret: %s\n\nThe secret is shown only this once: store it now.\n", v.ClientID, sec)
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
	NameContains string `name:"name-contains" placeholder:"TEXT" help:"Only clients whose name contains TEXT (any case)."`
	Disabled     bool   `name:"disabled" xor:"state" help:"Only disabled clients."`
	Enabled      bool   `name:"enabled" xor:"state" help:"Only enabled clients."`
	Owner        string `name:"owner" placeholder:"ACCOUNT_ID" help:"Only the clients of this merchant account."`
	AuthMethod   string `name:"auth-method" placeholder:"METHOD" help:"Only clients that may authenticate with METHOD."`
	JSON         bool   `name:"json" help:"Machine-readable output."`
}

func (c *clientListCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	q := admin.ClientQuery{NameContains: c.NameContains, OwnerAccount: c.Owner, AuthMethod: c.AuthMethod, Limit: 1000}
	if c.Disabled || c.Enabled {
		q.Disabled = &c.Disabled
	}
	views := []*admin.ClientView{}
	for {
		page, err := s.Admin.ListClients(r.ctx, q)
		if err != nil {
			return err
		}
		views = append(views, page.Clients...)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if c.JSON {
		return r.printJSON(views)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLIENT_ID\tNAME\tSTATE\tGRANTS\tSCOPES")
	for _, v := range views {
		state := "enabled"
		if v.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.ClientID, v.Name, state, strings.Join(v.Grants, ","), strings.Join(v.Scopes, " "))
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
	v, err := s.Admin.GetClient(r.ctx, c.ID)
	if err != nil {
		return err
	}
	return r.showClient(v, c.JSON)
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
	Owner          string   `name:"owner" placeholder:"ACCOUNT_ID" help:"Give the client to this merchant account."`
	NoOwner        bool     `name:"no-owner" help:"Take the client away from its merchant account."`
	JSON           bool     `name:"json" help:"Print the updated client as JSON."`
}

// patch is the admin service's patch the flags describe: a flag not given
// leaves its field nil.
func (c *clientUpdateCmd) patch() (admin.ClientPatch, error) {
	var p admin.ClientPatch
	list := func(flag []string, clear bool) *[]string {
		switch {
		case clear:
			return &[]string{}
		case flag != nil:
			l := splitAll(flag)
			return &l
		}
		return nil
	}
	str := func(v string, def string) *string {
		switch v {
		case "":
			return nil
		case def:
			return new("")
		}
		return &v
	}
	boolean := func(v string) *bool {
		if v == "" {
			return nil
		}
		return new(v == "true")
	}
	if c.Name != "" {
		p.Name = &c.Name
	}
	p.Grants, p.Scopes = list(c.Grant, false), list(c.Scope, false)
	p.DefaultScopes = list(c.DefaultScope, c.NoDefaultScope)
	p.AuthMethods, p.Endpoints = list(c.AuthMethod, false), list(c.Endpoint, c.AnyEndpoint)
	if c.AccessTTL != "" {
		ttl, err := time.ParseDuration(c.AccessTTL)
		if err != nil {
			return p, fmt.Errorf("--access-ttl: %q is not a duration like 15m", c.AccessTTL)
		}
		p.AccessTTL = new(admin.Duration(ttl))
	}
	p.TokenFormat, p.SigningAlg = str(c.TokenFormat, "default"), str(c.SigningAlg, "default")
	p.RefreshWithClientCredentials, p.CanIntrospect = boolean(c.RefreshWithCC), boolean(c.CanIntrospect)
	p.SNAPServiceSignature = str(c.SnapSignature, "")
	switch {
	case c.NoPartnerID:
		p.PartnerID = new("")
	case c.PartnerID != "":
		p.PartnerID = &c.PartnerID
	}
	switch {
	case c.NoOwner:
		p.OwnerAccount = new("")
	case c.Owner != "":
		p.OwnerAccount = &c.Owner
	}
	return p, nil
}

func (c *clientUpdateCmd) Run(r *run) error {
	p, err := c.patch()
	if err != nil {
		return err
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.UpdateClient(r.ctx, c.ID, p)
	if err != nil {
		return err
	}
	return r.showClient(v, c.JSON)
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
	if _, err := s.Admin.SetClientDisabled(r.ctx, a.ID, disabled); err != nil {
		return err
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
	if err := s.Admin.DeleteClient(r.ctx, c.ID); err != nil {
		return err
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
	rot, err := s.Admin.RotateSecret(r.ctx, c.ID, c.Grace)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(map[string]string{"client_id": rot.ClientID, "client_secret": rot.ClientSecret})
	}
	r.printf("client_id:     %s\nclient_secret: %s\n\nThe secret is shown only this once: store it now.", rot.ClientID, rot.ClientSecret)
	if rot.PreviousExpiresAt != nil {
		r.printf(" The previous secret works until %s.", rot.PreviousExpiresAt.Format(time.RFC3339))
	}
	r.printf("\n")
	return nil
}

type clientImportCmd struct {
	File   string `arg:"" placeholder:"FILE" help:"JSON array of clients (- for stdin); see the README for the format."`
	DryRun bool   `name:"dry-run" help:"Check the file and say what would be done, changing nothing."`
	JSON   bool   `name:"json" help:"Machine-readable output."`
}

func (c *clientImportCmd) Run(r *run) error {
	var in io.Reader = r.io.In
	if c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return fmt.Errorf("read %s: %w", c.File, errors.Unwrap(err))
		}
		defer f.Close()
		in = f
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.Admin.ImportClients(r.ctx, in, admin.ImportOptions{DryRun: c.DryRun})
	var bad admin.ImportErrors
	if errors.As(err, &bad) {
		// One line per bad record, then the one-line failure.
		for _, e := range bad {
			fmt.Fprintf(r.io.Err, "%s: %s\n", c.File, strings.ReplaceAll(e.Error(), "\n", " "))
		}
		return fmt.Errorf("%s: %d bad records: nothing was imported", c.File, len(bad))
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(rep)
	}
	verb := "created"
	if rep.DryRun {
		verb = "would create"
	}
	r.printf("%s %d clients; %d were registered already, unchanged\n", verb, len(rep.Created), len(rep.Unchanged))
	for _, n := range rep.Notes {
		r.printf("note: %s\n", n)
	}
	return nil
}

type clientExportCmd struct {
	File string `arg:"" optional:"" placeholder:"FILE" help:"New file to write (default: standard output)."`
}

func (c *clientExportCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	recs, err := s.Admin.ExportClients(r.ctx)
	if err != nil {
		return err
	}
	if c.File == "" || c.File == "-" {
		return r.printJSON(recs)
	}
	f, err := os.OpenFile(c.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", c.File, errors.Unwrap(err))
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := errors.Join(enc.Encode(recs), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", c.File, err)
	}
	r.printf("wrote %d clients to %s (without secrets)\n", len(recs), c.File)
	return nil
}
