package main

import (
	"context"
	"fmt"
)

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
		fmt.Fprintln(g.Stdout, rep.String())
		if err != nil {
			return fail(g, err)
		}
		return 0
	})
}
