package portal

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/admin"
)

// view is what every page template gets.
type view struct {
	Title  string
	Who    *who   // nil when signed out
	CSRF   string // the session's (or the sign-in form's) CSRF token
	Notice string // a fixed notice (see messages)
	Error  string // what went wrong with the form
	Data   any
}

// who is the signed-in account, for the navigation.
type who struct {
	ID, Email string
	Operator  bool
}

func (p *Portal) view(s *session, title string, data any) view {
	v := view{Title: title, Data: data}
	if s != nil {
		v.Who = &who{ID: s.account.ID, Email: s.account.Email, Operator: s.operator()}
		v.CSRF = s.csrf
	}
	return v
}

var funcs = template.FuncMap{
	"join": func(l []string) string {
		if len(l) == 0 {
			return "—"
		}
		return strings.Join(l, ", ")
	},
	"time": func(t any) string {
		switch t := t.(type) {
		case time.Time:
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		case *time.Time:
			if t == nil || t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		return fmt.Sprint(t)
	},
	"ttl": func(d admin.Duration) string {
		if d == 0 {
			return "server default"
		}
		return time.Duration(d).String()
	},
	"has": func(l []string, v string) bool {
		for _, x := range l {
			if x == v {
				return true
			}
		}
		return false
	},
	"json": func(b []byte) string { return string(b) },
	// pathEscape makes an ID one path segment. html/template only
	// normalises URLs in attributes: it leaves '/', '?', '#' and '%' of
	// an imported client ID as they are, which would cut the path or
	// lead to another page.
	"pathEscape": url.PathEscape,
}

// pageNames are the page templates; each defines "content" for the
// layout.
var pageNames = []string{
	"error", "login", "totp", "account", "clients", "client_new", "client", "secret", "audit", "accounts", "account_show",
}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: template %s: %w", name, err)
		}
		pages[name] = t
	}
	if _, err := fs.Stat(staticFiles, "static/portal.css"); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	return pages, nil
}

// render writes page name with v, rendered whole before anything is
// sent, so a failure is a clean 500.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	var buf bytes.Buffer
	if err := p.pages[name].Execute(&buf, v); err != nil {
		p.log.Error("portal: rendering failed", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (p *Portal) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	p.render(w, r, status, "error", p.view(s, http.StatusText(status), msg))
}
