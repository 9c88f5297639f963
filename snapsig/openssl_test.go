package snapsig

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// opensslMissing reports whether the openssl command is unavailable, in
// which case the caller skips its independent cross-check (the hard-coded
// vectors still run). With CI set, a missing openssl fails the test.
func opensslMissing(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is not installed; the known-answer tests need it in CI")
		}
		t.Log("openssl is not installed: skipping the cross-check against it (set CI to make this an error)")
		return true
	}
	return false
}

// openssl runs the openssl command with stdin and returns its stdout.
func openssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v: %s", args, err, stderr.Bytes())
	}
	return out
}
