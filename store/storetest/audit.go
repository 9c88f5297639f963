package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokengate/tokengate/oauth"
)

// auditEvent returns an event with every field the caller sets set.
func auditEvent(action, objType, objID, account string, at time.Time) *oauth.AuditEvent {
	return &oauth.AuditEvent{
		Time: at, ActorKind: "cli", ActorID: "root@host", ActorName: "root — café", Remote: "192.0.2.1:5555",
		Action: action, ObjectType: objType, ObjectID: objID, Account: account,
		Before: []byte(`{"name":"before","n":1}`), After: []byte(`{"name":"after",  "z":"\u00e9"}`),
	}
}

// checkChain reads every event and fails the test unless they are
// numbered 1..n without gaps, each linked to the one before and hashed
// right, with the head at the last.
func checkChain(t *testing.T, s oauth.Store) []*oauth.AuditEvent {
	t.Helper()
	var all []*oauth.AuditEvent
	for after := int64(0); ; {
		evs, err := s.AuditEvents(t.Context(), oauth.AuditQuery{After: after, Limit: oauth.MaxAuditLimit})
		noErr(t, err, "AuditEvents(after %d)", after)
		if len(evs) == 0 {
			break
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
	var prev []byte
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d", i+1, e.Seq)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("event %d: PrevHash is not the previous event's hash", e.Seq)
		}
		if !e.HashValid() {
			t.Fatalf("event %d: Hash is not the hash of its content", e.Seq)
		}
		prev = e.Hash
	}
	seq, hash, err := s.AuditHead(t.Context())
	noErr(t, err, "AuditHead")
	if seq != int64(len(all)) || !bytes.Equal(hash, prev) {
		t.Fatalf("AuditHead = %d, %x; want %d, %x", seq, hash, len(all), prev)
	}
	return all
}

func testAudit(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	if seq, hash, err := s.AuditHead(ctx); err != nil || seq != 0 || hash != nil {
		t.Fatalf("AuditHead of an empty trail = %d, %x, %v", seq, hash, err)
	}
	e1 := auditEvent("client.create", "client", "c1", "acc-1", t0)
	requireAllSetExcept(t, e1, "Seq", "PrevHash", "Hash")
	e2 := auditEvent("client.update", "client", "c1", "acc-1", t0.Add(time.Second))
	e2.Before = nil // nothing before: stored and hashed as empty
	noErr(t, s.AppendAudit(ctx, e1, e2), "AppendAudit(e1, e2)")
	if e1.Seq != 1 || e2.Seq != 2 || e1.PrevHash != nil || !bytes.Equal(e2.PrevHash, e1.Hash) || !e2.HashValid() {
		t.Fatalf("AppendAudit linked the events as %d %x, %d %x", e1.Seq, e1.PrevHash, e2.Seq, e2.PrevHash)
	}
	noErr(t, s.AppendAudit(ctx), "AppendAudit()")
	all := checkChain(t, s)
	if len(all) != 2 {
		t.Fatalf("%d events, want 2", len(all))
	}
	checkEqual(t, "event 1 as read", e1, all[0])
	checkEqual(t, "event 2 as read", e2, all[1])
	if !bytes.Equal(all[0].After, e1.After) {
		t.Fatalf("After is not kept byte for byte: %q", all[0].After)
	}
}

// requireAllSetExcept is requireAllSet for the fields not named.
func requireAllSetExcept(t *testing.T, e *oauth.AuditEvent, except ...string) {
	t.Helper()
	cp := *e
	for _, f := range except {
		switch f {
		case "Seq":
			cp.Seq = 1
		case "PrevHash":
			cp.PrevHash = []byte{1}
		case "Hash":
			cp.Hash = []byte{1}
		}
	}
	requireAllSet(t, &cp)
}

func testAuditQueries(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	t0 := baseTime()
	// 1..6: c1 (acc-1) at t0, t0+1s; c2 (acc-2) at t0+2s; account acc-1
	// at t0+3s; user at t0+4s; c1 at t0+5s.
	specs := []struct{ typ, id, acc string }{
		{"client", "c1", "acc-1"}, {"client", "c1", "acc-1"}, {"client", "c2", "acc-2"},
		{"account", "acc-1", "acc-1"}, {"user", "bob", ""}, {"client", "c1", "acc-1"},
	}
	for i, sp := range specs {
		noErr(t, s.AppendAudit(ctx, auditEvent("x.y", sp.typ, sp.id, sp.acc, t0.Add(time.Duration(i)*time.Second))), "AppendAudit #%d", i+1)
	}
	for name, c := range map[string]struct {
		q    oauth.AuditQuery
		want string
	}{
		"all":                {oauth.AuditQuery{}, "[1 2 3 4 5 6]"},
		"after":              {oauth.AuditQuery{After: 4}, "[5 6]"},
		"before":             {oauth.AuditQuery{Before: 3}, "[1 2]"},
		"since":              {oauth.AuditQuery{Since: t0.Add(2 * time.Second)}, "[3 4 5 6]"},
		"until":              {oauth.AuditQuery{Until: t0.Add(2 * time.Second)}, "[1 2]"},
		"object":             {oauth.AuditQuery{ObjectType: "client", ObjectID: "c1"}, "[1 2 6]"},
		"object type":        {oauth.AuditQuery{ObjectType: "client"}, "[1 2 3 6]"},
		"account":            {oauth.AuditQuery{Account: "acc-1"}, "[1 2 4 6]"},
		"account and object": {oauth.AuditQuery{Account: "acc-1", ObjectType: "account"}, "[4]"},
		"limit":              {oauth.AuditQuery{Limit: 2}, "[1 2]"},
		"desc":               {oauth.AuditQuery{Desc: true, Limit: 2}, "[6 5]"},
		"desc before":        {oauth.AuditQuery{Desc: true, Before: 5, Limit: 2}, "[4 3]"},
		"desc account":       {oauth.AuditQuery{Desc: true, Account: "acc-1"}, "[6 4 2 1]"},
		"nothing":            {oauth.AuditQuery{Account: "acc-9"}, "[]"},
	} {
		evs, err := s.AuditEvents(ctx, c.q)
		noErr(t, err, "AuditEvents(%s)", name)
		var seqs []int64
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		if got := fmt.Sprint(seqs); got != c.want && !(c.want == "[]" && seqs == nil) {
			t.Errorf("AuditEvents(%s) = %v, want %s", name, got, c.want)
		}
	}
}

// testAuditWithWrites: each write of an admin object made under
// oauth.WithAudit appends its events in its own transaction: when it
// succeeds, with what its update callback put in After; when it fails,
// not at all.
func testAuditWithWrites(t *testing.T, s oauth.Store, clk *clock) {
	ctx := t.Context()
	now := clk.Now()
	errUpdate := errors.New("refused")
	appended := 0
	try := func(name string, wantErr error, write func(*oauth.AuditEvent) error) {
		t.Helper()
		ev := auditEvent(name, "x", name, "", now)
		err := write(ev)
		isErr(t, err, wantErr, "%s", name)
		all := checkChain(t, s)
		if wantErr == nil {
			appended++
			if ev.Seq == 0 {
				t.Fatalf("%s: the store did not append the event in the write's transaction (Seq 0)", name)
			}
		}
		if len(all) != appended {
			t.Fatalf("after %s: %d events, want %d", name, len(all), appended)
		}
		if wantErr == nil {
			got := all[len(all)-1]
			checkEqual(t, name+" event", ev, got)
		}
	}
	a := func(ev *oauth.AuditEvent) context.Context { return oauth.WithAudit(ctx, ev) }

	try("CreateClient", nil, func(ev *oauth.AuditEvent) error { return s.CreateClient(a(ev), fullClient("w1", now)) })
	try("CreateClient taken", oauth.ErrAlreadyExists, func(ev *oauth.AuditEvent) error { return s.CreateClient(a(ev), fullClient("w1", now)) })
	try("CreateClients", nil, func(ev *oauth.AuditEvent) error { return s.CreateClients(a(ev), fullClient("w2", now)) })
	try("CreateClients taken", oauth.ErrAlreadyExists, func(ev *oauth.AuditEvent) error {
		return s.CreateClients(a(ev), fullClient("w3", now), fullClient("w2", now))
	})
	try("UpdateClient", nil, func(ev *oauth.AuditEvent) error {
		return s.UpdateClient(a(ev), "w1", func(c *oauth.Client) error {
			c.Name = "renamed"
			ev.After = []byte(`{"name":"renamed"}`) // filled in by the callback, appended after it
			return nil
		})
	})
	try("UpdateClient refused", errUpdate, func(ev *oauth.AuditEvent) error {
		return s.UpdateClient(a(ev), "w1", func(*oauth.Client) error { return errUpdate })
	})
	try("UpdateClient unknown", oauth.ErrNotFound, func(ev *oauth.AuditEvent) error {
		return s.UpdateClient(a(ev), "nope", func(*oauth.Client) error { return nil })
	})
	try("DeleteClient", nil, func(ev *oauth.AuditEvent) error { return s.DeleteClient(a(ev), "w2") })
	try("DeleteClient unknown", oauth.ErrNotFound, func(ev *oauth.AuditEvent) error { return s.DeleteClient(a(ev), "w2") })
	try("CreateUser", nil, func(ev *oauth.AuditEvent) error { return s.CreateUser(a(ev), &oauth.User{Username: "u"}) })
	try("CreateUser taken", oauth.ErrAlreadyExists, func(ev *oauth.AuditEvent) error { return s.CreateUser(a(ev), &oauth.User{Username: "u"}) })
	try("UpdateUser", nil, func(ev *oauth.AuditEvent) error {
		return s.UpdateUser(a(ev), "u", func(u *oauth.User) error { u.Disabled = true; return nil })
	})
	try("UpdateUser refused", errUpdate, func(ev *oauth.AuditEvent) error {
		return s.UpdateUser(a(ev), "u", func(*oauth.User) error { return errUpdate })
	})
	try("CreateAccount", nil, func(ev *oauth.AuditEvent) error { return s.CreateAccount(a(ev), fullAccount("acc", now)) })
	try("CreateAccount taken", oauth.ErrAlreadyExists, func(ev *oauth.AuditEvent) error { return s.CreateAccount(a(ev), fullAccount("acc", now)) })
	try("UpdateAccount", nil, func(ev *oauth.AuditEvent) error {
		return s.UpdateAccount(a(ev), "acc", func(x *oauth.Account) error { x.Disabled = false; return nil })
	})
	try("UpdateAccount refused", errUpdate, func(ev *oauth.AuditEvent) error {
		return s.UpdateAccount(a(ev), "acc", func(*oauth.Account) error { return errUpdate })
	})
	try("CreateSigningKey", nil, func(ev *oauth.AuditEvent) error {
		return s.CreateSigningKey(a(ev), signingKey("k1", oauth.AlgES256, now), time.Minute)
	})
	try("RewriteSecrets", nil, func(ev *oauth.AuditEvent) error {
		_, err := s.RewriteSecrets(a(ev), func(_ string, v []byte) ([]byte, error) { return v, nil })
		return err
	})
	try("RewriteSecrets refused", errUpdate, func(ev *oauth.AuditEvent) error {
		_, err := s.RewriteSecrets(a(ev), func(string, []byte) ([]byte, error) { return nil, errUpdate })
		return err
	})
	// Several events with one write, in order.
	e1, e2 := auditEvent("multi.1", "client", "m1", "", now), auditEvent("multi.2", "client", "m2", "", now)
	noErr(t, s.CreateClients(oauth.WithAudit(ctx, e1, e2), &oauth.Client{ID: "m1"}, &oauth.Client{ID: "m2"}), "CreateClients(m1, m2)")
	if all := checkChain(t, s); len(all) != appended+2 || all[len(all)-2].Action != "multi.1" || all[len(all)-1].Action != "multi.2" {
		t.Fatalf("CreateClients with two events: the trail ends %v", all[len(all)-2:])
	}
	// Writes of other objects ignore them.
	ev := auditEvent("ignored", "x", "x", "", now)
	noErr(t, s.CreateTokens(oauth.WithAudit(ctx, ev), tok(oauth.KindAccess, "", now, time.Hour)), "CreateTokens")
	if ev.Seq != 0 {
		t.Fatal("CreateTokens appended an audit event")
	}
}

// testAuditConcurrent: appends racing each other and audited writes (from
// one or, for PostgreSQL, several connections) never fork the chain or
// leave a gap.
func testAuditConcurrent(t *testing.T, s oauth.Store, clk *clock) {
	ctx := ctxTimeout(t)
	now := clk.Now()
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "cc"}), "CreateClient")
	const n = 24
	run(n, func(i int) {
		ev := auditEvent(fmt.Sprintf("a.%d", i), "client", "cc", "", now)
		switch i % 3 {
		case 0:
			noErr(t, s.AppendAudit(ctx, ev), "AppendAudit")
		case 1:
			noErr(t, s.UpdateClient(oauth.WithAudit(ctx, ev), "cc", func(c *oauth.Client) error { c.Name = ev.Action; return nil }), "UpdateClient")
		default:
			noErr(t, s.AppendAudit(ctx, ev, auditEvent("b", "client", "cc", "", now)), "AppendAudit(2)")
		}
	})
	if all := checkChain(t, s); len(all) != n+n/3 {
		t.Fatalf("%d events after %d concurrent appends, want %d", len(all), n, n+n/3)
	}
}

// testBackup: Backup writes a new file or says the backend does not.
func testBackup(t *testing.T, s oauth.Store, _ *clock) {
	ctx := t.Context()
	noErr(t, s.CreateClient(ctx, &oauth.Client{ID: "b"}), "CreateClient")
	path := filepath.Join(t.TempDir(), "backup.db")
	err := s.Backup(ctx, path)
	if errors.Is(err, errors.ErrUnsupported) {
		if _, serr := os.Stat(path); serr == nil {
			t.Fatal("an unsupported Backup left a file")
		}
		return
	}
	noErr(t, err, "Backup")
	fi, err := os.Stat(path)
	noErr(t, err, "stat backup")
	if fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %d bytes, mode %v", fi.Size(), fi.Mode().Perm())
	}
	if err := s.Backup(ctx, path); err == nil {
		t.Fatal("Backup overwrote an existing file")
	}
}
