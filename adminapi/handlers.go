package adminapi

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
)

// Response bodies of the API's own (the others are the admin service's
// views).
type (
	// CreatedClient is the answer to a client create: the client and its
	// secret, shown this once.
	CreatedClient struct {
		Client       *admin.ClientView `json:"client"`
		ClientSecret string            `json:"client_secret"`
	}
	// TokensRevoked is the answer to a revoke-all: tokens issued before
	// TokensNotBefore are inactive on every node within about a second.
	TokensRevoked struct {
		ClientID        string    `json:"client_id,omitempty"`
		Username        string    `json:"username,omitempty"`
		TokensNotBefore time.Time `json:"tokens_not_before"`
	}
	// UserList, AccountList and KeyList wrap lists, so that they can grow
	// paging members later without breaking callers.
	UserList struct {
		Users []*admin.UserView `json:"users"`
	}
	AccountList struct {
		Accounts []*admin.AccountView `json:"accounts"`
	}
	KeyList struct {
		Keys []*admin.KeyView `json:"keys"`
	}
)

// Request bodies of the API's own (the others are the admin service's
// specs and patches).
type (
	rotateSecretRequest struct {
		Grace admin.Duration `json:"grace"`
	}
	snapKeyRequest struct {
		SNAPPublicKey string `json:"snap_public_key"`
	}
	userRequest struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	passwordRequest struct {
		Password string `json:"password"`
	}
	rotateKeyRequest struct {
		Alg string `json:"alg"`
	}
	tokenRequest struct {
		Token string `json:"token"`
	}
)

func created(body any, location string) (*reply, error) {
	return &reply{status: http.StatusCreated, body: body, location: location}, nil
}

func objectPath(collection, id string) string {
	return Prefix + "/" + collection + "/" + url.PathEscape(id)
}

// Clients.

func (a *API) createClient(c *call) (*reply, error) {
	var spec admin.ClientSpec
	if err := decodeObject(c.body, &spec); err != nil {
		return nil, err
	}
	v, sec, err := a.svc.CreateClient(c.ctx, spec)
	if err != nil {
		return nil, err
	}
	return created(CreatedClient{Client: v, ClientSecret: sec}, objectPath("clients", v.ClientID))
}

func (a *API) listClients(c *call) (*reply, error) {
	q, err := query(c.r, "name", "disabled", "owner_account", "auth_method", "after", "limit")
	if err != nil {
		return nil, err
	}
	cq := admin.ClientQuery{NameContains: q.Get("name"), OwnerAccount: q.Get("owner_account"),
		AuthMethod: q.Get("auth_method"), After: q.Get("after")}
	if cq.Disabled, err = queryBool(q, "disabled"); err != nil {
		return nil, err
	}
	limit, err := queryInt(q, "limit", 1, 1000)
	if err != nil {
		return nil, err
	}
	cq.Limit = int(limit)
	page, err := a.svc.ListClients(c.ctx, cq)
	if err != nil {
		return nil, err
	}
	return ok(page)
}

func (a *API) getClient(c *call) (*reply, error) {
	v, err := a.svc.GetClient(c.ctx, c.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) updateClient(c *call) (*reply, error) {
	var patch admin.ClientPatch
	if err := decodeObject(c.body, &patch); err != nil {
		return nil, err
	}
	v, err := a.svc.UpdateClient(c.ctx, c.r.PathValue("id"), patch)
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) deleteClient(c *call) (*reply, error) {
	if err := noBody(c); err != nil {
		return nil, err
	}
	if err := a.svc.DeleteClient(c.ctx, c.r.PathValue("id")); err != nil {
		return nil, err
	}
	return &reply{status: http.StatusNoContent}, nil
}

func (a *API) setClientDisabled(disabled bool) func(*call) (*reply, error) {
	return func(c *call) (*reply, error) {
		if err := noBody(c); err != nil {
			return nil, err
		}
		v, err := a.svc.SetClientDisabled(c.ctx, c.r.PathValue("id"), disabled)
		if err != nil {
			return nil, err
		}
		return ok(v)
	}
}

func (a *API) rotateSecret(c *call) (*reply, error) {
	var req rotateSecretRequest
	if err := decodeObject(c.body, &req); err != nil {
		return nil, err
	}
	rot, err := a.svc.RotateSecret(c.ctx, c.r.PathValue("id"), time.Duration(req.Grace))
	if err != nil {
		return nil, err
	}
	return ok(rot)
}

func (a *API) setSNAPKey(c *call) (*reply, error) {
	var req snapKeyRequest
	if err := decodeObject(c.body, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.SNAPPublicKey) == "" {
		return nil, invalidField("snap_public_key", "the PEM of the client's RSA public key is required")
	}
	v, err := a.svc.SetSNAPKey(c.ctx, c.r.PathValue("id"), []byte(req.SNAPPublicKey))
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) revokeClientTokens(c *call) (*reply, error) {
	if err := noBody(c); err != nil {
		return nil, err
	}
	id := c.r.PathValue("id")
	at, err := a.svc.RevokeClientTokens(c.ctx, id)
	if err != nil {
		return nil, err
	}
	return ok(TokensRevoked{ClientID: id, TokensNotBefore: at.UTC()})
}

func (a *API) importClients(c *call) (*reply, error) {
	q, err := query(c.r, "dry_run")
	if err != nil {
		return nil, err
	}
	dry, err := queryBool(q, "dry_run")
	if err != nil {
		return nil, err
	}
	rep, err := a.svc.ImportClients(c.ctx, strings.NewReader(c.body), admin.ImportOptions{DryRun: dry != nil && *dry})
	if err != nil {
		return nil, err
	}
	return ok(rep)
}

func (a *API) exportClients(c *call) (*reply, error) {
	recs, err := a.svc.ExportClients(c.ctx)
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []*admin.ClientRecord{}
	}
	return ok(recs)
}

// Users.

func (a *API) createUser(c *call) (*reply, error) {
	var req userRequest
	if err := decodeObject(c.body, &req); err != nil {
		return nil, err
	}
	v, err := a.svc.CreateUser(c.ctx, req.Username, req.Password)
	if err != nil {
		return nil, err
	}
	return created(v, objectPath("users", v.Username))
}

func (a *API) listUsers(c *call) (*reply, error) {
	us, err := a.svc.ListUsers(c.ctx)
	if err != nil {
		return nil, err
	}
	return ok(UserList{Users: us})
}

func (a *API) getUser(c *call) (*reply, error) {
	v, err := a.svc.GetUser(c.ctx, c.r.PathValue("username"))
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) setUserPassword(c *call) (*reply, error) {
	var req passwordRequest
	if err := decodeObject(c.body, &req); err != nil {
		return nil, err
	}
	v, err := a.svc.SetUserPassword(c.ctx, c.r.PathValue("username"), req.Password)
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) setUserDisabled(disabled bool) func(*call) (*reply, error) {
	return func(c *call) (*reply, error) {
		if err := noBody(c); err != nil {
			return nil, err
		}
		v, err := a.svc.SetUserDisabled(c.ctx, c.r.PathValue("username"), disabled)
		if err != nil {
			return nil, err
		}
		return ok(v)
	}
}

func (a *API) revokeUserTokens(c *call) (*reply, error) {
	if err := noBody(c); err != nil {
		return nil, err
	}
	name := c.r.PathValue("username")
	at, err := a.svc.RevokeUserTokens(c.ctx, name)
	if err != nil {
		return nil, err
	}
	return ok(TokensRevoked{Username: name, TokensNotBefore: at.UTC()})
}

// Signing keys and tokens.

func (a *API) listKeys(c *call) (*reply, error) {
	ks, err := a.svc.ListSigningKeys(c.ctx)
	if err != nil {
		return nil, err
	}
	return ok(KeyList{Keys: ks})
}

func (a *API) rotateKey(c *call) (*reply, error) {
	var req rotateKeyRequest
	if err := decodeObject(c.body, &req); err != nil {
		return nil, err
	}
	k, err := a.svc.RotateSigningKey(c.ctx, req.Alg)
	if err != nil {
		return nil, err
	}
	return ok(k)
}

func tokenOf(body string) (string, error) {
	var req tokenRequest
	if err := decodeObject(body, &req); err != nil {
		return "", err
	}
	if req.Token == "" {
		return "", invalidField("token", "the token is required")
	}
	return req.Token, nil
}

func (a *API) introspect(c *call) (*reply, error) {
	tok, err := tokenOf(c.body)
	if err != nil {
		return nil, err
	}
	in, err := a.svc.IntrospectToken(c.ctx, tok)
	if err != nil {
		return nil, err
	}
	return ok(in) // RFC 7662's JSON (oauth.Introspection.MarshalJSON)
}

func (a *API) revokeToken(c *call) (*reply, error) {
	tok, err := tokenOf(c.body)
	if err != nil {
		return nil, err
	}
	if err := a.svc.RevokeToken(c.ctx, tok); err != nil {
		return nil, err
	}
	return &reply{status: http.StatusNoContent}, nil
}

// Audit.

func (a *API) listAudit(c *call) (*reply, error) {
	q, err := query(c.r, "since", "until", "client_id", "account_id", "object_type", "object_id", "order", "after", "before", "limit")
	if err != nil {
		return nil, err
	}
	aq := admin.AuditQuery{ClientID: q.Get("client_id"), AccountID: q.Get("account_id"),
		ObjectType: q.Get("object_type"), ObjectID: q.Get("object_id")}
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		aq.Desc = true
	default:
		return nil, invalidField("order", "must be asc or desc")
	}
	if aq.Since, err = queryTime(q, "since"); err != nil {
		return nil, err
	}
	if aq.Until, err = queryTime(q, "until"); err != nil {
		return nil, err
	}
	const maxSeq = 1<<63 - 1
	if aq.After, err = queryInt(q, "after", 0, maxSeq); err != nil {
		return nil, err
	}
	if aq.Before, err = queryInt(q, "before", 0, maxSeq); err != nil {
		return nil, err
	}
	limit, err := queryInt(q, "limit", 1, 1000)
	if err != nil {
		return nil, err
	}
	aq.Limit = int(limit)
	page, err := a.svc.ListAudit(c.ctx, aq)
	if err != nil {
		return nil, err
	}
	return ok(page)
}

func (a *API) verifyAudit(c *call) (*reply, error) {
	v, err := a.svc.VerifyAudit(c.ctx)
	if err != nil {
		return nil, err
	}
	return ok(v)
}

// Accounts.

func (a *API) createAccount(c *call) (*reply, error) {
	var spec admin.AccountSpec
	if err := decodeObject(c.body, &spec); err != nil {
		return nil, err
	}
	v, err := a.svc.CreateAccount(c.ctx, spec)
	if err != nil {
		return nil, err
	}
	return created(v, objectPath("accounts", v.ID))
}

func (a *API) listAccounts(c *call) (*reply, error) {
	as, err := a.svc.ListAccounts(c.ctx)
	if err != nil {
		return nil, err
	}
	return ok(AccountList{Accounts: as})
}

func (a *API) getAccount(c *call) (*reply, error) {
	v, err := a.svc.GetAccount(c.ctx, c.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) updateAccount(c *call) (*reply, error) {
	var patch admin.AccountPatch
	if err := decodeObject(c.body, &patch); err != nil {
		return nil, err
	}
	v, err := a.svc.UpdateAccount(c.ctx, c.r.PathValue("id"), patch)
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) setAccountDisabled(disabled bool) func(*call) (*reply, error) {
	return func(c *call) (*reply, error) {
		if err := noBody(c); err != nil {
			return nil, err
		}
		v, err := a.svc.SetAccountDisabled(c.ctx, c.r.PathValue("id"), disabled)
		if err != nil {
			return nil, err
		}
		return ok(v)
	}
}

func (a *API) setAccountPassword(c *call) (*reply, error) {
	var req passwordRequest
	if err := decodeObject(c.body, &req); err != nil {
		return nil, err
	}
	v, err := a.svc.SetAccountPassword(c.ctx, c.r.PathValue("id"), req.Password)
	if err != nil {
		return nil, err
	}
	return ok(v)
}

func (a *API) resetTOTP(c *call) (*reply, error) {
	if err := noBody(c); err != nil {
		return nil, err
	}
	v, err := a.svc.ResetTOTP(c.ctx, c.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return ok(v)
}
