package portal

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/admin"
	"github.com/tokengate/tokengate/oauth"
)

// allGrants are the grants an operator may allow a merchant.
var allGrants = []string{oauth.GrantClientCredentials, oauth.GrantPassword, oauth.GrantRefreshToken}

type accountsData struct {
	Accounts []*admin.AccountView
	Grants   []string
	// What the create form had, when it is shown again.
	Form accountForm
}

// accountForm is what the create and limits forms carry.
type accountForm struct {
	Email, Role  string
	Limits       admin.AccountLimits
	ScopeText    string
	TOTPRequired bool
}

func (p *Portal) accountList(w http.ResponseWriter, r *http.Request, s *session) {
	accs, err := p.svc.ListAccounts(r.Context())
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := accountsData{Accounts: accs, Grants: allGrants,
		Form: accountForm{Role: admin.RoleMerchant, TOTPRequired: true, Limits: admin.AccountLimits{Grants: []string{oauth.GrantClientCredentials}, MaxClients: 5}}}
	v := p.view(s, "Accounts", d)
	v.Notice = message(r)
	p.render(w, r, http.StatusOK, "accounts", v)
}

// limitsForm reads the limits fields of a form. Errors: a
// *admin.ValidationError for max_clients.
func limitsForm(form url.Values) (admin.AccountLimits, error) {
	l := admin.AccountLimits{Grants: form["grant"], Scopes: strings.Fields(form.Get("scopes")), SNAPKeys: form.Get("snap_keys") == "on"}
	if l.Grants == nil {
		l.Grants = []string{}
	}
	if l.Scopes == nil {
		l.Scopes = []string{}
	}
	if v := strings.TrimSpace(form.Get("max_clients")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return l, &admin.ValidationError{Field: "limits.max_clients", Message: "a whole number"}
		}
		l.MaxClients = n
	}
	return l, nil
}

func (p *Portal) accountCreate(w http.ResponseWriter, r *http.Request, s *session) {
	form := r.PostForm
	f := accountForm{Email: strings.TrimSpace(form.Get("email")), Role: form.Get("role"), ScopeText: form.Get("scopes"),
		TOTPRequired: form.Get("totp_required") == "on"}
	limits, err := limitsForm(form)
	f.Limits = limits
	if err == nil {
		var a *admin.AccountView
		a, err = p.svc.CreateAccount(r.Context(), admin.AccountSpec{
			Email: f.Email, Password: form.Get("password"), Role: f.Role, Limits: limits, TOTPRequired: f.TOTPRequired,
		})
		if err == nil {
			http.Redirect(w, r, "/accounts/"+url.PathEscape(a.ID)+"?m=created", http.StatusSeeOther)
			return
		}
	}
	msg := formError(err)
	if msg == "" || admin.ErrorCode(err) == admin.CodeForbidden {
		p.fail(w, r, s, err)
		return
	}
	accs, lerr := p.svc.ListAccounts(r.Context())
	if lerr != nil {
		p.fail(w, r, s, lerr)
		return
	}
	v := p.view(s, "Accounts", accountsData{Accounts: accs, Grants: allGrants, Form: f})
	v.Error = msg
	status := http.StatusBadRequest
	if admin.ErrorCode(err) == admin.CodeConflict {
		status = http.StatusConflict
	}
	p.render(w, r, status, "accounts", v)
}

type accountShowData struct {
	Account *admin.AccountView
	Clients []*admin.ClientView
	Grants  []string
	Self    bool
}

func (p *Portal) accountShowPage(w http.ResponseWriter, r *http.Request, s *session, status int, errMsg string) {
	id := r.PathValue("id")
	if !s.operator() {
		// Operators manage accounts; a merchant sees its own on /account.
		p.fail(w, r, s, admin.ErrNotFound)
		return
	}
	a, err := p.svc.GetAccount(r.Context(), id)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	page, err := p.svc.ListClients(r.Context(), admin.ClientQuery{OwnerAccount: id, Limit: 1000})
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	v := p.view(s, a.Email, accountShowData{Account: a, Clients: page.Clients, Grants: allGrants, Self: a.ID == s.account.ID})
	v.Notice, v.Error = message(r), errMsg
	p.render(w, r, status, "account_show", v)
}

func (p *Portal) accountShow(w http.ResponseWriter, r *http.Request, s *session) {
	p.accountShowPage(w, r, s, http.StatusOK, "")
}

func (p *Portal) accountLimits(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	limits, err := limitsForm(r.PostForm)
	if err == nil {
		totp := r.PostFormValue("totp_required") == "on"
		_, err = p.svc.UpdateAccount(r.Context(), id, admin.AccountPatch{Limits: &limits, TOTPRequired: &totp})
	}
	if err != nil {
		if msg := formError(err); msg != "" && admin.ErrorCode(err) != admin.CodeForbidden {
			p.accountShowPage(w, r, s, http.StatusBadRequest, msg)
			return
		}
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/accounts/"+url.PathEscape(id)+"?m=limits", http.StatusSeeOther)
}

func (p *Portal) accountDisable(disabled bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		id := r.PathValue("id")
		if _, err := p.svc.SetAccountDisabled(r.Context(), id, disabled); err != nil {
			p.fail(w, r, s, err)
			return
		}
		m := "acct_enabled"
		if disabled {
			m = "acct_disabled"
		}
		http.Redirect(w, r, "/accounts/"+url.PathEscape(id)+"?m="+m, http.StatusSeeOther)
	}
}

func (p *Portal) accountResetTOTP(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if _, err := p.svc.ResetTOTP(r.Context(), id); err != nil {
		p.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/accounts/"+url.PathEscape(id)+"?m=totp_reset", http.StatusSeeOther)
}

type auditData struct {
	Events   []*admin.AuditEventView
	Client   string // the client the list is filtered by
	Account  string // the account (operators)
	Operator bool
	// Older is the link to the next page of older events, with the same
	// filters ("" on the last page): built here from url.Values, because
	// a query string put into a query position of an href is escaped
	// again by html/template ('=' becomes %3D) and loses its filters.
	Older string
}

func (p *Portal) auditList(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	aq := admin.AuditQuery{Desc: true, Limit: 50, ClientID: q.Get("client")}
	if s.operator() {
		aq.AccountID = q.Get("account")
	}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			p.errorPage(w, r, s, http.StatusBadRequest, "before: an event number")
			return
		}
		aq.Before = n
	}
	page, err := p.svc.ListAudit(r.Context(), aq)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := auditData{Events: page.Events, Client: aq.ClientID, Account: aq.AccountID, Operator: s.operator()}
	if page.Next != 0 {
		filters := url.Values{}
		if aq.ClientID != "" {
			filters.Set("client", aq.ClientID)
		}
		if aq.AccountID != "" {
			filters.Set("account", aq.AccountID)
		}
		d.Older = "/audit?before=" + strconv.FormatInt(page.Next, 10)
		if len(filters) > 0 {
			d.Older += "&" + filters.Encode()
		}
	}
	p.render(w, r, http.StatusOK, "audit", p.view(s, "Audit log", d))
}
