package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// moduleRoot is the directory of the tokengate module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the tokengate module (run from its directory)")
	}
	return filepath.Dir(gomod), nil
}

// buildServer builds ./cmd/tokengate into dir and returns the binary's path.
func buildServer(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tokengate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tokengate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tokengate: %w\n%s", err, out)
	}
	return bin, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// childEnv is the environment of the subprocesses: the bench's own, less
// every TOKENGATE_* variable (so the shell cannot change the configuration
// being measured), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "TOKENGATE_") && !slices.Contains(childEnvs, name) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// proc is a subprocess the bench started: a tokengate server or the
// hello-world ceiling server. It runs in its own process group, so a
// terminal's Ctrl-C reaches only the bench, which stops it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	pid     int
	addr    string
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// live are the processes not yet stopped, for cleanup on any exit path.
var live struct {
	sync.Mutex
	procs map[*proc]bool
}

func startProc(name string, argv, env []string, addr, logPath string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, addr: addr, logPath: logPath, done: make(chan struct{})}
	live.Lock()
	if live.procs == nil {
		live.procs = map[*proc]bool{}
	}
	live.procs[p] = true
	live.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls GET /readyz until it answers 200.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.waitErr, p.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s:\n%s", p.name, timeout, p.logTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks the process group to terminate, then kills it after a grace
// period. It is safe to call more than once.
func (p *proc) stop() {
	live.Lock()
	wasLive := live.procs[p]
	delete(live.procs, p)
	live.Unlock()
	if !wasLive {
		return
	}
	syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	}
}

// stopAll stops every process still running.
func stopAll() {
	live.Lock()
	var ps []*proc
	for p := range live.procs {
		ps = append(ps, p)
	}
	live.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// logTail returns the last n lines of the process's output.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// logLines counts the lines the process has written (warnings and errors,
// at log level warn).
func (p *proc) logLines() int {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Count(b, []byte("\n"))
}

// tokengate runs the tokengate binary with a configuration file.
type tokengate struct {
	bin, config string
	env         []string // extra environment (TOKENGATE_STORE_DSN, TOKENGATE_SECRETS_KEK)
}

// cli runs an admin command and returns its stdout. A failure's error is
// the command's one-line message.
func (t *tokengate) cli(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.bin, append([]string{"--config", t.config}, args...)...)
	cmd.Env = childEnv(t.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "tokengate: ")
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("tokengate %s: %s", strings.Join(args[:min(2, len(args))], " "), msg)
	}
	return out, nil
}

// client is a registered client's credentials.
type client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

func (t *tokengate) createClient(ctx context.Context, args ...string) (client, error) {
	out, err := t.cli(ctx, "", append([]string{"client", "create", "--json"}, args...)...)
	if err != nil {
		return client{}, err
	}
	var c client
	if err := json.Unmarshal(out, &c); err != nil || c.ID == "" || c.Secret == "" {
		return client{}, fmt.Errorf("client create: unexpected output %q", out)
	}
	return c, nil
}

func (t *tokengate) createUser(ctx context.Context, name, password string) error {
	_, err := t.cli(ctx, password+"\n", "user", "create", name)
	return err
}

// serve starts the server on a free port and waits until it is ready.
func (t *tokengate) serve(ctx context.Context, dir, name string) (*proc, error) {
	var lastErr error
	for range 3 { // the free port may be taken in between
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p, err := startProc(name, []string{t.bin, "--config", t.config, "serve", "--addr", addr},
			childEnv(t.env...), addr, filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		if lastErr = p.waitReady(ctx, 60*time.Second); lastErr == nil {
			return p, nil
		}
		p.stop()
		if ctx.Err() != nil || !strings.Contains(lastErr.Error(), "address already in use") {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// writeConfig writes the server's configuration: the embedded store in
// dataDir with the shipped durability settings, log level warn, and the
// three token endpoints (RFC 6749, SNAP B2B, NeoX), then extra (YAML of
// further top-level sections, or "").
func writeConfig(path, dataDir, extra string) error {
	cfg := fmt.Sprintf(`# Written by go run ./bench.
listen: 127.0.0.1:8080   # replaced by serve --addr
store:
  data_dir: %q
log:
  level: warn
endpoints:
  - path: /oauth/token
    dialect: oauth2
  - path: /v1.0/access-token/b2b
    dialect: snap-b2b
  - path: %s
    dialect: neox
`, dataDir, neoxPath)
	return os.WriteFile(path, []byte(cfg+extra), 0o600)
}

// procTicks is a process's user+system CPU time in clock ticks.
func procTicks(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces: fields are counted after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return u + s, nil
}

// commTicks sums the CPU ticks of every process whose command name is
// comm (the PostgreSQL server's processes), as far as they can be read.
func commTicks(comm string) int64 {
	ents, _ := os.ReadDir("/proc")
	var sum int64
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + pid + "/comm")
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		if t, err := procTicks(pid); err == nil {
			sum += t
		}
	}
	return sum
}

// clkTck is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clkTck = 100

// systemBusy returns the machine's busy (user, system, steal) and total
// CPU ticks from /proc/stat.
func systemBusy() (busy, total int64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0
	}
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal guest...
	for i, s := range fields[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		total += v
		// Interrupts are left out of busy: on loopback they are mostly the
		// benchmark's own packets, charged to no process.
		if i == 0 || i == 1 || i == 2 || i == 7 { // user, nice, system, steal
			busy += v
		}
	}
	return busy, total
}

// resetPeakRSS resets the process's VmHWM to its current RSS.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS returns the process's VmHWM in bytes.
func peakRSS(pid int) int64 { return procStatusBytes(pid, "VmHWM:") }

// procStatusBytes returns a kB field of /proc/PID/status (VmHWM:, VmRSS:)
// in bytes, or 0 if it cannot be read.
func procStatusBytes(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
