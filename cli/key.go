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

type keyListCmd struct {
	JSON bool `name:"json" help:"Machine-readable output."`
}

func (c *keyListCmd) Run(r *run) error {
	s, err := r.open()
	if err != nil {
		return err
	}
	defer s.Close()
	views, err := s.Admin.ListSigningKeys(r.ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(views)
	}
	w := tabwriter.NewWriter(r.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KID\tALG\tSTATE\tCREATED\tPUBLISHED UNTIL")
	for _, v := range views {
		until := "-"
		if v.PublishUntil != nil {
			until = v.PublishUntil.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.KID, v.Alg, v.State, v.CreatedAt.Format(time.RFC3339), until)
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
	v, err := s.Admin.RotateSigningKey(r.ctx, c.Alg)
	if err != nil {
		return err
	}
	if c.JSON {
		return r.printJSON(v)
	}
	r.printf("new %s key %s is published now and signs from %s; the previous one signs until then and stays published until the tokens it signed have expired\n",
		v.Alg, v.KID, v.SignsFrom.Format(time.RFC3339))
	return nil
}
