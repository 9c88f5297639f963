package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
)

// TestDatabaseDown cuts the store off its database: calls must fail fast
// with oauth.ErrUnavailable, and succeed again once the database is back,
// without reopening the store.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	schemaDSN := pgtest.FreshSchema(t, dsn)
	p := pgtest.StartProxy(t, pgtest.Target(t, dsn))
	s := openStore(t, pgtest.ViaProxy(t, schemaDSN, p.Addr()), Options{})
	t.Cleanup(func() { s.Close() })

	ctx := t.Context()
	now := time.Now()
	if err := s.CreateClient(ctx, &oauth.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	newToken := func() *oauth.Token {
		n++
		return &oauth.Token{ID: fmt.Sprintf("t%d", n), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	// Fill the pool with a few connections, now idle.
	var wg sync.WaitGroup
	for range 8 {
		tk := newToken()
		wg.Go(func() {
			if err := s.CreateTokens(ctx, tk); err != nil {
				t.Error(err)
			}
			if _, err := s.GetClient(ctx, "c"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"GetClient", func(ctx context.Context) error { _, err := s.GetClient(ctx, "c"); return err }},
		{"CreateTokens", func(ctx context.Context) error { return s.CreateTokens(ctx, newToken()) }},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
		{"GetToken", func(ctx context.Context) error { _, err := s.GetToken(ctx, "t1"); return err }},
		{"UseNonce", func(ctx context.Context) error { return s.UseNonce(ctx, fmt.Sprint("n", n), now.Add(time.Hour)) }},
		{"UpdateClient", func(ctx context.Context) error {
			return s.UpdateClient(ctx, "c", func(c *oauth.Client) error { c.Name = "x"; return nil })
		}},
	}
	requireDown := func(limit time.Duration) {
		t.Helper()
		for round := range 3 { // the first call may meet a dead pooled connection, later ones a refused connect
			for _, c := range calls {
				start := time.Now()
				err := c.call(context.Background()) // no deadline: the store must bound the call itself
				took := time.Since(start)
				if !errors.Is(err, oauth.ErrUnavailable) {
					t.Fatalf("round %d: %s while the database is away = %v, want ErrUnavailable", round, c.name, err)
				}
				if took > limit {
					t.Fatalf("round %d: %s took %v to fail, want under %v", round, c.name, took, limit)
				}
				t.Logf("round %d: %s failed after %v: %v", round, c.name, took.Round(time.Millisecond), err)
			}
		}
	}
	requireUp := func() {
		t.Helper()
		start := time.Now()
		for _, c := range calls {
			for {
				err := c.call(ctx)
				if err == nil {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("%s still fails %v after the database came back: %v", c.name, time.Since(start), err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("all calls succeed %v after the database came back", time.Since(start).Round(time.Millisecond))
	}

	p.Cut()
	requireDown(3 * time.Second)
	p.Restore()
	requireUp()

	// And once more, while many callers are writing.
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for range 16 {
		writers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tk := &oauth.Token{ID: pgtest.RandomID(), Kind: oauth.KindAccess, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
				start := time.Now()
				err := s.CreateTokens(context.Background(), tk)
				if err != nil && !errors.Is(err, oauth.ErrUnavailable) {
					t.Errorf("CreateTokens under load: %v", err)
				}
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("CreateTokens under load took %v", took)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	p.Cut()
	time.Sleep(500 * time.Millisecond)
	requireDown(3 * time.Second)
	p.Restore()
	requireUp()
	close(stop)
	writers.Wait()
}

// TestDatabaseSilent: a database that stops answering without closing
// connections (a network partition) fails calls within Options.Timeout.
func TestDatabaseSilent(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	schemaDSN := pgtest.FreshSchema(t, dsn)
	p := pgtest.StartProxy(t, pgtest.Target(t, dsn))
	const timeout = time.Second
	s := openStore(t, pgtest.ViaProxy(t, schemaDSN, p.Addr()), Options{Timeout: timeout})
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	ctx := t.Context()
	if err := s.CreateClient(ctx, &oauth.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}

	p.Silence()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"GetClient", func() error { _, err := s.GetClient(context.Background(), "c"); return err }},
		{"CreateTokens", func() error {
			return s.CreateTokens(context.Background(), &oauth.Token{ID: pgtest.RandomID(), Kind: oauth.KindAccess, ExpiresAt: time.Now().Add(time.Hour)})
		}},
		{"Ping", func() error { return s.Ping(context.Background()) }},
	} {
		start := time.Now()
		err := c.call()
		took := time.Since(start)
		if !errors.Is(err, oauth.ErrUnavailable) {
			t.Fatalf("%s while the database is silent = %v, want ErrUnavailable", c.name, err)
		}
		if took > timeout+time.Second {
			t.Fatalf("%s took %v to fail, want about %v", c.name, took, timeout)
		}
		t.Logf("%s failed after %v: %v", c.name, took.Round(time.Millisecond), err)
	}

	// Closing must not wait for connections stuck on the silent network.
	start := time.Now()
	closed = true
	s.Close()
	if took := time.Since(start); took > timeout+time.Second {
		t.Fatalf("Close took %v while the database was silent", took)
	}
}
