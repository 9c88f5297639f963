package main

import (
	"slices"
	"testing"
	"time"
)

// TestParseGobench reads `go test -bench -benchmem` output as the guard
// scenario gets it.
func TestParseGobench(t *testing.T) {
	out := []byte(`goos: linux
goarch: amd64
pkg: github.com/tokengate/tokengate/guard
cpu: AMD EPYC
BenchmarkValidateCached/opaque-2         	 6522513	       183.4 ns/op	       0 B/op	       0 allocs/op
BenchmarkValidateCached/opaque-parallel-2         	12345678	        95.10 ns/op	       0 B/op	       0 allocs/op
BenchmarkValidateCached/mixed-10k         	 1000000	      1742 ns/op	      16 B/op	       1 allocs/op
BenchmarkValidateUncachedJWT-2   	   10000	     99000 ns/op	   10000 B/op	     154 allocs/op
PASS
ok  	github.com/tokengate/tokengate/guard	12.3s
`)
	got := parseGobench(out, "BenchmarkValidateCached")
	want := []gobenchLine{
		{name: "opaque", nsOp: 183.4, bOp: 0, allocsOp: 0},
		{name: "opaque-parallel", nsOp: 95.10, bOp: 0, allocsOp: 0},
		{name: "mixed-10k", nsOp: 1742, bOp: 16, allocsOp: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[0].parallel() || !got[1].parallel() {
		t.Errorf("parallel() wrong: %v %v", got[0].parallel(), got[1].parallel())
	}
}

// TestGuardTargets checks the verdicts on made-up rows: the ratio, the
// introspection multiple, the revocation p99 (a token never refused
// counts as slower than anything) and the Go benchmark's worst case.
func TestGuardTargets(t *testing.T) {
	ms := func(n int) int64 { return int64(n) * int64(time.Millisecond) }
	h := &harness{rows: []result{
		{scenario: guardRowProtected, mode: "closed", rate: 40000},
		{scenario: guardRowUnprotected, mode: "closed", rate: 45000},
		{scenario: guardRowIntrospect, mode: "closed", rate: 9000},
	}}
	sum := &guardSummary{gobench: []gobenchLine{{name: "opaque", nsOp: 200}, {name: "mixed-10k", nsOp: 2100, allocsOp: 0},
		{name: "jwt-parallel", nsOp: 3000, allocsOp: 1}}}
	for i := range 100 {
		sum.revs = append(sum.revs, revocation{tok: i, kind: revocationKinds[i%4], t0: ms(1000), ack: ms(1050)})
		sum.refused = append(sum.refused, ms(1000+100+i))
	}
	h.guard = sum
	verdict := func(ok bool) string {
		if ok {
			return "met   "
		}
		return "MISSED"
	}
	want := []string{
		"met    guard protected ≥ 0.8 of the unprotected handler's rate: 0.89 (40000/s against 45000/s)",
		"MISSED guard protected ≥ 5× the per-request introspection's rate: 4.4× (40000/s against 9000/s)",
		"met    guard revocation-to-refusal p99 ≤ 1s under load: 198ms (p50 149ms, max 199ms; 100 of 100 refused)",
		"MISSED guard cached validation ≤ 2.00µs (Go benchmark, slowest single-goroutine case): 2.10µs (mixed-10k)",
		"met    guard cached validation ≤ 1 allocation (Go benchmark, most of any case): 1 (jwt-parallel)",
	}
	check := func() {
		t.Helper()
		got := h.guardTargets(verdict)
		if len(got) != len(want) {
			t.Fatalf("got %q", got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("got  %q\nwant %q", got[i], want[i])
			}
		}
	}
	check()
	if st := sum.revokeStats(""); st.ackP99 != 148*time.Millisecond {
		t.Errorf("p99 from the acknowledgement: %s, want 148ms", st.ackP99)
	}
	if st := sum.revokeStats(revocationKinds[1]); st.n != 25 || st.p50 != 149*time.Millisecond || st.maxD != 197*time.Millisecond {
		t.Errorf("one kind: %+v", st)
	}

	// A neighbour's load during one of the two runs is said, with the
	// ratio CPU per request implies.
	h.rows[0].otherCPU, h.rows[0].serverCPU, h.rows[0].genCPU = 30, 18, 8
	h.rows[1].serverCPU, h.rows[1].genCPU = 17, 7.4
	h.rows[2].serverCPU, h.rows[2].upCPU, h.rows[2].genCPU = 80, 120, 12
	saved := slices.Clone(want)
	want[0] += "; DISTURBED: other processes used 30% and 0% of the machine during the two runs, CPU per request implies 0.94"
	want[1] += "; DISTURBED: other processes used 30% and 0% of the machine during the two runs, CPU per request implies 8.2×"
	check()
	h.rows[0].otherCPU = 0
	want = saved
	check()

	// One token never refused: the p99 of 100 is the second slowest, but
	// the target needs every one refused.
	sum.refused[7] = 0
	want[2] = "MISSED guard revocation-to-refusal p99 ≤ 1s under load: 199ms (p50 150ms, max > 5s; 99 of 100 refused)"
	check()
	// A failed revocation counts as never refused.
	sum.refused[7] = ms(1107)
	sum.revs[3].err = "HTTP 500"
	want[2] = "MISSED guard revocation-to-refusal p99 ≤ 1s under load: 199ms (p50 150ms, max > 5s; 99 of 100 refused)"
	check()
}

// TestGuardRequesterSkipsRefused checks the load's view of revocations: a
// 401 for a token whose revocation started is a correct answer and marks
// it refused, after which the token is no longer presented; a 401 for
// any other token is an error.
func TestGuardRequesterSkipsRefused(t *testing.T) {
	pool := newGuardPool([]guardToken{{value: "a"}, {value: "b"}, {value: "c"}})
	s := newGuardSource(pool, "127.0.0.1:1", guardProtected)
	s.prepare(t.Context(), "", 1)
	r := s.requester(0).(*guardReq)
	refusal := []byte(`{"error":"invalid_token","error_description":"the access token was revoked"}`)

	req, _ := r.next() // a
	if string(req) != string(guardRequest("127.0.0.1:1", guardProtected, "a")) {
		t.Fatalf("first request %q", req)
	}
	if r.check(401, refusal) {
		t.Error("a 401 for a token not being revoked passed")
	}
	if !r.check(200, guardBody) {
		t.Error("a 200 with the handler's body failed")
	}
	r.next() // b
	pool.pending[1].Store(true)
	if !r.check(401, refusal) || pool.refused[1].Load() == 0 || pool.expected.Load() != 1 || pool.byLoad.Load() != 1 {
		t.Errorf("the expected refusal of b was not recorded: refused %d, expected %d", pool.refused[1].Load(), pool.expected.Load())
	}
	first := pool.refused[1].Load()
	pool.noteRefusal(1, first+1, false)
	if pool.refused[1].Load() != first || pool.byLoad.Load() != 1 {
		t.Error("a later refusal replaced the first")
	}
	// b is skipped from now on: c, a, c, a...
	for _, want := range []string{"c", "a", "c", "a"} {
		req, ok := r.next()
		if !ok || string(req) != string(guardRequest("127.0.0.1:1", guardProtected, want)) {
			t.Errorf("got %q, want the request of %s", req, want)
		}
	}
}
