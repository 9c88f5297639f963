package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokengate/tokengate/admin"
)

type auditCmd struct {
	List   auditListCmd   `cmd:"" help:"List audit events, oldest first."`
	Verify auditVerifyCmd `cmd:"" help:"Recompute the audit trail's hash chain; exit 1 and name the first broken link if it was tampered with."`
}

type auditListCmd struct {
	Since   string `placeholder:"TIME" help:"Only events at or after TIME: RFC 3339 (2025-01-31T12:00:00Z) or a duration back from now (24h)."`
	Client  string `placeholder:"ID" help:"Only the events of this client."`
	Account string `placeholder:"ID" help:"Only the events of the objects of this account (its clients, itself)."`
	Limit   int    `help:"Only the newest N events (still printed oldest first); default: all."`
	JSON    bool   `name:"json" help:"Machine-readable output (a JSON array)."`
}

// parseSince reads --since: an RFC 3339 instant or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since: %q is neither a time like 2025-01-31T12:00:00Z nor a duration like 24h", s)
}

func (c *auditListCmd) Run(r *run) error {
	q := admin.AuditQuery{ClientID: c.Client, AccountID: c.Account}
	if c.Since != "" {
		t, err := parseSince(c.Since, r.now())
		if err != nil {
			return err
		}
		q.Since = t
	}
	if c.Limit < 0 {
		return errors.New("--limit must not be negative")
	}
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	events := []*admin.AuditEventView{}
	if c.Limit > 0 {
		q.Desc, q.Limit = true, c.Limit
	}
	for {
		if c.Limit > 0 {
			q.Limit = c.Limit - len(events)
		}
		page, err := s.Admin.ListAudit(r.ctx, q)
		if err != nil {
			return err
		}
		events = append(events, page.Events...)
		if page.Next == 0 || c.Limit > 0 && len(events) >= c.Limit {
			break
		}
		if q.Desc {
			q.Before = page.Next
		} else {
			q.After = page.Next
		}
	}
	if q.Desc {
		slices.Reverse(events)
	}
	if c.JSON {
		return r.printJSON(events)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tFROM\tACTION\tOBJECT\tACCOUNT")
	for _, e := range events {
		obj := e.Object.Type
		if e.Object.ID != "" {
			obj += " " + e.Object.ID
		}
		fmt.Fprintf(w, "%d\t%s\t%s:%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Actor.Kind, e.Actor.Name,
			dash(e.Actor.Remote), e.Action, obj, dash(e.Account))
	}
	return w.Flush()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

type auditVerifyCmd struct {
	JSON bool `name:"json" help:"Machine-readable output (also when the chain is broken)."`
}

func (c *auditVerifyCmd) Run(r *run) error {
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Admin.VerifyAudit(r.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		if err := r.printJSON(v); err != nil {
			return err
		}
	} else if v.OK {
		r.printf("audit trail intact: %d events; head: event %d, hash %s\n", v.Events, v.HeadSeq, v.HeadHash)
	}
	if !v.OK {
		return fmt.Errorf("the audit trail was tampered with: first broken link at event %d: %s", v.BrokenAt, v.Problem)
	}
	return nil
}
