package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// TreeStats summarises a tree that TreeDigest walked.
type TreeStats struct {
	Entries int   // files, directories and links, the root included
	Size    int64 // sum of regular file sizes (hard links counted once each)
}

// TreeDigest returns the content digest ("sha256:<hex>") of the directory
// tree at root: a SHA-256 over a canonical, sorted walk that records each
// entry's path, type, permission bits (with sticky, setuid and setgid),
// owner, and a regular file's size and content hash or a symlink's target.
// Modification times, inode numbers and hard-link structure are left out,
// so the same content gives the same digest wherever and whenever it was
// unpacked. Symlinks are recorded, never followed.
func TreeDigest(root string) (string, TreeStats, error) {
	var st TreeStats
	h := sha256.New()
	io.WriteString(h, "vial-tree-v1\n")
	buf := make([]byte, 256<<10)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st.Entries++
		return digestEntry(h, filepath.Join(root, rel), filepath.ToSlash(rel), fi, buf, &st)
	})
	if err != nil {
		return "", st, fmt.Errorf("digesting %s: %w", root, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), st, nil
}

func digestEntry(h hash.Hash, abs, rel string, fi fs.FileInfo, buf []byte, st *TreeStats) error {
	uid, gid := -1, -1
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(sys.Uid), int(sys.Gid)
	}
	mode := fi.Mode()
	perm := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	line := strconv.Quote(rel) + " " + strconv.FormatUint(uint64(perm), 8) + " " + strconv.Itoa(uid) + ":" + strconv.Itoa(gid)
	switch {
	case mode.IsDir():
		line = "d " + line
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		line = "l " + line + " " + strconv.Quote(target)
	case mode.IsRegular():
		f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		fh := sha256.New()
		n, err := io.CopyBuffer(fh, f, buf)
		f.Close()
		if err != nil {
			return err
		}
		st.Size += n
		line = "f " + line + " " + strconv.FormatInt(n, 10) + " " + hex.EncodeToString(fh.Sum(nil))
	default:
		line = "o " + line + " " + mode.Type().String()
	}
	io.WriteString(h, line+"\n")
	return nil
}
