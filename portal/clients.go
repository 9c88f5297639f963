package portal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/secret"
)

// clientRow is a client in the list, with its owner's email for
// operators.
type clientRow struct {
	*admin.ClientView
	Owner string
}

type clientListData struct {
	Clients []clientRow
	Next    string // the next page's cursor
	Account string // the account the list is filtered by (operators)
	// Owners maps account IDs to emails (operators).
	Owners map[string]string
}

func (p *Portal) clientList(w http.ResponseWriter, r *http.Request, s *session) {
	q := admin.ClientQuery{After: r.URL.Query().Get("after"), Limit: 100}
	d := clientListData{}
	if s.operator() {
		q.OwnerAccount = r.URL.Query().Get("account")
		d.Account = q.OwnerAccount
		owners, err := p.owners(r, s)
		if err != nil {
			p.fail(w, r, s, err)
			return
		}
		d.Owners = owners
	}
	page, err := p.svc.ListClients(r.Context(), q)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	for _, c := range page.Clients {
		d.Clients = append(d.Clients, clientRow{ClientView: c, Owner: d.Owners[c.OwnerAccount]})
	}
	d.Next = page.Next
	v := p.view(s, "Clients", d)
	v.Notice = message(r)
	p.render(w, r, http.StatusOK, "clients", v)
}

// owners maps every account's ID to its email (operators only).
func (p *Portal) owners(r *http.Request, s *session) (map[string]string, error) {
	if !s.operator() {
		return nil, nil
	}
	accs, err := p.svc.ListAccounts(r.Context())
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(accs))
	for _, a := range accs {
		m[a.ID] = a.Email
	}
	return m, nil
}

// clientForm is the create form: its choices and what was entered.
type clientForm struct {
	// Choices: the grants and scopes the account may use (for a merchant,
	// its limits; an operator types scopes), the auth methods and the
	// token endpoints.
	Grants, Scopes, AuthMethods, Endpoints []string
	Operator                               bool
	Accounts                               []*admin.AccountView // owner choices (operators)
	// What was entered.
	Spec      admin.ClientSpec
	AccessTTL string
	ScopeText string
}

func (p *Portal) newClientForm(r *http.Request, s *session) (*clientForm, error) {
	f := &clientForm{Operator: s.operator(), Endpoints: p.endpoints,
		AuthMethods: []string{oauth.AuthSecretBasic, oauth.AuthSecretPost}}
	if s.operator() {
		f.Grants = allGrants
		f.AuthMethods = admin.AuthMethods
		accs, err := p.svc.ListAccounts(r.Context())
		if err != nil {
			return nil, err
		}
		f.Accounts = accs
	} else {
		f.Grants, f.Scopes = s.account.Limits.Grants, s.account.Limits.Scopes
		if s.account.Limits.SNAPKeys {
			f.AuthMethods = admin.AuthMethods
		}
	}
	return f, nil
}

func (p *Portal) clientNewForm(w http.ResponseWriter, r *http.Request, s *session) {
	f, err := p.newClientForm(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if len(f.Grants) > 0 {
		f.Spec.Grants = f.Grants[:1]
	}
	p.render(w, r, http.StatusOK, "client_new", p.view(s, "New client", f))
}

// clientCreate registers a client and shows its secret, once.
func (p *Portal) clientCreate(w http.ResponseWriter, r *http.Request, s *session) {
	f, err := p.newClientForm(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	form := r.PostForm
	f.Spec = admin.ClientSpec{
		Name:        strings.TrimSpace(form.Get("name")),
		Grants:      form["grant"],
		Scopes:      append(slices.Clone(form["scope"]), strings.Fields(form.Get("scopes"))...),
		TokenFormat: form.Get("token_format"),
		AuthMethods: form["auth_method"],
		Endpoints:   form["endpoint"],
	}
	f.AccessTTL, f.ScopeText = strings.TrimSpace(form.Get("access_ttl")), form.Get("scopes")
	if s.operator() {
		f.Spec.OwnerAccount = form.Get("owner")
	}
	formFail := func(status int, msg string) {
		v := p.view(s, "New client", f)
		v.Error = msg
		p.render(w, r, status, "client_new", v)
	}
	if f.AccessTTL != "" {
		d, err := time.ParseDuration(f.AccessTTL)
		if err != nil || d < 0 {
			formFail(http.StatusBadRequest, "access_ttl: a duration such as 15m or 1h")
			return
		}
		f.Spec.AccessTTL = admin.Duration(d)
	}
	c, secret, err := p.svc.CreateClient(r.Context(), f.Spec)
	if err != nil {
		if msg := formError(err); msg != "" {
			status := http.StatusBadRequest
			if admin.ErrorCode(err) == admin.CodeForbidden {
				status = http.StatusForbidden
			}
			formFail(status, msg)
			return
		}
		p.fail(w, r, s, err)
		return
	}
	p.showSecret(w, r, s, "Client created", c, secret, nil)
}

// clientData is a client's page.
type clientData struct {
	Client *admin.ClientView
	Owner  string // the owner's email (operators)
	Grace  []graceChoice
	// Once is the rotate form's one-time value: a second submission of
	// the same form (a double click, a reload answering "resend?") is
	// refused instead of rotating again.
	Once string
}

type graceChoice struct{ Value, Label string }

// graces are the rotation form's choices of how long the previous
// secret keeps working.
// These are the only graces the portal accepts (the README promises at
// most 30 days; the service alone would allow more).
var graces = []graceChoice{
	{"0s", "stops at once"}, {"1h", "1 hour"}, {"24h", "24 hours"}, {"168h", "7 days"}, {"720h", "30 days"},
}

// chosenGrace returns the grace a rotate form chose, if it is one of
// graces.
func chosenGrace(v string) (time.Duration, bool) {
	for _, g := range graces {
		if g.Value == v {
			d, err := time.ParseDuration(v)
			return d, err == nil
		}
	}
	return 0, false
}

func (p *Portal) clientShow(w http.ResponseWriter, r *http.Request, s *session) {
	p.clientPage(w, r, s, http.StatusOK, r.PathValue("id"), "")
}

// clientPage shows client id's page, with errMsg beside its forms (a
// notice from the URL when there is none).
func (p *Portal) clientPage(w http.ResponseWriter, r *http.Request, s *session, status int, id, errMsg string) {
	c, err := p.svc.GetClient(r.Context(), id)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := clientData{Client: c, Grace: graces, Once: secret.NewID(32)}
	if s.operator() && c.OwnerAccount != "" {
		if a, err := p.svc.GetAccount(r.Context(), c.OwnerAccount); err == nil {
			d.Owner = a.Email
		}
	}
	v := p.view(s, c.Name, d)
	if errMsg != "" {
		v.Error = errMsg
	} else {
		v.Notice = message(r)
	}
	p.render(w, r, status, "client", v)
}

// rotateOnce is the nonce key of a rotate form's one-time value.
func rotateOnce(v string) string { return "portal:rotate:" + v }

func (p *Portal) clientRotate(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	grace, ok := chosenGrace(r.PostFormValue("grace"))
	if !ok {
		p.clientPage(w, r, s, http.StatusBadRequest, id, "grace: choose one of the offered times, at most 30 days.")
		return
	}
	// The form's one-time value is spent in the store, so a second
	// submission is refused on every node. A rotation that then fails
	// leaves it spent: the page, reloaded, has a new one.
	once := r.PostFormValue("once")
	if !wellFormed(once) {
		p.clientPage(w, r, s, http.StatusBadRequest, id, "The form is out of date. Try again.")
		return
	}
	switch err := p.sessions.UseNonce(r.Context(), rotateOnce(once), p.now().Add(p.max)); {
	case errors.Is(err, oauth.ErrAlreadyExists):
		p.clientPage(w, r, s, http.StatusConflict, id, "This rotation form was already sent (a double click, or a reload of its page): "+
			"the secret was rotated by the first submission, whose new secret is not shown again. "+
			"The secret in use keeps working for the grace chosen then; rotate again here to get a new secret you can copy.")
		return
	case err != nil:
		p.fail(w, r, s, storeErr(err))
		return
	}
	rot, err := p.svc.RotateSecret(r.Context(), id, grace)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	c, err := p.svc.GetClient(r.Context(), id)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	p.showSecret(w, r, s, "Secret rotated", c, rot.ClientSecret, rot.PreviousExpiresAt)
}

// clientSNAPKey registers the SNAP public key uploaded as a file
// (pem_file) or pasted (pem).
func (p *Portal) clientSNAPKey(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	pemBytes := []byte(r.PostFormValue("pem"))
	if f, _, err := r.FormFile("pem_file"); err == nil {
		pemBytes, err = io.ReadAll(io.LimitReader(f, maxBody))
		f.Close()
		if err != nil {
			p.errorPage(w, r, s, http.StatusBadRequest, "The file could not be read.")
			return
		}
	}
	if _, err := p.svc.SetSNAPKey(r.Context(), id, pemBytes); err != nil {
		if admin.ErrorCode(err) == admin.CodeInvalid {
			// The client's page again, with what is wrong with the key
			// (it exists and is visible, or the error would be not found).
			p.clientPage(w, r, s, http.StatusBadRequest, id, admin.ErrorMessage(err))
			return
		}
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/clients/"+url.PathEscape(id)+"?m=snap_key", http.StatusSeeOther)
}

func (p *Portal) clientRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if _, err := p.svc.RevokeClientTokens(r.Context(), id); err != nil {
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/clients/"+url.PathEscape(id)+"?m=revoked", http.StatusSeeOther)
}

func (p *Portal) clientDisable(disabled bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		id := r.PathValue("id")
		if _, err := p.svc.SetClientDisabled(r.Context(), id, disabled); err != nil {
			p.fail(w, r, s, err)
			return
		}
		m := "enabled"
		if disabled {
			m = "disabled"
		}
		http.Redirect(w, r, "/clients/"+url.PathEscape(id)+"?m="+m, http.StatusSeeOther)
	}
}

// secretData is the page that shows a new secret, once.
type secretData struct {
	Client            *admin.ClientView
	Secret            string
	PreviousExpiresAt *time.Time
	TokenURL          string
	// JSON and Env are data: URLs of the credentials as files: the
	// downloads exist only inside this response.
	JSON, Env         template.URL
	JSONName, EnvName string
}

// credentials is the downloadable JSON file.
type credentials struct {
	ClientID          string     `json:"client_id"`
	ClientSecret      string     `json:"client_secret"`
	TokenURL          string     `json:"token_url"`
	Scopes            []string   `json:"scopes"`
	PreviousExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

func (p *Portal) showSecret(w http.ResponseWriter, r *http.Request, s *session, title string, c *admin.ClientView, secret string, prev *time.Time) {
	d := secretData{Client: c, Secret: secret, PreviousExpiresAt: prev, TokenURL: p.tokenURL(c),
		JSONName: "tokengate-" + fileNamePart(c.ClientID) + ".json", EnvName: "tokengate-" + fileNamePart(c.ClientID) + ".env"}
	js, _ := json.MarshalIndent(credentials{ClientID: c.ClientID, ClientSecret: secret, TokenURL: d.TokenURL,
		Scopes: c.Scopes, PreviousExpiresAt: prev}, "", "  ")
	env := "TOKENGATE_CLIENT_ID=" + shellQuote(c.ClientID) + "\nTOKENGATE_CLIENT_SECRET=" + shellQuote(secret) +
		"\nTOKENGATE_TOKEN_URL=" + shellQuote(d.TokenURL) + "\n"
	// Whatever the values hold (an imported client ID is any text), the
	// files are base64 inside a data: URL of a fixed media type, so the
	// URLs are safe.
	d.JSON = template.URL("data:application/json;base64," + base64.StdEncoding.EncodeToString(append(js, '\n')))
	d.Env = template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(env)))
	p.render(w, r, http.StatusOK, "secret", p.view(s, title, d))
}

// shellQuote quotes v for a POSIX shell that sources the .env file:
// inside single quotes nothing is special, and each ' becomes quote,
// backslash, quote, quote (close, an escaped quote, reopen). An
// imported client ID may hold $(...), backquotes or ;, which unquoted
// would run as commands when the file is sourced. dotenv readers take
// single-quoted values literally too (only a value holding a ', which
// no server-made value does, reads right in a shell alone). Values
// cannot hold a newline: the service refuses control characters in IDs,
// and the secret and URL are the server's.
func shellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// fileNamePart is id as part of a download's file name: characters other
// than letters, digits, '.', '-' and '_' become '_'.
func fileNamePart(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, id)
}

// tokenURL is where the client gets tokens: the first endpoint it may
// use, on the issuer.
func (p *Portal) tokenURL(c *admin.ClientView) string {
	path := "/oauth/token"
	switch {
	case len(c.Endpoints) > 0:
		path = c.Endpoints[0]
	case len(p.endpoints) > 0:
		path = p.endpoints[0]
	}
	return p.issuer + path
}
