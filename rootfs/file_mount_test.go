package rootfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFileMountPoints: a stored image always has a regular etc/resolv.conf
// (a link there is replaced, since a runtime binding over it would follow
// it); a directory image gets one if it has none and keeps its own.
func TestFileMountPoints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(root string) error
	}{
		{"missing", func(string) error { return nil }},
		{"no-etc", func(root string) error { return os.RemoveAll(filepath.Join(root, "etc")) }},
		{"link", func(root string) error {
			return os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf"))
		}},
		{"dir", func(root string) error { return os.Mkdir(filepath.Join(root, "etc/resolv.conf"), 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "etc"), 0o755)
			if err := tc.setup(root); err != nil {
				t.Fatal(err)
			}
			r, err := os.OpenRoot(root)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := ensureLayout(r); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(root, "etc/resolv.conf"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("etc/resolv.conf after ensureLayout: %v %v; want a regular file", fi, err)
			}
		})
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Symlink("elsewhere", filepath.Join(root, "etc/resolv.conf"))
	if err := ensureMountPoints(root); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/resolv.conf")); err != nil || l != "elsewhere" {
		t.Errorf("a directory image's own resolv.conf link was changed: %q %v", l, err)
	}
	root = t.TempDir()
	if err := ensureMountPoints(root); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("a directory image without resolv.conf: %v %v", fi, err)
	}
}
