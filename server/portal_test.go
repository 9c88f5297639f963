package server_test

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/testcert"
)

// TestPortalListener: the portal is off by default; on, it is served on
// portal.listen only (the public listener does not serve its pages, and
// it does not serve the token endpoints), over HTTPS with the public
// listener's certificate when tls is set.
func TestPortalListener(t *testing.T) {
	off := start(t, nil)
	if off.srv.PortalAddr() != "" {
		t.Errorf("portal on by default at %s", off.srv.PortalAddr())
	}
	if got, _ := get(t, http.DefaultClient, "http://"+off.srv.Addr()+"/login"); got != 404 {
		t.Errorf("public /login without a portal: %d", got)
	}

	n := start(t, func(c *config.Config) { c.Portal.Listen = "127.0.0.1:0" })
	portal, public := "http://"+n.srv.PortalAddr(), "http://"+n.srv.Addr()
	if got, body := get(t, http.DefaultClient, portal+"/login"); got != 200 || !strings.Contains(body, `action="/login"`) {
		t.Errorf("portal /login: %d", got)
	}
	if got, _ := get(t, http.DefaultClient, public+"/login"); got != 404 {
		t.Errorf("public /login: %d, want 404", got)
	}
	if got, _ := get(t, http.DefaultClient, portal+"/.well-known/oauth-authorization-server"); got != 404 {
		t.Errorf("the portal listener serves the token server's routes: %d", got)
	}

	ca := testcert.NewCA(t)
	dir := t.TempDir()
	f := &certFiles{t: t, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), mtime: time.Now().Add(-time.Hour)}
	pair := ca.Issue(t, time.Now().Add(time.Hour))
	f.write(pair)
	s := start(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: f.cert, KeyFile: f.key}
		c.Portal.Listen = "127.0.0.1:0"
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}, Timeout: 5 * time.Second}
	res, err := client.Get("https://" + s.srv.PortalAddr() + "/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil || res.TLS.PeerCertificates[0].SerialNumber.Cmp(pair.Cert.SerialNumber) != 0 {
		t.Errorf("portal over HTTPS: %d", res.StatusCode)
	}
	if res.Header.Get("Strict-Transport-Security") == "" {
		t.Error("portal over HTTPS sends no Strict-Transport-Security")
	}
	if got, _ := get(t, http.DefaultClient, "http://"+s.srv.PortalAddr()+"/login"); got == 200 {
		t.Error("plain HTTP served on the portal's TLS listener")
	}
}
