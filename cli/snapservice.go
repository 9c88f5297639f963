package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/tokengate/tokengate/dialect/snap"
	"github.com/tokengate/tokengate/snapclient"
	"github.com/tokengate/tokengate/snapsig"
)

type snapSignServiceCmd struct {
	Method       string `default:"POST" help:"HTTP method of the call."`
	URL          string `name:"url" required:"" help:"Full URL of the call; its path (minus --strip-prefix) is signed."`
	Body         string `help:"JSON request body, exactly as it will be sent (default: empty)." xor:"body"`
	BodyFile     string `name:"body-file" placeholder:"FILE" help:"Read the request body from FILE (- for stdin)." xor:"body"`
	PartnerID    string `name:"partner-id" aliases:"client-id" required:"" help:"X-PARTNER-ID (alias --client-id; the client ID unless the provider assigned another)."`
	ExternalID   string `name:"external-id" help:"X-EXTERNAL-ID, unique per partner and day (default: 32 random hexadecimal characters)."`
	ChannelID    string `name:"channel-id" default:"95221" help:"CHANNEL-ID (five digits)."`
	Variant      string `enum:"symmetric,asymmetric" default:"symmetric" help:"Signature: symmetric (HMAC-SHA512 with the client secret) or asymmetric (SHA256withRSA with the private key)."`
	SecretFile   string `name:"secret-file" placeholder:"FILE" help:"File holding the client secret (symmetric). It is read locally and never printed."`
	Key          string `placeholder:"PRIVATE.pem" help:"The client's RSA private key (asymmetric). It is read locally and never printed."`
	Token        string `help:"B2B access token (required for symmetric; without it an asymmetric call has no Authorization), or - to read it from stdin."`
	StripPrefix  string `name:"strip-prefix" placeholder:"PREFIX" help:"Mount prefix in the URL path that is not signed (e.g. /nicepay)."`
	IncludeQuery bool   `name:"include-query" help:"Sign the query string as part of EndpointUrl."`
	Timestamp    string `help:"X-TIMESTAMP to sign (default: now, e.g. 2024-12-31T10:11:40+07:00)."`
	JSON         bool   `name:"json" help:"Print the headers as JSON."`
}

func (c *snapSignServiceCmd) Run(r *run) error {
	symmetric := c.Variant == string(snapclient.Symmetric)
	switch {
	case symmetric && c.Key != "":
		return errors.New("--key is for --variant asymmetric; symmetric signatures use --secret-file")
	case !symmetric && c.SecretFile != "":
		return errors.New("--secret-file is for --variant symmetric; asymmetric signatures use --key")
	case symmetric && c.SecretFile == "":
		return errors.New("--variant symmetric needs --secret-file")
	case symmetric && c.Token == "":
		return errors.New("--variant symmetric needs --token (the string to sign includes it)")
	case !symmetric && c.Key == "":
		return errors.New("--variant asymmetric needs --key")
	case c.Token == "-" && c.BodyFile == "-":
		return errors.New("--token - and --body-file - cannot both read stdin")
	}
	if !snapsig.ValidID(c.PartnerID) {
		return errors.New("--partner-id must be 1 to 36 visible ASCII characters")
	}
	if !snapsig.ValidChannelID(c.ChannelID) {
		return errors.New("--channel-id must be five digits")
	}
	externalID := c.ExternalID
	if externalID == "" {
		b := make([]byte, 16)
		rand.Read(b)
		externalID = hex.EncodeToString(b)
	} else if !snapsig.ValidID(externalID) {
		return errors.New("--external-id must be 1 to 36 visible ASCII characters")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return errors.New("--url must be an absolute URL, e.g. https://api.example.com/v1.0/transfer-va/create-va")
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}

	body := []byte(c.Body)
	switch c.BodyFile {
	case "":
	case "-":
		if body, err = io.ReadAll(r.io.In); err != nil {
			return fmt.Errorf("read body from stdin: %w", err)
		}
	default:
		if body, err = readFile(c.BodyFile); err != nil {
			return err
		}
	}
	minified, err := snapsig.Minify(body)
	if err != nil {
		return errors.New("the request body is not one JSON value (SNAP signs minified JSON)")
	}

	token := c.Token
	if token == "-" {
		if token, err = r.readPassword("Access token: "); err != nil {
			return err
		}
		token = strings.TrimSpace(token)
	}
	if token != "" && strings.ContainsAny(token, " \t\r\n:") {
		return errors.New("--token must be the bare access token (without \"Bearer \")")
	}

	ts := c.Timestamp
	if ts == "" {
		ts = snap.Timestamp(r.now())
	} else if _, err := snap.ParseTimestamp(ts); err != nil {
		return fmt.Errorf("--timestamp: %w", err)
	}

	method := strings.ToUpper(c.Method)
	endpoint := snapsig.EndpointURL(path, u.RawQuery, c.StripPrefix, c.IncludeQuery)
	hash := snapsig.BodyHash(minified)
	var stringToSign, sig string
	if symmetric {
		secret, err := readFile(c.SecretFile)
		if err != nil {
			return err
		}
		if secret = []byte(strings.TrimSpace(string(secret))); len(secret) == 0 {
			return fmt.Errorf("%s: empty client secret", c.SecretFile)
		}
		stringToSign = snapsig.SymmetricString(method, endpoint, token, hash, ts)
		sig = snapsig.SignSymmetric(secret, stringToSign)
	} else {
		raw, err := readFile(c.Key)
		if err != nil {
			return err
		}
		priv, err := snap.ParsePrivateKey(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Key, err)
		}
		stringToSign = snapsig.AsymmetricString(method, endpoint, hash, ts)
		if sig, err = snapsig.SignAsymmetric(priv, stringToSign); err != nil {
			return err
		}
	}

	type header struct{ name, value string }
	headers := []header{{"Content-Type", "application/json"}}
	if token != "" {
		headers = append(headers, header{"Authorization", "Bearer " + token})
	}
	headers = append(headers,
		header{snapsig.HeaderTimestamp, ts},
		header{snapsig.HeaderPartnerID, c.PartnerID},
		header{snapsig.HeaderExternalID, externalID},
		header{snapsig.HeaderChannelID, c.ChannelID},
		header{snapsig.HeaderSignature, sig},
	)
	if c.JSON {
		m := make(map[string]string, len(headers))
		for _, h := range headers {
			m[h.name] = h.value
		}
		return r.printJSON(m)
	}
	var curl strings.Builder
	fmt.Fprintf(&curl, "curl -sS -X %s %s", method, shellQuote(c.URL))
	for _, h := range headers {
		r.printf("%s: %s\n", h.name, h.value)
		fmt.Fprintf(&curl, " -H %s", shellQuote(h.name+": "+h.value))
	}
	if len(body) > 0 {
		fmt.Fprintf(&curl, " --data-binary %s", shellQuote(string(body)))
	}
	r.printf("\nString to sign: %s\n\n%s\n", stringToSign, curl.String())
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
