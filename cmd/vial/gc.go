package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/vial-run/vial/runtime"
)

// exitPartial is `vial gc`'s status when it removed what it could and
// some leftovers remain (listed on stderr; the next gc tries again).
const exitPartial = 1

func init() {
	register("gc", "remove everything crashed vial processes left behind", func(ctx context.Context, g *globals, args []string) int {
		fs := newFlagSet(g, "vial gc")
		if code, ok := parseFlags(g, fs, args); !ok {
			return code
		}
		if fs.NArg() > 0 {
			fmt.Fprintln(g.Stderr, "usage: vial gc [--state-dir DIR]")
			return exitUsage
		}
		e, err := openEngine(ctx, g, false)
		if err != nil {
			return fail(g, err)
		}
		rep, err := e.GC(ctx)
		if err != nil && !errors.Is(err, runtime.ErrPartial) {
			return fail(g, err) // the state directory could not be read at all
		}
		// vial serve's workspaces (with their volumes) and every other
		// kind of leftover are the engine's collectors'.
		fmt.Fprintln(g.Stdout, rep.String())
		if len(rep.Left) > 0 {
			// Everything else was collected; the next gc tries these again.
			for _, l := range rep.Left {
				fmt.Fprintf(g.Stderr, "vial gc: left behind: %s\n", l)
			}
			return exitPartial
		}
		return 0
	})
}
