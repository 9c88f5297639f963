package main

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The flood-client-id scenario (issue 8, point 1): unauthenticated
// requests, each with a fresh random client_id of about 64 KiB, sent on
// every path that takes a client_id, must neither raise the server's
// memory nor be answered with anything but the path's own 4xx. They once
// took the server from 23 MiB to a 1.27 GiB peak in 10 s: the cache of
// unknown client IDs kept every request body alive.
//
// Generating 30,000 × 64 KiB requests up front would take 2 GB, so each
// worker builds its request into a reused buffer just before sending it,
// with net/http: the event loop's precomputed requests do not fit here,
// and the rate is low enough for a plain client.

const (
	// floodBodyID is the client_id length of the requests that carry it
	// in the body: the longest that keeps every body within the dialects'
	// 64 KiB body limit, so that the dialect's client_id check refuses
	// it, not its body-size limit.
	floodBodyID = 64<<10 - 256
	// floodHeaderID is the length for the requests that carry it in a
	// header (Basic credentials, X-CLIENT-KEY): the server reads at most
	// 32 KiB of headers (MaxHeaderBytes): a round size that fits, Base64
	// included, so that the dialect answers.
	floodHeaderID = 22 << 10
	// floodOverHeader is the length sent in a header beyond that limit:
	// net/http answers 431 before any handler runs.
	floodOverHeader = 64 << 10
	// floodRSSLimit is issue 8's target for the server's peak RSS.
	floodRSSLimit = 150 << 20
	// floodWorkers is the number of concurrent senders (and connections).
	floodWorkers = 16
)

// neoxPath is where the bench's configuration mounts the NeoX dialect.
const neoxPath = "/v2/auth/oauth2/token"

// floodKind is one way of sending a long client_id, with the answer the
// server must give.
type floodKind struct {
	name   string
	idLen  int
	build  func(base string, id []byte, buf *bytes.Buffer) (*http.Request, error)
	status int
	marker string // the answer's body starts with it
	want   string // the expected answer, for the report
}

// The RFC 6749 dialect's answers to an over-long client_id in the body and
// in Basic credentials, and net/http's to a request over its header limit.
const (
	oauth2TooLong  = `{"error":"invalid_request","error_description":"malformed parameter: client_id`
	oauth2BadBasic = `{"error":"invalid_client","error_description":"malformed Basic credentials`
	netHTTP431     = "431 Request Header Fields Too Large"
)

var floodKinds = []floodKind{
	{name: "token form", idLen: floodBodyID, status: 400, marker: oauth2TooLong, want: "oauth2 invalid_request (client_id)",
		build: formWith("/oauth/token", "grant_type=client_credentials&client_secret=wrong&client_id=")},
	{name: "token JSON", idLen: floodBodyID, status: 400, marker: oauth2TooLong, want: "oauth2 invalid_request (client_id)",
		build: jsonWith("/oauth/token")},
	{name: "token Basic", idLen: floodHeaderID, status: 401, marker: oauth2BadBasic, want: "oauth2 invalid_client (Basic)",
		build: basicWith("/oauth/token", "grant_type=client_credentials")},
	{name: "token Basic > header limit", idLen: floodOverHeader, status: 431, marker: netHTTP431, want: "net/http, before any handler",
		build: basicWith("/oauth/token", "grant_type=client_credentials")},
	{name: "introspect form", idLen: floodBodyID, status: 400, marker: oauth2TooLong, want: "oauth2 invalid_request (client_id)",
		build: formWith("/oauth/introspect", "token=tga_x&client_secret=wrong&client_id=")},
	{name: "introspect Basic", idLen: floodHeaderID, status: 401, marker: oauth2BadBasic, want: "oauth2 invalid_client (Basic)",
		build: basicWith("/oauth/introspect", "token=tga_x")},
	{name: "revoke form", idLen: floodBodyID, status: 400, marker: oauth2TooLong, want: "oauth2 invalid_request (client_id)",
		build: formWith("/oauth/revoke", "token=tga_x&client_secret=wrong&client_id=")},
	{name: "revoke Basic", idLen: floodHeaderID, status: 401, marker: oauth2BadBasic, want: "oauth2 invalid_client (Basic)",
		build: basicWith("/oauth/revoke", "token=tga_x")},
	{name: "NeoX JSON", idLen: floodBodyID, status: 400, marker: `{"code":400,"message":"malformed field: client_id"}`, want: "NeoX malformed client_id",
		build: jsonWith(neoxPath)},
	{name: "SNAP X-CLIENT-KEY", idLen: floodHeaderID, status: 400, marker: `{"responseCode":"4007301","responseMessage":"Invalid Field Format {X-CLIENT-KEY}"}`, want: "SNAP 4007301 (X-CLIENT-KEY)",
		build: snapWith},
	{name: "SNAP X-CLIENT-KEY > header limit", idLen: floodOverHeader, status: 431, marker: netHTTP431, want: "net/http, before any handler",
		build: snapWith},
}

// formWith posts prefix followed by the client_id as a form body.
func formWith(path, prefix string) func(string, []byte, *bytes.Buffer) (*http.Request, error) {
	return func(base string, id []byte, buf *bytes.Buffer) (*http.Request, error) {
		buf.WriteString(prefix)
		buf.Write(id)
		return newFloodRequest(base+path, "application/x-www-form-urlencoded", buf)
	}
}

// jsonWith posts a client_credentials request with the client_id as JSON.
func jsonWith(path string) func(string, []byte, *bytes.Buffer) (*http.Request, error) {
	return func(base string, id []byte, buf *bytes.Buffer) (*http.Request, error) {
		buf.WriteString(`{"grant_type":"client_credentials","client_secret":"wrong","client_id":"`)
		buf.Write(id)
		buf.WriteString(`"}`)
		return newFloodRequest(base+path, "application/json", buf)
	}
}

// basicWith posts body with the client_id in Basic credentials.
func basicWith(path, body string) func(string, []byte, *bytes.Buffer) (*http.Request, error) {
	return func(base string, id []byte, buf *bytes.Buffer) (*http.Request, error) {
		buf.WriteString(body)
		req, err := newFloodRequest(base+path, "application/x-www-form-urlencoded", buf)
		if err != nil {
			return nil, err
		}
		// The ID's characters need no form encoding (RFC 6749 §2.3.1).
		cred := make([]byte, 0, len(id)+len(":wrong"))
		cred = append(append(cred, id...), ":wrong"...)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(cred))
		return req, nil
	}
}

// snapWith sends a well-formed SNAP request but for its X-CLIENT-KEY.
func snapWith(base string, id []byte, buf *bytes.Buffer) (*http.Request, error) {
	buf.WriteString(snapBody)
	req, err := newFloodRequest(base+"/v1.0/access-token/b2b", "application/json", buf)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-TIMESTAMP", snapTimestamp(time.Now().UnixMilli()))
	req.Header.Set("X-CLIENT-KEY", string(id))
	req.Header.Set("X-SIGNATURE", base64.StdEncoding.EncodeToString(make([]byte, 256)))
	return req, nil
}

// floodBody is a request body read from a worker's reused buffer; the
// worker waits for the transport to close it before reusing the buffer.
type floodBody struct {
	bytes.Reader
	closed chan struct{}
	once   sync.Once
}

func (b *floodBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func newFloodRequest(url, contentType string, buf *bytes.Buffer) (*http.Request, error) {
	body := &floodBody{closed: make(chan struct{})}
	body.Reset(buf.Bytes())
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(buf.Len())
	req.GetBody = nil
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// idAlphabet is 64 characters that need no escaping in a form, in JSON, in
// Basic credentials (after form encoding) or in a SNAP header.
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// idSource makes random client IDs cheaply: drawing 64 KiB of fresh
// randomness per request would cost the generator ~60 µs of the CPU it
// shares with the server, so each ID is a fresh random 32-character
// prefix (192 bits: every ID differs) followed by a window, at a random
// offset, of a random text drawn once.
type idSource struct {
	rng  *rand.ChaCha8
	pool []byte
}

const idPrefix = 32

func newIDSource(maxLen int) *idSource {
	var seed [32]byte
	crand.Read(seed[:])
	s := &idSource{rng: rand.NewChaCha8(seed), pool: make([]byte, 2*maxLen)}
	s.fill(s.pool)
	return s
}

// fill writes random characters of idAlphabet into b.
func (s *idSource) fill(b []byte) {
	s.rng.Read(b)
	for i, c := range b {
		b[i] = idAlphabet[c&63]
	}
}

// next fills id with a new random client ID.
func (s *idSource) next(id []byte) {
	n := min(idPrefix, len(id))
	s.fill(id[:n])
	rest := len(id) - n
	off := int(s.rng.Uint64() % uint64(len(s.pool)-rest+1))
	copy(id[n:], s.pool[off:off+rest])
}

// floodResult is what the flood-client-id scenario measured.
type floodResult struct {
	planned, sent int
	elapsed       time.Duration
	statuses      map[string]map[int]int // kind -> status -> count
	wrong         int                    // answers other than the kind's expected one
	transport     int                    // requests without an answer
	firstWrong    string
	rssBefore     int64
	peakRSS       int64
	rssEnd        int64
	serverCPU     float64 // seconds
	genCPU        float64 // seconds, this process (the generator)
	otherCPU      float64 // CPU of other processes, % of the machine
	logLines      int
}

// rate is the requests sent per second.
func (r *floodResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.sent) / r.elapsed.Seconds()
}

// answered5xx counts the 5xx answers.
func (r *floodResult) answered5xx() int {
	n := 0
	for _, by := range r.statuses {
		for s, c := range by {
			if s >= 500 {
				n += c
			}
		}
	}
	return n
}

// passed reports whether the flood met every expectation.
func (r *floodResult) passed() bool {
	return r.sent == r.planned && r.wrong == 0 && r.transport == 0 && r.peakRSS > 0 && r.peakRSS < floodRSSLimit
}

// runFlood sends -flood-requests requests spread evenly over -flood-d to
// server p, cycling through floodKinds, each with a fresh random client_id.
func (h *harness) runFlood(ctx context.Context, p *proc) error {
	n, dur := h.opts.floodRequests, h.opts.floodDur
	h.logf("flood-client-id: %d requests in %s, %d workers", n, dur, floodWorkers)
	res := &floodResult{planned: n, statuses: map[string]map[int]int{}}
	res.rssBefore = procStatusBytes(p.pid, "VmRSS:")
	if err := resetPeakRSS(p.pid); err != nil {
		h.logf("flood-client-id: peak RSS not reset: %v", err)
	}
	cpuBefore := snapCPU(0, &runSpec{pid: p.pid}, "")
	logBefore := p.logLines()
	tr := &http.Transport{
		MaxConnsPerHost:     floodWorkers,
		MaxIdleConnsPerHost: floodWorkers,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression:  true,
		// One write per request, not one per 4 KiB (the default).
		WriteBufferSize: floodOverHeader + 4<<10,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	base := "http://" + p.addr

	var next atomic.Int64
	var mu sync.Mutex
	interval := float64(dur) / float64(n)
	start := time.Now()
	var wg sync.WaitGroup
	for range floodWorkers {
		wg.Go(func() {
			ids := newIDSource(floodOverHeader)
			id := make([]byte, floodOverHeader)
			var buf bytes.Buffer
			local := map[string]map[int]int{}
			var wrong, transport int
			var firstWrong string
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					break
				}
				if d := time.Until(start.Add(time.Duration(float64(i) * interval))); d > 0 {
					time.Sleep(d)
				}
				k := &floodKinds[i%len(floodKinds)]
				ids.next(id[:k.idLen])
				buf.Reset()
				req, err := k.build(base, id[:k.idLen], &buf)
				if err != nil {
					transport++
					firstWrong = cmp.Or(firstWrong, fmt.Sprintf("%s: %v", k.name, err))
					continue
				}
				req = req.WithContext(ctx)
				status, body, err := floodDo(hc, req)
				// The transport may still hold the body after an early
				// answer; the buffer is reused only once it let go.
				<-req.Body.(*floodBody).closed
				if err != nil {
					transport++
					firstWrong = cmp.Or(firstWrong, fmt.Sprintf("%s: %v", k.name, err))
					continue
				}
				if local[k.name] == nil {
					local[k.name] = map[int]int{}
				}
				local[k.name][status]++
				if status != k.status || !bytes.HasPrefix(body, []byte(k.marker)) {
					wrong++
					firstWrong = cmp.Or(firstWrong, fmt.Sprintf("%s: want %d %s, got HTTP %d: %.200s", k.name, k.status, k.want, status, body))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, by := range local {
				if res.statuses[k] == nil {
					res.statuses[k] = map[int]int{}
				}
				for s, c := range by {
					res.statuses[k][s] += c
					res.sent += c
				}
			}
			res.sent += transport
			res.wrong += wrong
			res.transport += transport
			if res.firstWrong == "" {
				res.firstWrong = firstWrong
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.peakRSS = peakRSS(p.pid)
	res.rssEnd = procStatusBytes(p.pid, "VmRSS:")
	if a, b := cpuBefore, snapCPU(0, &runSpec{pid: p.pid}, ""); a.serverErr == nil && b.serverErr == nil && a.selfErr == nil && b.selfErr == nil {
		res.serverCPU = float64(b.server-a.server) / clkTck
		res.genCPU = float64(b.self-a.self) / clkTck
		if total := b.sysTotal - a.sysTotal; total > 0 {
			other := (b.sysBusy - a.sysBusy) - (b.self - a.self) - (b.server - a.server)
			res.otherCPU = max(0, 100*float64(other)/float64(total))
		}
	}
	res.logLines = p.logLines() - logBefore
	h.flood = res
	h.logf("flood-client-id: %d sent in %s, peak RSS %.0f MiB", res.sent, res.elapsed.Round(time.Millisecond), float64(res.peakRSS)/(1<<20))
	return nil
}

// floodDo sends req and reads at most 4 KiB of the answer.
func floodDo(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// reportFlood prints the flood-client-id section of the report.
func (h *harness) reportFlood() {
	r := h.flood
	if r == nil {
		return
	}
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(h.out, "\nflood-client-id: unauthenticated requests, each with a fresh random client_id (%d B in a body, %d B in a header, %d B over the header limit)\n",
		floodBodyID, floodHeaderID, floodOverHeader)
	fmt.Fprintf(h.out, "  sent %d of %d in %s (planned %s): %.0f/s, %d workers; server log lines %d\n",
		r.sent, r.planned, r.elapsed.Round(time.Millisecond), h.opts.floodDur, r.rate(), floodWorkers, r.logLines)
	quiet := ""
	if r.otherCPU >= noisy {
		quiet = " (!: the machine was not quiet)"
	}
	fmt.Fprintf(h.out, "  CPU: server %.1f s, generator %.1f s, other processes %.0f%% of the machine%s\n", r.serverCPU, r.genCPU, r.otherCPU, quiet)
	fmt.Fprintf(h.out, "  server RSS: %s before, peak (VmHWM) %s, %s at the end\n", mib(r.rssBefore), mib(r.peakRSS), mib(r.rssEnd))
	fmt.Fprintf(h.out, "  answers (path: status × count, expected):\n")
	for _, k := range floodKinds {
		by := r.statuses[k.name]
		var parts []string
		for _, s := range slices.Sorted(maps.Keys(by)) {
			parts = append(parts, fmt.Sprintf("%d × %d", s, by[s]))
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		fmt.Fprintf(h.out, "    %-34s %-12s want %d %s\n", k.name+":", strings.Join(parts, ", "), k.status, k.want)
	}
	fmt.Fprintf(h.out, "  wrong answers %d, 5xx %d, no answer %d\n", r.wrong, r.answered5xx(), r.transport)
	if r.firstWrong != "" {
		fmt.Fprintf(h.out, "  first failure: %s\n", r.firstWrong)
	}
	verdict := "FAIL"
	if r.passed() {
		verdict = "PASS"
	}
	fmt.Fprintf(h.out, "  %s: peak RSS %s < %s and every answer the expected 4xx\n", verdict, mib(r.peakRSS), mib(floodRSSLimit))
}
