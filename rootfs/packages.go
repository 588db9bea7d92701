package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// dpkgStatus is the Debian package database of an image (relative to its
// root), and maxDpkgStatus the most of it MissingPackages reads: a
// bookworm image with the data-science stack has about 0.3 MB; an
// imported image is the user's input and may hold anything.
const (
	dpkgStatus    = "var/lib/dpkg/status"
	maxDpkgStatus = 32 << 20
)

// ErrNoPackageDatabase says an image has no Debian package database, so
// which packages it provides cannot be told.
var ErrNoPackageDatabase = errors.New("the image has no Debian package database (/var/lib/dpkg/status)")

// MissingPackages returns those of debs (Debian package names, see
// DebianPackages) that the image does not have installed, reading its
// dpkg database: the host's for the host image (whose /usr is the host's),
// the image root's otherwise. The root is opened as an os.Root, so a
// symbolic link in an imported image cannot make vial read a host file.
func (img *Image) MissingPackages(debs []string) ([]string, error) {
	var f *os.File
	var err error
	if img.Name == "host" {
		f, err = os.Open("/" + dpkgStatus)
	} else {
		f, err = os.OpenInRoot(img.Root, dpkgStatus)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoPackageDatabase
	}
	if err != nil {
		return nil, fmt.Errorf("reading the image's package database: %w", err)
	}
	defer f.Close()
	installed, err := installedPackages(io.LimitReader(f, maxDpkgStatus))
	if err != nil {
		return nil, fmt.Errorf("reading the image's package database: %w", err)
	}
	var missing []string
	for _, d := range debs {
		if !installed[d] {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// installedPackages parses a dpkg status file: stanzas of "Field: value"
// lines separated by blank lines; a package counts when its Status ends
// in "installed" ("install ok installed", not "deinstall ok config-files").
func installedPackages(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // a Description line may be long
	var pkg string
	var ok bool
	flush := func() {
		if pkg != "" && ok {
			out[pkg] = true
		}
		pkg, ok = "", false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "Package: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "Package: "))
		case strings.HasPrefix(line, "Status: "):
			ok = strings.HasSuffix(strings.TrimSpace(line), " installed")
		}
	}
	flush()
	return out, sc.Err()
}
