package adminapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
)

// routes is the API's route table: the mux is built from it and nothing
// else, and the OpenAPI test walks it.
func (a *API) routes() []Route {
	p := func(path string) string { return Prefix + path }
	return []Route{
		{Method: "GET", Path: p("/openapi.json"), Public: true, run: a.openAPI},
		{Method: "GET", Path: p("/problems/{code}"), Public: true, run: a.problemType},

		{Method: "POST", Path: p("/clients"), Idempotent: true, run: a.createClient},
		{Method: "GET", Path: p("/clients"), run: a.listClients},
		{Method: "GET", Path: p("/clients/{id}"), run: a.getClient},
		{Method: "PATCH", Path: p("/clients/{id}"), run: a.updateClient},
		{Method: "DELETE", Path: p("/clients/{id}"), run: a.deleteClient},
		{Method: "POST", Path: p("/clients/{id}/enable"), run: a.setClientDisabled(false)},
		{Method: "POST", Path: p("/clients/{id}/disable"), run: a.setClientDisabled(true)},
		{Method: "POST", Path: p("/clients/{id}/rotate-secret"), Idempotent: true, run: a.rotateSecret},
		{Method: "PUT", Path: p("/clients/{id}/snap-key"), run: a.setSNAPKey},
		{Method: "POST", Path: p("/clients/{id}/revoke-tokens"), run: a.revokeClientTokens},
		{Method: "POST", Path: p("/client-imports"), Idempotent: true, Limit: maxImportBody, run: a.importClients},
		{Method: "GET", Path: p("/client-export"), run: a.exportClients},

		{Method: "POST", Path: p("/users"), Idempotent: true, run: a.createUser},
		{Method: "GET", Path: p("/users"), run: a.listUsers},
		{Method: "GET", Path: p("/users/{username}"), run: a.getUser},
		{Method: "PUT", Path: p("/users/{username}/password"), run: a.setUserPassword},
		{Method: "POST", Path: p("/users/{username}/enable"), run: a.setUserDisabled(false)},
		{Method: "POST", Path: p("/users/{username}/disable"), run: a.setUserDisabled(true)},
		{Method: "POST", Path: p("/users/{username}/revoke-tokens"), run: a.revokeUserTokens},

		{Method: "GET", Path: p("/signing-keys"), run: a.listKeys},
		{Method: "POST", Path: p("/signing-keys/rotate"), Idempotent: true, run: a.rotateKey},

		{Method: "POST", Path: p("/tokens/introspect"), run: a.introspect},
		{Method: "POST", Path: p("/tokens/revoke"), run: a.revokeToken},

		{Method: "GET", Path: p("/audit-events"), run: a.listAudit},
		{Method: "GET", Path: p("/audit-events/verify"), run: a.verifyAudit},

		{Method: "POST", Path: p("/accounts"), Idempotent: true, run: a.createAccount},
		{Method: "GET", Path: p("/accounts"), run: a.listAccounts},
		{Method: "GET", Path: p("/accounts/{id}"), run: a.getAccount},
		{Method: "PATCH", Path: p("/accounts/{id}"), run: a.updateAccount},
		{Method: "POST", Path: p("/accounts/{id}/enable"), run: a.setAccountDisabled(false)},
		{Method: "POST", Path: p("/accounts/{id}/disable"), run: a.setAccountDisabled(true)},
		{Method: "PUT", Path: p("/accounts/{id}/password"), run: a.setAccountPassword},
		{Method: "POST", Path: p("/accounts/{id}/reset-totp"), run: a.resetTOTP},
	}
}

// query returns r's query parameters, refusing one that is not among
// known (a misspelt filter would otherwise select everything) or given
// twice. Errors: *apiError.
func query(r *http.Request, known ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidField("", "the query string does not parse")
	}
	for k, vs := range q {
		switch {
		case !slices.Contains(known, k):
			return nil, invalidField(fieldName(k), "unknown query parameter (this route takes: "+listOrNone(known)+")")
		case len(vs) > 1:
			return nil, invalidField(k, "given more than once")
		}
	}
	return q, nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func queryBool(q url.Values, name string) (*bool, error) {
	if !q.Has(name) {
		return nil, nil
	}
	b, err := strconv.ParseBool(q.Get(name))
	if err != nil {
		return nil, invalidField(name, "must be true or false")
	}
	return &b, nil
}

func queryInt(q url.Values, name string, lo, hi int64) (int64, error) {
	if !q.Has(name) {
		return 0, nil
	}
	n, err := strconv.ParseInt(q.Get(name), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, invalidField(name, "must be an integer from "+strconv.FormatInt(lo, 10)+" to "+strconv.FormatInt(hi, 10))
	}
	return n, nil
}

func queryTime(q url.Values, name string) (time.Time, error) {
	if !q.Has(name) {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, q.Get(name))
	if err != nil {
		return time.Time{}, invalidField(name, "must be an RFC 3339 time such as 2025-01-31T00:00:00Z")
	}
	return t, nil
}

// noBody refuses a body on a route that takes none.
func noBody(c *call) error {
	if strings.TrimSpace(c.body) != "" {
		return invalidField("", "this route takes no request body")
	}
	return nil
}

// openAPI serves the OpenAPI document.
func (a *API) openAPI(*call) (*reply, error) {
	doc, err := OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	return &reply{status: http.StatusOK, encoded: doc}, nil
}

// ProblemTypeDoc is the description of a problem type the API serves at
// its type URI.
type ProblemTypeDoc struct {
	Type        string `json:"type"`
	Code        string `json:"code"`
	Title       string `json:"title"`
	Status      int    `json:"status"`
	Description string `json:"description"`
}

func (a *API) problemType(c *call) (*reply, error) {
	code := c.r.PathValue("code")
	pt, known := problemTypes[code]
	if !known {
		return nil, &apiError{code: admin.CodeNotFound, detail: "no such problem type"}
	}
	return ok(ProblemTypeDoc{Type: ProblemBase + code, Code: code, Title: pt.Title, Status: pt.Status, Description: pt.Description})
}
