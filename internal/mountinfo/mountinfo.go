// Package mountinfo reads this process's mount table
// (/proc/thread-self/mountinfo): the one parser of it that the runtime, the
// workspace volumes and the network namespaces share.
package mountinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Mount is one line of the table: its mount point, file-system type and
// source, unescaped.
type Mount struct {
	Point, FSType, Source string
}

// Table is the mount table of the calling thread. Not /proc/self's, which
// is the main thread's: a thread that unshares its mount namespace and is
// never unlocked (the crun backend starts crun from one) leaves the main
// thread in that private namespace for good if Go happened to run it there,
// and every mount made afterwards would be missing from /proc/self's view.
// A thread running ordinary goroutines is always in the process's own.
const Table = "/proc/thread-self/mountinfo"

// Read returns the mount table.
func Read() ([]Mount, error) {
	data, err := os.ReadFile(Table)
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	var out []Mount
	for _, line := range strings.Split(string(data), "\n") {
		if m, ok := parse(line); ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// Under returns the mounts at or under dir, deepest first (the order to
// unmount them in). A table that cannot be read gives none.
func Under(dir string) []Mount {
	all, _ := Read()
	dir = filepath.Clean(dir)
	var out []Mount
	for _, m := range all {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b Mount) int { return len(b.Point) - len(a.Point) })
	return out
}

// PointsUnder returns the mount points of Under(dir).
func PointsUnder(dir string) []string {
	var out []string
	for _, m := range Under(dir) {
		out = append(out, m.Point)
	}
	return out
}

// parse reads one line: "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER".
func parse(line string) (Mount, bool) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return Mount{}, false
	}
	sep := slices.Index(f, "-")
	if sep < 6 || sep+2 >= len(f) {
		return Mount{}, false
	}
	return Mount{Point: unescape(f[4]), FSType: f[sep+1], Source: unescape(f[sep+2])}, true
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
