package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/runtime/oci"
)

// WorkspaceSet holds the workspaces of one long-lived vial process that
// outlive its sandboxes — each `vial serve` session's shared workspace,
// which its default contexts and the file tools share. They live in
// <state>/workspaces/serve-XXXX/, whose lock the process holds for its
// life: Close removes them, and GC (through the workspaces collector)
// removes those of a process that died first. Safe for concurrent use.
type WorkspaceSet struct {
	dir  string
	lock *os.File

	mu      sync.Mutex
	volumes map[string]*Workspace // by path: those made by NewVolume
}

// OpenWorkspaces creates and locks a new workspace set on the engine's
// state directory.
func (e *Engine) OpenWorkspaces() (_ *WorkspaceSet, err error) {
	root := filepath.Join(e.stateDir, "workspaces")
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("creating workspaces directory: %w", err)
	}
	dir, err := os.MkdirTemp(root, "serve-")
	if err != nil {
		return nil, fmt.Errorf("creating workspaces: %w", err)
	}
	var cu cleanup.Stack
	cu.Add(func() error { return os.RemoveAll(dir) })
	defer cu.Clean()
	// Traversable, not listable: the sandbox user reaches its own
	// workspace through it (local mode runs as that user on the host).
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("creating workspaces: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("locking workspaces: %w", err)
	}
	cu.Release()
	return &WorkspaceSet{dir: dir, lock: lock, volumes: map[string]*Workspace{}}, nil
}

// NewVolume creates a workspace of the set that is a volume of its own,
// limited to lim's DiskBytes and DiskInodes, with a host uid leased for it
// (see NewWorkspace): every sandbox on it runs as Workspace.User().
func (w *WorkspaceSet) NewVolume(lim Limits) (*Workspace, error) {
	dir, err := os.MkdirTemp(w.dir, "ws-")
	if err != nil {
		return nil, fmt.Errorf("creating workspace: %w", err)
	}
	// NewWorkspace makes the directory itself.
	if err := os.Remove(dir); err != nil {
		return nil, fmt.Errorf("creating workspace: %w", err)
	}
	ws, err := NewWorkspace(dir, lim)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.volumes[ws.Path()] = ws
	w.mu.Unlock()
	return ws, nil
}

// New creates a plain workspace directory owned by the sandbox user, not
// under a disk quota (local mode, where code runs on the host anyway).
// name must be a valid ID ("" picks a random one).
func (w *WorkspaceSet) New(name string) (string, error) {
	var ws string
	var err error
	if name != "" {
		if !validID.MatchString(name) {
			return "", fmt.Errorf("workspace name %q: %w", name, ErrInvalid)
		}
		ws = filepath.Join(w.dir, name)
		err = os.Mkdir(ws, 0o700)
	} else {
		ws, err = os.MkdirTemp(w.dir, "ws-")
	}
	if err != nil {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(ws, oci.UID, oci.GID); err != nil {
			os.RemoveAll(ws)
			return "", fmt.Errorf("preparing workspace: %w", err)
		}
	}
	return ws, nil
}

// Remove removes a workspace made by New or NewVolume.
func (w *WorkspaceSet) Remove(dir string) error {
	if filepath.Dir(dir) != w.dir {
		return fmt.Errorf("%s is not a workspace of this set: %w", dir, ErrInvalid)
	}
	w.mu.Lock()
	ws := w.volumes[dir]
	delete(w.volumes, dir)
	w.mu.Unlock()
	var err error
	if ws != nil {
		err = ws.Close()
	}
	if err = errors.Join(err, RemoveTree(dir)); err != nil {
		return fmt.Errorf("removing workspace: %w", err)
	}
	return nil
}

// Close removes every workspace of the set and releases its lock.
func (w *WorkspaceSet) Close() error {
	w.mu.Lock()
	vols := w.volumes
	w.volumes = map[string]*Workspace{}
	w.mu.Unlock()
	var errs []error
	for _, ws := range vols {
		errs = append(errs, ws.Close())
	}
	errs = append(errs, RemoveTree(w.dir))
	w.lock.Close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing workspaces: %w", err)
	}
	return nil
}

// lockDir creates dir/lock and takes an exclusive flock on it, held until
// the returned file is closed (or the process dies): the one sign that a
// directory's owner is alive (see OwnerDead).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// collectWorkspaces removes the workspace sets of dead vial processes.
func (e *Engine) collectWorkspaces(ctx context.Context) (int, error) {
	root := filepath.Join(e.stateDir, "workspaces")
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("reading %s: %w", root, err)
	}
	n := 0
	var errs []error
	for _, ent := range ents {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if !ent.IsDir() || !strings.HasPrefix(ent.Name(), "serve-") {
			continue
		}
		dir := filepath.Join(root, ent.Name())
		dead, err := OwnerDead(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !dead {
			continue
		}
		if err := RemoveTree(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing orphaned workspaces %s: %w", dir, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
