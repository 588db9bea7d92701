package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

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
	case name[0] == '.' || containsSlashPath(name):
		return nil, fmt.Errorf("image %q: %w: a directory image must be given as an absolute path", name, rootfs.ErrInvalid)
	}
	st, err := rootfs.OpenStore(stateDir)
	if err != nil {
		return nil, err
	}
	return st.Resolve(name)
}

func containsSlashPath(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// errorClass names an error's class for one-line messages.
func isUserError(err error) bool {
	return errors.Is(err, runtime.ErrInvalid) || errors.Is(err, rootfs.ErrInvalid) ||
		errors.Is(err, runtime.ErrNotFound) || errors.Is(err, rootfs.ErrNotFound)
}
