package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestMissingPackages(t *testing.T) {
	root := t.TempDir()
	status := `Package: python3
Status: install ok installed
Description: a long line
 continued

Package: python3-numpy
Status: deinstall ok config-files

Package: python3-requests
Status: install ok installed
`
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, dpkgStatus), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	img := &Image{Name: "x", Root: root}
	missing, err := img.MissingPackages([]string{"python3", "python3-numpy", "python3-requests", "python3-pandas"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"python3-numpy", "python3-pandas"}; !slices.Equal(missing, want) {
		t.Fatalf("missing = %v, want %v", missing, want)
	}

	// No database: cannot be told.
	if _, err := (&Image{Name: "y", Root: t.TempDir()}).MissingPackages([]string{"git"}); !errors.Is(err, ErrNoPackageDatabase) {
		t.Fatalf("no database: %v", err)
	}

	// A hostile image whose database is a link out of its root: refused,
	// never followed to the host's file.
	evil := t.TempDir()
	os.MkdirAll(filepath.Join(evil, "var/lib/dpkg"), 0o755)
	outside := filepath.Join(t.TempDir(), "status")
	os.WriteFile(outside, []byte("Package: git\nStatus: install ok installed\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(evil, dpkgStatus)); err != nil {
		t.Fatal(err)
	}
	if m, err := (&Image{Name: "z", Root: evil}).MissingPackages([]string{"git"}); err == nil && len(m) == 0 {
		t.Fatal("a link out of the image root was followed")
	}
}
