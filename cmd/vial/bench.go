package main

import (
	"bufio"
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
)

func init() {
	register("bench", "measure cold-start overhead against the raw runtimes on this host", cmdBench)
}

// workload is one command measured cold, with issue 13's target for
// `vial run` against the raw runtime under runc.
type workload struct {
	name      string
	args      []string
	runcRatio float64
}

var benchWorkloads = []workload{
	{"/bin/true", []string{"/bin/true"}, 1.15},
	{"python3 -c 'print(1)'", []string{"python3", "-c", "print(1)"}, 1.10},
}

func cmdBench(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial bench")
	n := fs.Int("n", 20, "runs per measurement (the median is reported)")
	only := fs.String("runtimes", "runc,crun,runsc", "comma-separated runtimes to measure")
	image := fs.String("image", "host", "image to run")
	stored := fs.String("stored", "python", `stored image to compare with "host" (cold start, and the disk N sandboxes use); "" skips`)
	sandboxes := fs.Int("sandboxes", 50, "sandboxes sharing the stored image for the disk measurement")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		return fail(g, err)
	}
	e, err := openEngine(ctx, g, true)
	if err != nil {
		return fail(g, err)
	}
	img, err := resolveImage(e.StateDir(), *image)
	if err != nil {
		return fail(g, err)
	}
	fmt.Fprintf(g.Stdout, "vial run against the raw runtime, cold, image %s (load average %s)\n", *image, loadAverage())
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "runtime\tworkload\tvial run (ms)\traw run (ms)\tratio\toverhead\ttarget\tmet\t\n")
	// vial run's medians under runc, for crun's target (no slower).
	runcVial := map[string]time.Duration{}
	for _, rt := range strings.Split(*only, ",") {
		if _, err := e.Backend(rt); err != nil {
			fmt.Fprintf(g.Stderr, "vial bench: skipping %s: %v\n", rt, err)
			continue
		}
		for _, w := range benchWorkloads {
			// Warm the page cache and the host image once, unmeasured.
			exec.Command(self, "--state-dir", e.StateDir(), "run", "--runtime", rt, "--image", *image, "--", w.args[0]).Run()
			var vialT, rawT []time.Duration
			for i := 0; i < *n; i++ {
				if ctx.Err() != nil {
					return fail(g, ctx.Err())
				}
				// Interleave vial and raw runs so drift hits both alike.
				d, err := timeVial(self, e.StateDir(), rt, *image, w.args)
				if err != nil {
					return fail(g, err)
				}
				vialT = append(vialT, d)
				d, err = timeRaw(e, rt, img, w.args)
				if err != nil {
					return fail(g, err)
				}
				rawT = append(rawT, d)
			}
			v, r := median(vialT), median(rawT)
			ratio := float64(v) / float64(r)
			target, met := "", ""
			switch rt {
			case "runc":
				runcVial[w.name] = v
				target, met = fmt.Sprintf("≤ %.2f×", w.runcRatio), yesNo(ratio <= w.runcRatio)
			case "crun":
				if rv, ok := runcVial[w.name]; ok {
					target, met = fmt.Sprintf("≤ runc's %.1f ms", ms(rv)), yesNo(v <= rv)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.3f\t%+.1f%%\t%s\t%s\t\n", rt, w.name, ms(v), ms(r), ratio, (ratio-1)*100, target, met)
		}
	}
	tw.Flush()
	fmt.Fprintf(g.Stdout, "\nmedians of %d cold runs each, interleaved; vial run is the whole CLI (process start, bundle, run, teardown),\n"+
		"raw run is `<runtime> run` of the bundle vial prepared, timed around the runtime process only (crun on a hybrid\n"+
		"cgroup host: started in the private mount namespace it needs there, as vial starts it). Targets: issue 13.\n", *n)
	if *stored == "" {
		return 0
	}
	simg, err := resolveImage(e.StateDir(), *stored)
	if err != nil {
		fmt.Fprintf(g.Stderr, "vial bench: skipping the image benchmarks: %v\n", err)
		return 0
	}
	if err := benchColdByImage(ctx, g, self, e, strings.Split(*only, ","), *stored, *n); err != nil {
		return fail(g, err)
	}
	if err := benchSharedDisk(ctx, g, e, simg, *sandboxes); err != nil {
		return fail(g, err)
	}
	return 0
}

// benchColdByImage times `vial run python3 -c 'print(1)'` from a stored
// image against the same from the host image: what choosing a hermetic
// image costs at start-up.
func benchColdByImage(ctx context.Context, g *globals, self string, e *runtime.Engine, rts []string, stored string, n int) error {
	args := []string{"python3", "-c", "print(1)"}
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(g.Stdout, "\ncold start by image: vial run %s\n", strings.Join(args, " "))
	fmt.Fprintf(tw, "runtime\thost (ms)\t%s (ms)\tratio\t\n", stored)
	for _, rt := range rts {
		if _, err := e.Backend(rt); err != nil {
			continue
		}
		var host, st []time.Duration
		for _, im := range []string{"host", stored} {
			exec.Command(self, "--state-dir", e.StateDir(), "run", "--runtime", rt, "--image", im, "--", "true").Run()
		}
		for i := 0; i < n; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d, err := timeVial(self, e.StateDir(), rt, "host", args)
			if err != nil {
				return err
			}
			host = append(host, d)
			if d, err = timeVial(self, e.StateDir(), rt, stored, args); err != nil {
				return err
			}
			st = append(st, d)
		}
		h, s := median(host), median(st)
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.3f\t\n", rt, ms(h), ms(s), float64(s)/float64(h))
	}
	return tw.Flush()
}

// benchSharedDisk starts n sandboxes from one stored image under runc,
// each writing 1 MiB into its workspace, and reports the disk they use:
// the image is stored once, and each sandbox adds only its own state
// (bundle, workspace) on top.
func benchSharedDisk(ctx context.Context, g *globals, e *runtime.Engine, img *rootfs.Image, n int) error {
	const rt = "runc"
	if _, err := e.Backend(rt); err != nil || n <= 0 {
		return nil
	}
	imageDisk := diskUsage(filepath.Dir(img.Root))
	syscall.Sync()
	before := diskUsage(filepath.Join(e.StateDir(), "sandboxes")) + diskUsage(filepath.Join(e.StateDir(), "runtime"))
	fsBefore := fsUsed(e.StateDir())
	var sbs []*runtime.Sandbox
	defer func() {
		for _, sb := range sbs {
			sb.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		sb, err := e.Start(ctx, rt, runtime.Request{Image: img, Args: []string{"sh", "-c",
			"head -c 1048576 /dev/urandom > /workspace/data && echo ready && read x"}})
		if err != nil {
			return fmt.Errorf("starting sandbox %d of %d: %w", i+1, n, err)
		}
		sbs = append(sbs, sb)
	}
	for i, sb := range sbs {
		line, err := bufio.NewReader(sb.Stdout()).ReadString('\n')
		if err != nil || line != "ready\n" {
			return fmt.Errorf("sandbox %d of %d: %q, %v", i+1, n, line, err)
		}
	}
	started := time.Since(start)
	syscall.Sync()
	after := diskUsage(filepath.Join(e.StateDir(), "sandboxes")) + diskUsage(filepath.Join(e.StateDir(), "runtime"))
	fsDelta := fsUsed(e.StateDir()) - fsBefore
	per := (after - before) / int64(n)
	fmt.Fprintf(g.Stdout, "\ndisk used by %d sandboxes sharing %s (runc, each wrote 1 MiB to /workspace; started in %s):\n", n, img.Name, started.Round(time.Millisecond))
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "the image, stored once\t%s\t\n", rootfs.HumanSize(imageDisk))
	fmt.Fprintf(tw, "all %d sandboxes' state (bundles, workspaces)\t%s\t\n", n, rootfs.HumanSize(after-before))
	fmt.Fprintf(tw, "per sandbox\t%s\t\n", rootfs.HumanSize(per))
	fmt.Fprintf(tw, "per sandbox beyond what it wrote\t%s\t\n", rootfs.HumanSize(per-1<<20))
	fmt.Fprintf(tw, "filesystem used, change (noisy)\t%s\t\n", rootfs.HumanSize(fsDelta))
	fmt.Fprintf(tw, "a private copy of the image each would take\t%s\t\n", rootfs.HumanSize(imageDisk*int64(n)))
	return tw.Flush()
}

// diskUsage is the disk space of the tree at root, as du counts it:
// allocated blocks, each inode once.
func diskUsage(root string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		k := [2]uint64{st.Dev, st.Ino}
		if !seen[k] {
			seen[k] = true
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

// fsUsed is the space used on the filesystem holding dir.
func fsUsed(dir string) int64 {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

func timeVial(self, stateDir, rt, image string, args []string) (time.Duration, error) {
	cmd := exec.Command(self, append([]string{"--state-dir", stateDir, "run", "--runtime", rt, "--image", image, "--"}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("vial run %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return d, nil
}

func timeRaw(e *runtime.Engine, rt string, img *rootfs.Image, args []string) (time.Duration, error) {
	b, err := e.PrepareBundle(rt, runtime.Request{Image: img, Args: args})
	if err != nil {
		return 0, err
	}
	defer b.Close()
	d, out, err := b.RunRaw()
	if err != nil {
		return 0, fmt.Errorf("raw %s run: %v: %s", rt, err, out)
	}
	return d, nil
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// loadAverage is the host's 1, 5 and 15 minute load average, printed
// beside the figures: the machine the developers share is rarely idle.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
