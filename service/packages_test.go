package service

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/rootfs"
)

func TestSandboxEnv(t *testing.T) {
	got := sandboxEnv(
		[]string{"PYTHONPATH=/workspace/src", "A=1", "NODE_PATH=", "A=2"},
		[]string{"VIAL_X=1", "PYTHONPATH=/workspace/.packages/python", "NODE_PATH=/n", "A=3"},
	)
	want := []string{"PYTHONPATH=/workspace/src:/workspace/.packages/python", "A=3", "NODE_PATH=/n", "VIAL_X=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestInstallPackageRefusesOptions(t *testing.T) {
	for _, name := range []string{"-r/etc/passwd", "--index-url=http://x", "a b", "a;rm -rf /", "a'b", "$(id)", "requests\n--pre", ""} {
		if packageName.MatchString(name) {
			t.Errorf("%q accepted as a package name", name)
		}
	}
	for _, name := range []string{"requests", "numpy==1.26.4", "pandas>=2", "@scope/pkg@1.2", "uvicorn[standard]", "vialtest-pkg"} {
		if !packageName.MatchString(name) {
			t.Errorf("%q refused", name)
		}
	}
}

// A named environment whose image lacks a package its template declares
// is refused with the command that builds it; the agent's own is not.
func TestCheckPackages(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte("Package: python3-requests\nStatus: install ok installed\n"), 0o644)
	img := &rootfs.Image{Name: "python", Root: root}
	p := &EngineProvider{pkgChecks: map[string]error{}}
	env := Environment{Name: "python-dev", Image: "python", Packages: []string{"python3-requests", "python3-pandas"}, BuildCommand: "vial rootfs build --env python-dev"}
	err := p.checkPackages(env, img)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "python3-pandas") || strings.Contains(err.Error(), "python3-requests,") ||
		!strings.Contains(err.Error(), "vial rootfs build --env python-dev") {
		t.Fatalf("missing pandas: %v", err)
	}
	env.Packages = []string{"python3-requests"}
	if err := p.checkPackages(env, img); err != nil {
		t.Fatalf("all there: %v", err)
	}
	own := env
	own.Name, own.Packages = "", []string{"python3-pandas"}
	if err := p.checkPackages(own, img); err != nil {
		t.Fatalf("the agent's own environment: %v", err)
	}
}
