package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/internal/rmtree"
)

// HostFiles is the Files of a workspace directory on this host. Every open
// goes through an os.Root on the directory, which refuses "..", absolute
// symbolic links and links that resolve outside it, with no window
// between check and use: the sandboxed code controls the directory and
// may race us. Opens add O_NONBLOCK so a FIFO planted in the workspace
// cannot hang vial, and only regular files are read. New files and
// directories get the workspace directory's owner (the sandbox user).
type HostFiles struct {
	Dir string
}

// hostWorkspace is an open Root on the workspace.
type hostWorkspace struct {
	root     *os.Root
	uid, gid int
	chown    bool
}

func (h HostFiles) open() (*hostWorkspace, error) {
	root, err := os.OpenRoot(h.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening workspace %s: %w", h.Dir, err)
	}
	w := &hostWorkspace{root: root}
	if fi, err := root.Stat("."); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			w.uid, w.gid, w.chown = int(st.Uid), int(st.Gid), true
		}
	}
	return w, nil
}

// fsError explains a filesystem error on rel without host details.
func fsError(doing, rel string, err error) error {
	p := Shown(rel)
	var errno syscall.Errno
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "path escapes from parent"):
		return wrapf(errdefs.ErrPermissionDenied, err, "%s: %s leads outside /workspace (through \"..\" or a symbolic link) and was refused", doing, p)
	case errors.Is(err, fs.ErrNotExist):
		return wrapf(errdefs.ErrNotFound, err, "%s: %s does not exist", doing, p)
	case errors.Is(err, fs.ErrPermission):
		return wrapf(errdefs.ErrPermissionDenied, err, "%s: permission denied on %s", doing, p)
	case errors.Is(err, syscall.EISDIR):
		return wrapf(errdefs.ErrInvalidArgument, err, "%s: %s is a directory", doing, p)
	case errors.Is(err, syscall.ENOTDIR):
		return wrapf(errdefs.ErrInvalidArgument, err, "%s: a component of %s is not a directory", doing, p)
	case errors.Is(err, syscall.ELOOP):
		return wrapf(errdefs.ErrInvalidArgument, err, "%s: too many symbolic links in %s", doing, p)
	case errors.Is(err, syscall.ENOTEMPTY):
		return wrapf(errdefs.ErrFailedPrecondition, err, "%s: directory %s is not empty; pass recursive=true to delete it with its contents", doing, p)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return wrapf(errdefs.ErrResourceExhausted, err, "%s: no space left in /workspace", doing)
	case errors.Is(err, syscall.ENAMETOOLONG):
		return wrapf(errdefs.ErrInvalidArgument, err, "%s: the path is too long", doing)
	case errors.As(err, &errno):
		return wrapf(errdefs.ErrInvalidArgument, err, "%s %s: %s", doing, p, errno.Error())
	default:
		return wrapf(errdefs.ErrUnavailable, err, "%s %s: I/O error", doing, p)
	}
}

// openRegular opens rel for reading, refusing anything but a regular file.
func (w *hostWorkspace) openRegular(doing, rel string) (*os.File, fs.FileInfo, error) {
	f, err := w.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fsError(doing, rel, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fsError(doing, rel, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, nil, errorf(errdefs.ErrInvalidArgument, "%s: %s is a directory; use list_directory", doing, Shown(rel))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, errorf(errdefs.ErrInvalidArgument, "%s: %s is not a regular file", doing, Shown(rel))
	}
	return f, fi, nil
}

// Read implements Files.
func (h HostFiles) Read(ctx context.Context, rel string, off, n int64) ([]byte, int64, error) {
	w, err := h.open()
	if err != nil {
		return nil, 0, err
	}
	defer w.root.Close()
	f, fi, err := w.openRegular("reading", rel)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	size := fi.Size()
	if off > size {
		return nil, size, errorf(errdefs.ErrInvalidArgument, "offset %d is past the end of %s (%d bytes)", off, Shown(rel), size)
	}
	// The file may grow while it is read: never read more than asked.
	data, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, off, n), n))
	if err != nil {
		return nil, 0, fsError("reading", rel, err)
	}
	return data, size, nil
}

// Write implements Files.
func (h HostFiles) Write(ctx context.Context, rel string, data []byte) error {
	w, err := h.open()
	if err != nil {
		return err
	}
	defer w.root.Close()
	if err := w.mkdirParents(rel); err != nil {
		return err
	}
	f, err := w.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return fsError("writing", rel, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return fsError("writing", rel, err)
	} else if !fi.Mode().IsRegular() {
		return errorf(errdefs.ErrInvalidArgument, "writing: %s is not a regular file", Shown(rel))
	}
	if err := f.Truncate(0); err != nil {
		return fsError("writing", rel, err)
	}
	if _, err := f.Write(data); err != nil {
		return fsError("writing", rel, err)
	}
	if w.chown {
		if err := f.Chown(w.uid, w.gid); err != nil {
			return fsError("writing", rel, err)
		}
	}
	if err := f.Close(); err != nil {
		return fsError("writing", rel, err)
	}
	return nil
}

// mkdirParents creates the missing parent directories of rel, one at a
// time through the Root, giving each the workspace's owner.
func (w *hostWorkspace) mkdirParents(rel string) error {
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	cur := ""
	for _, part := range strings.Split(dir, "/") {
		cur = path.Join(cur, part)
		err := w.root.Mkdir(cur, 0o755)
		switch {
		case err == nil:
			if w.chown {
				if err := w.root.Lchown(cur, w.uid, w.gid); err != nil {
					return fsError("creating directory", cur, err)
				}
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := w.root.Stat(cur)
			if serr != nil {
				return fsError("creating directory", cur, serr)
			}
			if !fi.IsDir() {
				return errorf(errdefs.ErrInvalidArgument, "creating directory: %s exists and is not a directory", Shown(cur))
			}
		default:
			return fsError("creating directory", cur, err)
		}
	}
	return nil
}

func entryType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "other"
	}
}

// List implements Files.
func (h HostFiles) List(ctx context.Context, rel string, max int) ([]Entry, bool, error) {
	w, err := h.open()
	if err != nil {
		return nil, false, err
	}
	defer w.root.Close()
	d, err := w.openDir("listing", rel)
	if err != nil {
		return nil, false, err
	}
	defer d.Close()
	ents, err := d.ReadDir(max + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fsError("listing", rel, err)
	}
	truncated := len(ents) > max
	if truncated {
		ents = ents[:max]
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	out := make([]Entry, 0, len(ents))
	for _, e := range ents {
		out = append(out, w.entry(rel, e))
	}
	return out, truncated, nil
}

func (w *hostWorkspace) openDir(doing, rel string) (*os.File, error) {
	d, err := w.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_DIRECTORY, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil, errorf(errdefs.ErrInvalidArgument, "%s: %s is not a directory", doing, Shown(rel))
		}
		return nil, fsError(doing, rel, err)
	}
	return d, nil
}

// entry describes directory entry e of directory dir.
func (w *hostWorkspace) entry(dir string, e fs.DirEntry) Entry {
	p := path.Join(dir, e.Name())
	v := Entry{Name: e.Name(), Path: p, Type: entryType(e.Type())}
	if info, err := e.Info(); err == nil {
		v.Modified = info.ModTime()
		if info.Mode().IsRegular() {
			v.Size = info.Size()
		}
	}
	if v.Type == "symlink" {
		if t, err := w.root.Readlink(p); err == nil {
			v.LinkTarget = t
		}
	}
	return v
}

// Search implements Files. The walk is breadth-first by directory, holds
// one directory open at a time, never follows symbolic links, and stops at
// the first bound it reaches: results, depth (deeper directories are
// counted, not entered), entries visited, bytes read, time.
func (h HostFiles) Search(ctx context.Context, rel string, q SearchQuery) (SearchResult, error) {
	w, err := h.open()
	if err != nil {
		return SearchResult{}, err
	}
	defer w.root.Close()
	res := SearchResult{Dir: Shown(rel), Matches: []Match{}}
	if fi, err := w.root.Lstat(rel); err != nil {
		return res, fsError("searching", rel, err)
	} else if !fi.IsDir() {
		return res, errorf(errdefs.ErrInvalidArgument, "searching: %s is not a directory", Shown(rel))
	}
	glob := strings.ContainsAny(q.Pattern, "*?[")
	lowerPat := strings.ToLower(q.Pattern)
	matchName := func(p string) bool {
		sub := p
		if rel != "." {
			sub = strings.TrimPrefix(p, rel+"/")
		}
		if !glob {
			return strings.Contains(strings.ToLower(sub), lowerPat)
		}
		target := path.Base(p)
		if strings.Contains(q.Pattern, "/") {
			target = sub
		}
		ok, _ := path.Match(q.Pattern, target)
		return ok
	}
	type dirAt struct {
		rel   string
		depth int
	}
	start := time.Now()
	queue := []dirAt{{rel, 0}}
	visits := 0
	var scanned int64
	stop := func(why string) { res.Truncated, res.Stopped = true, why }
walk:
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if q.MaxTime > 0 && time.Since(start) > q.MaxTime {
			stop(fmt.Sprintf("it ran for its time limit of %s", human.Duration(q.MaxTime)))
			break
		}
		f, err := w.root.OpenFile(d.rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue // unreadable or replaced under us: skipped
		}
		for {
			ents, err := f.ReadDir(256)
			for _, e := range ents {
				visits++
				if visits > q.MaxVisits {
					f.Close()
					stop(fmt.Sprintf("it visited %d entries", q.MaxVisits))
					break walk
				}
				p := path.Join(d.rel, e.Name())
				if q.Skip != nil && q.Skip(p) {
					continue
				}
				if e.IsDir() {
					if d.depth+1 >= q.MaxDepth {
						res.DeepDirs++
					} else {
						queue = append(queue, dirAt{p, d.depth + 1})
					}
				}
				if !matchName(p) {
					continue
				}
				m := Match{Entry: w.entry(d.rel, e)}
				if q.Contains != "" {
					if m.Type != "file" || m.Size > q.MaxFileBytes || scanned+m.Size > q.MaxBytes {
						if m.Type == "file" {
							res.Skipped++
						}
						continue
					}
					scanned += m.Size
					lines, ok := w.grep(p, q.Contains, q.MaxFileBytes)
					if !ok {
						continue
					}
					m.Lines = lines
				}
				if len(res.Matches) == q.MaxResults {
					f.Close()
					stop(fmt.Sprintf("it found %d matches, the result limit", q.MaxResults))
					break walk
				}
				res.Matches = append(res.Matches, m)
			}
			if err != nil || len(ents) == 0 {
				break
			}
		}
		f.Close()
	}
	if res.DeepDirs > 0 && res.Stopped == "" {
		res.Stopped = fmt.Sprintf("%d directories deeper than %d levels were not searched", res.DeepDirs, q.MaxDepth)
	}
	slices.SortFunc(res.Matches, func(a, b Match) int { return strings.Compare(a.Path, b.Path) })
	return res, nil
}

// Lines of a file shown per search match, and their length.
const (
	maxLinesPerMatch    = 5
	maxSearchLineLength = 300
)

// grep reports whether the regular, non-binary file rel contains needle,
// with the first matching lines.
func (w *hostWorkspace) grep(rel, needle string, limit int64) ([]Line, bool) {
	f, err := w.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil || bytes.IndexByte(data[:min(len(data), 8192)], 0) >= 0 {
		return nil, false
	}
	if !bytes.Contains(data, []byte(needle)) {
		return nil, false
	}
	var lines []Line
	for i, line := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(line, []byte(needle)) {
			lines = append(lines, Line{N: i + 1, Text: human.Trunc(string(line), maxSearchLineLength)})
			if len(lines) == maxLinesPerMatch {
				break
			}
		}
	}
	return lines, true
}

// Remove implements Files.
func (h HostFiles) Remove(ctx context.Context, rel string, recursive bool, protected func(string) bool) (string, error) {
	w, err := h.open()
	if err != nil {
		return "", err
	}
	defer w.root.Close()
	fi, err := w.root.Lstat(rel)
	if err != nil {
		return "", fsError("deleting", rel, err)
	}
	if fi.IsDir() && recursive {
		if protected != nil {
			if p, err := w.findProtected(ctx, rel, protected); err != nil {
				return "", err
			} else if p != "" {
				return "", errorf(errdefs.ErrPermissionDenied, "deleting: %s holds %s, which the operator protects (blocked_paths); nothing was deleted", Shown(rel), Shown(p))
			}
		}
		// Any tree a sandbox can make: no recursion, three descriptors,
		// links never followed (os.Root.RemoveAll ran out of descriptors
		// on a 20,000-deep chain).
		err = rmtree.RemoveAllIn(w.root, rel)
	} else {
		err = w.root.Remove(rel)
	}
	if err != nil {
		return "", fsError("deleting", rel, err)
	}
	kind := entryType(fi.Mode())
	if kind == "dir" {
		kind = "directory"
	}
	return kind, nil
}

// findProtected walks the tree under rel (not following links) and
// returns the first entry protected reports, or "".
func (w *hostWorkspace) findProtected(ctx context.Context, rel string, protected func(string) bool) (string, error) {
	queue := []string{rel}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		dir := queue[0]
		queue = queue[1:]
		f, err := w.root.OpenFile(dir, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		for {
			ents, err := f.ReadDir(256)
			for _, e := range ents {
				p := path.Join(dir, e.Name())
				if protected(p) {
					f.Close()
					return p, nil
				}
				if e.IsDir() {
					queue = append(queue, p)
				}
			}
			if err != nil || len(ents) == 0 {
				break
			}
		}
		f.Close()
	}
	return "", nil
}

// Stat implements Files.
func (h HostFiles) Stat(ctx context.Context, rel string) (Entry, error) {
	w, err := h.open()
	if err != nil {
		return Entry{}, err
	}
	defer w.root.Close()
	fi, err := w.root.Stat(rel)
	if err != nil {
		return Entry{}, fsError("reading", rel, err)
	}
	e := Entry{Name: path.Base(rel), Path: rel, Type: entryType(fi.Mode()), Modified: fi.ModTime()}
	if fi.Mode().IsRegular() {
		e.Size = fi.Size()
	}
	return e, nil
}

// maxLinks bounds the symbolic links Resolve follows, as the kernel does.
const maxLinks = 40

// Resolve implements Files: it follows symbolic links component by
// component, as the kernel would inside the sandbox (where /workspace is
// the workspace), and stops at the first component that does not exist.
// A link that leads out of the workspace is an error.
func (h HostFiles) Resolve(ctx context.Context, rel string) (string, error) {
	w, err := h.open()
	if err != nil {
		return "", err
	}
	defer w.root.Close()
	todo := splitPath(rel)
	var done []string
	links := 0
	for len(todo) > 0 {
		part := todo[0]
		todo = todo[1:]
		switch part {
		case ".", "":
			continue
		case "..":
			if len(done) == 0 {
				return "", errorf(errdefs.ErrPermissionDenied, "%s leads outside /workspace", Shown(rel))
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(append([]string{}, done...), part)...)
		fi, err := w.root.Lstat(cur)
		if err != nil {
			// The rest does not exist (yet): it is what it says.
			return path.Join(append(append(done, part), todo...)...), nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, part)
			continue
		}
		if links++; links > maxLinks {
			return "", errorf(errdefs.ErrInvalidArgument, "too many symbolic links in %s", Shown(rel))
		}
		target, err := w.root.Readlink(cur)
		if err != nil {
			return "", fsError("resolving", cur, err)
		}
		if strings.HasPrefix(target, "/") {
			clean := path.Clean(target)
			if clean != WorkspaceDir && !strings.HasPrefix(clean, WorkspaceDir+"/") {
				return "", errorf(errdefs.ErrPermissionDenied, "%s leads outside /workspace", Shown(rel))
			}
			done = nil
			target = strings.TrimPrefix(strings.TrimPrefix(clean, WorkspaceDir), "/")
		}
		todo = append(splitPath(target), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

func splitPath(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}
