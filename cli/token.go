package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

type tokenCmd struct {
	Introspect tokenIntrospectCmd `cmd:"" help:"Show whether a token is active and what it grants (RFC 7662 view)."`
	Revoke     tokenRevokeCmd     `cmd:"" help:"Revoke a token (a refresh token revokes its whole family), or with --client or --user every token of a client or user."`
}

type tokenArg struct {
	Token string `arg:"" help:"The token, or - to read it from stdin (keeps it out of shell history)."`
	JSON  bool   `name:"json" help:"Machine-readable output."`
}

func (r *run) tokenValue(a tokenArg) (string, error) {
	if a.Token != "-" {
		return a.Token, nil
	}
	return r.readPassword("Token: ")
}

type tokenIntrospectCmd struct{ tokenArg }

func (c *tokenIntrospectCmd) Run(r *run) error {
	value, err := r.tokenValue(c.tokenArg)
	if err != nil {
		return err
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	in, err := s.Admin.IntrospectToken(r.ctx, value)
	if err != nil {
		return err
	}
	if c.JSON {
		out := map[string]any{"active": in.Active}
		if in.Active {
			out["scope"], out["client_id"], out["sub"] = strings.Join(in.Scope, " "), in.ClientID, in.Sub
			out["token_type"], out["exp"], out["iat"], out["iss"] = in.TokenType, in.Exp, in.Iat, in.Iss
			if in.Username != "" {
				out["username"] = in.Username
			}
			if in.Jti != "" {
				out["jti"] = in.Jti
			}
		}
		return r.printJSON(out)
	}
	if !in.Active {
		r.printf("active: false\n")
		return nil
	}
	r.printf("active:     true\ntoken_type: %s\nclient_id:  %s\nsub:        %s\nscope:      %s\nissued:     %s\nexpires:    %s\n",
		in.TokenType, in.ClientID, in.Sub, strings.Join(in.Scope, " "),
		time.Unix(in.Iat, 0).UTC().Format(time.RFC3339), time.Unix(in.Exp, 0).UTC().Format(time.RFC3339))
	return nil
}

type tokenRevokeCmd struct {
	Token  string `arg:"" optional:"" help:"The token, or - to read it from stdin (keeps it out of shell history)."`
	Client string `name:"client" placeholder:"ID" help:"Revoke every token (access and refresh, opaque and JWT) issued to this client until now."`
	User   string `name:"user" placeholder:"USERNAME" help:"Revoke every token issued for this user until now."`
	JSON   bool   `name:"json" help:"Machine-readable output."`
}

func (c *tokenRevokeCmd) Run(r *run) error {
	n := 0
	for _, set := range []bool{c.Token != "", c.Client != "", c.User != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of: a token, --client ID, --user USERNAME")
	}
	if c.Token == "" {
		return r.revokeAll(c.Client, c.User, c.JSON)
	}
	value, err := r.tokenValue(tokenArg{Token: c.Token})
	if err != nil {
		return err
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Admin.RevokeToken(r.ctx, value); err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(map[string]string{"result": "revoked"})
	}
	fmt.Fprintln(r.io.Out, "revoked")
	return nil
}

// revokeAll revokes every token of a client or of a user issued until now.
func (r *run) revokeAll(clientID, username string, asJSON bool) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	var at time.Time
	what := ""
	if clientID != "" {
		what = "client " + clientID
		at, err = s.Admin.RevokeClientTokens(r.ctx, clientID)
	} else {
		what = "user " + username
		at, err = s.Admin.RevokeUserTokens(r.ctx, username)
	}
	if err != nil {
		return err
	}
	if asJSON {
		out := map[string]string{"result": "revoked", "not_before": at.UTC().Format(time.RFC3339Nano)}
		if clientID != "" {
			out["client_id"] = clientID
		} else {
			out["username"] = username
		}
		return r.printJSON(out)
	}
	r.printf("revoked every token of %s issued before %s\n", what, at.UTC().Format(time.RFC3339Nano))
	return nil
}
