package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/pgtest"
	"github.com/tokengate/tokengate/oauth"
)

// TestConcurrentOpen starts four nodes on an empty schema at once: one
// migrates, the others wait for its advisory lock, and all come up.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	const nodes = 4
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), dsn, Options{MaxConns: 4}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	// All share one schema: what one writes, the others read.
	ctx := t.Context()
	if err := stores[0].CreateClient(ctx, &oauth.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if _, err := s.GetClient(ctx, "c"); err != nil {
			t.Fatalf("node %d: GetClient: %v", i, err)
		}
	}
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatalf("Migrate on a migrated schema: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	for _, bad := range []string{
		"postgres://u:hunter2@127.0.0.1:5432/db?connect_timeout=x",
		"postgres://u:hunter2@127.0.0.1:port/db",
		"postgres://u:hunter2@127.0.0.1:5432/db?pool_max_conns=x",
		"host=127.0.0.1 password=hunter2 connect_timeout=x",
		"host=127.0.0.1 password='hunter2",
	} {
		_, err := Open(t.Context(), bad, Options{})
		if err == nil {
			t.Fatal("Open with an invalid DSN succeeded")
		}
		if s := err.Error(); strings.Contains(s, "hunter2") {
			t.Fatalf("error quotes the password: %q", s)
		}
		t.Logf("invalid DSN: %v", err)
	}
	// A search_path naming no existing schema.
	_, err := Open(t.Context(), pgtest.WithParam(t, dsn, "search_path", "tg_no_such_schema"), Options{})
	if err == nil {
		t.Fatal("Open on a missing schema succeeded")
	}
	t.Logf("missing schema: %v", err)
}

// TestAcrossNodes checks the exactly-once guarantees between Stores
// (separate pools and writers, as separate processes would have) sharing
// one database.
func TestAcrossNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t))
	const nodes = 3
	var stores [nodes]*Store
	for i := range stores {
		stores[i] = openStore(t, dsn, Options{MaxConns: 4})
		t.Cleanup(func() { stores[i].Close() })
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	now := time.Now()

	t.Run("rotation", func(t *testing.T) {
		for round := range 5 {
			fam := fmt.Sprintf("fam-%d", round)
			r1 := &oauth.Token{ID: fmt.Sprintf("r1-%d", round), Kind: oauth.KindRefresh, FamilyID: fam, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := stores[0].CreateTokens(ctx, r1); err != nil {
				t.Fatal(err)
			}
			const n = 30
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					repl := &oauth.Token{ID: fmt.Sprintf("r2-%d-%d", round, i), Kind: oauth.KindRefresh, FamilyID: fam, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
					errs[i] = stores[i%nodes].RotateRefreshToken(ctx, r1.ID, now, 0, repl)
				})
			}
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, oauth.ErrRefreshReused):
					t.Fatalf("rotation #%d: %v", i, err)
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d rotations succeeded, want 1", round, won)
			}
			// Every replacement that exists was revoked with the family.
			for i := range n {
				tk, err := stores[1].GetToken(ctx, fmt.Sprintf("r2-%d-%d", round, i))
				if errors.Is(err, oauth.ErrNotFound) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if tk.RevokedAt.IsZero() {
					t.Fatalf("round %d: replacement %d survived a detected reuse", round, i)
				}
			}
		}
	})

	t.Run("rotation within the grace window", func(t *testing.T) {
		// Duplicates of one refresh request reaching several nodes at
		// once: one rotates, every one gets its replacement, none is
		// taken for reuse.
		for round := range 3 {
			fam := fmt.Sprintf("gfam-%d", round)
			r1 := &oauth.Token{ID: fmt.Sprintf("g1-%d", round), Kind: oauth.KindRefresh, FamilyID: fam, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := stores[0].CreateTokens(ctx, r1); err != nil {
				t.Fatal(err)
			}
			const n = 12
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					repl := &oauth.Token{ID: fmt.Sprintf("g2-%d-%d", round, i), Kind: oauth.KindRefresh, FamilyID: fam, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
					errs[i] = stores[i%nodes].RotateRefreshToken(ctx, r1.ID, now, 5*time.Second, repl)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d: rotation #%d within the grace window: %v", round, i, err)
				}
			}
			for i := range n {
				tk, err := stores[1].GetToken(ctx, fmt.Sprintf("g2-%d-%d", round, i))
				if err != nil {
					t.Fatalf("round %d: replacement %d: %v", round, i, err)
				}
				if !tk.RevokedAt.IsZero() {
					t.Fatalf("round %d: replacement %d revoked within the grace window", round, i)
				}
			}
			if old, err := stores[2].GetToken(ctx, r1.ID); err != nil || old.RotatedAt.IsZero() || !old.RevokedAt.IsZero() {
				t.Fatalf("round %d: rotated token %+v, %v: want rotated, not revoked", round, old, err)
			}
		}
	})

	t.Run("nonce", func(t *testing.T) {
		for round := range 5 {
			key := fmt.Sprintf("nonce-%d", round)
			const n = 30
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { errs[i] = stores[i%nodes].UseNonce(ctx, key, time.Now().Add(time.Minute)) })
			}
			wg.Wait()
			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, oauth.ErrAlreadyExists):
					t.Fatalf("UseNonce #%d: %v", i, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d UseNonce calls succeeded, want 1", round, ok)
			}
		}
	})

	t.Run("setting and revision", func(t *testing.T) {
		vals := make([][]byte, nodes)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				v, err := stores[i].Setting(ctx, "pepper", func() ([]byte, error) { return fmt.Appendf(nil, "node-%d", i), nil })
				if err != nil {
					t.Error(err)
				}
				vals[i] = v
			})
		}
		wg.Wait()
		for i := range vals {
			if string(vals[i]) != string(vals[0]) {
				t.Fatalf("nodes disagree on a setting: %q vs %q", vals[0], vals[i])
			}
		}
		before, err := stores[2].Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stores[0].CreateUser(ctx, &oauth.User{Username: "u"}); err != nil {
			t.Fatal(err)
		}
		if after, err := stores[2].Revision(ctx); err != nil || after == before {
			t.Fatalf("another node's Revision = %d, %v after a change; was %d", after, err, before)
		}
	})

	t.Run("signing key rotation", func(t *testing.T) {
		// Nodes rotating one algorithm's key at once leave one current key.
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				k := &oauth.SigningKey{ID: fmt.Sprintf("k%d", i), Alg: oauth.AlgES256, PrivateKeyPEM: []byte("pem"), CreatedAt: now.Add(time.Duration(i) * time.Millisecond)}
				if err := stores[i].CreateSigningKey(ctx, k, time.Hour); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		keys, err := stores[0].ListSigningKeys(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		current := 0
		for _, k := range keys {
			if k.Current() {
				current++
			}
		}
		if len(keys) != nodes || current != 1 {
			t.Fatalf("%d keys listed, %d current; want %d and 1", len(keys), current, nodes)
		}
	})
}
