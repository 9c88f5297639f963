package adminapi

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/internal/testcert"
)

// TestServerStartErrors: a listener whose files do not load, or whose
// address is taken, does not start, and says which setting is at fault.
func TestServerStartErrors(t *testing.T) {
	dir := t.TempDir()
	pair := testcert.NewCA(t).Issue(t, time.Now().Add(time.Hour))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key := write("c.pem", pair.CertPEM), write("k.pem", pair.KeyPEM)
	notPEM := write("ca.pem", []byte("not a certificate"))

	running := NewServer(config.Admin{Listen: "127.0.0.1:0"}, http.NotFoundHandler(), nil)
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer running.Close()

	for want, cfg := range map[string]config.Admin{
		"admin.tls":                {Listen: "127.0.0.1:0", TLS: config.AdminTLS{CertFile: filepath.Join(dir, "missing"), KeyFile: key}},
		"admin.tls.client_ca_file": {Listen: "127.0.0.1:0", TLS: config.AdminTLS{CertFile: cert, KeyFile: key, ClientCAFile: notPEM}},
		"admin.listen":             {Listen: running.Addr()},
	} {
		s := NewServer(cfg, http.NotFoundHandler(), nil)
		err := s.Start()
		if err == nil {
			s.Close()
			t.Errorf("%s: started", want)
			continue
		}
		if !strings.HasPrefix(err.Error(), want+":") {
			t.Errorf("error %q does not name %s", err, want)
		}
		if s.Addr() != "" {
			t.Errorf("%s: left listening on %s", want, s.Addr())
		}
	}
}
