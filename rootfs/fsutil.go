package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// removeAllIn removes rel and everything below it inside root without
// following symlinks. A directory without write permission (possible when
// not running as root) is made writable first.
func removeAllIn(root *os.Root, rel string) error {
	err := root.RemoveAll(rel)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	makeWritable(filepath.Join(root.Name(), rel))
	return root.RemoveAll(rel)
}

// removeTree removes the directory tree at dir, making read-only
// directories writable first when that is what stops it.
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	makeWritable(dir)
	return os.RemoveAll(dir)
}

// makeWritable adds owner rwx to every directory under dir; WalkDir does
// not follow symlinks, so only the tree itself is touched.
func makeWritable(dir string) {
	_ = os.Chmod(dir, 0o700)
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
			if err != nil {
				// The directory could not be read before the chmod; walk it again.
				makeWritable(p)
			}
		}
		return nil
	})
}

// sortDeepestFirst orders relative paths so that children come before
// their parents ("." last).
func sortDeepestFirst(paths []string) {
	depth := func(p string) int {
		if p == "." {
			return -1
		}
		return strings.Count(p, "/")
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := depth(paths[i]), depth(paths[j])
		if di != dj {
			return di > dj
		}
		return paths[i] < paths[j]
	})
}
