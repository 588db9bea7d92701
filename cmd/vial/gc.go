package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/vial-run/vial/runtime"
)

// exitPartial is `vial gc`'s status when it removed what it could and
// some leftovers remain (listed on stderr; the next gc tries again).
const exitPartial = 1

func init() {
	register("gc", "remove everything crashed vial processes left behind", func(ctx context.Context, g *globals, args []string) int {
		if len(args) > 0 {
			fmt.Fprintln(g.Stderr, "usage: vial gc")
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
		// vial serve's workspaces (with their volumes) of dead servers.
		n, err := collectWorkspaces(filepath.Join(e.StateDir(), "workspaces"))
		if err != nil {
			rep.Left = append(rep.Left, err.Error())
		}
		fmt.Fprintln(g.Stdout, rep.String())
		if n > 0 {
			fmt.Fprintf(g.Stdout, "removed %d workspaces of dead vial serve processes\n", n)
		}
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
