package postgres

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// Encoding of values in columns, with the same semantics as the SQLite
// store: times are timestamptz (microseconds), read back in UTC, and the
// zero time is NULL; empty lists and byte slices read back as nil.

var errNil = errors.New("postgres: nil argument")

func dbTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

func goTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// dbList and dbBytes keep nil from binding as NULL in NOT NULL columns.
func dbList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func dbBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func goList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

func goBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Clients.

const clientColumns = `id, name, secrets, grants, scopes, default_scopes, access_ttl, token_format,
	signing_alg, refresh_with_client_credentials, public_key_pem, disabled, created_at, updated_at,
	auth_methods, endpoints, can_introspect, tokens_not_before, snap_service_signature, partner_id,
	owner_account`

// clientSet assigns every column but id ($1) from clientArgs' arguments.
const clientSet = `name = $2, secrets = $3, grants = $4, scopes = $5, default_scopes = $6,
	access_ttl = $7, token_format = $8, signing_alg = $9, refresh_with_client_credentials = $10,
	public_key_pem = $11, disabled = $12, created_at = $13, updated_at = $14, auth_methods = $15,
	endpoints = $16, can_introspect = $17, tokens_not_before = $18, snap_service_signature = $19,
	partner_id = $20, owner_account = $21`

// partnerIDExpr is a client's effective partner ID, the expression of the
// unique index clients_partner_id (migration 00003): a WHERE clause must
// spell it the same way for PostgreSQL to read through the index.
const partnerIDExpr = `COALESCE(NULLIF(partner_id, ''), id)`

func clientArgs(c *oauth.Client) []any {
	return []any{
		c.ID, c.Name, codec.EncodeSecrets(c.Secrets), dbList(c.Grants), dbList(c.Scopes),
		dbList(c.DefaultScopes), int64(c.AccessTTL), string(c.TokenFormat), c.SigningAlg,
		c.RefreshWithClientCredentials, c.PublicKeyPEM, c.Disabled,
		dbTime(c.CreatedAt), dbTime(c.UpdatedAt),
		dbList(c.AuthMethods), dbList(c.Endpoints), c.CanIntrospect, dbTime(c.TokensNotBefore),
		c.SNAPServiceSignature, c.PartnerID, c.OwnerAccount,
	}
}

// placeholders returns "$1, $2, ..." for n arguments.
func placeholders(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
	}
	return b.String()
}

func scanClient(row pgx.Row) (*oauth.Client, error) {
	var (
		c                           oauth.Client
		secrets                     []byte
		ttl                         int64
		format                      string
		created, updated, notBefore pgtype.Timestamptz
	)
	err := row.Scan(&c.ID, &c.Name, &secrets, &c.Grants, &c.Scopes, &c.DefaultScopes, &ttl, &format,
		&c.SigningAlg, &c.RefreshWithClientCredentials, &c.PublicKeyPEM, &c.Disabled, &created, &updated,
		&c.AuthMethods, &c.Endpoints, &c.CanIntrospect, &notBefore, &c.SNAPServiceSignature, &c.PartnerID,
		&c.OwnerAccount)
	if err != nil {
		return nil, err
	}
	c.AccessTTL = time.Duration(ttl)
	c.TokenFormat = oauth.TokenFormat(format)
	c.Grants, c.Scopes, c.DefaultScopes = goList(c.Grants), goList(c.Scopes), goList(c.DefaultScopes)
	c.AuthMethods, c.Endpoints = goList(c.AuthMethods), goList(c.Endpoints)
	c.CreatedAt, c.UpdatedAt, c.TokensNotBefore = goTime(created), goTime(updated), goTime(notBefore)
	if c.Secrets, err = codec.DecodeSecrets(secrets); err != nil {
		return nil, err
	}
	return &c, nil
}

// Users.

const userColumns = `username, password_hash, disabled, created_at, updated_at, tokens_not_before`

// userSet assigns every column but username ($1) from userArgs' arguments.
const userSet = `password_hash = $2, disabled = $3, created_at = $4, updated_at = $5, tokens_not_before = $6`

func userArgs(u *oauth.User) []any {
	return []any{u.Username, u.PasswordHash, u.Disabled, dbTime(u.CreatedAt), dbTime(u.UpdatedAt),
		dbTime(u.TokensNotBefore)}
}

func scanUser(row pgx.Row) (*oauth.User, error) {
	var (
		u                           oauth.User
		created, updated, notBefore pgtype.Timestamptz
	)
	if err := row.Scan(&u.Username, &u.PasswordHash, &u.Disabled, &created, &updated, &notBefore); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt, u.TokensNotBefore = goTime(created), goTime(updated), goTime(notBefore)
	return &u, nil
}

// Accounts.

const accountColumns = `id, email, email_key, password_hash, totp_secret, totp_enabled, totp_required,
	totp_last_step, role, disabled, limits, sessions_not_before, created_at, updated_at`

// accountSet assigns every column but id ($1) from accountArgs' arguments.
const accountSet = `email = $2, email_key = $3, password_hash = $4, totp_secret = $5, totp_enabled = $6,
	totp_required = $7, totp_last_step = $8, role = $9, disabled = $10, limits = $11,
	sessions_not_before = $12, created_at = $13, updated_at = $14`

func accountArgs(a *oauth.Account) []any {
	return []any{
		a.ID, a.Email, oauth.EmailKey(a.Email), a.PasswordHash, dbBytes(a.TOTPSecret), a.TOTPEnabled,
		a.TOTPRequired, a.TOTPLastStep, a.Role, a.Disabled, codec.EncodeLimits(a.Limits),
		dbTime(a.SessionsNotBefore), dbTime(a.CreatedAt), dbTime(a.UpdatedAt),
	}
}

func scanAccount(row pgx.Row) (*oauth.Account, error) {
	var (
		a                          oauth.Account
		emailKey                   string
		limits                     []byte
		sessions, created, updated pgtype.Timestamptz
	)
	err := row.Scan(&a.ID, &a.Email, &emailKey, &a.PasswordHash, &a.TOTPSecret, &a.TOTPEnabled, &a.TOTPRequired,
		&a.TOTPLastStep, &a.Role, &a.Disabled, &limits, &sessions, &created, &updated)
	if err != nil {
		return nil, err
	}
	a.TOTPSecret = goBytes(a.TOTPSecret)
	a.SessionsNotBefore, a.CreatedAt, a.UpdatedAt = goTime(sessions), goTime(created), goTime(updated)
	if a.Limits, err = codec.DecodeLimits(limits); err != nil {
		return nil, err
	}
	return &a, nil
}

// Audit events.

const auditColumns = `seq, time, actor_kind, actor_id, actor_name, remote, action, object_type, object_id,
	account, before, after, prev_hash, hash`

func auditArgs(e *oauth.AuditEvent) []any {
	return []any{
		e.Seq, dbTime(e.Time), e.ActorKind, e.ActorID, e.ActorName, e.Remote, e.Action, e.ObjectType,
		e.ObjectID, e.Account, dbBytes(e.Before), dbBytes(e.After), dbBytes(e.PrevHash), dbBytes(e.Hash),
	}
}

func scanAudit(row pgx.Row) (*oauth.AuditEvent, error) {
	var (
		e  oauth.AuditEvent
		at pgtype.Timestamptz
	)
	err := row.Scan(&e.Seq, &at, &e.ActorKind, &e.ActorID, &e.ActorName, &e.Remote, &e.Action, &e.ObjectType,
		&e.ObjectID, &e.Account, &e.Before, &e.After, &e.PrevHash, &e.Hash)
	if err != nil {
		return nil, err
	}
	e.Time = goTime(at)
	e.Before, e.After, e.PrevHash, e.Hash = goBytes(e.Before), goBytes(e.After), goBytes(e.PrevHash), goBytes(e.Hash)
	return &e, nil
}

// Tokens.

const tokenColumns = `id, kind, format, client_id, subject, scopes, family_id, issued_at, expires_at, revoked_at, rotated_at`

// tokenArgs are one token's column values in tokenColumns order.
func tokenArgs(t *oauth.Token) []any {
	return []any{
		t.ID, string(t.Kind), string(t.Format), t.ClientID, t.Subject, strings.Join(t.Scopes, " "),
		t.FamilyID, dbTime(t.IssuedAt), dbTime(t.ExpiresAt), dbTime(t.RevokedAt), dbTime(t.RotatedAt),
	}
}

func scanToken(row pgx.Row) (*oauth.Token, error) {
	var (
		t                                 oauth.Token
		kind, format, scopes              string
		issued, expires, revoked, rotated pgtype.Timestamptz
	)
	err := row.Scan(&t.ID, &kind, &format, &t.ClientID, &t.Subject, &scopes, &t.FamilyID,
		&issued, &expires, &revoked, &rotated)
	if err != nil {
		return nil, err
	}
	t.Kind, t.Format, t.Scopes = oauth.TokenKind(kind), oauth.TokenFormat(format), codec.SplitScopes(scopes)
	t.IssuedAt, t.ExpiresAt = goTime(issued), goTime(expires)
	t.RevokedAt, t.RotatedAt = goTime(revoked), goTime(rotated)
	return &t, nil
}

// tokenRows holds tokens column by column: the arguments of insertTokens,
// which inserts any number of tokens in one statement. The group-commit
// writer appends the tokens of every CreateTokens and rotation of a batch
// to one tokenRows, so a batch inserts its tokens in a single statement.
type tokenRows struct {
	id, kind, format, client, subject, scopes, family []string
	issued, expires, revoked, rotated                 []pgtype.Timestamptz
}

const insertTokens = `INSERT INTO tokens (` + tokenColumns + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[])`

// newTokenRows converts tokens in the caller's goroutine, so the writer
// goroutine only appends slices. An ID given twice fails here with
// oauth.ErrAlreadyExists, as the insert would.
func newTokenRows(tokens []*oauth.Token) (*tokenRows, error) {
	n := len(tokens)
	r := &tokenRows{
		id: make([]string, 0, n), kind: make([]string, 0, n), format: make([]string, 0, n),
		client: make([]string, 0, n), subject: make([]string, 0, n), scopes: make([]string, 0, n),
		family: make([]string, 0, n), issued: make([]pgtype.Timestamptz, 0, n),
		expires: make([]pgtype.Timestamptz, 0, n), revoked: make([]pgtype.Timestamptz, 0, n),
		rotated: make([]pgtype.Timestamptz, 0, n),
	}
	for i, t := range tokens {
		if t == nil {
			return nil, errNil
		}
		for _, u := range tokens[:i] {
			if u.ID == t.ID {
				return nil, fmt.Errorf("postgres: %w: one token ID given twice", oauth.ErrAlreadyExists)
			}
		}
		r.id = append(r.id, t.ID)
		r.kind = append(r.kind, string(t.Kind))
		r.format = append(r.format, string(t.Format))
		r.client = append(r.client, t.ClientID)
		r.subject = append(r.subject, t.Subject)
		r.scopes = append(r.scopes, strings.Join(t.Scopes, " "))
		r.family = append(r.family, t.FamilyID)
		r.issued = append(r.issued, dbTime(t.IssuedAt))
		r.expires = append(r.expires, dbTime(t.ExpiresAt))
		r.revoked = append(r.revoked, dbTime(t.RevokedAt))
		r.rotated = append(r.rotated, dbTime(t.RotatedAt))
	}
	return r, nil
}

func (r *tokenRows) len() int { return len(r.id) }

func (r *tokenRows) append(o *tokenRows) {
	r.id = append(r.id, o.id...)
	r.kind = append(r.kind, o.kind...)
	r.format = append(r.format, o.format...)
	r.client = append(r.client, o.client...)
	r.subject = append(r.subject, o.subject...)
	r.scopes = append(r.scopes, o.scopes...)
	r.family = append(r.family, o.family...)
	r.issued = append(r.issued, o.issued...)
	r.expires = append(r.expires, o.expires...)
	r.revoked = append(r.revoked, o.revoked...)
	r.rotated = append(r.rotated, o.rotated...)
}

func (r *tokenRows) args() []any {
	return []any{r.id, r.kind, r.format, r.client, r.subject, r.scopes, r.family,
		r.issued, r.expires, r.revoked, r.rotated}
}

// Signing keys.

const keyColumns = `id, alg, private_key, created_at, retired_at, publish_until`

func scanKey(row pgx.Row) (*oauth.SigningKey, error) {
	var (
		k                         oauth.SigningKey
		pem                       []byte
		created, retired, publish pgtype.Timestamptz
	)
	if err := row.Scan(&k.ID, &k.Alg, &pem, &created, &retired, &publish); err != nil {
		return nil, err
	}
	k.PrivateKeyPEM = goBytes(pem)
	k.CreatedAt, k.RetiredAt, k.PublishUntil = goTime(created), goTime(retired), goTime(publish)
	return &k, nil
}

// notFound turns pgx.ErrNoRows into oauth.ErrNotFound.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) || unstorableKey(err) {
		return fmt.Errorf("postgres: %s: %w", what, oauth.ErrNotFound)
	}
	return mapErr(err)
}

// unstorableKey reports whether err says a looked-up key holds text
// PostgreSQL cannot store (a NUL byte, invalid UTF-8): no record can have
// such a key, so the lookup finds nothing, rather than failing.
func unstorableKey(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05") // character_not_in_repertoire, untranslatable_character
}
