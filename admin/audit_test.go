package admin_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/admin"
)

// rawDB opens the store's database file directly, as someone with write
// access to it would.
func rawDB(t *testing.T, f *fixture) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", f.raw.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func verify(t *testing.T, f *fixture) *admin.AuditVerification {
	t.Helper()
	v, err := f.svc.VerifyAudit(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVerifyAuditFindsTampering changes the trail behind the service's
// back, through database/sql, in the ways an intruder with the database
// would, and checks verification names the first broken link each time.
func TestVerifyAuditFindsTampering(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"one", "two", "three", "four"} {
		f.create(t, f.ctx, spec(name))
	}
	v := verify(t, f)
	if !v.OK || v.Events != 4 || v.HeadSeq != 4 || len(v.HeadHash) != 64 {
		t.Fatalf("an untouched trail: %+v", v)
	}
	db := rawDB(t, f)

	// The table refuses changes...
	if _, err := db.Exec(`UPDATE audit_events SET action = 'client.nothing' WHERE seq = 2`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("UPDATE of an audit event: %v", err)
	}
	if _, err := db.Exec(`DELETE FROM audit_events WHERE seq = 4`); err == nil {
		t.Fatal("DELETE of an audit event succeeded")
	}
	// ...until its triggers are dropped.
	exec(t, db, `DROP TRIGGER audit_events_no_update`)
	exec(t, db, `DROP TRIGGER audit_events_no_delete`)

	// A changed field: the event no longer matches its hash.
	exec(t, db, `UPDATE audit_events SET actor_name = 'someone else' WHERE seq = 2`)
	if v := verify(t, f); v.OK || v.BrokenAt != 2 || !strings.Contains(v.Problem, "was changed") {
		t.Fatalf("a changed event: %+v", v)
	}
	// Its hash recomputed too: the next event no longer follows it.
	evs := f.events(t)
	e := evs[1]
	e.Hash = e.ComputeHash()
	exec(t, db, `UPDATE audit_events SET hash = ? WHERE seq = 2`, e.Hash)
	if v := verify(t, f); v.OK || v.BrokenAt != 3 || !strings.Contains(v.Problem, "event 2 was changed or replaced") {
		t.Fatalf("a changed event with its hash recomputed: %+v", v)
	}
	// The whole rest of the chain recomputed, but not the head.
	prev := e.Hash
	for _, e := range evs[2:] {
		e.PrevHash = prev
		e.Hash = e.ComputeHash()
		exec(t, db, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`, e.PrevHash, e.Hash, e.Seq)
		prev = e.Hash
	}
	if v := verify(t, f); v.OK || v.BrokenAt != 4 || !strings.Contains(v.Problem, "not the head") {
		t.Fatalf("a rewritten chain: %+v", v)
	}
	// Removed from the middle, and from the end.
	exec(t, db, `DELETE FROM audit_events WHERE seq = 3`)
	if v := verify(t, f); v.OK || v.BrokenAt != 3 || !strings.Contains(v.Problem, "missing") {
		t.Fatalf("an event removed: %+v", v)
	}
	g := newFixture(t)
	for _, name := range []string{"one", "two", "three"} {
		g.create(t, g.ctx, spec(name))
	}
	gdb := rawDB(t, g)
	exec(t, gdb, `DROP TRIGGER audit_events_no_delete`)
	exec(t, gdb, `DELETE FROM audit_events WHERE seq = 3`)
	if v := verify(t, g); v.OK || v.BrokenAt != 3 || !strings.Contains(v.Problem, "removed from the end") {
		t.Fatalf("the last event removed: %+v", v)
	}
}

func TestListAudit(t *testing.T) {
	f := newFixture(t)
	_, acc := f.merchant(t, "m@example.com", merchantLimits)
	a, _ := f.create(t, f.ctx, spec("a"))
	s := spec("b")
	s.OwnerAccount = acc.ID
	b, _ := f.create(t, f.ctx, s)
	f.clk.Advance(time.Hour)
	if _, err := f.svc.UpdateClient(f.ctx, a.ClientID, admin.ClientPatch{Name: new("a2")}); err != nil {
		t.Fatal(err)
	}
	count := func(q admin.AuditQuery) int {
		t.Helper()
		p, err := f.svc.ListAudit(f.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Events)
	}
	for name, c := range map[string]struct {
		q    admin.AuditQuery
		want int
	}{
		"all":          {admin.AuditQuery{}, 4},
		"client a":     {admin.AuditQuery{ClientID: a.ClientID}, 2},
		"client b":     {admin.AuditQuery{ClientID: b.ClientID}, 1},
		"account":      {admin.AuditQuery{AccountID: acc.ID}, 2}, // the account's creation and b
		"since":        {admin.AuditQuery{Since: f.clk.Now().Add(-time.Minute)}, 1},
		"object type":  {admin.AuditQuery{ObjectType: admin.ObjectAccount}, 1},
		"limit":        {admin.AuditQuery{Limit: 3}, 3},
		"desc, before": {admin.AuditQuery{Desc: true, Before: 3}, 2},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("ListAudit(%s) = %d events, want %d", name, got, c.want)
		}
	}
	p, err := f.svc.ListAudit(f.ctx, admin.AuditQuery{Limit: 3})
	if err != nil || p.Next != 3 {
		t.Fatalf("a full page's Next: %+v, %v", p, err)
	}
	p, err = f.svc.ListAudit(f.ctx, admin.AuditQuery{After: p.Next, Limit: 3})
	if err != nil || len(p.Events) != 1 || p.Next != 0 || p.Events[0].Action != "client.update" || string(p.Events[0].Before) == "" {
		t.Fatalf("the last page: %+v, %v", p, err)
	}
	_, err = f.svc.ListAudit(f.ctx, admin.AuditQuery{ObjectID: "x"})
	isCode(t, err, admin.CodeInvalid, "object_id without object_type")
}

// An operator giving merchant A's client to merchant B: each sees the
// move in its own audit trail (A must see the change that took its client
// away), and neither sees more of the other's than the change: A's event
// has the client as it was A's before and only the changed fields after;
// B's has only the changed fields before and the client as it is B's
// after. An operator sees both.
func TestClientMovedBetweenMerchantsIsInBothAuditTrails(t *testing.T) {
	f := newFixture(t)
	ctxA, accA := f.merchant(t, "a@example.com", merchantLimits)
	ctxB, accB := f.merchant(t, "b@example.com", merchantLimits)
	c, _ := f.create(t, ctxA, spec("A's shop"))
	f.clk.Advance(time.Second)
	owner := accB.ID
	if _, err := f.svc.UpdateClient(f.ctx, c.ClientID, admin.ClientPatch{OwnerAccount: &owner}); err != nil {
		t.Fatal(err)
	}
	moves := func(ctx context.Context) []*admin.AuditEventView {
		t.Helper()
		page, err := f.svc.ListAudit(ctx, admin.AuditQuery{ClientID: c.ClientID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var out []*admin.AuditEventView
		for _, e := range page.Events {
			if e.Action == "client.update" {
				out = append(out, e)
			}
		}
		return out
	}
	fields := func(doc json.RawMessage) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		return m
	}
	changed := []string{"owner_account", "updated_at"}
	a := moves(ctxA)
	if len(a) != 1 || a[0].Account != accA.ID {
		t.Fatalf("merchant A's audit trail does not show the change that took its client away: %+v", a)
	}
	if before, after := fields(a[0].Before), fields(a[0].After); string(before["name"]) != `"A's shop"` ||
		!slices.Equal(slices.Sorted(maps.Keys(after)), changed) || string(after["owner_account"]) != `"`+accB.ID+`"` {
		t.Errorf("A's event: before %s after %s", a[0].Before, a[0].After)
	}
	b := moves(ctxB)
	if len(b) != 1 || b[0].Account != accB.ID {
		t.Fatalf("merchant B's audit trail does not show the client it was given: %+v", b)
	}
	if before, after := fields(b[0].Before), fields(b[0].After); !slices.Equal(slices.Sorted(maps.Keys(before)), changed) ||
		string(after["name"]) != `"A's shop"` || string(after["owner_account"]) != `"`+accB.ID+`"` {
		t.Errorf("B's event shows more of the client as it was A's than the change: before %s after %s", b[0].Before, b[0].After)
	}
	if ops := moves(f.ctx); len(ops) != 2 {
		t.Errorf("the operator sees %d events of the move, want 2", len(ops))
	}
	// Moved on to no owner: one event, in B's trail, in full.
	if _, err := f.svc.UpdateClient(f.ctx, c.ClientID, admin.ClientPatch{OwnerAccount: new("")}); err != nil {
		t.Fatal(err)
	}
	if b := moves(ctxB); len(b) != 2 || fields(b[1].Before)["name"] == nil || fields(b[1].After)["name"] == nil {
		t.Errorf("B's trail after the client left it for no owner: %+v", b)
	}
	// An update that keeps the owner is one event, as before.
	n := len(f.events(t))
	if _, err := f.svc.UpdateClient(f.ctx, c.ClientID, admin.ClientPatch{OwnerAccount: new(""), Name: new("renamed")}); err != nil {
		t.Fatal(err)
	}
	if got := len(f.events(t)); got != n+1 {
		t.Errorf("an update keeping the owner made %d events", got-n)
	}
	if v := verify(t, f); !v.OK {
		t.Errorf("the chain after the moves: %+v", v)
	}
}
