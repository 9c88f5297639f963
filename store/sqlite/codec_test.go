package sqlite

import (
	"testing"

	"github.com/tokengate/tokengate/store/internal/codec"
)

// TestTypicalClientRowDecodes: a GetClient miss decodes this row to cost
// what a hit costs; a row that failed to decode would cost less, silently.
func TestTypicalClientRowDecodes(t *testing.T) {
	c, err := scanClient(typicalClientRow)
	if err != nil {
		t.Fatal(err)
	}
	want := codec.TypicalClient()
	if c.ID != want.ID || c.Name != want.Name || len(c.Secrets) != 1 || len(c.Scopes) != 2 || len(c.AuthMethods) != 2 || !c.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("decoded %+v, want %+v", c, want)
	}
}
