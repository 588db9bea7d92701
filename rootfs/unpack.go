package rootfs

import (
	"github.com/containerd/errdefs"

	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Limits bound what one unpack may write, so a hostile or broken archive
// (a zip bomb, a billion empty files) fails with a clear error instead of
// filling the disk or the inode table. A zero field takes its default.
type Limits struct {
	MaxFileSize  int64 // largest single regular file, in bytes
	MaxTotalSize int64 // sum of all regular files' sizes, in bytes
	MaxEntries   int   // number of archive entries (all layers together)
}

// Defaults for Limits; generous for real images (the data-science image is
// well under 1 GiB and 40,000 files) and small enough to stop a bomb.
const (
	DefaultMaxFileSize  = 4 << 30
	DefaultMaxTotalSize = 32 << 30
	DefaultMaxEntries   = 2_000_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = DefaultMaxTotalSize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// ErrLimit and ErrUnsafe classify unpack failures: an archive that exceeds
// a Limits bound, and one whose entries try to leave the target directory
// or are otherwise malformed in a way that could be an attack.
var (
	ErrLimit  = errdefs.ErrInvalidArgument.WithMessage("archive exceeds a limit")
	ErrUnsafe = errdefs.ErrInvalidArgument.WithMessage("unsafe archive")
)

// UnpackOptions configure Unpack.
type UnpackOptions struct {
	Limits Limits
	// Whiteouts makes ".wh.NAME" entries delete NAME and ".wh..wh..opq"
	// entries empty their directory, as in OCI and Docker image layers.
	// Off, they are ordinary files.
	Whiteouts bool
	// Chown applies the archive's uid and gid. It needs root; off, every
	// file belongs to the calling user.
	Chown bool
}

// UnpackStats counts what an unpack did and what it refused.
type UnpackStats struct {
	Entries        int   // archive entries read
	Files          int   // regular files written
	Bytes          int64 // bytes of regular files written
	SkippedDevices int   // device nodes and FIFOs not created
	SkippedOther   int   // entries of unknown types not created
	DroppedSetID   int   // entries whose setuid/setgid bits were removed
}

// Unpack extracts the tar archive r (plain, gzip, zstd or bzip2; detected
// by magic bytes) into dir, which must exist.
//
// Unpack never creates, changes or removes anything outside dir, whatever
// the archive holds: names are cleaned and one that climbs above dir with
// ".." is refused; absolute names are taken relative to dir; symlinks in
// the archive are resolved as if dir were "/" (like a chroot), so a link to
// "/etc" followed by "link/passwd" writes dir/etc/passwd; hard links may
// only name files inside dir; and every operation goes through an os.Root
// opened on dir as a second line of defence. Device nodes and FIFOs are
// skipped (a sandbox gets its own /dev, and a device node in an image is a
// way to reach host hardware); setuid and setgid bits are dropped (no
// program in a sandbox should gain privileges from its image); extended
// attributes, including file capabilities, are not applied for the same
// reason. A later entry with the same name as an earlier one replaces it
// (a directory over a directory merges, as tar and Docker do).
func Unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) (UnpackStats, error) {
	u, err := newUnpacker(dir, opts)
	if err != nil {
		return UnpackStats{}, err
	}
	defer u.close()
	if err := u.layer(ctx, r); err != nil {
		return u.stats, err
	}
	return u.stats, u.finish()
}

// decompress returns r's content, decompressed if it starts with a gzip,
// zstd or bzip2 magic number, and the name of the format found.
func decompress(r io.Reader) (io.Reader, func(), string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, "", fmt.Errorf("reading archive header: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, "", fmt.Errorf("reading gzip header: %w", err)
		}
		return zr, func() { zr.Close() }, "gzip", nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, "", fmt.Errorf("reading zstd header: %w", err)
		}
		return zr, zr.Close, "zstd", nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), func() {}, "bzip2", nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X'}):
		return nil, nil, "", fmt.Errorf("%w: xz compression is not supported; decompress it first (xz -d)", ErrInvalid)
	}
	return br, func() {}, "tar", nil
}

// dirMeta is a directory's metadata, applied when unpacking ends so that
// a read-only directory can still receive its entries first.
type dirMeta struct {
	mode     fs.FileMode
	uid, gid int
	mtime    time.Time
}

// unpacker applies one or more tar streams (image layers) to a directory.
// Not safe for concurrent use.
type unpacker struct {
	root   *os.Root
	opts   UnpackOptions
	limits Limits
	stats  UnpackStats
	total  int64
	dirs   map[string]dirMeta  // relative path -> metadata to apply in finish
	seen   map[string]struct{} // paths written by the current layer (for opaque whiteouts)
}

func newUnpacker(dir string, opts UnpackOptions) (*unpacker, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening unpack target: %w", err)
	}
	return &unpacker{
		root:   root,
		opts:   opts,
		limits: opts.Limits.withDefaults(),
		dirs:   map[string]dirMeta{},
		seen:   map[string]struct{}{},
	}, nil
}

func (u *unpacker) close() { u.root.Close() }

// layer applies one tar stream (compressed or not).
func (u *unpacker) layer(ctx context.Context, r io.Reader) error {
	dr, closeFn, _, err := decompress(r)
	if err != nil {
		return err
	}
	defer closeFn()
	u.seen = map[string]struct{}{}
	tr := tar.NewReader(dr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		u.stats.Entries++
		if u.stats.Entries > u.limits.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrLimit, u.limits.MaxEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// cleanName maps an archive name onto a clean path relative to the root
// ("." for the root itself). Leading slashes are dropped, as GNU tar does;
// a name that climbs above the root is refused rather than clamped, since
// no honest archive contains one.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafe)
	}
	name = strings.TrimLeft(name, "/")
	if name == "" {
		return ".", nil
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: path leads outside the root", ErrUnsafe)
	}
	return p, nil
}

// maxLinks bounds symlink resolution, as the kernel's ELOOP does.
const maxLinks = 255

// resolve follows name (a clean relative path) inside the root the way the
// kernel would if the root were "/": absolute link targets start again at
// the root and ".." stops there. It returns a path relative to the root
// whose components are all real directories, except possibly missing ones
// at the end. Every component is followed, the last one too: callers
// resolve directories.
func (u *unpacker) resolve(name string) (string, error) {
	var done []string
	pending := strings.Split(name, "/")
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cand := path.Join(append(done, c)...)
		fi, err := u.root.Lstat(cand)
		if errors.Is(err, fs.ErrNotExist) {
			done = append(done, c)
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			links++
			if links > maxLinks {
				return "", fmt.Errorf("%w: too many levels of symbolic links", ErrUnsafe)
			}
			target, err := u.root.Readlink(cand)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				done = done[:0]
			}
			pending = append(strings.Split(target, "/"), pending...)
			continue
		}
		if !fi.IsDir() && len(pending) > 0 {
			return "", fmt.Errorf("%s is not a directory", cand)
		}
		done = append(done, c)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

// parentDir resolves and creates the directory that will hold name and
// returns the entry's final path, relative to the root.
func (u *unpacker) parentDir(name string) (string, error) {
	dir, base := path.Split(name)
	rdir := "."
	if dir != "" {
		var err error
		rdir, err = u.resolve(strings.TrimSuffix(dir, "/"))
		if err != nil {
			return "", err
		}
		if err := u.mkdirAll(rdir); err != nil {
			return "", err
		}
		// Parents made or reached by this layer belong to it too: an
		// opaque whiteout later in the same layer must not remove them.
		for p := rdir; p != "." && p != "/"; p = path.Dir(p) {
			u.seen[p] = struct{}{}
		}
	}
	return path.Join(rdir, base), nil
}

// mkdirAll creates the symlink-free directory path rel. Directories made
// implicitly are 0755, as tar and Docker make them.
func (u *unpacker) mkdirAll(rel string) error {
	if rel == "." {
		return nil
	}
	if err := u.root.MkdirAll(rel, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: a parent of the entry is not a directory", ErrUnsafe)
		}
		return fmt.Errorf("creating directory %s: %w", rel, err)
	}
	return nil
}

// clear removes whatever is at rel so an entry can take its place; a
// directory stays when keepDir is set (a directory over a directory).
func (u *unpacker) clear(rel string, keepDir bool) error {
	if rel == "." {
		return nil
	}
	fi, err := u.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if keepDir {
			return nil
		}
		u.forgetDirs(rel)
		return removeAllIn(u.root, rel)
	}
	return u.root.Remove(rel)
}

// forgetDirs drops pending directory metadata at and below rel.
func (u *unpacker) forgetDirs(rel string) {
	for p := range u.dirs {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(u.dirs, p)
		}
	}
}

// perm converts a tar mode to permission bits, dropping setuid and setgid.
func (u *unpacker) perm(hdr *tar.Header) fs.FileMode {
	m := fs.FileMode(hdr.Mode) & fs.ModePerm
	if hdr.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	if hdr.Mode&0o6000 != 0 {
		u.stats.DroppedSetID++
	}
	return m
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	// archive/tar reports old-style regular files (TypeRegA) as TypeReg.
	if hdr.Typeflag != tar.TypeReg && hdr.Size > 0 {
		// Data of entries that are not written (devices, unknown types) is
		// still decompressed to be skipped: count it, or a bomb hides there.
		if hdr.Size > u.limits.MaxFileSize || u.total+hdr.Size > u.limits.MaxTotalSize {
			return fmt.Errorf("%w: entry carries %d bytes of data", ErrLimit, hdr.Size)
		}
		u.total += hdr.Size
	}
	base := path.Base(name)
	if u.opts.Whiteouts && strings.HasPrefix(base, ".wh.") {
		return u.whiteout(name)
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		u.stats.SkippedDevices++
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeGNUSparse:
	default:
		u.stats.SkippedOther++
		return nil
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root must be a directory", ErrUnsafe)
		}
		u.dirs["."] = dirMeta{mode: u.perm(hdr), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
		return nil
	}
	rel, err := u.parentDir(name)
	if err != nil {
		return err
	}
	u.seen[rel] = struct{}{}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.clear(rel, true); err != nil {
			return err
		}
		if err := u.root.Mkdir(rel, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		u.dirs[rel] = dirMeta{mode: u.perm(hdr), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
		return nil
	case tar.TypeSymlink:
		if err := u.clear(rel, false); err != nil {
			return err
		}
		if strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: NUL in link target", ErrUnsafe)
		}
		// The target is stored as is: it is only ever resolved by
		// resolve (here) or by a kernel inside the sandbox's root.
		if err := u.root.Symlink(hdr.Linkname, rel); err != nil {
			return err
		}
		return u.chown(rel, hdr)
	case tar.TypeLink:
		return u.hardlink(rel, hdr)
	}
	return u.file(rel, hdr, r)
}

func (u *unpacker) chown(rel string, hdr *tar.Header) error {
	if !u.opts.Chown {
		return nil
	}
	if err := u.root.Lchown(rel, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("setting owner: %w", err)
	}
	return nil
}

func (u *unpacker) file(rel string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrUnsafe)
	}
	if hdr.Size > u.limits.MaxFileSize {
		return fmt.Errorf("%w: file of %d bytes is larger than the limit of %d bytes", ErrLimit, hdr.Size, u.limits.MaxFileSize)
	}
	if u.total+hdr.Size > u.limits.MaxTotalSize {
		return fmt.Errorf("%w: archive holds more than the limit of %d bytes", ErrLimit, u.limits.MaxTotalSize)
	}
	if err := u.clear(rel, false); err != nil {
		return err
	}
	// O_EXCL after clear: the file is new, never a link planted earlier.
	f, err := u.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, hdr.Size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing file: %w", err)
	}
	if n != hdr.Size {
		return fmt.Errorf("writing file: %w", io.ErrUnexpectedEOF)
	}
	u.total += n
	u.stats.Files++
	u.stats.Bytes += n
	if err := u.chown(rel, hdr); err != nil {
		return err
	}
	// Chmod after chown: chown clears setuid bits anyway, and the file is
	// one this unpacker just created, so Chmod cannot be redirected.
	if err := u.root.Chmod(rel, u.perm(hdr)); err != nil {
		return err
	}
	if !hdr.ModTime.IsZero() {
		_ = u.root.Chtimes(rel, hdr.ModTime, hdr.ModTime)
	}
	return nil
}

// hardlink links rel to an earlier entry. The target is resolved inside
// the root like any other name; os.Root.Link does not follow a symlink in
// its last component, so a link can never reach a file outside the root.
func (u *unpacker) hardlink(rel string, hdr *tar.Header) error {
	tname, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("link target: %w", err)
	}
	if tname == "." {
		return fmt.Errorf("%w: hard link to the root", ErrUnsafe)
	}
	dir, base := path.Split(tname)
	tdir := "."
	if dir != "" {
		if tdir, err = u.resolve(strings.TrimSuffix(dir, "/")); err != nil {
			return fmt.Errorf("link target: %w", err)
		}
	}
	target := path.Join(tdir, base)
	if target == rel {
		return nil
	}
	fi, err := u.root.Lstat(target)
	if err != nil {
		return fmt.Errorf("link target %q: %w", hdr.Linkname, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: hard link to a directory", ErrUnsafe)
	}
	if err := u.clear(rel, false); err != nil {
		return err
	}
	if err := u.root.Link(target, rel); err != nil {
		return err
	}
	return nil
}

// whiteout applies an OCI whiteout entry: ".wh..wh..opq" hides everything
// earlier layers put in its directory, ".wh.NAME" removes NAME.
func (u *unpacker) whiteout(name string) error {
	dir, base := path.Split(name)
	rdir := "."
	if dir != "" {
		var err error
		if rdir, err = u.resolve(strings.TrimSuffix(dir, "/")); err != nil {
			return err
		}
	}
	if base == ".wh..wh..opq" {
		if err := u.mkdirAll(rdir); err != nil {
			return err
		}
		f, err := u.root.Open(rdir)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading directory %s: %w", rdir, err)
		}
		for _, n := range names {
			child := path.Join(rdir, n)
			if _, mine := u.seen[child]; mine {
				continue
			}
			u.forgetDirs(child)
			if err := removeAllIn(u.root, child); err != nil {
				return err
			}
		}
		return nil
	}
	if strings.HasPrefix(base, ".wh..wh.") {
		return nil // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs)
	}
	victim := strings.TrimPrefix(base, ".wh.")
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("%w: malformed whiteout", ErrUnsafe)
	}
	rel := path.Join(rdir, victim)
	u.forgetDirs(rel)
	if err := removeAllIn(u.root, rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// finish applies directory metadata, deepest first so a read-only parent
// is sealed after its children.
func (u *unpacker) finish() error {
	paths := make([]string, 0, len(u.dirs))
	for p := range u.dirs {
		paths = append(paths, p)
	}
	sortDeepestFirst(paths)
	for _, p := range paths {
		m := u.dirs[p]
		fi, err := u.root.Lstat(p)
		if err != nil || !fi.IsDir() {
			continue // removed or replaced by a later entry
		}
		if u.opts.Chown {
			if err := u.root.Lchown(p, m.uid, m.gid); err != nil {
				return fmt.Errorf("setting owner of %s: %w", p, err)
			}
		}
		mode := m.mode
		if os.Geteuid() != 0 {
			// Without root the tree must stay writable by its owner, or
			// the store could never remove it again.
			mode |= 0o700
		}
		if err := u.root.Chmod(p, mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", p, err)
		}
		if !m.mtime.IsZero() {
			_ = u.root.Chtimes(p, m.mtime, m.mtime)
		}
	}
	u.dirs = map[string]dirMeta{}
	return nil
}
