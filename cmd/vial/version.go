package main

import (
	"context"
	"fmt"
	goruntime "runtime"
	"runtime/debug"
)

// version is set at link time by the Makefile (-X main.version=...).
var version = "dev"

func init() {
	register("version", "print vial's version", func(_ context.Context, g *globals, _ []string) int {
		rev := ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					rev = " (" + s.Value[:12] + ")"
				}
			}
		}
		fmt.Fprintf(g.Stdout, "vial %s%s %s %s/%s\n", version, rev, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
		return 0
	})
}
