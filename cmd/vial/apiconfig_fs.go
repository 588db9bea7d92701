package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// overlayFS is a file system with one file, name, standing in (or added)
// for whatever base has there: how a body is validated as if it were the
// file, without writing it. Directories above name exist even if base
// lacks them.
type overlayFS struct {
	base fs.FS
	name string
	data []byte
	mod  time.Time
}

var (
	_ fs.ReadFileFS = (*overlayFS)(nil)
	_ fs.ReadDirFS  = (*overlayFS)(nil)
	_ fs.StatFS     = (*overlayFS)(nil)
)

// above reports whether dir is a directory above o.name ("." included).
func (o *overlayFS) above(dir string) bool {
	return dir == "." || strings.HasPrefix(o.name, dir+"/")
}

func (o *overlayFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == o.name {
		return &memFile{Reader: bytes.NewReader(o.data), info: o.fileInfo()}, nil
	}
	return o.base.Open(name)
}

func (o *overlayFS) ReadFile(name string) ([]byte, error) {
	if name == o.name {
		return bytes.Clone(o.data), nil
	}
	return fs.ReadFile(o.base, name)
}

func (o *overlayFS) Stat(name string) (fs.FileInfo, error) {
	if name == o.name {
		return o.fileInfo(), nil
	}
	info, err := fs.Stat(o.base, name)
	if err != nil && o.above(name) && errors.Is(err, fs.ErrNotExist) {
		return memInfo{name: path.Base(name), dir: true, mod: o.mod}, nil
	}
	return info, err
}

func (o *overlayFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(o.base, name)
	if !o.above(name) {
		return entries, err
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// The child of name on the way to o.name: the file itself, or a
	// directory above it.
	rest := strings.TrimPrefix(o.name, name+"/")
	if name == "." {
		rest = o.name
	}
	child, _, deeper := strings.Cut(rest, "/")
	entry := fs.FileInfoToDirEntry(o.fileInfo())
	if deeper {
		entry = fs.FileInfoToDirEntry(memInfo{name: child, dir: true, mod: o.mod})
	}
	i := slices.IndexFunc(entries, func(e fs.DirEntry) bool { return e.Name() == child })
	switch {
	case i < 0:
		entries = append(entries, entry)
	case !deeper:
		entries[i] = entry
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

func (o *overlayFS) fileInfo() memInfo {
	return memInfo{name: path.Base(o.name), size: int64(len(o.data)), mod: o.mod}
}

// memInfo describes an overlay file or directory.
type memInfo struct {
	name string
	size int64
	dir  bool
	mod  time.Time
}

func (m memInfo) Name() string       { return m.name }
func (m memInfo) Size() int64        { return m.size }
func (m memInfo) ModTime() time.Time { return m.mod }
func (m memInfo) IsDir() bool        { return m.dir }
func (m memInfo) Sys() any           { return nil }
func (m memInfo) Mode() fs.FileMode {
	if m.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}

type memFile struct {
	*bytes.Reader
	info memInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

var _ io.ReaderAt = (*memFile)(nil)

// emptyFS has no files: the base of an overlay when the configuration
// directory does not exist.
type emptyFS struct{}

func (emptyFS) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}
