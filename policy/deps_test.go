package policy

import (
	"go/parser"
	gotoken "go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports: policy is a leaf. It imports the standard library and the
// errdefs classes, nothing of vial's — cmd/vial maps the configuration
// onto its types, so every front end gets the same decisions from the same
// data and the package can be tested without TOML.
func TestImports(t *testing.T) {
	allowed := map[string]bool{"github.com/containerd/errdefs": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(gotoken.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if strings.Contains(first, ".") && !allowed[p] {
				t.Errorf("%s imports %s: policy may import only the standard library and errdefs", f, p)
			}
		}
	}
}
