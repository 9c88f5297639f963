package oauth

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// No formatting of a client shows a recoverable secret, its sealed form or
// its hash.
func TestSecretHashFormatHidesSecrets(t *testing.T) {
	c := &Client{ID: "c", Secrets: []SecretHash{
		{Hash: []byte("HASHBYTES"), Sealed: []byte("SEALEDBYTES"), Plain: []byte("PLAINSECRET")},
		{Hash: []byte("OLDHASH"), ExpiresAt: time.Unix(1_700_000_000, 0)},
	}}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("client", "c", c, "secrets", c.Secrets)
	for _, out := range []string{
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c.Secrets),
		fmt.Sprintf("%x", c.Secrets), fmt.Sprint(*c), logged.String(),
	} {
		for _, secret := range []string{"PLAINSECRET", "SEALEDBYTES", "HASHBYTES", "OLDHASH",
			fmt.Sprintf("%x", "PLAINSECRET"), fmt.Sprint([]byte("PLAINSECRET"))} {
			if strings.Contains(out, secret) {
				t.Errorf("%q shows %q", out, secret)
			}
		}
		if !strings.Contains(out, "recoverable:true") || !strings.Contains(out, "2023-11-14T22:13:20Z") {
			t.Errorf("%q: want the secrets described", out)
		}
	}
}

func TestServiceSecrets(t *testing.T) {
	now := time.Now()
	c := &Client{SNAPServiceSignature: SNAPSignatureSymmetric, Secrets: []SecretHash{
		{Hash: []byte("old"), ExpiresAt: now.Add(time.Minute), Plain: []byte("previous")},
		{Hash: []byte("expired"), ExpiresAt: now.Add(-time.Minute), Plain: []byte("expired")},
		{Hash: []byte("hash only"), ExpiresAt: now.Add(time.Minute)},
		{Hash: []byte("new"), Plain: []byte("current")},
	}}
	got := fmt.Sprintf("%s", c.ServiceSecrets(now))
	if got != "[current previous]" {
		t.Errorf("ServiceSecrets = %s, want the current secret first, then the unexpired previous one", got)
	}
	if !c.HasRecoverableSecret() {
		t.Error("HasRecoverableSecret: false")
	}
	c.SNAPServiceSignature = SNAPSignatureAsymmetric
	if s := c.ServiceSecrets(now); s != nil {
		t.Errorf("an asymmetric client's ServiceSecrets = %s", s)
	}
	c.Secrets = c.Secrets[:3]
	if c.HasRecoverableSecret() {
		t.Error("HasRecoverableSecret with only previous secrets recoverable")
	}
	if c.ID = "id"; c.EffectivePartnerID() != "id" {
		t.Error("EffectivePartnerID without a partner ID")
	}
	if c.PartnerID = "P"; c.EffectivePartnerID() != "P" {
		t.Error("EffectivePartnerID with a partner ID")
	}
}

func TestValidPartnerID(t *testing.T) {
	for _, ok := range []string{"a", strings.Repeat("x", MaxPartnerIDLen), "NICEPAY-01_~!"} {
		if !ValidPartnerID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxPartnerIDLen+1), "a b", "a\tb", "é", "a\x00", "a\x7f"} {
		if ValidPartnerID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
