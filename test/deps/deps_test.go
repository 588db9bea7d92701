// Package deps checks vial's import graph against the rules of
// ../shared/ARCHITECTURE.md, from `go list`, so that a layering mistake
// fails the build instead of creeping in.
package deps

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/vial-run/vial"

type pkg struct {
	ImportPath string
	Imports    []string
}

// vialImports maps each package of the module (by path relative to the
// module, "." for the root) to the module's packages it imports, without
// tests.
func vialImports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var own []string
		for _, imp := range p.Imports {
			if rel, ok := relative(imp); ok {
				own = append(own, rel)
			}
		}
		rel, _ := relative(p.ImportPath)
		graph[rel] = own
	}
	if len(graph) < 10 {
		t.Fatalf("go list found only %d packages", len(graph))
	}
	return graph
}

func relative(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

func under(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }

func TestDependencyRules(t *testing.T) {
	graph := vialImports(t)
	leaves := []string{"cgroups", "rootfs", "seccomp", "runtime/oci", "config", "observe",
		"internal/cleanup", "internal/errclass", "internal/human", "internal/proctree"}
	backends := []string{"runtime/runc", "runtime/crun", "runtime/runsc", "runtime/local"}
	frontEnds := []string{"mcp", "api", "web"}
	for p, imports := range graph {
		for _, imp := range imports {
			switch {
			// Leaves import nothing of vial's but internal helpers; the
			// consumers of events under observe/ (metrics, audit) import
			// observe's event types.
			case slices.ContainsFunc(leaves, func(l string) bool { return under(p, l) }) && !under(imp, "internal") &&
				!(under(p, "observe") && imp == "observe"):
				t.Errorf("%s is a leaf but imports %s", p, imp)
			// Only cmd/vial reads configuration; everything else takes
			// options, so it is testable without TOML.
			case imp == "config" && !under(p, "cmd"):
				t.Errorf("%s imports config; only cmd/vial may", p)
			// runtime never knows a concrete backend: they are handed in.
			case p == "runtime" && slices.ContainsFunc(backends, func(b string) bool { return under(imp, b) }):
				t.Errorf("runtime imports the backend %s", imp)
			// Front ends call the application core, never the runtime.
			case slices.ContainsFunc(frontEnds, func(f string) bool { return under(p, f) }) && (under(imp, "runtime") || under(imp, "rootfs") || under(imp, "cgroups")):
				t.Errorf("front end %s imports %s directly; it must go through service", p, imp)
			// The core knows no front end.
			case under(p, "service") && (slices.ContainsFunc(frontEnds, func(f string) bool { return under(imp, f) }) || under(imp, "cmd")):
				t.Errorf("service imports the front end %s", imp)
			}
		}
	}
	for _, must := range []string{"service", "mcp", "runtime", "cmd/vial"} {
		if _, ok := graph[must]; !ok {
			t.Errorf("package %s not found: the rules check nothing for it", must)
		}
	}
}

// TestMCPFreeOfPrometheus: the MCP front end takes the metrics as a
// function; the Prometheus client stays in observe/metrics and cmd/vial.
func TestMCPFreeOfPrometheus(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", module+"/mcp").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/prometheus/") || strings.HasPrefix(dep, module+"/observe/metrics") {
			t.Errorf("mcp depends on %s", dep)
		}
	}
}
