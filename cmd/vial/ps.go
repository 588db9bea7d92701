package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

func init() {
	register("ps", "list the sandboxes that exist now", func(ctx context.Context, g *globals, args []string) int {
		fs := newFlagSet(g, "vial ps")
		if code, ok := parseFlags(g, fs, args); !ok {
			return code
		}
		e, err := openEngine(ctx, g, false)
		if err != nil {
			return fail(g, err)
		}
		list, err := e.List()
		if err != nil {
			return fail(g, err)
		}
		tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRUNTIME\tAGE\tOWNER PID\tSTATE")
		for _, s := range list {
			state := "running"
			if s.Orphan {
				state = "orphaned (vial gc removes it)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.ID, s.Runtime, time.Since(s.Created).Round(time.Second), s.PID, state)
		}
		tw.Flush()
		return 0
	})
}
