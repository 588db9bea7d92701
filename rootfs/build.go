package rootfs

import (
	"github.com/containerd/errdefs"

	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vial-run/vial/internal/lazyre"
)

// buildScript is build-rootfs.sh (scripts/build-rootfs.sh runs it from the
// command line), embedded so an installed vial can build images without
// the source tree.
//
//go:embed build-rootfs.sh
var buildScript []byte

// Recipes are the images Build knows, all Debian bookworm:
// minimal (the essential set), python (python3 with its standard library),
// node (nodejs) and data-science (python3 with numpy, pandas, matplotlib
// and scipy).
func Recipes() []string { return []string{"minimal", "python", "node", "data-science"} }

// RecipeFor returns the recipe that builds an image for the name ref
// ("python:3.11-slim" -> "python", "node-dev" -> "node"), or "".
func RecipeFor(ref string) string {
	repo := ref
	if k, err := NormalizeName(ref); err == nil {
		repo, _, _ = strings.Cut(k, ":")
	}
	repo = repo[strings.LastIndexByte(repo, '/')+1:]
	switch {
	case repo == "data-science" || strings.HasPrefix(repo, "datascience") || strings.HasPrefix(repo, "data-science"):
		return "data-science"
	case strings.HasPrefix(repo, "python"):
		return "python"
	case strings.HasPrefix(repo, "node"):
		return "node"
	case repo == "minimal" || repo == "debian" || repo == "bookworm":
		return "minimal"
	}
	return ""
}

// BuildOptions configure Build.
type BuildOptions struct {
	Recipe   string   // one of Recipes()
	Name     string   // name to store it under; "" means the recipe's name
	Packages []string // extra Debian packages baked in (see DebianPackages)
	Mirrors  []string // one-line apt sources ("deb URL SUITE COMPONENTS"); nil: the host's Debian mirrors
	// Output receives mmdebstrap's progress and the build's step lines
	// (nil: discarded).
	Output io.Writer
}

var debPackageRE = lazyre.New(`^[a-z0-9][a-z0-9.+-]+$`)

// Build builds a Debian image with mmdebstrap (scripts/build-rootfs.sh,
// embedded) and imports it into the store. It needs root, or unprivileged
// user namespaces with subuids for mmdebstrap's unshare mode, and a
// reachable Debian mirror. Cancelling ctx stops the build and everything it
// started.
func (s *Store) Build(ctx context.Context, opts BuildOptions) (*ImageInfo, error) {
	known := false
	for _, r := range Recipes() {
		known = known || r == opts.Recipe
	}
	if !known {
		return nil, fmt.Errorf("%w: unknown recipe %q (recipes: %s)", ErrInvalid, opts.Recipe, strings.Join(Recipes(), ", "))
	}
	for _, p := range opts.Packages {
		if !debPackageRE.MatchString(p) {
			return nil, fmt.Errorf("%w: package %q: want a Debian package name", ErrInvalid, p)
		}
	}
	for _, m := range opts.Mirrors {
		if strings.ContainsAny(m, "\n\x00") || !strings.HasPrefix(m, "deb ") {
			return nil, fmt.Errorf("%w: mirror %q: want a one-line \"deb URL SUITE COMPONENTS\" entry", ErrInvalid, m)
		}
	}
	name := opts.Name
	if name == "" {
		name = opts.Recipe
	}
	key, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, fmt.Errorf("building %s: %w: mmdebstrap not found (apt-get install -y mmdebstrap)", opts.Recipe, ErrUnavailable)
	}
	out := opts.Output
	if out == nil {
		out = io.Discard
	}

	st, err := s.newStaging()
	if err != nil {
		return nil, err
	}
	defer st.discard()
	script := filepath.Join(st.dir, "build-rootfs.sh")
	if err := os.WriteFile(script, buildScript, 0o700); err != nil {
		return nil, fmt.Errorf("writing build script: %w", err)
	}
	outDir := filepath.Join(st.dir, "out")
	args := []string{script}
	if len(opts.Packages) > 0 {
		args = append(args, "--packages", strings.Join(opts.Packages, ","))
	}
	for _, m := range opts.Mirrors {
		args = append(args, "--mirror", m)
	}
	args = append(args, opts.Recipe, outDir)

	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", args...)
	// apt's complaints are kept aside too, to turn the commonest failure,
	// a package Debian does not have, into an error that names it.
	tail := &tailBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out, tail), io.MultiWriter(out, tail)
	// Own process group: cancelling kills mmdebstrap and apt, not just bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("building %s: %w", opts.Recipe, ctx.Err())
		}
		if missing := unlocatable(tail.String()); len(missing) > 0 {
			return nil, fmt.Errorf("building %s: %w: Debian %s has no package %s; leave it out of the list (an agent can still install_package it at run time, network allowing) or name the Debian package that provides it",
				opts.Recipe, ErrInvalid, "bookworm", strings.Join(missing, ", "))
		}
		return nil, fmt.Errorf("building %s with mmdebstrap: %w (its output is above)", opts.Recipe, err)
	}
	built := time.Since(start)

	fmt.Fprintf(out, "==> importing %s into the store\n", key)
	// A copy, so the import's steps go to out without touching s.
	s2 := *s
	if s2.Progress == nil {
		s2.Progress = out
	}
	info, err := s2.importFrom(ctx, outDir, key, &indexRef{
		Source: "build " + opts.Recipe, Format: "mmdebstrap", Recipe: opts.Recipe, Packages: opts.Packages,
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "==> built %s (%s) in %s, imported in %s: %s, %d entries\n",
		key, info.Digest, built.Round(time.Second), (time.Since(start) - built).Round(100*time.Millisecond),
		HumanSize(info.Size), info.Entries)
	return info, nil
}

// ErrUnavailable classifies errors caused by a missing tool or service on
// the host (mmdebstrap, a mirror).
var ErrUnavailable = errdefs.ErrUnavailable

// pypiToDebian maps common Python package names, as an environment's
// [sandbox.docker] packages list spells them, to Debian packages.
var pypiToDebian = map[string]string{
	"numpy": "python3-numpy", "pandas": "python3-pandas", "matplotlib": "python3-matplotlib",
	"scipy": "python3-scipy", "requests": "python3-requests", "pyyaml": "python3-yaml",
	"yaml": "python3-yaml", "pillow": "python3-pil", "pil": "python3-pil",
	"scikit-learn": "python3-sklearn", "sklearn": "python3-sklearn", "sympy": "python3-sympy",
	"lxml": "python3-lxml", "beautifulsoup4": "python3-bs4", "bs4": "python3-bs4",
	"seaborn": "python3-seaborn", "networkx": "python3-networkx", "statsmodels": "python3-statsmodels",
	"openpyxl": "python3-openpyxl", "pytest": "python3-pytest", "httpx": "python3-httpx",
	"aiohttp": "python3-aiohttp", "jinja2": "python3-jinja2", "click": "python3-click",
	"rich": "python3-rich", "tqdm": "python3-tqdm", "python-dateutil": "python3-dateutil",
	"dateutil": "python3-dateutil", "pytz": "python3-tz", "six": "python3-six",
	"attrs": "python3-attr", "pydantic": "python3-pydantic", "flask": "python3-flask",
	"sqlalchemy": "python3-sqlalchemy", "psutil": "python3-psutil", "pip": "python3-pip",
	"ipython": "ipython3", "tabulate": "python3-tabulate", "xlrd": "python3-xlrd",
	"h5py": "python3-h5py", "numba": "python3-numba", "shapely": "python3-shapely",
	"cryptography": "python3-cryptography", "regex": "python3-regex", "toml": "python3-toml",
}

// PythonPackage returns the Debian package that provides the Python
// package name as pip spells it ("numpy", "Pillow", "scikit_learn";
// version pins and extras are ignored), and whether vial knows one.
func PythonPackage(name string) (string, bool) {
	base := strings.TrimSpace(name)
	if i := strings.IndexAny(base, "=<>!~;["); i >= 0 {
		base = base[:i]
	}
	deb, ok := pypiToDebian[strings.ReplaceAll(strings.ToLower(strings.TrimSpace(base)), "_", "-")]
	return deb, ok
}

// DebianPackages maps an environment's package list onto Debian package
// names for Build: Python names go through a table of common ones
// ("numpy" -> "python3-numpy", "pillow" -> "python3-pil"), version pins
// ("pandas==2.1", "numpy>=1.26") are dropped because Debian fixes the
// version, and any other valid Debian package name ("git", "jq",
// "python3-yaml") passes through unchanged. Names that cannot be Debian
// packages are returned in unmapped for the caller to report.
func DebianPackages(names []string) (debs, unmapped []string) {
	seen := map[string]bool{}
	for _, n := range names {
		base := strings.TrimSpace(n)
		if i := strings.IndexAny(base, "=<>!~;["); i >= 0 {
			base = base[:i]
		}
		base = strings.ToLower(strings.TrimSpace(base))
		deb, ok := pypiToDebian[strings.ReplaceAll(base, "_", "-")]
		if !ok {
			deb = base
		}
		if !debPackageRE.MatchString(deb) {
			unmapped = append(unmapped, n)
			continue
		}
		if !seen[deb] {
			seen[deb] = true
			debs = append(debs, deb)
		}
	}
	return debs, unmapped
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

var unlocatableRE = lazyre.New(`Unable to locate package ([a-z0-9][a-z0-9.+-]*)`)

// unlocatable returns the packages apt could not find, in order, once each.
func unlocatable(out string) []string {
	var pkgs []string
	for _, m := range unlocatableRE.FindAllStringSubmatch(out, -1) {
		if !slices.Contains(pkgs, m[1]) {
			pkgs = append(pkgs, m[1])
		}
	}
	return pkgs
}
