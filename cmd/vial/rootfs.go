package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/internal/lazyre"
	"github.com/vial-run/vial/rootfs"
)

func init() {
	register("rootfs", "build, import and manage root filesystem images (ls, inspect, rm, gc, build, import)", cmdRootfs)
}

const rootfsUsage = `usage: vial rootfs COMMAND [args]

commands:
  ls [--json]                         list stored images
  inspect NAME                        describe an image (a stored name, a digest, "host" or a directory)
  rm [--force] NAME...                remove names; content goes when no name is left and no
                                      running sandbox uses it
  gc                                  remove unnamed content and abandoned imports
  build RECIPE [--name N] [--packages p1,p2] [--mirror LINE]...
                                      build a Debian bookworm image with mmdebstrap (root);
                                      recipes: %s
  build [RECIPE] --env NAME | --agent ID
                                      build the image an environment or agent names in
                                      [sandbox.docker] image, with its packages baked in
  import FILE|DIR [--name N]          import a rootfs tarball (.tar, .tar.gz, .tar.zst), a docker save
                                      archive, an OCI image layout or a root filesystem directory

Images live under <state-dir>/images, stored once by content digest and shared
read-only by every sandbox. Choose one with --image NAME or [sandbox.docker] image.
`

func cmdRootfs(ctx context.Context, g *globals, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(g.Stderr, rootfsUsage, strings.Join(rootfs.Recipes(), ", "))
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	sub, rest := args[0], args[1:]
	run, ok := map[string]func(context.Context, *globals, []string) int{
		"ls": rootfsLs, "list": rootfsLs,
		"inspect": rootfsInspect,
		"rm":      rootfsRm, "remove": rootfsRm,
		"gc":     rootfsGC,
		"build":  rootfsBuild,
		"import": rootfsImport,
	}[sub]
	if !ok {
		fmt.Fprintf(g.Stderr, "vial rootfs: unknown command %q\n\n"+rootfsUsage, sub, strings.Join(rootfs.Recipes(), ", "))
		return exitUsage
	}
	return run(ctx, g, rest)
}

// rootfsFlags parses flags that may come before, between or after the
// positional arguments ("import x.tar --name y" and "import --name y x.tar")
// and returns the positionals; ok is false after a usage error (already
// reported).
func rootfsFlags(fs *flag.FlagSet, g *globals, args []string) (pos []string, code int, ok bool) {
	fs.SetOutput(g.Stderr)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, true
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func rootfsStore(g *globals) (*rootfs.Store, error) {
	return rootfs.OpenStore(g.StateDir)
}

// rootfsFail reports err and returns the exit code: 2 for a bad name or
// argument, 1 otherwise.
func rootfsFail(g *globals, what string, err error) int {
	fmt.Fprintf(g.Stderr, "vial rootfs %s: %v\n", what, err)
	if errors.Is(err, rootfs.ErrInvalid) && !errors.Is(err, rootfs.ErrUnsafe) {
		return exitUsage
	}
	return 1
}

func rootfsLs(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial rootfs ls")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintln(g.Stderr, "usage: vial rootfs ls [--json]")
		return exitUsage
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "ls", err)
	}
	list, err := s.List()
	if err != nil {
		return rootfsFail(g, "ls", err)
	}
	if *asJSON {
		if list == nil {
			list = []*rootfs.ImageInfo{}
		}
		return rootfsJSON(g, "ls", list)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tCREATED\tSOURCE")
	fmt.Fprintln(tw, "host\t-\t-\t-\tbuilt in: a read-only view of this host's /usr")
	for _, im := range list {
		name := im.Name
		if name == "" {
			name = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, shortDigest(im.Digest), rootfs.HumanSize(im.Size),
			im.Created.Local().Format(time.DateTime), describeSource(im))
	}
	if err := tw.Flush(); err != nil {
		return rootfsFail(g, "ls", err)
	}
	return 0
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func describeSource(im *rootfs.ImageInfo) string {
	switch {
	case im.Name == "":
		return "unnamed (vial rootfs gc removes it)"
	case im.Recipe != "":
		s := "build " + im.Recipe
		if len(im.Packages) > 0 {
			s += " +" + strings.Join(im.Packages, ",")
		}
		return s
	}
	return im.Format + " " + im.Source
}

func rootfsJSON(g *globals, what string, v any) int {
	enc := json.NewEncoder(g.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return rootfsFail(g, what, err)
	}
	return 0
}

func rootfsInspect(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial rootfs inspect")
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(g.Stderr, "usage: vial rootfs inspect NAME")
		return exitUsage
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "inspect", err)
	}
	name := pos[0]
	if name == "host" || filepath.IsAbs(name) {
		img, err := s.Resolve(name)
		if err != nil {
			return rootfsFail(g, "inspect", err)
		}
		return rootfsJSON(g, "inspect", img)
	}
	info, err := s.Inspect(name)
	if err != nil {
		return rootfsFail(g, "inspect", err)
	}
	return rootfsJSON(g, "inspect", info)
}

func rootfsRm(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial rootfs rm")
	force := fs.Bool("force", false, "remove the names even if running sandboxes use the image (its content goes at the next gc after they end)")
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(g.Stderr, "usage: vial rootfs rm [--force] NAME...")
		return exitUsage
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "rm", err)
	}
	rc := 0
	for _, n := range pos {
		if err := s.Remove(n, *force); err != nil {
			rc = rootfsFail(g, "rm", err)
			continue
		}
		fmt.Fprintf(g.Stdout, "removed %s\n", n)
	}
	return rc
}

func rootfsGC(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial rootfs gc")
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintln(g.Stderr, "usage: vial rootfs gc")
		return exitUsage
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "gc", err)
	}
	res, err := s.GC()
	for _, d := range res.Removed {
		fmt.Fprintf(g.Stdout, "removed %s\n", d)
	}
	for _, d := range res.InUse {
		fmt.Fprintf(g.Stdout, "kept %s: unnamed, but running sandboxes use it\n", d)
	}
	fmt.Fprintf(g.Stdout, "freed %s: %d unnamed images, %d abandoned imports\n", rootfs.HumanSize(res.Bytes), len(res.Removed), res.Staging)
	if err != nil {
		return rootfsFail(g, "gc", err)
	}
	return 0
}

// rootfsListFlag collects a repeatable or comma-separated flag.
type rootfsListFlag []string

func (l *rootfsListFlag) String() string { return strings.Join(*l, ",") }
func (l *rootfsListFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// rootfsMirrorFlag collects whole mirror lines (which contain spaces, not
// commas to split on).
type rootfsMirrorFlag []string

func (l *rootfsMirrorFlag) String() string     { return strings.Join(*l, "; ") }
func (l *rootfsMirrorFlag) Set(v string) error { *l = append(*l, v); return nil }

func rootfsBuild(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial rootfs build")
	name := fs.String("name", "", "store the image under this name[:tag] (default: the recipe's name, or the environment's image)")
	env := fs.String("env", "", "build the image environment NAME uses: its [sandbox.docker] image and packages")
	agent := fs.String("agent", "", "build the image agent ID uses (its merged [sandbox.docker] image and packages)")
	configDir := fs.String("config-dir", envOr("VIAL_CONFIG_DIR", config.DefaultDir), "configuration directory for --env and --agent")
	var pkgs rootfsListFlag
	var mirrors rootfsMirrorFlag
	fs.Var(&pkgs, "packages", "extra packages to bake in, comma separated; Python names map to Debian ones (numpy -> python3-numpy)")
	fs.Var(&mirrors, "mirror", `apt source line, e.g. "deb http://deb.debian.org/debian bookworm main" (repeatable; default: the host's Debian mirrors)`)
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	usage := func() int {
		fmt.Fprintf(g.Stderr, "usage: vial rootfs build RECIPE [--name N] [--packages p1,p2] [--mirror LINE]\n"+
			"       vial rootfs build [RECIPE] --env NAME | --agent ID [--config-dir DIR] [--packages p1,p2]\nrecipes: %s\n", strings.Join(rootfs.Recipes(), ", "))
		return exitUsage
	}
	if *env != "" && *agent != "" {
		fmt.Fprintln(g.Stderr, "vial rootfs build: --env and --agent exclude each other")
		return usage()
	}
	if len(pos) > 1 || (len(pos) == 0 && *env == "" && *agent == "") {
		return usage()
	}
	req := imageBuild{Name: *name, Environment: *env, Agent: *agent, Packages: pkgs, Mirrors: mirrors, ConfigDir: *configDir}
	if len(pos) == 1 {
		req.Recipe = pos[0]
	}
	info, err := buildImage(ctx, g.StateDir, req, g.Stderr)
	if err != nil {
		if errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, rootfs.ErrUnsafe) {
			fmt.Fprintf(g.Stderr, "vial rootfs build: %v\n", err)
			return exitUsage
		}
		return rootfsFail(g, "build", err)
	}
	fmt.Fprintf(g.Stdout, "%s %s\n", info.Name, info.Digest)
	return 0
}

// imageBuild says what to build: a recipe, or the image an environment or
// an agent names in [sandbox.docker], with its packages, plus extra ones.
type imageBuild struct {
	Recipe, Name       string
	Environment, Agent string
	Packages, Mirrors  []string
	ConfigDir          string // for Environment and Agent
}

// buildImage builds an image into the store of stateDir, writing notes
// and progress to out: `vial rootfs build` and the API's image builds.
// A request that cannot be built as asked is an error of class
// errdefs.ErrInvalidArgument, before anything runs.
func buildImage(ctx context.Context, stateDir string, req imageBuild, out io.Writer) (*rootfs.ImageInfo, error) {
	if req.Environment != "" && req.Agent != "" {
		return nil, fmt.Errorf("an environment and an agent exclude each other: %w", errdefs.ErrInvalidArgument)
	}
	recipe, name := req.Recipe, req.Name
	var wanted []string // as the user spelled them, for the messages
	if req.Environment != "" || req.Agent != "" {
		img, envPkgs, what, err := rootfsFromConfig(req.ConfigDir, req.Environment, req.Agent)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		if name == "" {
			name = img
		}
		if recipe == "" {
			recipe = rootfs.RecipeFor(img)
		}
		if recipe == "" {
			flagHint := "--agent " + req.Agent
			if req.Environment != "" {
				flagHint = "--env " + req.Environment
			}
			return nil, fmt.Errorf("%s: image %q does not say which recipe builds it; name one: vial rootfs build RECIPE %s (recipes: %s): %w",
				what, img, flagHint, strings.Join(rootfs.Recipes(), ", "), errdefs.ErrInvalidArgument)
		}
		// An environment lists packages as pip names; those vial knows map
		// to their Debian packages, anything else is tried as a Debian
		// package name, and said so.
		for _, p := range envPkgs {
			if _, known := rootfs.PythonPackage(p); !known {
				fmt.Fprintf(out, "vial rootfs build: note: %s: package %q has no known Debian equivalent; trying it as a Debian package name\n", what, p)
			}
		}
		wanted = append(wanted, envPkgs...)
		fmt.Fprintf(out, "==> %s: image %s, recipe %s, packages %s\n", what, name, recipe, orNone(envPkgs))
	}
	wanted = append(wanted, req.Packages...)
	debs, unmapped := rootfs.DebianPackages(wanted)
	if len(unmapped) > 0 {
		return nil, fmt.Errorf("packages %s: not Debian package names, and vial knows no Debian package for them: %w", strings.Join(unmapped, ", "), errdefs.ErrInvalidArgument)
	}
	if w := pythonVersionMismatch(name, recipe); w != "" {
		fmt.Fprintf(out, "vial rootfs build: note: %s\n", w)
	}
	s, err := rootfs.OpenStore(stateDir)
	if err != nil {
		return nil, err
	}
	s.Progress = out
	return s.Build(ctx, rootfs.BuildOptions{Recipe: recipe, Name: name, Packages: debs, Mirrors: req.Mirrors, Output: out})
}

// rootfsFromConfig reads the [sandbox.docker] image and packages of an
// environment template or an agent.
func rootfsFromConfig(dir, env, agent string) (image string, packages []string, what string, err error) {
	opts := configOptions(dir, agent, nil)
	what = "agent " + agent
	if env != "" {
		opts.Template, what = env, "environment "+env
	}
	r, err := config.Load(opts)
	if err != nil {
		return "", nil, what, err
	}
	switch {
	case r.Image == "" || r.Image == "host":
		return "", nil, what, fmt.Errorf("%s uses the built-in host image, which is not built; set [sandbox.docker] image to a name such as \"python\" first", what)
	case filepath.IsAbs(r.Image):
		return "", nil, what, fmt.Errorf("%s uses the directory %s as its image; vial builds only stored images", what, r.Image)
	}
	if _, err := rootfs.NormalizeName(r.Image); err != nil {
		return "", nil, what, fmt.Errorf("%s: [sandbox.docker] image: %w", what, err)
	}
	return r.Image, r.Packages, what, nil
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

var pythonTagRE = lazyre.New(`^(3\.[0-9]+)(?:[.-]|$)`)

// pythonVersionMismatch warns when a python image's tag names a Python
// version ("python:3.12-slim") other than the one Debian bookworm ships.
func pythonVersionMismatch(name, recipe string) string {
	if recipe != "python" && recipe != "data-science" {
		return ""
	}
	key, err := rootfs.NormalizeName(name)
	if err != nil {
		return ""
	}
	_, tag, _ := strings.Cut(key[strings.LastIndexByte(key, '/')+1:], ":")
	if m := pythonTagRE.FindStringSubmatch(tag); m != nil && m[1] != "3.11" {
		return fmt.Sprintf("%s will hold Python 3.11, the version Debian bookworm ships, not %s", key, m[1])
	}
	return ""
}

func rootfsImport(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial rootfs import")
	name := fs.String("name", "", "store the image under this name[:tag] (default: the archive's own name, else the file's)")
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(g.Stderr, "usage: vial rootfs import FILE|DIR [--name N]")
		return exitUsage
	}
	if pos[0] == "-" {
		fmt.Fprintln(g.Stderr, "vial rootfs import: reading stdin is not supported; save the archive to a file first")
		return exitUsage
	}
	if _, err := os.Stat(pos[0]); err != nil {
		return rootfsFail(g, "import", err)
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "import", err)
	}
	s.Progress = g.Stderr
	fmt.Fprintf(g.Stderr, "==> importing %s\n", pos[0])
	info, err := s.ImportInfo(ctx, pos[0], *name)
	if err != nil {
		return rootfsFail(g, "import", err)
	}
	fmt.Fprintf(g.Stdout, "%s %s\n", info.Name, info.Digest)
	return 0
}
