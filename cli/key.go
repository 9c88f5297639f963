package cli

import (
	"fmt"
	"text/tabwriter"
	"time"
)

type keyCmd struct {
	List   keyListCmd   `cmd:"" help:"List signing keys: current ones and retired ones still published in the JWKS."`
	Rotate keyRotateCmd `cmd:"" help:"Make a new current signing key; the old one stays in the JWKS until its tokens have expired."`
}

type keyView struct {
	KID          string     `json:"kid"`
	Alg          string     `json:"alg"`
	State        string     `json:"state"`
	CreatedAt    time.Time  `json:"created_at"`
	RetiredAt    *time.Time `json:"retired_at,omitempty"`
	PublishUntil *time.Time `json:"publish_until,omitempty"`
}

type keyListCmd struct {
	JSON bool `name:"json" help:"Machine-readable output."`
}

func (c *keyListCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	keys, err := s.Store.ListSigningKeys(r.ctx, time.Now())
	if err != nil {
		return err
	}
	views := make([]keyView, 0, len(keys))
	for _, k := range keys {
		v := keyView{KID: k.ID, Alg: k.Alg, State: "current", CreatedAt: k.CreatedAt}
		if !k.Current() {
			retired, until := k.RetiredAt, k.PublishUntil
			v.State, v.RetiredAt, v.PublishUntil = "retired", &retired, &until
		}
		views = append(views, v)
	}
	if c.JSON {
		return r.printJSON(views)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KID\tALG\tSTATE\tCREATED\tPUBLISHED UNTIL")
	for _, v := range views {
		until := "-"
		if v.PublishUntil != nil {
			until = v.PublishUntil.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.KID, v.Alg, v.State, v.CreatedAt.UTC().Format(time.RFC3339), until)
	}
	return w.Flush()
}

type keyRotateCmd struct {
	Alg  string `default:"" enum:",ES256,RS256,EdDSA" help:"Algorithm of the key to rotate (default: the configured signing_alg)."`
	JSON bool   `name:"json" help:"Machine-readable output."`
}

func (c *keyRotateCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	alg := c.Alg
	if alg == "" {
		alg = s.Engine.Config().DefaultAlg
	}
	k, err := s.Engine.RotateKey(r.ctx, alg)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(keyView{KID: k.ID, Alg: k.Alg, State: "current", CreatedAt: k.CreatedAt})
	}
	cfg := s.Engine.Config()
	r.printf("new %s key %s is published now and signs from %s; the previous one signs until then and stays published %s longer\n",
		k.Alg, k.ID, k.CreatedAt.Add(cfg.KeyActivationDelay).UTC().Format(time.RFC3339), cfg.MaxAccessTTL)
	return nil
}
