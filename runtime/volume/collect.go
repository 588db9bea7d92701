package volume

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vial-run/vial/internal/mountinfo"
)

// Mounted lists the volumes mounted at or under dir, deepest first: every
// ext4 mount on a loop device whose backing file is the mount point's
// image (DIR.img). Mounts of anything else are left out.
func Mounted(dir string) ([]string, error) {
	all, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range all {
		if m.FSType != "ext4" || (m.Point != dir && !strings.HasPrefix(m.Point, dir+"/")) {
			continue
		}
		if backing(m.Source) == m.Point+ImageSuffix {
			out = append(out, m.Point)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// Collect discards every volume mounted at or under dir, as Close would:
// the volumes of a vial process that died without closing them. The
// caller must know they are orphans (e.g. their sandbox directory's lock
// is free). It returns how many it discarded.
func Collect(dir string) (int, error) {
	mps, err := Mounted(dir)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, mp := range mps {
		if err := discard(mp, mp+ImageSuffix, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// backing returns the backing file of loop device dev (/dev/loopN), or ""
// when dev is not an attached loop device.
func backing(dev string) string {
	name, ok := strings.CutPrefix(dev, "/dev/")
	if !ok || !strings.HasPrefix(name, "loop") || strings.Contains(name, "/") {
		return ""
	}
	data, err := os.ReadFile("/sys/block/" + name + "/loop/backing_file")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(string(data)), " (deleted)")
}
