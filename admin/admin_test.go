package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

func valid() *oauth.Client {
	return &oauth.Client{Name: "acme", Grants: []string{oauth.GrantClientCredentials}, Scopes: []string{"a", "b"}, DefaultScopes: []string{"a"}}
}

func TestValidate(t *testing.T) {
	if err := Validate(valid()); err != nil {
		t.Fatalf("valid client: %v", err)
	}
	for want, change := range map[string]func(*oauth.Client){
		"--name":            func(c *oauth.Client) { c.Name = " " },
		"--grant":           func(c *oauth.Client) { c.Grants = nil },
		"unknown grant":     func(c *oauth.Client) { c.Grants = []string{"implicit"} },
		"invalid scope":     func(c *oauth.Client) { c.Scopes = []string{`bad"scope`} },
		"not among":         func(c *oauth.Client) { c.DefaultScopes = []string{"z"} },
		"negative":          func(c *oauth.Client) { c.AccessTTL = -time.Second },
		"at least 1s":       func(c *oauth.Client) { c.AccessTTL = time.Millisecond },
		"token format":      func(c *oauth.Client) { c.TokenFormat = "paseto" },
		"signing algorithm": func(c *oauth.Client) { c.SigningAlg = "HS256" },
		"snap_service_signature \"hmac\" is unknown": func(c *oauth.Client) { c.SNAPServiceSignature = "hmac" },
		"snap_service_signature asymmetric needs a SNAP public key": func(c *oauth.Client) {
			c.SNAPServiceSignature = oauth.SNAPSignatureAsymmetric
		},
		"snap_service_signature both needs a SNAP public key": func(c *oauth.Client) { c.SNAPServiceSignature = oauth.SNAPSignatureBoth },
		"partner_id must be 1 to 36":                          func(c *oauth.Client) { c.PartnerID = strings.Repeat("p", 37) },
		"partner_id must be 1 to 36 printable":                func(c *oauth.Client) { c.PartnerID = "a b" },
		"partner_id must be 1 to 36 printable ASCII":          func(c *oauth.Client) { c.PartnerID = "café" },
	} {
		c := valid()
		change(c)
		err := Validate(c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestValidateSNAP(t *testing.T) {
	for _, change := range []func(*oauth.Client){
		func(c *oauth.Client) { c.SNAPServiceSignature = oauth.SNAPSignatureSymmetric },
		func(c *oauth.Client) { c.SNAPServiceSignature, c.PublicKeyPEM = oauth.SNAPSignatureAsymmetric, "PEM" },
		func(c *oauth.Client) { c.SNAPServiceSignature, c.PublicKeyPEM = oauth.SNAPSignatureBoth, "PEM" },
		func(c *oauth.Client) { c.PartnerID = strings.Repeat("P", 36) },
		func(c *oauth.Client) { c.PartnerID = "NICEPAY-01~!" },
	} {
		c := valid()
		change(c)
		if err := Validate(c); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestValidUsername(t *testing.T) {
	for _, ok := range []string{"6982129990", "alice@example.com", "Budi Santoso"} {
		if err := ValidUsername(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " alice", "alice ", "a\x00b", "a\nb", strings.Repeat("x", 256)} {
		if ValidUsername(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDedupe(t *testing.T) {
	got := dedupe([]string{"a", "b", "a", "c", "b"})
	if strings.Join(got, ",") != "a,b,c" {
		t.Errorf("dedupe: %v", got)
	}
}
