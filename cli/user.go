package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

type userCmd struct {
	Create      userCreateCmd      `cmd:"" help:"Create a user; the password is read from stdin or a prompt, never from the command line."`
	SetPassword userSetPasswordCmd `cmd:"" name:"set-password" help:"Set a user's password (read from stdin or a prompt)."`
	Disable     userDisableCmd     `cmd:"" help:"Disable a user: password and refresh grants for them stop working."`
	Enable      userEnableCmd      `cmd:"" help:"Re-enable a disabled user."`
	List        userListCmd        `cmd:"" help:"List users."`
}

type usernameArg struct {
	Username string `arg:"" help:"Username."`
	JSON     bool   `name:"json" help:"Machine-readable output."`
}

func (r *run) userDone(a usernameArg, what string) error {
	if a.JSON {
		return r.printJSON(map[string]string{"username": a.Username, "result": what})
	}
	r.printf("user %s %s\n", a.Username, what)
	return nil
}

// readPassword prompts without echo on a terminal; otherwise it reads the
// first line of stdin.
func (r *run) readPassword(prompt string) (string, error) {
	if f, ok := r.io.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(r.io.Err, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(r.io.Err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(r.io.In).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on stdin (pipe it in, e.g. printf '%s\\n' \"$PW\" | tokengate user create NAME)")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

type userCreateCmd struct{ usernameArg }

func (c *userCreateCmd) Run(r *run) error {
	pw, err := r.readPassword("Password for " + c.Username + ": ")
	if err != nil {
		return err
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Admin.CreateUser(r.ctx, c.Username, pw); err != nil {
		return err
	}
	return r.userDone(c.usernameArg, "created")
}

type userSetPasswordCmd struct{ usernameArg }

func (c *userSetPasswordCmd) Run(r *run) error {
	pw, err := r.readPassword("New password for " + c.Username + ": ")
	if err != nil {
		return err
	}
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Admin.SetUserPassword(r.ctx, c.Username, pw); err != nil {
		return err
	}
	return r.userDone(c.usernameArg, "password set")
}

type userDisableCmd struct{ usernameArg }

func (c *userDisableCmd) Run(r *run) error { return r.setUserDisabled(c.usernameArg, true) }

type userEnableCmd struct{ usernameArg }

func (c *userEnableCmd) Run(r *run) error { return r.setUserDisabled(c.usernameArg, false) }

func (r *run) setUserDisabled(a usernameArg, disabled bool) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Admin.SetUserDisabled(r.ctx, a.Username, disabled); err != nil {
		return err
	}
	if disabled {
		return r.userDone(a, "disabled")
	}
	return r.userDone(a, "enabled")
}

type userListCmd struct {
	JSON bool `name:"json" help:"Machine-readable output."`
}

func (c *userListCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	views, err := s.Admin.ListUsers(r.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(views)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USERNAME\tSTATE\tCREATED")
	for _, v := range views {
		state := "enabled"
		if v.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", v.Username, state, v.CreatedAt.Format(time.RFC3339))
	}
	return w.Flush()
}
