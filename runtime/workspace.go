package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vial-run/vial/internal/cleanup"
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
	v, err := volume.Create(filepath.Join(s.dir, "workspace"), max(s.limits.DiskBytes, volume.MinBytes), s.limits.DiskInodes)
	if err != nil {
		switch {
		case errors.Is(err, volume.ErrInvalid):
			return fmt.Errorf("%w: workspace: %w", ErrInvalid, err)
		case errors.Is(err, volume.ErrUnavailable):
			return fmt.Errorf("%w: workspace disk quota: %w", ErrUnavailable, err)
		}
		return fmt.Errorf("creating workspace: %w", err)
	}
	cu.Add(v.Close)
	s.workspace = v.Path()
	// Only a workspace vial created is handed to the sandbox user; a
	// directory the caller named keeps its owner.
	if err := os.Chown(s.workspace, s.uid, s.gid); err != nil {
		return fmt.Errorf("preparing workspace: %w", err)
	}
	if err := os.Chmod(s.workspace, 0o700); err != nil {
		return fmt.Errorf("preparing workspace: %w", err)
	}
	return nil
}
