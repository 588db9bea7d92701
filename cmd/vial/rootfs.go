package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vial-run/vial/rootfs"
)

func init() {
	register("rootfs", "build, import and manage root filesystem images (ls, inspect, rm, gc, build, import)", cmdRootfs)
}

const rootfsUsage = `usage: vial rootfs COMMAND [args]

commands:
  ls [--json]                         list stored images
  inspect NAME                        describe an image (a stored name, a digest, "host" or a directory)
  rm NAME...                          remove names; content goes when no name is left
  gc                                  remove unnamed content and abandoned imports
  build RECIPE [--name N] [--packages p1,p2] [--mirror LINE]...
                                      build a Debian bookworm image with mmdebstrap (root);
                                      recipes: %s
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
	fs := flag.NewFlagSet("vial rootfs ls", flag.ContinueOnError)
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
	fs := flag.NewFlagSet("vial rootfs inspect", flag.ContinueOnError)
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
	fs := flag.NewFlagSet("vial rootfs rm", flag.ContinueOnError)
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(g.Stderr, "usage: vial rootfs rm NAME...")
		return exitUsage
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "rm", err)
	}
	rc := 0
	for _, n := range pos {
		if err := s.Remove(n); err != nil {
			rc = rootfsFail(g, "rm", err)
			continue
		}
		fmt.Fprintf(g.Stdout, "removed %s\n", n)
	}
	return rc
}

func rootfsGC(ctx context.Context, g *globals, args []string) int {
	fs := flag.NewFlagSet("vial rootfs gc", flag.ContinueOnError)
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
	fs := flag.NewFlagSet("vial rootfs build", flag.ContinueOnError)
	name := fs.String("name", "", "store the image under this name[:tag] (default: the recipe's name)")
	var pkgs rootfsListFlag
	var mirrors rootfsMirrorFlag
	fs.Var(&pkgs, "packages", "extra packages to bake in, comma separated; Python names map to Debian ones (numpy -> python3-numpy)")
	fs.Var(&mirrors, "mirror", `apt source line, e.g. "deb http://deb.debian.org/debian bookworm main" (repeatable; default: the host's Debian mirrors)`)
	pos, code, ok := rootfsFlags(fs, g, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(g.Stderr, "usage: vial rootfs build RECIPE [--name N] [--packages p1,p2] [--mirror LINE]\nrecipes: %s\n", strings.Join(rootfs.Recipes(), ", "))
		return exitUsage
	}
	debs, unmapped := rootfs.DebianPackages(pkgs)
	if len(unmapped) > 0 {
		fmt.Fprintf(g.Stderr, "vial rootfs build: --packages %s: not Debian package names\n", strings.Join(unmapped, ", "))
		return exitUsage
	}
	s, err := rootfsStore(g)
	if err != nil {
		return rootfsFail(g, "build", err)
	}
	s.Progress = g.Stderr
	info, err := s.Build(ctx, rootfs.BuildOptions{Recipe: pos[0], Name: *name, Packages: debs, Mirrors: mirrors, Output: g.Stderr})
	if err != nil {
		return rootfsFail(g, "build", err)
	}
	fmt.Fprintf(g.Stdout, "%s %s\n", info.Name, info.Digest)
	return 0
}

func rootfsImport(ctx context.Context, g *globals, args []string) int {
	fs := flag.NewFlagSet("vial rootfs import", flag.ContinueOnError)
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
