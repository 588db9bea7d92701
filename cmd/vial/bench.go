package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
)

func init() {
	register("bench", "measure cold-start overhead against the raw runtimes on this host", cmdBench)
}

// workload is one command measured cold.
type workload struct {
	name string
	args []string
}

var benchWorkloads = []workload{
	{"/bin/true", []string{"/bin/true"}},
	{"python3 -c 'print(1)'", []string{"python3", "-c", "print(1)"}},
}

func cmdBench(ctx context.Context, g *globals, args []string) int {
	fs := flag.NewFlagSet("vial bench", flag.ContinueOnError)
	fs.SetOutput(g.Stderr)
	n := fs.Int("n", 20, "runs per measurement (the median is reported)")
	only := fs.String("runtimes", "runc,crun,runsc", "comma-separated runtimes to measure")
	image := fs.String("image", "host", "image to run")
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
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "runtime\tworkload\tvial run (ms)\traw run (ms)\tratio\toverhead\t\n")
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
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.3f\t%+.1f%%\t\n", rt, w.name, ms(v), ms(r), ratio, (ratio-1)*100)
		}
	}
	tw.Flush()
	fmt.Fprintf(g.Stdout, "\nmedians of %d cold runs each; vial run is the whole CLI (process start, bundle, run, teardown),\nraw run is `<runtime> run` of the bundle vial prepared, timed around the runtime process only.\n", *n)
	return 0
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
	cmd := b.Command("run", "--bundle", b.Dir, b.ID)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("raw %s run: %v: %s", rt, err, out)
	}
	return d, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
