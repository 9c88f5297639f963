package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/config"
)

// TestStoredRowsStayBounded issues tokens continuously with a one-second
// lifetime while the background cleanup runs every second: the stored rows
// must track what is still alive, not everything ever issued.
func TestStoredRowsStayBounded(t *testing.T) {
	e := start(t, func(c *config.Config) { c.GC.Interval = time.Second; c.GC.Batch = 200 })
	id, secret := e.createClient("--name", "m", "--grant", "client_credentials", "--access-ttl", "1s")
	form := url.Values{"grant_type": {"client_credentials"}}
	store := e.srv.Engine().Store()

	var issued atomic.Int64
	var mu sync.Mutex
	var times []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if r := e.postForm("/oauth/token", form, id, secret); r.status == 200 {
					issued.Add(1)
					mu.Lock()
					times = append(times, time.Now())
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	counts, err := store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Alive or awaiting the next cleanup: issued in the last TTL + interval
	// (plus a second of slack for a cleanup pass in progress).
	recent := 0
	cutoff := time.Now().Add(-3 * time.Second)
	for _, ts := range times {
		if ts.After(cutoff) {
			recent++
		}
	}
	t.Logf("issued %d in 5s; %d stored at the end; %d issued in the last 3s", issued.Load(), counts.Tokens, recent)
	if issued.Load() < 500 {
		t.Fatalf("only %d tokens issued: the test proves nothing", issued.Load())
	}
	if counts.Tokens > int64(recent) {
		t.Errorf("%d token rows stored, more than the %d issued in the last 3s: expired rows are not cleaned up", counts.Tokens, recent)
	}

	// Once issuance stops, everything expires and is cleaned up.
	eventuallyWithin(t, 5*time.Second, "all expired rows deleted", func() bool {
		c, err := store.Counts(context.Background())
		return err == nil && c.Tokens == 0
	})

	// tokengate gc does the same on demand.
	for range 20 {
		e.postForm("/oauth/token", form, id, secret)
	}
	time.Sleep(1100 * time.Millisecond)
	var out struct {
		Deleted   int
		Remaining struct{ Tokens, Nonces int64 }
	}
	if err := json.Unmarshal([]byte(e.mustRun("", "gc", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	if out.Remaining.Tokens != 0 {
		t.Errorf("tokengate gc left %d expired tokens (deleted %d)", out.Remaining.Tokens, out.Deleted)
	}
}
