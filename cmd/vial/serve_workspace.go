package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vial-run/vial/internal/rmtree"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/volume"
)

// sharedWorkspace is the default contexts' workspace when they run in
// sandboxes: a volume limited to the agent's disk_limit (bytes and
// inodes), owned by a host uid leased for this vial serve, which every
// default context runs as (they share the workspace, so they must be able
// to change each other's files; they share that uid's kernel limits
// among themselves, and with no other sandbox).
type sharedWorkspace struct {
	vol  *volume.Volume
	user *hostuid.Lease
}

// openSharedWorkspace creates the shared workspace at dir with a's own
// environment's disk limits.
func (a *serveAdapter) openSharedWorkspace(dir string) (_ *sharedWorkspace, err error) {
	lim := a.def.Limits.WithDefaults()
	user, err := hostuid.Acquire(hostuid.Dir, dir)
	if err != nil {
		return nil, fmt.Errorf("leasing the shared workspace's uid: %w", err)
	}
	defer func() {
		if err != nil {
			user.Release()
		}
	}()
	vol, err := volume.Create(dir, max(lim.DiskBytes, volume.MinBytes), lim.DiskInodes)
	if err != nil {
		return nil, fmt.Errorf("creating the shared workspace: %w", err)
	}
	if err := errors.Join(os.Chown(vol.Path(), user.UID(), user.GID()), os.Chmod(vol.Path(), 0o700)); err != nil {
		vol.Close()
		return nil, fmt.Errorf("preparing the shared workspace: %w", err)
	}
	return &sharedWorkspace{vol: vol, user: user}, nil
}

// close discards the volume and then gives the uid back; every sandbox
// that ran as it must be gone.
func (w *sharedWorkspace) close() error {
	if w == nil {
		return nil
	}
	err := w.vol.Close()
	return errors.Join(err, w.user.Release())
}

// removeWorkspaces removes a workspaces directory of vial serve (ours at
// Close, or a dead one's): its volumes first, then the tree, whatever a
// sandbox made of it.
func removeWorkspaces(dir string) error {
	_, err := volume.Collect(dir)
	return errors.Join(err, rmtree.RemoveAll(filepath.Clean(dir)))
}

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
