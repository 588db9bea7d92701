package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vial-run/vial/runtime"
)

// openSharedWorkspace creates the default contexts' workspace at dir
// when they run in sandboxes: a volume of the agent's disk_limit, with a
// uid of its own that every default context runs as.
func (a *serveAdapter) openSharedWorkspace(dir string) (*runtime.Workspace, error) {
	ws, err := runtime.NewWorkspace(dir, a.def.Limits)
	if err != nil {
		return nil, fmt.Errorf("creating the shared workspace: %w", err)
	}
	return ws, nil
}

// removeWorkspaces removes a workspaces directory of vial serve (ours at
// Close, or a dead one's), volumes and all.
func removeWorkspaces(dir string) error { return runtime.RemoveTree(filepath.Clean(dir)) }

// collectWorkspaces removes the workspaces directories under root of vial
// serve processes that died without removing them (their lock is free),
// with their volumes, and returns how many. `vial serve` runs it at
// start-up, `vial gc` too.
func collectWorkspaces(root string) (int, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, ent := range ents {
		dir := filepath.Join(root, ent.Name())
		if !ent.IsDir() || !strings.HasPrefix(ent.Name(), "serve-") {
			continue
		}
		if f, err := os.Open(filepath.Join(dir, "lock")); err == nil {
			busy := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
			f.Close()
			if busy {
				continue
			}
		} else if fi, err := ent.Info(); err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue // being created by another vial right now
		}
		if err := removeWorkspaces(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing orphaned workspaces %s: %w", dir, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
