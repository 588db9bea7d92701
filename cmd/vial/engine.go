package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/crun"
	"github.com/vial-run/vial/runtime/runc"
	"github.com/vial-run/vial/runtime/runsc"
)

func init() {
	hiddenEntry[crun.ShimArg] = crun.ShimMain
}

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
	if recover {
		e.Recover(ctx)
	}
	return e, nil
}

// resolveImage maps an --image value onto an image: "host", an absolute
// directory, or a name in the image store.
func resolveImage(stateDir, name string) (*rootfs.Image, error) {
	switch {
	case name == "" || name == "host":
		return rootfs.Host(stateDir)
	case filepath.IsAbs(name):
		return rootfs.Dir(name)
	case name[0] == '.' || strings.ContainsRune(name, '/'):
		return nil, fmt.Errorf("image %q: %w: a directory image must be given as an absolute path", name, rootfs.ErrInvalid)
	}
	st, err := rootfs.OpenStore(stateDir)
	if err != nil {
		return nil, err
	}
	return st.Resolve(name)
}
