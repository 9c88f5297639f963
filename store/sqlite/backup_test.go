package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
	"github.com/tokengate/tokengate/store/sqlite"
)

// TestBackupUnderConcurrentWrites: backups taken while clients (in pairs,
// one transaction each) and audit events are written are consistent
// snapshots: each opens as a store, passes SQLite's integrity check, holds
// whole pairs only, and an audit chain without gaps ending at its head.
func TestBackupUnderConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		n    atomic.Int64
	)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				ev := &oauth.AuditEvent{Time: time.Now(), ActorKind: "cli", ActorID: "t", Action: "client.import", ObjectType: "client", ObjectID: id}
				err := s.CreateClients(oauth.WithAudit(ctx, ev), &oauth.Client{ID: id + "-a"}, &oauth.Client{ID: id + "-b"})
				if err != nil {
					t.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	dir := t.TempDir()
	var backups []string
	for i := range 3 {
		for n.Load() < int64(20*(i+1)) {
			time.Sleep(time.Millisecond)
		}
		p := filepath.Join(dir, fmt.Sprintf("b%d.db", i))
		if err := s.Backup(ctx, p); err != nil {
			t.Fatal(err)
		}
		backups = append(backups, p)
	}
	stop.Store(true)
	wg.Wait()

	for i, p := range backups {
		// A raw check first, then the store opens it as its data.
		db, err := sql.Open("sqlite", p+"?_pragma=query_only(1)")
		if err != nil {
			t.Fatal(err)
		}
		var check string
		if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
			t.Fatalf("backup %d: integrity_check = %q, %v", i, check, err)
		}
		db.Close()
		restored := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(restored, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p, filepath.Join(restored, sqlite.FileName)); err != nil {
			t.Fatal(err)
		}
		c := open(t, restored)
		clients, err := c.ListClients(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, cl := range clients {
			ids[cl.ID] = true
		}
		for id := range ids {
			base := id[:len(id)-2]
			if !ids[base+"-a"] || !ids[base+"-b"] {
				t.Fatalf("backup %d holds half of the pair %s", i, base)
			}
		}
		evs, err := c.AuditEvents(ctx, oauth.AuditQuery{Limit: oauth.MaxAuditLimit})
		if err != nil {
			t.Fatal(err)
		}
		seq, head, err := c.AuditHead(ctx)
		if err != nil || int(seq) != len(evs) || len(evs) != len(ids)/2 || len(evs) < 20*(i+1) {
			t.Fatalf("backup %d: %d events, head %d, %d pairs, %v", i, len(evs), seq, len(ids)/2, err)
		}
		var prev []byte
		for _, e := range evs {
			if !bytes.Equal(e.PrevHash, prev) || !e.HashValid() {
				t.Fatalf("backup %d: the chain breaks at event %d", i, e.Seq)
			}
			prev = e.Hash
		}
		if !bytes.Equal(prev, head) {
			t.Fatalf("backup %d: the head is not the last event", i)
		}
		// The copy is a working store.
		if err := c.CreateClient(ctx, &oauth.Client{ID: "after-restore"}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
