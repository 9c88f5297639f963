package cli

import (
	"crypto/rsa"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/dialect/snap"
)

type clientSetSnapKeyCmd struct {
	ID   string `arg:"" help:"Client ID."`
	File string `arg:"" help:"PEM RSA public key: PUBLIC KEY (SPKI), RSA PUBLIC KEY (PKCS#1) or CERTIFICATE; at least 2048 bits."`
	JSON bool   `name:"json" help:"Machine-readable output."`
}

func (c *clientSetSnapKeyCmd) Run(r *run) error {
	raw, err := readFile(c.File)
	if err != nil {
		return err
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.SetSNAPKey(r.ctx, c.ID, raw)
	if err != nil {
		return fmt.Errorf("%s: %w", c.File, err)
	}
	return r.done(c.JSON, c.ID, "SNAP public key set (SHA-256 fingerprint "+v.SNAPKeyFingerprint+")")
}

type snapCmd struct {
	Sign        snapSignCmd        `cmd:"" help:"Print the SNAP BI access-token request headers (and a curl line) for testing an integration."`
	SignService snapSignServiceCmd `cmd:"" name:"sign-service" help:"Print the signed SNAP BI service-call headers (and a curl line) for one call."`
}

type snapSignCmd struct {
	Key       string `required:"" placeholder:"PRIVATE.pem" help:"The client's RSA private key (PKCS#1 or PKCS#8 PEM). It is read locally and never sent."`
	ClientID  string `name:"client-id" required:"" help:"The client ID (sent as X-CLIENT-KEY)."`
	Timestamp string `help:"X-TIMESTAMP to sign (default: now, e.g. 2024-12-31T10:11:40+07:00)."`
	URL       string `name:"url" default:"http://127.0.0.1:8080/v1.0/access-token/b2b" help:"Token endpoint for the curl line."`
	JSON      bool   `name:"json" help:"Print the headers as JSON."`
}

func (c *snapSignCmd) Run(r *run) error {
	raw, err := readFile(c.Key)
	if err != nil {
		return err
	}
	var priv *rsa.PrivateKey
	if priv, err = snap.ParsePrivateKey(raw); err != nil {
		return fmt.Errorf("%s: %w", c.Key, err)
	}
	ts := c.Timestamp
	if ts == "" {
		ts = snap.Timestamp(time.Now())
	} else if _, err := snap.ParseTimestamp(ts); err != nil {
		return fmt.Errorf("--timestamp: %w", err)
	}
	sig, err := snap.Sign(priv, c.ClientID, ts)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(map[string]string{"X-TIMESTAMP": ts, "X-CLIENT-KEY": c.ClientID, "X-SIGNATURE": sig})
	}
	r.printf("X-TIMESTAMP: %s\nX-CLIENT-KEY: %s\nX-SIGNATURE: %s\n\n", ts, c.ClientID, sig)
	r.printf("curl -s -X POST '%s' -H 'Content-Type: application/json' -H 'X-TIMESTAMP: %s' -H 'X-CLIENT-KEY: %s' -H 'X-SIGNATURE: %s' -d '{\"grantType\":\"client_credentials\",\"additionalInfo\":{}}'\n",
		c.URL, ts, c.ClientID, sig)
	return nil
}
