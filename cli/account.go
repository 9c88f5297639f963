package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokengate/tokengate/admin"
)

type accountCmd struct {
	Create      accountCreateCmd      `cmd:"" help:"Create a portal account; its password is read from stdin or a prompt. Bootstrap the first operator with --role operator."`
	List        accountListCmd        `cmd:"" help:"List portal accounts."`
	Show        accountShowCmd        `cmd:"" help:"Show one account."`
	Update      accountUpdateCmd      `cmd:"" help:"Change an account's email, role, limits or second-factor requirement; flags not given stay as they are."`
	Disable     accountDisableCmd     `cmd:"" help:"Disable an account: it cannot sign in and its sessions end."`
	Enable      accountEnableCmd      `cmd:"" help:"Re-enable a disabled account."`
	SetPassword accountSetPasswordCmd `cmd:"" name:"set-password" help:"Set an account's password (read from stdin or a prompt); its sessions end."`
	ResetTOTP   accountResetTOTPCmd   `cmd:"" name:"reset-totp" help:"Remove an account's second factor (a lost device); it enrolls again at its next sign-in."`
}

type accountLimitFlags struct {
	LimitGrant []string `name:"limit-grant" placeholder:"GRANT" help:"Grant a merchant's clients may have; repeat for several."`
	LimitScope []string `name:"limit-scope" placeholder:"SCOPE" help:"Scope a merchant's clients may have; repeat for several."`
	MaxClients int      `name:"max-clients" default:"-1" help:"How many clients a merchant may own (0: none)."`
}

type accountCreateCmd struct {
	Email        string `required:"" help:"Sign-in email (unique, any case)."`
	Role         string `enum:"operator,merchant" default:"merchant" help:"operator (manages everything) or merchant (its own clients)."`
	SNAPKeys     bool   `name:"snap-keys" help:"Let a merchant register SNAP keys and SNAP service signatures."`
	TOTPRequired bool   `name:"totp-required" help:"Require a second factor (TOTP) before the account can do anything."`
	accountLimitFlags
	JSON bool `name:"json" help:"Print the account as JSON."`
}

func (c *accountCreateCmd) Run(r *run) error {
	pw, err := r.readPassword("Password for " + c.Email + ": ")
	if err != nil {
		return err
	}
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	limits := admin.AccountLimits{Grants: splitAll(c.LimitGrant), Scopes: splitAll(c.LimitScope), MaxClients: max(c.MaxClients, 0), SNAPKeys: c.SNAPKeys}
	v, err := s.Admin.CreateAccount(r.ctx, admin.AccountSpec{Email: c.Email, Password: pw, Role: c.Role, Limits: limits, TOTPRequired: c.TOTPRequired})
	if err != nil {
		return err
	}
	return r.showAccount(v, c.JSON)
}

func (r *run) showAccount(v *admin.AccountView, asJSON bool) error {
	if asJSON {
		return r.printJSON(v)
	}
	state := "enabled"
	if v.Disabled {
		state = "disabled"
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "id:\t%s\nemail:\t%s\nrole:\t%s\nstate:\t%s\nsecond factor:\t%s\n", v.ID, v.Email, v.Role, state, totpState(v))
	if v.Role == admin.RoleMerchant {
		fmt.Fprintf(w, "may use grants:\t%s\nmay use scopes:\t%s\nmax clients:\t%d\nmay register SNAP keys:\t%s\n",
			listOrNone(v.Limits.Grants), listOrNone(v.Limits.Scopes), v.Limits.MaxClients, yesNo(v.Limits.SNAPKeys))
	}
	fmt.Fprintf(w, "created:\t%s\n", v.CreatedAt.Format(time.RFC3339))
	return w.Flush()
}

func totpState(v *admin.AccountView) string {
	switch {
	case v.TOTPEnabled:
		return "TOTP enabled"
	case v.TOTPRequired:
		return "required, not enrolled yet"
	}
	return "none"
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, " ")
}

type accountListCmd struct {
	JSON bool `name:"json" help:"Machine-readable output."`
}

func (c *accountListCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	views, err := s.Admin.ListAccounts(r.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(views)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tEMAIL\tROLE\tSTATE\tSECOND FACTOR")
	for _, v := range views {
		state := "enabled"
		if v.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.ID, v.Email, v.Role, state, totpState(v))
	}
	return w.Flush()
}

type accountIDArg struct {
	ID   string `arg:"" help:"Account ID (see account list)."`
	JSON bool   `name:"json" help:"Machine-readable output."`
}

type accountShowCmd struct{ accountIDArg }

func (c *accountShowCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.GetAccount(r.ctx, c.ID)
	if err != nil {
		return err
	}
	return r.showAccount(v, c.JSON)
}

type accountUpdateCmd struct {
	accountIDArg
	Email        string `help:"New sign-in email."`
	Role         string `enum:",operator,merchant" default:"" help:"operator or merchant."`
	SNAPKeys     string `name:"snap-keys" enum:",true,false" default:"" help:"true or false: may register SNAP keys."`
	TOTPRequired string `name:"totp-required" enum:",true,false" default:"" help:"true or false: a second factor is required."`
	NoLimitGrant bool   `name:"no-limit-grants" help:"Allow no grants."`
	NoLimitScope bool   `name:"no-limit-scopes" help:"Allow no scopes."`
	accountLimitFlags
}

func (c *accountUpdateCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	var p admin.AccountPatch
	if c.Email != "" {
		p.Email = &c.Email
	}
	if c.Role != "" {
		p.Role = &c.Role
	}
	if c.TOTPRequired != "" {
		p.TOTPRequired = new(c.TOTPRequired == "true")
	}
	if c.LimitGrant != nil || c.LimitScope != nil || c.MaxClients >= 0 || c.SNAPKeys != "" || c.NoLimitGrant || c.NoLimitScope {
		// The service replaces limits whole: start from the stored ones.
		cur, err := s.Admin.GetAccount(r.ctx, c.ID)
		if err != nil {
			return err
		}
		l := cur.Limits
		l.Grants, l.Scopes = slices.Clone(l.Grants), slices.Clone(l.Scopes)
		switch {
		case c.NoLimitGrant:
			l.Grants = nil
		case c.LimitGrant != nil:
			l.Grants = splitAll(c.LimitGrant)
		}
		switch {
		case c.NoLimitScope:
			l.Scopes = nil
		case c.LimitScope != nil:
			l.Scopes = splitAll(c.LimitScope)
		}
		if c.MaxClients >= 0 {
			l.MaxClients = c.MaxClients
		}
		if c.SNAPKeys != "" {
			l.SNAPKeys = c.SNAPKeys == "true"
		}
		p.Limits = &l
	}
	v, err := s.Admin.UpdateAccount(r.ctx, c.ID, p)
	if err != nil {
		return err
	}
	return r.showAccount(v, c.JSON)
}

type accountDisableCmd struct{ accountIDArg }

func (c *accountDisableCmd) Run(r *run) error { return r.setAccountDisabled(c.accountIDArg, true) }

type accountEnableCmd struct{ accountIDArg }

func (c *accountEnableCmd) Run(r *run) error { return r.setAccountDisabled(c.accountIDArg, false) }

func (r *run) setAccountDisabled(a accountIDArg, disabled bool) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.SetAccountDisabled(r.ctx, a.ID, disabled)
	if err != nil {
		return err
	}
	return r.showAccount(v, a.JSON)
}

type accountSetPasswordCmd struct{ accountIDArg }

func (c *accountSetPasswordCmd) Run(r *run) error {
	pw, err := r.readPassword("New password for account " + c.ID + ": ")
	if err != nil {
		return err
	}
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.SetAccountPassword(r.ctx, c.ID, pw)
	if err != nil {
		return err
	}
	return r.showAccount(v, c.JSON)
}

type accountResetTOTPCmd struct{ accountIDArg }

func (c *accountResetTOTPCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.ResetTOTP(r.ctx, c.ID)
	if err != nil {
		return err
	}
	return r.showAccount(v, c.JSON)
}
