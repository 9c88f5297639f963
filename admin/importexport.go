package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/oauth"
)

// ClientRecord is one client in the import and export format: a JSON
// array of these objects. Every field but client_id, name and grants is
// optional; unknown fields are refused. Export writes the same format
// without client_secret.
type ClientRecord struct {
	// ClientID is the client's existing ID: 1 to 256 characters of text
	// without ':', tabs, control characters or surrounding space.
	ClientID string `json:"client_id"`
	// ClientSecret is the client's existing secret, in plain text (8 to
	// 1024 bytes); tokengate stores its keyed hash, and for a client with
	// symmetric SNAP service signatures the secret sealed under the KEK,
	// as for a secret it generates. Absent: the client has no secret
	// (enough for a client that authenticates with snap_signature only;
	// any other needs a client rotate-secret).
	ClientSecret string   `json:"client_secret,omitempty"`
	Name         string   `json:"name"`
	Grants       []string `json:"grants"`
	Scopes       []string `json:"scopes,omitempty"`
	// DefaultScopes are granted when a request names none; each must be
	// among Scopes.
	DefaultScopes []string `json:"default_scopes,omitempty"`
	// AccessTTL: "15m", "1h30m", or a number of seconds; absent or 0: the
	// endpoint's or the server's default.
	AccessTTL                    Duration `json:"access_ttl,omitempty"`
	TokenFormat                  string   `json:"token_format,omitempty"` // opaque or jwt
	SigningAlg                   string   `json:"signing_alg,omitempty"`  // ES256, RS256 or EdDSA
	RefreshWithClientCredentials bool     `json:"refresh_with_client_credentials,omitempty"`
	// AuthMethods: client_secret_basic, client_secret_post,
	// snap_signature; absent: snap_signature with a SNAP key, else the two
	// secret methods.
	AuthMethods []string `json:"auth_methods,omitempty"`
	Endpoints   []string `json:"endpoints,omitempty"` // absent: every endpoint
	// CanIntrospect lets the client introspect other clients' tokens.
	CanIntrospect bool `json:"can_introspect,omitempty"`
	// SNAPPublicKey is the client's RSA public key (PEM), >= 2048 bits.
	SNAPPublicKey string `json:"snap_public_key,omitempty"`
	// SNAPServiceSignature: symmetric, asymmetric, both or none.
	SNAPServiceSignature string `json:"snap_service_signature,omitempty"`
	// PartnerID is the SNAP X-PARTNER-ID when it is not the client ID.
	PartnerID string `json:"partner_id,omitempty"`
	Disabled  bool   `json:"disabled,omitempty"`
	// OwnerAccount is the owning merchant account: its ID, or its email
	// (anything with an '@'); export writes the ID.
	OwnerAccount string `json:"owner_account,omitempty"`
}

// MaxImportSize is the largest import file read.
const MaxImportSize = 32 << 20

// MinImportedSecretLen is the shortest client secret an import accepts;
// one shorter than ShortSecretLen is imported with a note to rotate it.
const (
	MinImportedSecretLen = 8
	ShortSecretLen       = 32
)

// ImportError is a record of an import file that cannot be imported.
type ImportError struct {
	Record   int    // position in the array, from 1 (0: the file as a whole)
	Line     int    // line the record starts on, from 1
	ClientID string // "" when unknown
	Err      error  // a *ValidationError, a *ConflictError
}

func (e *ImportError) Error() string {
	var where []string
	if e.Record > 0 {
		where = append(where, fmt.Sprintf("record %d", e.Record))
	}
	if e.Line > 0 {
		where = append(where, fmt.Sprintf("line %d", e.Line))
	}
	if e.ClientID != "" {
		where = append(where, "client_id "+e.ClientID)
	}
	if len(where) == 0 {
		return e.Err.Error()
	}
	return strings.Join(where, ", ") + ": " + e.Err.Error()
}

func (e *ImportError) Unwrap() error { return e.Err }

// ImportErrors are every bad record of an import file (at most
// maxImportErrors), in file order. errors.Is and errors.As see each.
type ImportErrors []*ImportError

const maxImportErrors = 50

func (es ImportErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("%d bad records, nothing imported: %s", len(es), strings.Join(msgs, "\n"))
}

// Unwrap returns the errors of the records.
func (es ImportErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// ImportReport is what ImportClients did (or, in a dry run, would do).
type ImportReport struct {
	Created   []string `json:"created"`   // client IDs
	Unchanged []string `json:"unchanged"` // registered already, exactly so
	Notes     []string `json:"notes,omitempty"`
	DryRun    bool     `json:"dry_run,omitempty"`
}

// importRecord is a parsed record with where it came from.
type importRecord struct {
	rec  ClientRecord
	pos  int
	line int
}

// ParseImport reads an import file: a JSON array of ClientRecord objects.
// It checks the syntax and the fields' types only. Errors: ImportErrors
// (each bad record by position and line; a file that is not an array or
// is over MaxImportSize as record 0).
func ParseImport(r io.Reader) ([]ClientRecord, error) {
	recs, err := parseImport(r)
	out := make([]ClientRecord, len(recs))
	for i := range recs {
		out[i] = recs[i].rec
	}
	return out, err
}

func parseImport(r io.Reader) ([]importRecord, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxImportSize+1))
	if err != nil {
		return nil, err
	}
	fileErr := func(line int, format string, args ...any) error {
		return ImportErrors{{Line: line, Err: invalid("", format, args...)}}
	}
	if len(data) > MaxImportSize {
		return nil, fileErr(0, "the file is larger than %d MiB", MaxImportSize>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return nil, fileErr(lineAt(data, dec.InputOffset()), "the file is not a JSON array of client objects")
	}
	var (
		recs []importRecord
		errs ImportErrors
	)
	for pos := 1; dec.More(); pos++ {
		line := lineAt(data, valueStart(data, dec.InputOffset()))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				line = lineAt(data, se.Offset)
			}
			return nil, append(errs, &ImportError{Record: pos, Line: line, Err: invalid("", "not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))})
		}
		ir := importRecord{pos: pos, line: line}
		if err := decodeRecord(raw, &ir.rec); err != nil {
			if len(errs) < maxImportErrors {
				errs = append(errs, &ImportError{Record: pos, Line: line, ClientID: ir.rec.ClientID, Err: err})
			}
			continue
		}
		recs = append(recs, ir)
	}
	if _, err := dec.Token(); err != nil {
		return nil, append(errs, &ImportError{Line: lineAt(data, dec.InputOffset()), Err: invalid("", "the array does not end: %s", strings.TrimPrefix(err.Error(), "json: "))})
	}
	if dec.More() {
		return nil, append(errs, &ImportError{Line: lineAt(data, dec.InputOffset()), Err: invalid("", "there is something after the array")})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return recs, nil
}

// decodeRecord decodes one object strictly, naming the field at fault.
func decodeRecord(raw json.RawMessage, rec *ClientRecord) error {
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return invalid("", "a record is a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(rec)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return invalid(te.Field, "wrong type (want %s)", jsonType(te.Type.String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	}
	// A Duration's own error: the only field that reports it this way.
	return invalid("access_ttl", "%s", strings.TrimPrefix(err.Error(), "json: "))
}

func jsonType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "bool":
		return "true or false"
	}
	return goType
}

// valueStart skips the whitespace and comma before the value at off.
func valueStart(data []byte, off int64) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\r', '\n', ',':
			off++
		default:
			return off
		}
	}
	return off
}

// lineAt is the line (from 1) of byte offset off.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// ImportOptions change ImportClients.
type ImportOptions struct {
	// DryRun validates and reports without changing anything.
	DryRun bool
}

// ImportClients registers the clients of an import file (see
// ClientRecord) with their existing IDs and secrets, so merchants keep
// their credentials. It is idempotent: a record whose client exists with
// exactly the record's settings (and secret, when the record has one) is
// reported unchanged; a record whose client exists with other settings is
// an error (change such a client with UpdateClient, or drop it from the
// file) — an import never overwrites a live client. Every record is
// checked before anything is written, and the new clients are created in
// one store transaction with one audit event each (client.import): a file
// with a bad record imports nothing. Operators only. Errors:
// ErrUnauthenticated, ErrForbidden, ImportErrors (each bad record by
// position and line, wrapping a *ValidationError or a *ConflictError),
// *ConflictError (a client created by someone else meanwhile: run it
// again), ErrUnavailable.
func (s *Service) ImportClients(ctx context.Context, r io.Reader, opts ImportOptions) (*ImportReport, error) {
	p, err := s.operator(ctx, "import clients")
	if err != nil {
		return nil, err
	}
	if s.secrets == nil {
		return nil, errNoEngine
	}
	recs, err := parseImport(r)
	if err != nil {
		return nil, err
	}
	existing, err := s.store.ListClients(ctx)
	if err != nil {
		return nil, storeErr("clients", err)
	}
	byID := make(map[string]*oauth.Client, len(existing))
	partners := make(map[string]string, len(existing)) // effective partner ID -> client ID
	for _, c := range existing {
		byID[c.ID] = c
		partners[c.EffectivePartnerID()] = c.ID
		partners[c.ID] = c.ID
	}
	accounts, err := s.accountIndex(ctx)
	if err != nil {
		return nil, err
	}
	rep := &ImportReport{Created: []string{}, Unchanged: []string{}, DryRun: opts.DryRun}
	var (
		create []*oauth.Client
		evs    []*oauth.AuditEvent
		errs   ImportErrors
		seen   = map[string]int{} // client ID or partner ID -> record
	)
	fail := func(ir importRecord, err error) {
		if len(errs) < maxImportErrors {
			errs = append(errs, &ImportError{Record: ir.pos, Line: ir.line, ClientID: ir.rec.ClientID, Err: err})
		}
	}
	for _, ir := range recs {
		c, notes, err := s.clientFromRecord(ir.rec, accounts)
		if err != nil {
			fail(ir, err)
			continue
		}
		if old, ok := byID[c.ID]; ok {
			if diff := s.differences(old, c, ir.rec.ClientSecret); len(diff) > 0 {
				fail(ir, &ConflictError{Message: "differs from the registered client in " + strings.Join(diff, ", ") +
					"; an import never changes a client: change it with client update, or leave it out of the file"})
				continue
			}
			rep.Unchanged = append(rep.Unchanged, c.ID)
			continue
		}
		clash := ""
		for _, key := range []string{c.ID, c.EffectivePartnerID()} {
			if prev, ok := seen[key]; ok {
				fail(ir, &ConflictError{Field: "client_id", Message: fmt.Sprintf("%s is the client ID or partner ID of record %d too", key, prev)})
				clash = key
				break
			}
			if other, ok := partners[key]; ok {
				fail(ir, &ConflictError{Field: "partner_id", Message: fmt.Sprintf("%s is already the client ID or partner ID of client %s", key, other)})
				clash = key
				break
			}
		}
		if clash != "" {
			continue
		}
		seen[c.ID], seen[c.EffectivePartnerID()] = ir.pos, ir.pos
		create = append(create, c)
		rep.Created = append(rep.Created, c.ID)
		rep.Notes = append(rep.Notes, notes...)
		evs = append(evs, s.event(p, "client.import", ObjectClient, c.ID, c.OwnerAccount, nil, NewClientView(c)))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if opts.DryRun || len(create) == 0 {
		return rep, nil
	}
	if err := s.audited(ctx, func(ctx context.Context) error { return s.store.CreateClients(ctx, create...) }, evs...); err != nil {
		if errors.Is(err, oauth.ErrAlreadyExists) {
			return nil, &ConflictError{Message: "a client of the file was registered meanwhile; nothing was imported: run the import again"}
		}
		return nil, storeErr("clients", err)
	}
	return rep, nil
}

// accountIndex maps account IDs and email keys to account IDs.
func (s *Service) accountIndex(ctx context.Context) (map[string]string, error) {
	as, err := s.store.ListAccounts(ctx)
	if err != nil {
		return nil, storeErr("accounts", err)
	}
	idx := make(map[string]string, 2*len(as))
	for _, a := range as {
		idx[a.ID] = a.ID
		idx[oauth.EmailKey(a.Email)] = a.ID
	}
	return idx, nil
}

// clientFromRecord builds and validates the client a record describes,
// with its secret hashed (and kept for sealing when recoverable).
func (s *Service) clientFromRecord(r ClientRecord, accounts map[string]string) (*oauth.Client, []string, error) {
	if err := validClientID(r.ClientID); err != nil {
		return nil, nil, err
	}
	var notes []string
	owner := ""
	if r.OwnerAccount != "" {
		key := r.OwnerAccount
		if strings.Contains(key, "@") {
			key = oauth.EmailKey(key)
		}
		id, ok := accounts[key]
		if !ok {
			return nil, nil, invalid("owner_account", "no account %s", r.OwnerAccount)
		}
		owner = id
	}
	spec := ClientSpec{Name: r.Name, Grants: r.Grants, Scopes: r.Scopes, DefaultScopes: r.DefaultScopes,
		AccessTTL: r.AccessTTL, TokenFormat: r.TokenFormat, SigningAlg: r.SigningAlg,
		RefreshWithClientCredentials: r.RefreshWithClientCredentials, AuthMethods: r.AuthMethods,
		Endpoints: r.Endpoints, CanIntrospect: r.CanIntrospect, SNAPPublicKey: r.SNAPPublicKey,
		SNAPServiceSignature: r.SNAPServiceSignature, PartnerID: r.PartnerID, OwnerAccount: owner}
	if spec.PartnerID == r.ClientID {
		spec.PartnerID = ""
	}
	c, err := newClient(r.ClientID, spec, s.now())
	if err != nil {
		return nil, nil, err
	}
	c.Disabled = r.Disabled
	switch sec := r.ClientSecret; {
	case sec == "":
		if c.AllowsAuthMethod(oauth.AuthSecretBasic) || c.AllowsAuthMethod(oauth.AuthSecretPost) || c.SNAPSymmetric() {
			notes = append(notes, "client "+c.ID+" has no secret: run client rotate-secret to give it one")
		}
	case len(sec) < MinImportedSecretLen || len(sec) > oauth.MaxClientSecretLen || !oauth.ValidCredentialText(sec) || strings.TrimSpace(sec) != sec:
		return nil, nil, invalid("client_secret", "must be %d to %d characters of text without control characters or surrounding space",
			MinImportedSecretLen, oauth.MaxClientSecretLen)
	default:
		c.Secrets = []oauth.SecretHash{s.newSecret(sec, c.SNAPServiceSignature)}
		if len(sec) < ShortSecretLen {
			notes = append(notes, fmt.Sprintf("client %s has a short secret (%d characters): rotate it when its merchant can take a new one", c.ID, len(sec)))
		}
	}
	return c, notes, nil
}

// differences lists the fields in which an imported client differs from
// the registered one: its settings, and its secret when the record gives
// one (compared with the current secret's hash in constant time).
func (s *Service) differences(old, imported *oauth.Client, sec string) []string {
	ov, iv := NewClientView(old), NewClientView(imported)
	var diff []string
	add := func(field string, same bool) {
		if !same {
			diff = append(diff, field)
		}
	}
	add("name", ov.Name == iv.Name)
	add("grants", slices.Equal(ov.Grants, iv.Grants))
	add("scopes", slices.Equal(ov.Scopes, iv.Scopes))
	add("default_scopes", slices.Equal(ov.DefaultScopes, iv.DefaultScopes))
	add("access_ttl", ov.AccessTTL == iv.AccessTTL)
	add("token_format", ov.TokenFormat == iv.TokenFormat)
	add("signing_alg", ov.SigningAlg == iv.SigningAlg)
	add("refresh_with_client_credentials", ov.RefreshWithClientCredentials == iv.RefreshWithClientCredentials)
	add("auth_methods", slices.Equal(ov.AuthMethods, iv.AuthMethods))
	add("endpoints", slices.Equal(ov.Endpoints, iv.Endpoints))
	add("can_introspect", ov.CanIntrospect == iv.CanIntrospect)
	add("snap_public_key", ov.SNAPPublicKey == iv.SNAPPublicKey)
	add("snap_service_signature", ov.SNAPServiceSignature == iv.SNAPServiceSignature)
	add("partner_id", ov.PartnerID == iv.PartnerID)
	add("disabled", ov.Disabled == iv.Disabled)
	add("owner_account", ov.OwnerAccount == iv.OwnerAccount)
	if sec != "" {
		want := s.secrets.Hash(sec)
		same := false
		for _, h := range old.Secrets {
			if h.ExpiresAt.IsZero() && subtle.ConstantTimeCompare(h.Hash, want) == 1 {
				same = true
			}
		}
		add("client_secret", same)
	}
	return diff
}

// ExportClients returns every client in the import format, without
// secrets, ordered by ID: importing the result into this store again
// changes nothing, and into a new store registers the same clients
// (without secrets). The export is recorded in the audit trail
// (client.export). Operators only. Errors: ErrUnauthenticated,
// ErrForbidden, ErrUnavailable.
func (s *Service) ExportClients(ctx context.Context) ([]*ClientRecord, error) {
	p, err := s.operator(ctx, "export clients")
	if err != nil {
		return nil, err
	}
	cs, err := s.store.ListClients(ctx)
	if err != nil {
		return nil, storeErr("clients", err)
	}
	out := make([]*ClientRecord, 0, len(cs))
	for _, c := range cs {
		sig := c.SNAPServiceSignature
		out = append(out, &ClientRecord{
			ClientID: c.ID, Name: c.Name, Grants: c.Grants, Scopes: c.Scopes, DefaultScopes: c.DefaultScopes,
			AccessTTL: Duration(c.AccessTTL), TokenFormat: string(c.TokenFormat), SigningAlg: c.SigningAlg,
			RefreshWithClientCredentials: c.RefreshWithClientCredentials, AuthMethods: c.EffectiveAuthMethods(),
			Endpoints: c.Endpoints, CanIntrospect: c.CanIntrospect, SNAPPublicKey: c.PublicKeyPEM,
			SNAPServiceSignature: sig, PartnerID: c.PartnerID, Disabled: c.Disabled, OwnerAccount: c.OwnerAccount,
		})
	}
	ev := s.event(p, "client.export", ObjectClient, "", "", nil, map[string]int{"clients": len(out)})
	return out, s.appendLeft(ctx, ev)
}
