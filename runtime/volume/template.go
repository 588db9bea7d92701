package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// A template is a freshly formatted image reduced to its data: the few
// metadata blocks mkfs writes (superblocks, group descriptors, bitmaps,
// the root directory). The rest of a new image is holes. Writing a
// template's extents into a sparse file of the same size gives a file
// system identical to what mkfs would have made, in a fraction of the
// time and with no process to start.
type template struct {
	extents []extent
}

type extent struct {
	off  int64
	data []byte
}

type templateKey struct{ bytes, inodes int64 }

// Templates kept per process: a few sizes (one per configured disk limit)
// of at most maxTemplateBytes each; a size not kept is formatted by mkfs
// for every volume.
const (
	maxTemplates     = 16
	maxTemplateBytes = 8 << 20
)

var templates struct {
	sync.Mutex
	m map[templateKey]*template
}

// UseTemplates switches the template cache on (the default) or off; off,
// every volume is formatted by mkfs. Benchmarks compare the two.
var UseTemplates = true

// TemplateDir keeps templates across processes, as sparse image files (a
// few hundred KiB of data each): `vial run` is one process per sandbox,
// and would otherwise start mkfs for every one. Empty keeps them in
// memory only. It is under /run, which a reboot empties, like the state
// of the mounts that use them.
var TemplateDir = "/run/vial/volumes"

// format makes image a formatted file system of bytes bytes and inodes
// inodes. image must not exist. It reports whether the image came from a
// template (see forget).
func format(image string, bytes, inodes int64) (fromTemplate bool, err error) {
	key := templateKey{bytes, inodes}
	if UseTemplates {
		if t := cachedTemplate(key); t != nil {
			return true, t.write(image, bytes)
		}
	}
	if err := create(image, bytes); err != nil {
		return false, err
	}
	if err := mkfs(image, inodes); err != nil {
		return false, err
	}
	if UseTemplates && dropLostFound(image) == nil {
		if t, err := readTemplate(image); err == nil && t.size() <= maxTemplateBytes {
			keepTemplate(key, t)
		}
	}
	return false, nil
}

// dropLostFound removes lost+found from the freshly formatted image (for
// fsck, which never runs on a volume) by mounting it once, so that the
// template, and every volume made from it, starts empty and Create does
// not dirty a new file system to remove it (0.4 ms a volume, measured).
// Templates made before this still have one; Create removes it then.
func dropLostFound(image string) error {
	dir := image + ".template"
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := mount(image, dir); err != nil {
		return err
	}
	err := unix.Rmdir(filepath.Join(dir, "lost+found"))
	return errors.Join(err, unmount(dir))
}

// cachedTemplate returns the template for key from memory or TemplateDir.
func cachedTemplate(key templateKey) *template {
	templates.Lock()
	t := templates.m[key]
	templates.Unlock()
	if t != nil || TemplateDir == "" {
		return t
	}
	t, err := readTemplate(templatePath(key))
	if err != nil {
		return nil
	}
	remember(key, t)
	return t
}

// keepTemplate remembers t in memory and stores it in TemplateDir
// (written aside and renamed: other processes read it at any time).
func keepTemplate(key templateKey, t *template) {
	remember(key, t)
	if TemplateDir == "" || os.MkdirAll(TemplateDir, 0o700) != nil {
		return
	}
	tmp := fmt.Sprintf("%s.%d.tmp", templatePath(key), os.Getpid())
	os.Remove(tmp)
	if err := t.write(tmp, key.bytes); err != nil {
		os.Remove(tmp)
		return
	}
	if os.Rename(tmp, templatePath(key)) != nil {
		os.Remove(tmp)
	}
}

func remember(key templateKey, t *template) {
	templates.Lock()
	defer templates.Unlock()
	if templates.m == nil || len(templates.m) >= maxTemplates {
		templates.m = map[templateKey]*template{}
	}
	templates.m[key] = t
}

// forget drops the template for key, in memory and on disk: an image made
// from it could not be mounted.
func forget(key templateKey) {
	templates.Lock()
	delete(templates.m, key)
	templates.Unlock()
	if TemplateDir != "" {
		os.Remove(templatePath(key))
	}
}

func templatePath(key templateKey) string {
	return filepath.Join(TemplateDir, fmt.Sprintf("ext4-%d-%d.img", key.bytes, key.inodes))
}

// create makes image, a sparse file of bytes bytes.
func create(image string, bytes int64) error {
	f, err := sparse(image, bytes)
	if err != nil {
		return err
	}
	return f.Close()
}

// sparse creates image as a sparse file of bytes bytes.
func sparse(image string, bytes int64) (*os.File, error) {
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating volume image: %w", err)
	}
	if err := f.Truncate(bytes); err != nil {
		f.Close()
		if errors.Is(err, unix.EFBIG) {
			return nil, fmt.Errorf("volume of %d bytes: %w: larger than a file may be on the host's file system", bytes, ErrInvalid)
		}
		return nil, fmt.Errorf("sizing volume image: %w", err)
	}
	return f, nil
}

// write makes image from t: a sparse file with t's extents written in.
func (t *template) write(image string, bytes int64) error {
	f, err := sparse(image, bytes)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, e := range t.extents {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			return fmt.Errorf("writing volume image: %w", err)
		}
	}
	return nil
}

func (t *template) size() int {
	n := 0
	for _, e := range t.extents {
		n += len(e.data)
	}
	return n
}

// readTemplate reads the data extents of image (SEEK_DATA/SEEK_HOLE),
// dropping blocks that are all zeros.
func readTemplate(image string) (*template, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	t := &template{}
	total := 0
	for off := int64(0); off < fi.Size(); {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return nil, err
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		if total += int(end - start); total > maxTemplateBytes {
			return nil, errors.New("template too large")
		}
		buf := make([]byte, end-start)
		if _, err := io.ReadFull(io.NewSectionReader(f, start, end-start), buf); err != nil {
			return nil, err
		}
		t.extents = append(t.extents, nonZero(start, buf)...)
		off = end
	}
	return t, nil
}

// nonZero splits buf (at offset off) into its runs of 4 KiB blocks that
// are not all zeros: mkfs leaves some allocated blocks zeroed, and writing
// them would only allocate disk.
func nonZero(off int64, buf []byte) []extent {
	const blk = 4096
	var out []extent
	runStart := -1
	for i := 0; i < len(buf); i += blk {
		end := min(i+blk, len(buf))
		zero := true
		for _, b := range buf[i:end] {
			if b != 0 {
				zero = false
				break
			}
		}
		switch {
		case !zero && runStart < 0:
			runStart = i
		case zero && runStart >= 0:
			out = append(out, extent{off + int64(runStart), buf[runStart:i]})
			runStart = -1
		}
	}
	if runStart >= 0 {
		out = append(out, extent{off + int64(runStart), buf[runStart:]})
	}
	return out
}
