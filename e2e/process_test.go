package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/config"
)

// buildBinary builds cmd/tokengate into a temporary directory of t.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go") // go test puts GOROOT/bin first on PATH
	if err != nil {
		t.Fatalf("the go tool is needed to build the server binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tokengate")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/tokengate/tokengate/cmd/tokengate")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var (
	listeningRE = regexp.MustCompile(`msg="tokengate listening" addr=(\S+)`)
	opsRE       = regexp.MustCompile(`msg="operations listener \(metrics, pprof, health\)" addr=(\S+)`)
)

// startProcess runs the server binary bin as a process of its own, with
// the configuration start would give an in-process server (written to a
// YAML file it reads with --config). Its log (stderr) is the env's log,
// checked for secrets when the test ends, after the process has been
// stopped with SIGTERM and has exited cleanly.
func startProcess(t *testing.T, bin string, mutate func(*config.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, logs: &syncBuffer{}}
	cfg, err := config.Load("", nil, config.Overrides{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "http://tokengate.test"
	cfg.Log.Level = "debug"
	cfg.OpsListen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfgFile = cfgFile
	e.cliEnv = cliEnv(cfg)
	e.remember(cfg.Secrets.KEK)

	cmd := exec.Command(bin, "--config", cfgFile, "serve")
	// The test's own TOKENGATE_* variables (the test database's DSN) and
	// GOGC are not the server's settings.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENGATE_") && !strings.HasPrefix(kv, "GOGC=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("server process: %v (after SIGTERM)\n%s", err, e.logs.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Error("server process did not exit within 10s of SIGTERM")
		}
		e.assertNoSecretsLogged()
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		logs := e.logs.String()
		if m := listeningRE.FindStringSubmatch(logs); m != nil {
			e.base = "http://" + m[1]
			if m := opsRE.FindStringSubmatch(logs); m != nil {
				e.ops = "http://" + m[1]
			}
			return e
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("server process exited at start: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server process not listening within 15s:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve gives the garbage collector go_gc_percent (400 unless set), seen
// in the Go runtime's own gauge on /metrics.
func TestServeSetsGCPercent(t *testing.T) {
	bin := buildBinary(t)
	for _, c := range []struct {
		set  int
		want float64
	}{{0, 400}, {150, 150}} {
		e := startProcess(t, bin, func(cfg *config.Config) {
			if c.set != 0 {
				cfg.GoGCPercent = c.set
			}
		})
		if got := parseMetrics(t, e.metrics()).get("go_gc_gogc_percent"); got != c.want {
			t.Errorf("go_gc_percent %d: the runtime's target is %v, want %v", c.set, got, c.want)
		}
	}
}
