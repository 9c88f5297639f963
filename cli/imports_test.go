package cli

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCLIGoesThroughTheAdminService: the CLI imports neither the store,
// the engine nor the server: every operator action goes through package
// admin (and the composition root, app, that builds it).
func TestCLIGoesThroughTheAdminService(t *testing.T) {
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, fi := range files {
		if !strings.HasSuffix(fi.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, fi.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range []string{"/store", "/engine", "/server"} {
				if strings.HasPrefix(path, "github.com/tokengate/tokengate"+banned) {
					t.Errorf("%s imports %s", fi.Name(), path)
				}
			}
		}
	}
}
