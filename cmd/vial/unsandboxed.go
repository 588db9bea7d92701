package main

import (
	"fmt"
	"io"
	"strings"
)

// warnUnsandboxed prints the start-up warning of local mode.
func warnUnsandboxed(w io.Writer, cmd string) {
	line := strings.Repeat("!", 78)
	fmt.Fprintf(w, `%s
!! WARNING: %s is running with sandbox.mode = "local" (--%s).
!! Code runs DIRECTLY ON THIS HOST with NO ISOLATION: no namespaces, no
!! seccomp, no cgroup limits, no read-only root, no network isolation.
!! It can read and change everything the user it runs as can, and reach
!! any host on the network. Only the timeout, rlimits and a private working
!! directory apply. Use this for development with code you trust, never
!! for a model's code on a machine that matters.
%s
`, line, cmd, localAckFlag, line)
}
