package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	e := start(t, nil)
	t.Run("help for every command", func(t *testing.T) {
		for _, cmd := range [][]string{{}, {"serve"}, {"client", "create"}, {"client", "list"}, {"client", "show"},
			{"client", "update"}, {"client", "disable"}, {"client", "enable"}, {"client", "delete"},
			{"client", "rotate-secret"}, {"user", "create"}, {"user", "set-password"}, {"user", "disable"},
			{"user", "list"}, {"key", "list"}, {"key", "rotate"}, {"token", "introspect"}, {"token", "revoke"},
			{"migrate"}, {"gc"}, {"kek"}, {"kek", "generate"}, {"kek", "rotate"}, {"snap", "sign"}, {"snap", "sign-service"},
			{"client", "import"}, {"client", "export"}, {"client", "set-snap-key"}, {"user", "enable"}, {"backup"},
			{"audit", "list"}, {"audit", "verify"}, {"account", "create"}, {"account", "list"}, {"account", "show"},
			{"account", "update"}, {"account", "disable"}, {"account", "enable"}, {"account", "set-password"},
			{"account", "reset-totp"}} {
			out, _, code := e.run("", append(cmd, "--help")...)
			if code != 0 || !strings.Contains(out, "Usage: tokengate") {
				t.Errorf("%v --help: exit %d, %q", cmd, code, out)
			}
		}
	})
	t.Run("a failure is one line on stderr", func(t *testing.T) {
		for _, args := range [][]string{
			{"client", "show", "no-such-client"},
			{"client", "create", "--name", "x", "--grant", "implicit"},
			{"client", "create", "--name", "x", "--grant", "client_credentials", "--scope", "a", "--default-scope", "b"},
			{"client", "disable", "no-such-client"},
			{"user", "disable", "nobody"},
			{"account", "show", "nobody"},
			{"audit", "list", "--since", "yesterday"},
			{"no-such-command"},
		} {
			out, errOut, code := e.run("", args...)
			if code == 0 || out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.HasPrefix(errOut, "tokengate: ") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	})
	t.Run("client lifecycle", func(t *testing.T) {
		id, _ := e.createClient("--name", "acme", "--grant", "client_credentials", "--scope", "a b", "--access-ttl", "15m")
		var shown map[string]any
		json.Unmarshal([]byte(e.mustRun("", "client", "show", id, "--json")), &shown)
		if shown["name"] != "acme" || shown["access_ttl"] != "15m0s" {
			t.Errorf("client show: %v", shown)
		}
		for k := range shown {
			if strings.Contains(k, "hash") {
				t.Errorf("client show exposes %s", k)
			}
		}
		e.mustRun("", "client", "update", id, "--name", "acme2", "--token-format", "jwt")
		var list []map[string]any
		json.Unmarshal([]byte(e.mustRun("", "client", "list", "--json")), &list)
		if len(list) != 1 || list[0]["name"] != "acme2" || list[0]["token_format"] != "jwt" {
			t.Errorf("client list: %v", list)
		}
		e.mustRun("", "client", "delete", id)
		if _, _, code := e.run("", "client", "show", id); code == 0 {
			t.Error("deleted client still shown")
		}
	})
	t.Run("users", func(t *testing.T) {
		e.createUser("erin", "erin's password")
		if _, errOut, code := e.run("short\n", "user", "create", "frank"); code == 0 || !strings.Contains(errOut, "at least") {
			t.Errorf("short password accepted: %q", errOut)
		}
		if _, _, code := e.run("", "user", "create", "gina"); code == 0 {
			t.Error("user create without a password on stdin succeeded")
		}
		e.remember("erin's new password")
		e.mustRun("erin's new password\n", "user", "set-password", "erin")
		e.mustRun("", "user", "disable", "erin")
		var users []map[string]any
		json.Unmarshal([]byte(e.mustRun("", "user", "list", "--json")), &users)
		if len(users) != 1 || users[0]["username"] != "erin" || users[0]["disabled"] != true {
			t.Errorf("user list: %v", users)
		}
		for k := range users[0] {
			if strings.Contains(k, "password") {
				t.Errorf("user list exposes %s", k)
			}
		}
	})
}

func TestCLIDoesNotEchoStrayArguments(t *testing.T) {
	e := start(t, nil)
	_, errOut, code := e.run("", "user", "create", "alice", "Hunter2Secret!")
	if code == 0 || strings.Contains(errOut, "Hunter2Secret!") || !strings.Contains(errOut, "unexpected argument") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
