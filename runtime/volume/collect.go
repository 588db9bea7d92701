package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Mounted lists the volumes mounted at or under dir, deepest first: every
// ext4 mount on a loop device whose backing file is the mount point's
// image (DIR.img). Mounts of anything else are left out.
func Mounted(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		mp, fstype, source, ok := parseMountinfo(line)
		if !ok || fstype != "ext4" || (mp != dir && !strings.HasPrefix(mp, dir+"/")) {
			continue
		}
		if backing(source) == mp+ImageSuffix {
			out = append(out, mp)
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
		if err := discard(mp, mp+ImageSuffix); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// parseMountinfo returns the mount point, file-system type and source of
// one line of /proc/self/mountinfo, unescaped.
func parseMountinfo(line string) (mp, fstype, source string, ok bool) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return "", "", "", false
	}
	sep := slices.Index(f, "-")
	if sep < 6 || sep+2 >= len(f) {
		return "", "", "", false
	}
	return unescape(f[4]), f[sep+1], unescape(f[sep+2]), true
}

// unescape undoes the kernel's octal escapes (\040 for a space) in
// mountinfo fields.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
