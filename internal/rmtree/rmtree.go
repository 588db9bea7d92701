// Package rmtree removes directory trees that hostile code may have
// written: any depth, any width, symbolic links, unreadable directories.
//
// os.RemoveAll holds one descriptor per level of the tree and recurses,
// so a sandbox that makes 20,000 nested directories (0.25 s of work) makes
// its removal fail with EMFILE once the depth passes the descriptor limit,
// and the directory leaks for good. RemoveAll here never holds more than
// three descriptors and never recurses: it empties a directory by
// unlinking its files and hoisting each subdirectory's subdirectories up
// into the directory being removed (renameat2 with RENAME_NOREPLACE), so
// a chain of any depth becomes a wide directory that is emptied level by
// level. Every step is relative to a descriptor opened with O_NOFOLLOW:
// no path is ever resolved through a symbolic link, and nothing is ever
// moved out of the tree, so a tree that changes under it (a live sandbox)
// can at worst leave entries behind, never make it touch anything outside.
// It does not cross into other file systems: a mount point inside the tree
// is reported, not emptied.
package rmtree

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrMountPoint is returned when the tree contains another file system's
// mount point, which RemoveAll neither descends into nor removes.
var ErrMountPoint = errors.New("mount point inside the tree")

// maxPasses bounds the re-reads of one directory. A tree that is not
// changing needs one per 4096 entries it holds at its top; only a live
// process that keeps adding entries as fast as they go could use them up.
const maxPasses = 1 << 16

// batch is how many names one read of a directory returns at most.
const batch = 4096

// RemoveAll removes path and everything below it, as os.RemoveAll does,
// without following symbolic links, without running out of descriptors
// or stack on deep trees, and without crossing file-system boundaries. A
// missing path is not an error; a path that is not a directory is
// unlinked. Directories without write or search permission are made
// accessible first (as root this is never needed).
func RemoveAll(path string) error {
	if path == "" {
		return nil
	}
	path = filepath.Clean(path)
	parent, err := unix.Open(filepath.Dir(path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(parent)
	return removeAt(parent, filepath.Base(path), path)
}

// RemoveAllIn removes rel and everything below it inside root, with the
// guarantees of RemoveAll. rel is resolved through root, so nothing outside
// root is ever touched even if rel's parents are symbolic links; a
// symbolic link at rel itself is removed, not followed.
func RemoveAllIn(root *os.Root, rel string) error {
	rel = filepath.Clean(rel)
	if rel == "." {
		return fmt.Errorf("removing %s: %w", root.Name(), errors.New("refusing to remove the root itself"))
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if !fi.IsDir() {
		return root.Remove(rel)
	}
	dir := filepath.Dir(rel)
	pf, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer pf.Close()
	return removeAt(int(pf.Fd()), filepath.Base(rel), filepath.Join(root.Name(), rel))
}

// removeAt removes the entry name of directory parent; display names it
// in errors.
func removeAt(parent int, name, display string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "lstat", Path: display, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(parent, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "unlink", Path: display, Err: err}
		}
		return nil
	}
	var pst unix.Stat_t
	if err := unix.Fstat(parent, &pst); err == nil && pst.Dev != st.Dev {
		return &os.PathError{Op: "remove", Path: display, Err: ErrMountPoint}
	}
	fd, err := openDir(parent, name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "open", Path: display, Err: err}
	}
	fs := fsID{dev: st.Dev, mnt: mountID(fd)}
	if pm := mountID(parent); pm != fs.mnt {
		// A bind mount from the same file system: same device, another mount.
		unix.Close(fd)
		return &os.PathError{Op: "remove", Path: display, Err: ErrMountPoint}
	}
	err = empty(fd, fs, display)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: display, Err: err}
	}
	return nil
}

// openDir opens name in parent as a directory without following a
// symbolic link, making it searchable and readable first if its mode
// forbids that (only possible when not running as root).
func openDir(parent int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	if errors.Is(err, unix.EACCES) {
		// fchmodat never follows a symbolic link on a final component here:
		// name was just seen as a directory, and a swap to a link makes
		// the Openat below fail with ELOOP rather than open the target.
		if unix.Fchmodat(parent, name, 0o700, unix.AT_SYMLINK_NOFOLLOW) != nil {
			unix.Fchmodat(parent, name, 0o700, 0)
		}
		fd, err = unix.Openat(parent, name, flags, 0)
	}
	return fd, err
}

// empty removes everything inside directory fd (on device dev). Files are
// unlinked; a subdirectory's own subdirectories are hoisted into fd under
// fresh names and queued, its files unlinked, and then it is removed: no
// level ever holds a descriptor for longer than one step, and a chain of
// any depth is taken apart in one pass.
func empty(fd int, fs fsID, display string) error {
	if os.Geteuid() != 0 {
		// An unwritable directory (only possible when not root) is made writable.
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&0o300 != 0o300 {
			unix.Fchmod(fd, 0o700)
		}
	}
	hoisted := 0
	stuck := map[string]error{}
	for pass := 0; ; pass++ {
		if pass == maxPasses {
			return &os.PathError{Op: "remove", Path: display, Err: errors.New("entries keep appearing")}
		}
		work, err := readNames(fd, func(n string) bool { return stuck[n] != nil })
		if err != nil {
			return &os.PathError{Op: "readdir", Path: display, Err: err}
		}
		if len(work) == 0 {
			break
		}
		for len(work) > 0 {
			name := work[len(work)-1]
			work = work[:len(work)-1]
			more, err := removeOrHoist(fd, name, fs, &hoisted, filepath.Join(display, name))
			if err != nil {
				stuck[name] = err
			}
			work = append(work, more...)
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	errs := make([]error, 0, min(len(stuck), 4))
	for _, err := range stuck {
		if len(errs) == cap(errs) {
			errs = append(errs, fmt.Errorf("and %d more", len(stuck)-len(errs)))
			break
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeOrHoist removes entry name of directory fd. A directory with
// contents has its files removed and its subdirectories moved up into fd
// (their new names are returned, for the caller to take apart next), and
// is removed once empty.
func removeOrHoist(fd int, name string, fs fsID, hoisted *int, display string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, &os.PathError{Op: "lstat", Path: display, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, &os.PathError{Op: "unlink", Path: display, Err: err}
		}
		return nil, nil
	}
	if st.Dev != fs.dev {
		return nil, &os.PathError{Op: "remove", Path: display, Err: ErrMountPoint}
	}
	// Most directories are empty by the time they are reached (leaves,
	// and every level of a chain once its child was hoisted).
	if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err == nil || errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	sub, err := openDir(fd, name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, &os.PathError{Op: "open", Path: display, Err: err}
	}
	defer unix.Close(sub)
	var sst unix.Stat_t
	if err := unix.Fstat(sub, &sst); err != nil || sst.Dev != fs.dev || sst.Ino != st.Ino {
		// Swapped between the stat and the open: the next pass looks again.
		return nil, nil
	}
	if mountID(sub) != fs.mnt {
		return nil, &os.PathError{Op: "remove", Path: display, Err: ErrMountPoint}
	}
	if sst.Mode&0o300 != 0o300 && os.Geteuid() != 0 {
		unix.Fchmod(sub, 0o700)
	}
	var moved []string
	var errs []error
	for {
		names, err := readNames(sub, nil)
		if err != nil {
			return moved, &os.PathError{Op: "readdir", Path: display, Err: err}
		}
		progress := false
		errs = errs[:0]
		for _, n := range names {
			var cst unix.Stat_t
			if err := unix.Fstatat(sub, n, &cst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				progress = progress || errors.Is(err, unix.ENOENT)
				continue
			}
			if cst.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := unix.Unlinkat(sub, n, 0); err != nil {
					errs = append(errs, &os.PathError{Op: "unlink", Path: filepath.Join(display, n), Err: err})
					continue
				}
				progress = true
				continue
			}
			if cst.Dev != fs.dev || mountIDAt(sub, n) != fs.mnt {
				errs = append(errs, &os.PathError{Op: "remove", Path: filepath.Join(display, n), Err: ErrMountPoint})
				continue
			}
			if unix.Unlinkat(sub, n, unix.AT_REMOVEDIR) == nil {
				progress = true
				continue
			}
			target, err := hoist(sub, n, fd, hoisted)
			if err != nil {
				errs = append(errs, &os.PathError{Op: "rename", Path: filepath.Join(display, n), Err: err})
				continue
			}
			moved = append(moved, target)
			progress = true
		}
		if !progress {
			break
		}
	}
	if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, &os.PathError{Op: "rmdir", Path: display, Err: err})
		return moved, errors.Join(errs...)
	}
	return moved, nil
}

// fsID identifies the mount a tree is on: its device, and the mount's id
// (which also tells a bind mount of the same file system apart).
type fsID struct{ dev, mnt uint64 }

// mountID returns the id of the mount fd is on (statx STATX_MNT_ID,
// Linux 5.8), or 0 where the kernel does not report it; then only the
// device number tells mounts apart.
func mountID(fd int) uint64 {
	var stx unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx) != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0
	}
	return stx.Mnt_id
}

// mountIDAt is mountID for entry name of directory dirfd (the mount it
// leads to, for a mount point).
func mountIDAt(dirfd int, name string) uint64 {
	var stx unix.Statx_t
	if unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx) != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0
	}
	return stx.Mnt_id
}

// hoist moves directory name of from into to under a name not in use
// there, and returns that name.
func hoist(from int, name string, to int, n *int) (string, error) {
	for {
		*n++
		target := ".rmtree-" + strconv.Itoa(*n)
		err := unix.Renameat2(from, name, to, target, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// A file system without RENAME_NOREPLACE: check, then rename.
			var st unix.Stat_t
			if unix.Fstatat(to, target, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				continue
			}
			err = unix.Renameat(from, name, to, target)
		}
		return target, err
	}
}

// readNames reads up to a batch of entry names from directory fd, from
// its start ("." and ".." left out), leaving out those skip reports.
// Reading from the start each time keeps the walk correct while entries
// are removed and added.
func readNames(fd int, skip func(string) bool) ([]string, error) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return nil, err
	}
	buf := make([]byte, 32<<10)
	var names []string
	for len(names) < batch {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return nil, err
		}
		if n <= 0 {
			break
		}
		start := len(names)
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		if skip != nil {
			names = append(names[:start], slices.DeleteFunc(names[start:], skip)...)
		}
	}
	return names, nil
}
