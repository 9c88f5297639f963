package cli

import (
	"strings"

	"github.com/tokengate/tokengate/kek"
)

type kekCmd struct {
	Generate kekGenerateCmd `cmd:"" help:"Write a new key-encryption key to a new file (mode 0600)."`
	Rotate   kekRotateCmd   `cmd:"" help:"Re-encrypt every stored secret under the current KEK (secrets.kek_file), opening values with it or any of secrets.old_kek_files."`
}

type kekGenerateCmd struct {
	File string `arg:"" help:"File to create; an existing file is never overwritten." placeholder:"FILE"`
}

func (c *kekGenerateCmd) Run(r *run) error {
	k, err := kek.Generate()
	if err != nil {
		return err
	}
	if err := kek.WriteFile(c.File, k); err != nil {
		return err
	}
	r.printf("wrote a new KEK (id %s) to %s\n", kek.ID(k), c.File)
	return nil
}

type kekRotateCmd struct {
	SealClear bool `name:"seal-clear" help:"Also encrypt values stored in clear (once, on a store written before encryption at rest)."`
	JSON      bool `name:"json" help:"Machine-readable output."`
}

func (c *kekRotateCmd) Run(r *run) error {
	// The store only: building the engine would read the very values
	// this command may have to repair.
	s, err := r.openStoreOnly()
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.Admin.RotateKEK(r.ctx, c.SealClear)
	if err != nil && len(rep.LeftClear) == 0 {
		return err
	}
	if c.JSON {
		if jerr := r.printJSON(rep); jerr != nil {
			return jerr
		}
	} else {
		r.printf("%d secret values are encrypted under KEK %s: %d were under an older KEK, %d already under this one, %d were in clear\n",
			rep.Values-len(rep.LeftClear), rep.KEK, rep.FromOld, rep.Current, rep.Sealed)
		if len(rep.LeftClear) > 0 {
			r.printf("left in clear: %s\n", strings.Join(rep.LeftClear, ", "))
		}
	}
	return err
}
