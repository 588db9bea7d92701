package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/internal/rmtree"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/volume"
)

// prepareWorkspace gives the sandbox its /workspace. A directory the
// caller named is bound as it is: it is not under the disk quota (vial
// cannot put a quota on a directory it did not create; the CLI says so).
// Otherwise the workspace is a volume of the sandbox's own, limited to
// DiskBytes and DiskInodes, mounted at <sandbox dir>/workspace and owned
// by the sandbox's uid; teardown discards it.
func (e *Engine) prepareWorkspace(s *sandbox, req *Request, cu *cleanup.Stack) error {
	if req.Workspace != "" {
		s.workspace = req.Workspace
		if err := os.MkdirAll(s.workspace, 0o755); err != nil {
			return fmt.Errorf("creating workspace %s: %w", s.workspace, err)
		}
		return nil
	}
	v, err := newVolume(filepath.Join(s.dir, "workspace"), s.limits, s.uid, s.gid)
	if err != nil {
		return err
	}
	cu.Add(v.Close)
	s.workspace = v.Path()
	return nil
}

// newVolume creates a workspace volume of lim's disk limits at dir, owned
// by uid and gid with mode 0700.
func newVolume(dir string, lim Limits, uid, gid int) (*volume.Volume, error) {
	lim = lim.WithDefaults()
	v, err := volume.Create(dir, max(lim.DiskBytes, volume.MinBytes), lim.DiskInodes)
	if err != nil {
		switch {
		case errors.Is(err, volume.ErrInvalid):
			return nil, fmt.Errorf("%w: workspace: %w", ErrInvalid, err)
		case errors.Is(err, volume.ErrUnavailable):
			return nil, fmt.Errorf("%w: workspace disk quota: %w", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("creating workspace: %w", err)
	}
	if err := errors.Join(os.Chown(v.Path(), uid, gid), os.Chmod(v.Path(), 0o700)); err != nil {
		v.Close()
		return nil, fmt.Errorf("preparing workspace: %w", err)
	}
	return v, nil
}

// Workspace is a /workspace that outlives the sandboxes using it (e.g. the
// one vial serve's default contexts share): a volume of its own, limited
// to a disk limit in bytes and inodes, owned by a host uid leased for it,
// which every sandbox on it runs as so that they can change each other's
// files. They share that uid's kernel limits among themselves and with
// no other sandbox. Its methods are safe for concurrent use.
type Workspace struct {
	vol  *volume.Volume
	user *hostuid.Lease
}

// NewWorkspace creates directory dir (its parent must exist) as a
// workspace of lim's DiskBytes and DiskInodes (zero: DefaultLimits). Give
// every sandbox on it Request.Workspace = Path() and Request.User =
// User().
func NewWorkspace(dir string, lim Limits) (_ *Workspace, err error) {
	user, err := hostuid.Acquire(hostuid.Dir, dir)
	if err != nil {
		if errors.Is(err, hostuid.ErrExhausted) {
			return nil, fmt.Errorf("%w: %w", ErrExhausted, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	v, err := newVolume(dir, lim, user.UID(), user.GID())
	if err != nil {
		user.Release()
		return nil, err
	}
	return &Workspace{vol: v, user: user}, nil
}

// Path is the workspace's host directory.
func (w *Workspace) Path() string { return w.vol.Path() }

// User is the host uid and gid its sandboxes run as.
func (w *Workspace) User() *hostuid.Lease { return w.user }

// Close discards the workspace and gives its uid back. Every sandbox on it
// must be gone. It is safe to call more than once.
func (w *Workspace) Close() error {
	return errors.Join(w.vol.Close(), w.user.Release())
}

// RemoveTree removes a directory that sandboxes may have written, of any
// depth and width: the workspace volumes mounted in it first (discarded
// whole), then the tree itself with rmtree, which never follows a
// symbolic link and never enters another mount. Use it, not os.RemoveAll,
// for every such directory.
func RemoveTree(dir string) error {
	_, err := volume.Collect(dir)
	return errors.Join(err, rmtree.RemoveAll(dir))
}
