package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/internal/codec"
)

// Encoding of values in columns. Times are UNIX microseconds (the
// precision PostgreSQL keeps too), read back in UTC; the zero time is NULL.
// Empty lists and byte slices read back as nil.

func dbTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func goTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

func dbBool(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func dbBytes(b []byte) []byte {
	if b == nil {
		return []byte{} // nil would bind as NULL
	}
	return b
}

func goBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func encodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // cannot fail for []string
	return string(b)
}

func decodeList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("sqlite: corrupt list %q: %w", s, err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// queryer is what *sql.DB (reads) and *sql.Conn (reads inside the write
// transaction) have in common.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// notFound turns sql.ErrNoRows into oauth.ErrNotFound.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", what, oauth.ErrNotFound)
	}
	return mapErr(err)
}

// Clients.

const clientColumns = `id, name, secrets, grants, scopes, default_scopes, access_ttl, token_format,
	signing_alg, refresh_with_client_credentials, public_key_pem, disabled, created_at, updated_at,
	auth_methods, endpoints, can_introspect, tokens_not_before, snap_service_signature, partner_id,
	owner_account`

// clientSet is the UPDATE assignment of every column but id, in
// clientColumns order: clientArgs(c)[1:] are its arguments.
const clientSet = `name = ?, secrets = ?, grants = ?, scopes = ?, default_scopes = ?, access_ttl = ?,
	token_format = ?, signing_alg = ?, refresh_with_client_credentials = ?, public_key_pem = ?,
	disabled = ?, created_at = ?, updated_at = ?, auth_methods = ?, endpoints = ?, can_introspect = ?,
	tokens_not_before = ?, snap_service_signature = ?, partner_id = ?, owner_account = ?`

func clientArgs(c *oauth.Client) []any {
	return []any{
		c.ID, c.Name, string(codec.EncodeSecrets(c.Secrets)), encodeList(c.Grants), encodeList(c.Scopes),
		encodeList(c.DefaultScopes), int64(c.AccessTTL), string(c.TokenFormat), c.SigningAlg,
		dbBool(c.RefreshWithClientCredentials), c.PublicKeyPEM, dbBool(c.Disabled),
		dbTime(c.CreatedAt), dbTime(c.UpdatedAt),
		encodeList(c.AuthMethods), encodeList(c.Endpoints), dbBool(c.CanIntrospect), dbTime(c.TokensNotBefore),
		c.SNAPServiceSignature, c.PartnerID, c.OwnerAccount,
	}
}

// placeholders returns "?, ?, ..." for n arguments.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func scanClient(sc scanner) (*oauth.Client, error) {
	var (
		c                                      oauth.Client
		secrets, grants, scopes, defaultScopes string
		authMethods, endpoints                 string
		ttl, refreshCC, disabled, introspect   int64
		format                                 string
		created, updated, notBefore            sql.NullInt64
	)
	err := sc.Scan(&c.ID, &c.Name, &secrets, &grants, &scopes, &defaultScopes, &ttl, &format,
		&c.SigningAlg, &refreshCC, &c.PublicKeyPEM, &disabled, &created, &updated,
		&authMethods, &endpoints, &introspect, &notBefore, &c.SNAPServiceSignature, &c.PartnerID, &c.OwnerAccount)
	if err != nil {
		return nil, err
	}
	c.AccessTTL = time.Duration(ttl)
	c.TokenFormat = oauth.TokenFormat(format)
	c.RefreshWithClientCredentials = refreshCC != 0
	c.Disabled = disabled != 0
	c.CanIntrospect = introspect != 0
	c.CreatedAt, c.UpdatedAt, c.TokensNotBefore = goTime(created), goTime(updated), goTime(notBefore)
	if c.Secrets, err = codec.DecodeSecrets([]byte(secrets)); err != nil {
		return nil, err
	}
	if c.Grants, err = decodeList(grants); err != nil {
		return nil, err
	}
	if c.Scopes, err = decodeList(scopes); err != nil {
		return nil, err
	}
	if c.DefaultScopes, err = decodeList(defaultScopes); err != nil {
		return nil, err
	}
	if c.AuthMethods, err = decodeList(authMethods); err != nil {
		return nil, err
	}
	if c.Endpoints, err = decodeList(endpoints); err != nil {
		return nil, err
	}
	return &c, nil
}

func getClient(ctx context.Context, q queryer, id string) (*oauth.Client, error) {
	return getClientWhere(ctx, q, `id = ?`, id)
}

// partnerIDExpr is a client's effective partner ID, the expression of the
// unique index clients_partner_id (migration 00003): a WHERE clause must
// spell it the same way for SQLite to read through the index.
const partnerIDExpr = `COALESCE(NULLIF(partner_id, ''), id)`

// getClientWhere reads the client matching where (with one argument).
func getClientWhere(ctx context.Context, q queryer, where, arg string) (*oauth.Client, error) {
	c, err := scanClient(q.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE `+where, arg))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			// A miss decodes a typical record too: see codec.TypicalClient.
			scanClient(typicalClientRow)
		}
		return nil, notFound(err, "client")
	}
	return c, nil
}

// typicalClientRow is codec.TypicalClient's columns as a scanner.
var typicalClientRow = columnsRow(clientArgs(codec.TypicalClient()))

// columnsRow scans fixed column values the way database/sql does for the
// types clientArgs produces.
type columnsRow []any

func (r columnsRow) Scan(dest ...any) error {
	if len(dest) != len(r) {
		return fmt.Errorf("sqlite: %d columns scanned into %d values", len(r), len(dest))
	}
	for i, d := range dest {
		switch d := d.(type) {
		case *string:
			s, _ := r[i].(string)
			*d = strings.Clone(s) // database/sql copies text too
		case *int64:
			*d, _ = r[i].(int64)
		case *sql.NullInt64:
			n, ok := r[i].(int64)
			*d = sql.NullInt64{Int64: n, Valid: ok}
		default:
			return fmt.Errorf("sqlite: cannot scan into %T", d)
		}
	}
	return nil
}

// Users.

const userColumns = `username, password_hash, disabled, created_at, updated_at, tokens_not_before`

// userSet is the UPDATE assignment of every column but username, in
// userColumns order: userArgs(u)[1:] are its arguments.
const userSet = `password_hash = ?, disabled = ?, created_at = ?, updated_at = ?, tokens_not_before = ?`

func userArgs(u *oauth.User) []any {
	return []any{u.Username, u.PasswordHash, dbBool(u.Disabled), dbTime(u.CreatedAt), dbTime(u.UpdatedAt),
		dbTime(u.TokensNotBefore)}
}

func scanUser(sc scanner) (*oauth.User, error) {
	var (
		u                           oauth.User
		disabled                    int64
		created, updated, notBefore sql.NullInt64
	)
	if err := sc.Scan(&u.Username, &u.PasswordHash, &disabled, &created, &updated, &notBefore); err != nil {
		return nil, err
	}
	u.Disabled = disabled != 0
	u.CreatedAt, u.UpdatedAt, u.TokensNotBefore = goTime(created), goTime(updated), goTime(notBefore)
	return &u, nil
}

func getUser(ctx context.Context, q queryer, username string) (*oauth.User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if err != nil {
		return nil, notFound(err, "user "+username)
	}
	return u, nil
}

// Accounts.

const accountColumns = `id, email, email_key, password_hash, totp_secret, totp_enabled, totp_required,
	totp_last_step, role, disabled, limits, sessions_not_before, created_at, updated_at`

// accountSet is the UPDATE assignment of every column but id, in
// accountColumns order: accountArgs(a)[1:] are its arguments.
const accountSet = `email = ?, email_key = ?, password_hash = ?, totp_secret = ?, totp_enabled = ?,
	totp_required = ?, totp_last_step = ?, role = ?, disabled = ?, limits = ?, sessions_not_before = ?,
	created_at = ?, updated_at = ?`

func accountArgs(a *oauth.Account) []any {
	return []any{
		a.ID, a.Email, oauth.EmailKey(a.Email), a.PasswordHash, dbBytes(a.TOTPSecret), dbBool(a.TOTPEnabled),
		dbBool(a.TOTPRequired), a.TOTPLastStep, a.Role, dbBool(a.Disabled), string(codec.EncodeLimits(a.Limits)),
		dbTime(a.SessionsNotBefore), dbTime(a.CreatedAt), dbTime(a.UpdatedAt),
	}
}

func scanAccount(sc scanner) (*oauth.Account, error) {
	var (
		a                           oauth.Account
		emailKey, limits            string
		totp                        []byte
		enabled, required, disabled int64
		sessions, created, updated  sql.NullInt64
	)
	err := sc.Scan(&a.ID, &a.Email, &emailKey, &a.PasswordHash, &totp, &enabled, &required, &a.TOTPLastStep,
		&a.Role, &disabled, &limits, &sessions, &created, &updated)
	if err != nil {
		return nil, err
	}
	a.TOTPSecret = goBytes(totp)
	a.TOTPEnabled, a.TOTPRequired, a.Disabled = enabled != 0, required != 0, disabled != 0
	a.SessionsNotBefore, a.CreatedAt, a.UpdatedAt = goTime(sessions), goTime(created), goTime(updated)
	if a.Limits, err = codec.DecodeLimits([]byte(limits)); err != nil {
		return nil, err
	}
	return &a, nil
}

// Audit events.

const auditColumns = `seq, time, actor_kind, actor_id, actor_name, remote, action, object_type, object_id,
	account, before, after, prev_hash, hash`

func auditArgs(e *oauth.AuditEvent) []any {
	return []any{
		e.Seq, e.Time.UnixMicro(), e.ActorKind, e.ActorID, e.ActorName, e.Remote, e.Action, e.ObjectType,
		e.ObjectID, e.Account, dbBytes(e.Before), dbBytes(e.After), dbBytes(e.PrevHash), dbBytes(e.Hash),
	}
}

func scanAudit(sc scanner) (*oauth.AuditEvent, error) {
	var (
		e  oauth.AuditEvent
		at int64
	)
	err := sc.Scan(&e.Seq, &at, &e.ActorKind, &e.ActorID, &e.ActorName, &e.Remote, &e.Action, &e.ObjectType,
		&e.ObjectID, &e.Account, &e.Before, &e.After, &e.PrevHash, &e.Hash)
	if err != nil {
		return nil, err
	}
	e.Time = time.UnixMicro(at).UTC()
	e.Before, e.After, e.PrevHash, e.Hash = goBytes(e.Before), goBytes(e.After), goBytes(e.PrevHash), goBytes(e.Hash)
	return &e, nil
}

// Tokens.

// tokenArgs are the insertToken arguments, computed in the caller's
// goroutine so the writer goroutine only executes statements.
func tokenArgs(t *oauth.Token) []any {
	return []any{
		t.ID, string(t.Kind), string(t.Format), t.ClientID, t.Subject, strings.Join(t.Scopes, " "),
		t.FamilyID, dbTime(t.IssuedAt), dbTime(t.ExpiresAt), dbTime(t.RevokedAt), dbTime(t.RotatedAt),
	}
}

func scanToken(sc scanner) (*oauth.Token, error) {
	var (
		t                                 oauth.Token
		kind, format, scopes              string
		issued, expires, revoked, rotated sql.NullInt64
	)
	err := sc.Scan(&t.ID, &kind, &format, &t.ClientID, &t.Subject, &scopes, &t.FamilyID,
		&issued, &expires, &revoked, &rotated)
	if err != nil {
		return nil, err
	}
	t.Kind, t.Format, t.Scopes = oauth.TokenKind(kind), oauth.TokenFormat(format), codec.SplitScopes(scopes)
	t.IssuedAt, t.ExpiresAt = goTime(issued), goTime(expires)
	t.RevokedAt, t.RotatedAt = goTime(revoked), goTime(rotated)
	return &t, nil
}

// Signing keys.

const keyColumns = `id, alg, private_key, created_at, retired_at, publish_until`

func scanKey(sc scanner) (*oauth.SigningKey, error) {
	var (
		k                         oauth.SigningKey
		pem                       []byte
		created, retired, publish sql.NullInt64
	)
	if err := sc.Scan(&k.ID, &k.Alg, &pem, &created, &retired, &publish); err != nil {
		return nil, err
	}
	k.PrivateKeyPEM = goBytes(pem)
	k.CreatedAt, k.RetiredAt, k.PublishUntil = goTime(created), goTime(retired), goTime(publish)
	return &k, nil
}
