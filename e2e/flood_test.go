package e2e

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
)

// Issue 8, point 1: random ~64 KiB client IDs sent by unauthenticated
// callers once took the server from 23 MiB to 1.27 GiB in 10 s and left it
// at 990 MiB, because the cache of unknown client IDs kept each request body
// alive. `go run ./bench -only flood-client-id` measures the real process;
// this test keeps the cause from coming back, in-process and quickly.

const (
	floodBodyIDLen   = 64<<10 - 256 // in a body: within every dialect's 64 KiB body limit
	floodHeaderIDLen = 22 << 10     // in a header: within the server's 32 KiB header limit
)

// floodPath is one way of sending a long client_id, with the dialect
// whose error shape the answer must have.
type floodPath struct {
	name  string
	idLen int
	build func(base string, id []byte) *http.Request
	shape string // a member the dialect's error body has
}

func floodPaths() []floodPath {
	post := func(url, contentType, body string) *http.Request {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		req.Header.Set("Content-Type", contentType)
		return req
	}
	form := func(path, prefix string) func(string, []byte) *http.Request {
		return func(base string, id []byte) *http.Request {
			return post(base+path, "application/x-www-form-urlencoded", prefix+string(id))
		}
	}
	basic := func(path, body string) func(string, []byte) *http.Request {
		return func(base string, id []byte) *http.Request {
			req := post(base+path, "application/x-www-form-urlencoded", body)
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(append(id[:len(id):len(id)], ":wrong"...)))
			return req
		}
	}
	jsonBody := func(path string) func(string, []byte) *http.Request {
		return func(base string, id []byte) *http.Request {
			return post(base+path, "application/json",
				`{"grant_type":"client_credentials","client_secret":"wrong","client_id":"`+string(id)+`"}`)
		}
	}
	return []floodPath{
		{"token form", floodBodyIDLen, form("/oauth/token", "grant_type=client_credentials&client_secret=wrong&client_id="), "error"},
		{"token JSON", floodBodyIDLen, jsonBody("/oauth/token"), "error"},
		{"token Basic", floodHeaderIDLen, basic("/oauth/token", "grant_type=client_credentials"), "error"},
		{"introspect form", floodBodyIDLen, form("/oauth/introspect", "token=tga_x&client_secret=wrong&client_id="), "error"},
		{"introspect Basic", floodHeaderIDLen, basic("/oauth/introspect", "token=tga_x"), "error"},
		{"revoke form", floodBodyIDLen, form("/oauth/revoke", "token=tga_x&client_secret=wrong&client_id="), "error"},
		{"revoke Basic", floodHeaderIDLen, basic("/oauth/revoke", "token=tga_x"), "error"},
		{"NeoX JSON", floodBodyIDLen, jsonBody("/v2/auth/oauth2/token"), "code"},
		{"SNAP X-CLIENT-KEY", floodHeaderIDLen, func(base string, id []byte) *http.Request {
			req := post(base+"/v1.0/access-token/b2b", "application/json", `{"grantType":"client_credentials","additionalInfo":{}}`)
			req.Header.Set("X-TIMESTAMP", uniqueTimestamp())
			req.Header.Set("X-CLIENT-KEY", string(id))
			req.Header.Set("X-SIGNATURE", base64.StdEncoding.EncodeToString(make([]byte, 256)))
			return req
		}, "responseCode"},
	}
}

// randomClientID fills id with random characters that need no escaping
// in a form, JSON, Basic credentials or a header.
func randomClientID(r *rand.ChaCha8, id []byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	r.Read(id)
	for i, c := range id {
		id[i] = alphabet[c&63]
	}
}

// liveHeap is the heap still reachable after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // the first may leave finalizer-freed objects for the next
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestUnknownClientIDFloodRetainsNoMemory sends 3,000 requests, each with a
// fresh random client_id of 22 to 64 KiB, over every path that takes one,
// and requires the heap retained afterwards to have grown by less than
// 16 MiB. Before the fix (commit 7943610) it grew by 59 MiB of the 132 MiB
// of client IDs sent.
func TestUnknownClientIDFloodRetainsNoMemory(t *testing.T) {
	const (
		requests = 3000
		workers  = 8
		bound    = 16 << 20
	)
	e := start(t, snapEndpoints)
	paths := floodPaths()
	tr := &http.Transport{MaxConnsPerHost: workers, MaxIdleConnsPerHost: workers}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	type failure struct{ path, what string }
	var (
		mu       sync.Mutex
		failures []failure
		statuses = map[string]map[int]int{}
		sentMiB  float64
	)
	send := func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				var seed [32]byte
				crand.Read(seed[:])
				rng := rand.NewChaCha8(seed)
				id := make([]byte, floodBodyIDLen)
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					p := paths[i%len(paths)]
					randomClientID(rng, id[:p.idLen])
					status, body, err := roundTrip(hc, p.build(e.base, id[:p.idLen]))
					var shape map[string]json.RawMessage
					jerr := json.Unmarshal(body, &shape)
					mu.Lock()
					sentMiB += float64(p.idLen) / (1 << 20)
					if statuses[p.name] == nil {
						statuses[p.name] = map[int]int{}
					}
					statuses[p.name][status]++
					switch {
					case err != nil:
						failures = append(failures, failure{p.name, err.Error()})
					case status < 400 || status >= 500:
						failures = append(failures, failure{p.name, fmt.Sprintf("HTTP %d: %.200s", status, body)})
					case jerr != nil || shape[p.shape] == nil:
						failures = append(failures, failure{p.name, fmt.Sprintf("HTTP %d without %q: %.200s", status, p.shape, body)})
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		tr.CloseIdleConnections()
	}
	// A first round warms up every path (pools, lazily built state) so that
	// the measurement sees only what the flood itself leaves behind.
	send(2 * len(paths))
	before := liveHeap()
	sentMiB, statuses = 0, map[string]map[int]int{}
	t0 := time.Now()
	send(requests)
	elapsed := time.Since(t0)
	after := liveHeap()
	growth := int64(after) - int64(before)
	t.Logf("%d requests (%.0f MiB of client IDs) in %s; live heap %.1f MiB before, %.1f MiB after: %+.1f MiB (bound %d MiB)",
		requests, sentMiB, elapsed.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20),
		float64(growth)/(1<<20), bound>>20)
	for _, p := range paths {
		t.Logf("  %-18s %v", p.name, statuses[p.name])
	}
	for i, f := range failures {
		if i == 5 {
			t.Errorf("... %d failures in all", len(failures))
			break
		}
		t.Errorf("%s: %s", f.path, f.what)
	}
	if growth >= bound {
		t.Errorf("the live heap grew by %.1f MiB after %d unknown client IDs (bound %d MiB): something keeps them",
			float64(growth)/(1<<20), requests, bound>>20)
	}
}

// roundTrip sends req and returns the status and at most 4 KiB of the body.
func roundTrip(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, body, err
}

// TestPasswordFloodDoesNotStarveOtherUsers is issue 8, point 5: 500
// concurrent wrong-password requests against one username once pushed
// every other user's login to 503 after 5 s (all of them queued for
// argon2id behind the flood). Now the username locks after the threshold,
// at most one check per username runs at a time on a node, and a full
// argon2id queue answers 503 at once: while the flood runs, another user's
// 20 logins must all succeed with a median latency of at most 200 ms (the
// issue's goal, with the default configuration). The flood runs again with
// a lockout threshold never reached: the one-check-per-username limit
// alone must then protect the other user, although the flooded username
// keeps one argon2id check (a whole CPU of the two here) busy throughout;
// its bound is looser, still far below the 5 s starvation it guards against.
func TestPasswordFloodDoesNotStarveOtherUsers(t *testing.T) {
	t.Run("lockout", func(t *testing.T) { passwordFlood(t, true, 200*time.Millisecond) })
	t.Run("no lockout", func(t *testing.T) { passwordFlood(t, false, 500*time.Millisecond) })
}

// floodPause is how long each flood sender waits after an answer before
// sending again. The test's client runs in the server's process on the
// same 2 CPUs; sending back to back, it takes as much CPU as the server,
// and the logins measure how the machine's CPU is split rather than
// whether the flood holds argon2id. With the pause, 500 senders still make
// thousands of guesses a second (the attacker made 70).
var floodPause = flag.Duration("flood-pause", 50*time.Millisecond,
	"how long each sender of the password flood waits after an answer (go test ./e2e -args -flood-pause=0 for back to back)")

// passwordFlood floods one username with wrong passwords while another
// user logs in, and fails unless every login succeeds with a median latency
// of at most maxMedian, and the flood gets only its expected answers (and,
// with lockout, locks the username).
func passwordFlood(t *testing.T, lockout bool, maxMedian time.Duration) {
	const (
		flooders    = 500
		logins      = 20
		wrongPass   = "flood-Wrong-password-1"
		victim      = "victim"
		victimPass  = "Victim-password-123"
		other       = "alice"
		otherPass   = "Alice-password-456"
		floodWarmup = 2 * flooders // answers to the flood before the logins start
		maxFailed   = 3            // failed logins after which the outcome is clear
	)
	// The clock stands still: a lock taken during the flood lasts until the
	// test moves it.
	clk := newClock()
	e := startClock(t, clk, func(c *config.Config) {
		if !lockout {
			c.RateLimit.Lockout.Threshold = 1 << 30
		}
	})
	lockoutMax := config.Default().RateLimit.Lockout.Max // the test keeps the default
	id, secret := e.createClient("--name", "app", "--grant", "password", "--scope", "read")
	e.createUser(victim, victimPass)
	e.createUser(other, otherPass)
	e.remember(wrongPass)

	tr := &http.Transport{MaxConnsPerHost: flooders + 10, MaxIdleConnsPerHost: flooders + 10}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	login := func(ctx context.Context, user, pass string) (int, http.Header, []byte, error) {
		form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/oauth/token", strings.NewReader(form.Encode()))
		if err != nil {
			return 0, nil, nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, body, err
	}
	timeLogins := func(n int, during string) (lat []time.Duration) {
		failed := 0
		for i := range n {
			t0 := time.Now()
			status, _, body, err := login(context.Background(), other, otherPass)
			lat = append(lat, time.Since(t0))
			if err != nil || status != 200 || !bytes.Contains(body, []byte(`"access_token"`)) {
				t.Errorf("login %d of %s %s: %v HTTP %d: %.200s", i+1, other, during, err, status, body)
				if failed++; failed == maxFailed {
					t.Errorf("stopped after %d failed logins", failed)
					break
				}
			}
		}
		slices.Sort(lat)
		return lat
	}
	pct := func(lat []time.Duration, p int) time.Duration {
		return lat[(len(lat)*p+99)/100-1].Round(time.Millisecond)
	}
	quiet := timeLogins(5, "before the flood")

	// The flood: 500 senders, each with one wrong-password request in
	// flight at a time, until the other user's logins are done.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		mu       sync.Mutex
		byAnswer = map[string]int{} // "400 invalid_grant", "429 temporarily_unavailable", ...
		bad      []string
		answered atomic.Int64
	)
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			for ctx.Err() == nil {
				status, h, body, err := login(ctx, victim, wrongPass)
				if ctx.Err() != nil {
					return
				}
				answered.Add(1)
				var r struct{ Error string }
				json.Unmarshal(body, &r)
				mu.Lock()
				byAnswer[strings.TrimSpace(fmt.Sprintf("%d %s", status, r.Error))]++
				switch {
				case err != nil:
					bad = append(bad, err.Error())
				case status == 400 && r.Error == "invalid_grant":
				case status == 429 || status == 503:
					if h.Get("Retry-After") == "" {
						bad = append(bad, fmt.Sprintf("HTTP %d without Retry-After: %s", status, body))
					}
				default:
					bad = append(bad, fmt.Sprintf("HTTP %d: %.200s", status, body))
				}
				mu.Unlock()
				time.Sleep(*floodPause)
			}
		})
	}
	for answered.Load() < floodWarmup {
		time.Sleep(10 * time.Millisecond)
	}
	t0, n0 := time.Now(), answered.Load()
	lat := timeLogins(logins, "during the flood")
	rate := float64(answered.Load()-n0) / time.Since(t0).Seconds()
	stop()
	wg.Wait()

	median := lat[(len(lat)-1)/2]
	t.Logf("%s's logins: before the flood median %s; %d during it: median %s, p90 %s, max %s",
		other, pct(quiet, 50), len(lat), median.Round(time.Millisecond), pct(lat, 90), pct(lat, 100))
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(byAnswer)) {
		parts = append(parts, fmt.Sprintf("%s × %d", k, byAnswer[k]))
	}
	t.Logf("flood: %d senders (pause %s), %.0f wrong passwords/s for %s during the logins; answers: %s",
		flooders, *floodPause, rate, victim, strings.Join(parts, ", "))
	if median > maxMedian {
		t.Errorf("median login latency during the flood %s, want ≤ %s", median.Round(time.Millisecond), maxMedian)
	}
	for i, b := range bad {
		if i == 5 {
			t.Errorf("... %d unexpected flood answers in all", len(bad))
			break
		}
		t.Errorf("flood answer: %s", b)
	}
	if !lockout {
		return
	}

	// The flooded username is locked: even its right password is refused,
	// with the wait, until the lock runs out.
	status, h, body, err := login(context.Background(), victim, victimPass)
	var r struct{ Error string }
	json.Unmarshal(body, &r)
	if err != nil || status != 400 || r.Error != "invalid_grant" || h.Get("Retry-After") == "" {
		t.Errorf("%s with the right password after the flood: %v HTTP %d Retry-After %q: %s (want 400 invalid_grant with Retry-After: locked)",
			victim, err, status, h.Get("Retry-After"), body)
	}
	clk.Advance(lockoutMax + time.Minute)
	if status, _, body, err := login(context.Background(), victim, victimPass); err != nil || status != 200 {
		t.Errorf("%s with the right password once the lock ran out: %v HTTP %d: %s", victim, err, status, body)
	}
}

// Unauthenticated portal sign-ins (random emails, so no lockout ever
// triggers; from 100 source addresses, as a botnet's would come, so no
// per-address limit holds them) must not starve the payment API's
// password grant: the admin service checks account passwords with an
// argon2id pool of its own, so a flood fills that pool (and is answered
// 503) while the token endpoint's slots stay free for users.
func TestPortalSignInFloodDoesNotStarvePasswordGrant(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Portal.Listen = "127.0.0.1:0" })
	id, secret := e.createClient("--name", "app", "--grant", "password", "--scope", "read")
	e.createUser("alice", "Alice-password-456")
	portalBase := "http://" + e.srv.PortalAddr()

	// One sign-in form: its cookie and CSRF token serve every attempt.
	res, err := http.Get(portalBase + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var cookie string
	for _, c := range res.Cookies() {
		if c.Name == "__Host-tokengate-signin" {
			cookie = c.Name + "=" + c.Value
		}
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if cookie == "" || m == nil {
		t.Fatal("no sign-in form")
	}
	csrf := string(m[1])

	const flooders = 100
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg        sync.WaitGroup
		sent      atomic.Int64
		mu        sync.Mutex
		signInsBy = map[int]int{}
	)
	for i := range flooders {
		// Each flooder from an address of its own in 127.0.0.0/8 (all
		// loopback on Linux).
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i))}}
		tr := &http.Transport{DialContext: d.DialContext}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				form := url.Values{"csrf": {csrf}, "email": {fmt.Sprintf("nobody-%d-%d@example.com", i, n)}, "password": {"guess"}}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, portalBase+"/login", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Cookie", cookie)
				if r, err := hc.Do(req); err == nil {
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
					sent.Add(1)
					mu.Lock()
					signInsBy[r.StatusCode]++
					mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	failed, answers := 0, map[int]int{}
	for range 20 {
		r := e.postForm("/oauth/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"Alice-password-456"}}, id, secret)
		answers[r.status]++
		if r.status != http.StatusOK {
			failed++
		}
	}
	stop()
	wg.Wait()
	t.Logf("portal sign-ins sent: %d, by status: %v; alice's password grants by status: %v", sent.Load(), signInsBy, answers)
	if failed > 0 {
		t.Errorf("%d of alice's 20 password grants failed while unauthenticated portal sign-ins ran", failed)
	}
	if signInsBy[http.StatusServiceUnavailable] == 0 {
		t.Error("the flood never filled the portal's password pool: the test proves nothing")
	}
}
