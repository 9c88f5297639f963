package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the helper servers (ceiling,
// upstream, bare proxy), as the bench binary does when it re-executes itself.
func TestMain(m *testing.M) {
	if code, ok := runChild(context.Background()); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole harness briefly on one load scenario, the SNAP
// gateway against the bare proxy, the guard scenario and the client_id
// flood: it builds the server, registers clients with the CLI, starts the
// upstream, the proxy and the resource server, runs the loops, revokes
// tokens under load, sends a few hundred flood requests and prints the
// report, so CI proves the benchmark still works.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	code := Main(ctx, []string{"-d", "300ms", "-warmup", "200ms", "-only", "cc-opaque,snap-gateway,guard,flood-client-id", "-skip-ceiling", "-pg", "off",
		"-c", "16", "-gw-clients", "2", "-flood-requests", fmt.Sprint(4 * len(floodKinds)), "-flood-d", "500ms",
		"-guard-tokens", "400", "-guard-revocations", "10", "-guard-benchtime", "off"}, &out, &errs)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// Each load scenario has its closed and open rows, without errors.
	for _, name := range []string{"cc-opaque", "snap-gateway", bareName, guardRowProtected, guardRowUnprotected, guardRowIntrospect} {
		var closed, open bool
		for _, line := range strings.Split(out.String(), "\n") {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), name+" ")
			f := strings.Fields(rest)
			if !ok || len(f) < 8 {
				continue
			}
			if f[6] != "0" {
				t.Errorf("errors in %q", line)
			}
			closed = closed || f[0] == "closed"
			open = open || f[0] == "open"
		}
		if !closed || !open {
			t.Errorf("the table lacks the %s closed and open rows", name)
		}
	}
	// The gateway's section compares it with the bare proxy, with the
	// upstream's CPU, and its targets are checked.
	for _, want := range []string{"gateway (verified)", "gateway/bare: rate", "upstream µs/call", "building and signing a call costs",
		"snap-gateway ≥ 12000/s", "snap-gateway ≥ 0.6 of the bare proxy's rate", "snap-gateway p99 ≤ 10.00ms at half rate",
		"snap-gateway server peak RSS ≤ 150 MB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// The guard's section compares the protected handler with the two
	// others, and every revoked token (10 one by one, 2 clients of 10
	// tokens each with the CLI) was refused while the load ran.
	if !strings.Contains(out.String(), "guard protected+revoke  closed") {
		t.Errorf("the table lacks the guard's revocation run")
	}
	for _, want := range []string{"protected (guard)", "introspect per request", "protected/unprotected: rate", "first sight",
		"client (CLI), opaque", "client (CLI), JWT", "guard protected ≥ 0.8 of the unprotected handler's rate",
		"guard protected ≥ 5× the per-request introspection's rate", "guard revocation-to-refusal p99 ≤ 1s under load",
		"; 30 of 30 refused)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// Every path of the flood was answered as expected, and the verdict
	// was printed.
	for _, want := range []string{"PASS: peak RSS", "wrong answers 0, 5xx 0, no answer 0",
		"met    flood-client-id server peak RSS < 150 MB", "met    flood-client-id all"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	for _, k := range floodKinds {
		if !strings.Contains(out.String(), fmt.Sprintf("%s:%s%d × 4 ", k.name, strings.Repeat(" ", 34-len(k.name)), k.status)) {
			t.Errorf("the report lacks 4 answers %d to %q", k.status, k.name)
		}
	}
	if stray := liveCount(); stray != 0 {
		t.Errorf("%d subprocesses still running after Main returned", stray)
	}
}

func liveCount() int {
	live.Lock()
	defer live.Unlock()
	return len(live.procs)
}

// TestConnParsesResponses checks the load generator's response parser on
// the framings a Go server uses: Content-Length, chunked, Connection: close.
func TestConnParsesResponses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	responses := []string{
		"HTTP/1.1 200 OK\r\ncontent-length: 26\r\nContent-Type: application/json\r\n\r\n{\"access_token\":\"tga_abc\"}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ref\r\n16\r\nresh_token\":\"tgr_xyz\"}\r\n0\r\n\r\n",
		"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
	}
	go func() {
		for _, resp := range responses {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			// One request per connection: read its header (the body is
			// empty) and answer.
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			c.Write([]byte(resp))
			c.Close()
		}
	}()
	c := newConn(ln.Addr().String())
	defer c.close()
	req := []byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	want := []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"tga_abc"}`},
		{200, `{"refresh_token":"tgr_xyz"}`},
		{401, `{}`},
	}
	for i, w := range want {
		status, body, err := c.do(req)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if status != w.status || string(body) != w.body {
			t.Errorf("response %d: got %d %q, want %d %q", i, status, body, w.status, w.body)
		}
		c.close() // the test server answers one request per connection
	}
	if tok, ok := jsonField([]byte(want[1].body), refreshKey); !ok || string(tok) != "tgr_xyz" {
		t.Errorf("jsonField: %q %v", tok, ok)
	}
}

// TestEqualFold checks the header-name comparison.
func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Content-Length", "content-length", true},
		{"CONTENT-LENGTH", "Content-Length", true},
		{"Content-Lengtx", "Content-Length", false},
		{"Content\rLength", "Content-Length", false},
		{"Connection", "Content-Le", false},
	} {
		if got := equalFold([]byte(c.a), c.b); got != c.want {
			t.Errorf("equalFold(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// TestParseResponseIncomplete feeds the event loop's parser every prefix
// of a response: it must wait for the rest, then parse it whole.
func TestParseResponseIncomplete(t *testing.T) {
	for _, c := range []struct{ raw, body string }{
		{"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n{\"access_token\":\"tga_abc\"}", `{"access_token":"tga_abc"}`},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ref\r\n16\r\nresh_token\":\"tgr_xyz\"}\r\n0\r\n\r\n", `{"refresh_token":"tgr_xyz"}`},
	} {
		var scratch []byte
		for i := range len(c.raw) {
			if _, ok, err := parseResponse([]byte(c.raw[:i]), &scratch); ok || err != nil {
				t.Fatalf("prefix %d of %q: ok=%v err=%v", i, c.raw, ok, err)
			}
		}
		r, ok, err := parseResponse([]byte(c.raw), &scratch)
		if !ok || err != nil || r.status != 200 || string(r.body) != c.body || r.consumed != len(c.raw) {
			t.Errorf("%q: got %+v ok=%v err=%v", c.raw, r, ok, err)
		}
	}
}

// TestRunLoad drives the event loop against an in-process hello server:
// both modes must count what they sent, and a failed check must show as
// errors with the first failure described.
func TestRunLoad(t *testing.T) {
	// The event loop blocks its P in raw system calls; the in-process
	// server needs another (as the harness's -procs gives it).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0))))
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveHello(ctx, addr)
	for c := newConn(addr); ; time.Sleep(10 * time.Millisecond) {
		if _, _, err := c.do(formRequest(addr, "/", "x", "")); err == nil {
			c.close()
			break
		}
	}
	good := &staticSource{req: formRequest(addr, "/token", "Basic eDp5", "grant_type=client_credentials"), marker: []byte(`"access_token"`)}
	warm, dur := 100*time.Millisecond, 400*time.Millisecond

	closed, err := runLoad(ctx, addr, good, runSpec{mode: closedLoop, conns: 4, warm: warm, dur: dur, loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if closed.ok < 100 || closed.errs != 0 || closed.p50 <= 0 || closed.max < closed.p99 {
		t.Errorf("closed loop: %+v", closed)
	}

	const rate = 2000
	open, err := runLoad(ctx, addr, good, runSpec{mode: openLoop, conns: 8, rate: rate, warm: warm, dur: dur, loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Every request due in the window is counted, late or not.
	if want := int(rate * dur.Seconds()); open.ok+open.errs < want-2 || open.ok+open.errs > want+2 || open.errs != 0 {
		t.Errorf("open loop: %d ok + %d errors, want %d requests: %+v", open.ok, open.errs, want, open)
	}

	bad := &staticSource{req: good.req, marker: []byte(`"no_such_member"`)}
	res, err := runLoad(ctx, addr, bad, runSpec{mode: closedLoop, conns: 2, warm: warm, dur: dur, loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.ok != 0 || res.errs == 0 || !strings.Contains(strings.Join(res.notes, "\n"), "first failure: HTTP 200") {
		t.Errorf("failing check: %d ok, %d errors, notes %q", res.ok, res.errs, res.notes)
	}
}
