package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vial-run/vial/egress"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/crun"
	"github.com/vial-run/vial/runtime/runc"
	"github.com/vial-run/vial/runtime/runsc"
)

// backends is the one place that knows every runtime vial can drive.
func backends() []*runtime.Backend {
	return []*runtime.Backend{runc.New(), crun.New(), runsc.New()}
}

// openEngine opens the engine on g.StateDir. With recover set it first
// removes whatever a crashed vial left behind.
func openEngine(ctx context.Context, g *globals, recover bool) (*runtime.Engine, error) {
	dir, err := filepath.Abs(g.StateDir)
	if err != nil {
		return nil, err
	}
	e, err := runtime.New(runtime.Options{StateDir: dir, Backends: backends(), Log: g.Log})
	if err != nil {
		return nil, err
	}
	// A dead vial's network namespaces, their pins and veths.
	e.AddCollector(runtime.Collector{Name: "network namespaces", Collect: func(context.Context) (int, error) {
		rep, err := egress.Collect(dir)
		return rep.Networks, err
	}})
	if recover {
		e.Recover(ctx)
	}
	return e, nil
}

// openEngineRecovering opens the engine like openEngine and runs start-up
// recovery beside the caller's own work rather than before it (vial run:
// it costs about half a millisecond on the 2-core development VM, most of
// it listing cgroups, and the sandbox's runtime takes tens). That is safe:
// a sandbox's directory is locked before anything else of it exists, and
// gc re-checks a cgroup's directory before removing it. wait returns when
// recovery is done; the caller waits before it exits, so that recovery is
// never cut off half-way.
func openEngineRecovering(ctx context.Context, g *globals) (e *runtime.Engine, wait func(), err error) {
	e, err = openEngine(ctx, g, false)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Not cancelled with the command: recovery finishes what it
		// started.
		e.Recover(context.WithoutCancel(ctx))
	}()
	return e, func() { <-done }, nil
}

// resolveImage maps an --image value onto an image: "host", an absolute
// directory, or a name in the image store (which owns the name grammar:
// "python", "python:3.11-slim", "ghcr.io/org/tool:1.2", "sha256:<hex>").
// A relative path is refused rather than guessed at: "./rootfs" and
// "../x" always, and a name like "images/py" when it happens to be a
// directory here, since the same configuration must mean the same image
// wherever vial runs.
func resolveImage(stateDir, name string) (*rootfs.Image, error) {
	switch {
	case name == "" || name == "host":
		return rootfs.Host(stateDir)
	case filepath.IsAbs(name):
		return rootfs.Dir(name)
	case name[0] == '.':
		return nil, fmt.Errorf("image %q: %w: a directory image must be given as an absolute path", name, rootfs.ErrInvalid)
	case strings.ContainsRune(name, '/') && isDir(name):
		abs, _ := filepath.Abs(name)
		return nil, fmt.Errorf("image %q: %w: a directory image must be given as an absolute path (%s); a stored image's name never names a local directory", name, rootfs.ErrInvalid, abs)
	}
	st, err := rootfs.OpenStore(stateDir)
	if err != nil {
		return nil, err
	}
	return st.Resolve(name)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
