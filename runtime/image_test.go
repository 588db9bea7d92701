package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/rootfs"
)

// TestUseImageRefusesMissingMountPoint checks that a stored image lacking a
// mount target is refused before any runtime could create the target in
// the shared tree, and that every other target, a bind's included, counts.
func TestUseImageRefusesMissingMountPoint(t *testing.T) {
	root := t.TempDir()
	for _, mp := range rootfs.SandboxMountPoints {
		if mp == "workspace" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(root, mp), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := &rootfs.Image{Name: "broken", Digest: "sha256:" + strings.Repeat("0", 64), Root: root}
	var cu cleanup.Stack
	defer cu.Clean()
	err := useImage(&Request{Image: img}, &cu)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no /workspace to mount on") {
		t.Fatalf("image without /workspace: got %v, want ErrInvalid naming /workspace", err)
	}
	if err := os.Mkdir(filepath.Join(root, "workspace"), 0o755); err != nil {
		t.Fatal(err)
	}
	err = useImage(&Request{Image: img, Binds: []rootfs.Bind{{Source: t.TempDir(), Target: "/opt/vial/drivers"}}}, &cu)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no /opt/vial/drivers to mount on") {
		t.Fatalf("image without a bind's target: got %v, want ErrInvalid naming /opt/vial/drivers", err)
	}
}
