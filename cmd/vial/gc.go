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
		if len(args) > 0 {
			fmt.Fprintln(g.Stderr, "usage: vial gc")
			return exitUsage
		}
		e, err := openEngine(ctx, g, false)
		if err != nil {
			return fail(g, err)
		}
		rep, err := e.GC(ctx)
		fmt.Fprintln(g.Stdout, rep.String())
		if errors.Is(err, runtime.ErrPartial) {
			for _, l := range rep.Left {
				fmt.Fprintf(g.Stderr, "vial gc: left behind: %s\n", l)
			}
			return exitPartial
		}
		if err != nil {
			return fail(g, err)
		}
		return 0
	})
}
