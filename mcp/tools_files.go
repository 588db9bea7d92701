package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// The file tools reach a context's /workspace from the host side. Every
// open goes through an os.Root on the workspace directory, which refuses
// "..", absolute symlinks and symlinks that resolve outside it, with no
// window between check and use: the sandboxed code controls the directory's
// contents and may race us. Opens add O_NONBLOCK so a FIFO planted in the
// workspace cannot hang the server, and only regular files are read.

const workspaceDir = "/workspace"

func buildReadFile(s *Server) mcpgo.Tool {
	return newTool("read_file",
		fmt.Sprintf("Read a file from a context's /workspace. Returns the file's contents as text (UTF-8), or base64 with encoding=\"base64\" (use that for binary files). Files larger than %s are refused: inspect them with run_shell (head, tail, grep) instead.", fmtBytes(uint64(s.limits.MaxFileBytes))),
		object(map[string]any{
			"path":       str("File path relative to /workspace (e.g. \"data/out.csv\"), or an absolute path under /workspace."),
			"context_id": contextIDProp("the default python context"),
			"encoding":   map[string]any{"type": "string", "enum": []string{"text", "base64"}, "description": "text (default; the file must be UTF-8) or base64."},
		}, "path"),
		nil,
		hints{title: "Read file", readOnly: true, idempotent: true})
}

func buildWriteFile(s *Server) mcpgo.Tool {
	return newTool("write_file",
		fmt.Sprintf("Create or overwrite a file in a context's /workspace; missing parent directories are created. The code in the context sees it at once. content is UTF-8 text, or base64 with encoding=\"base64\" for binary data; at most %s.", fmtBytes(uint64(s.limits.MaxFileBytes))),
		object(map[string]any{
			"path":       str("File path relative to /workspace, or an absolute path under /workspace."),
			"content":    str("The new contents of the file."),
			"context_id": contextIDProp("the default python context"),
			"encoding":   map[string]any{"type": "string", "enum": []string{"text", "base64"}, "description": "How content is encoded: text (default) or base64."},
		}, "path", "content"),
		nil,
		hints{title: "Write file", destructive: true, idempotent: true})
}

func buildListDirectory(s *Server) mcpgo.Tool {
	return newTool("list_directory",
		fmt.Sprintf("List a directory in a context's /workspace: each entry's name, type (file, dir, symlink, other), size and modification time, sorted by name. At most %d entries.", s.limits.MaxListEntries),
		object(map[string]any{
			"path":       str("Directory relative to /workspace; omit for /workspace itself."),
			"context_id": contextIDProp("the default python context"),
		}),
		object(map[string]any{
			"path": str("The directory listed."),
			"entries": map[string]any{"type": "array", "items": object(map[string]any{
				"name":        str(""),
				"type":        map[string]any{"type": "string", "enum": []string{"file", "dir", "symlink", "other"}},
				"size":        map[string]any{"type": "integer", "minimum": 0},
				"modified":    str("RFC 3339 time."),
				"link_target": str("Target of a symlink."),
			}, "name", "type", "size", "modified")},
			"truncated": map[string]any{"type": "boolean"},
		}, "path", "entries", "truncated"),
		hints{title: "List directory", readOnly: true, idempotent: true})
}

func buildSearchFiles(s *Server) mcpgo.Tool {
	return newTool("search_files",
		fmt.Sprintf("Find files under a directory of a context's /workspace by name, and optionally by content. pattern is a glob (*, ?, [...]) matched against the file name, or against the path relative to the search directory when it contains a slash (e.g. \"src/*.py\"); without wildcards it matches any path containing it (case-insensitive). With contains, only files whose text contains that exact string are returned, with the matching lines. Symbolic links are not followed. At most %d results.", s.limits.MaxSearchResults),
		object(map[string]any{
			"pattern":     str("Glob or substring to match file names against, e.g. \"*.py\" or \"report\". Use \"*\" for every file."),
			"path":        str("Directory to search, relative to /workspace; omit for all of /workspace."),
			"contains":    str("Optional text the file must contain (case-sensitive)."),
			"context_id":  contextIDProp("the default python context"),
			"max_results": map[string]any{"type": "integer", "minimum": 1, "description": fmt.Sprintf("Stop after this many matches (default and maximum %d).", s.limits.MaxSearchResults)},
		}, "pattern"),
		object(map[string]any{
			"matches": map[string]any{"type": "array", "items": object(map[string]any{
				"path":  str("Absolute path inside the sandbox."),
				"type":  map[string]any{"type": "string", "enum": []string{"file", "dir", "symlink", "other"}},
				"size":  map[string]any{"type": "integer", "minimum": 0},
				"lines": map[string]any{"type": "array", "items": object(map[string]any{"line": map[string]any{"type": "integer"}, "text": str("")}, "line", "text")},
			}, "path", "type", "size")},
			"truncated": map[string]any{"type": "boolean"},
		}, "matches", "truncated"),
		hints{title: "Search files", readOnly: true, idempotent: true})
}

func buildDeleteFile(s *Server) mcpgo.Tool {
	return newTool("delete_file",
		"Delete a file, symbolic link or empty directory in a context's /workspace. Set recursive=true to delete a directory and everything in it. This cannot be undone.",
		object(map[string]any{
			"path":       str("Path relative to /workspace, or an absolute path under /workspace."),
			"context_id": contextIDProp("the default python context"),
			"recursive":  map[string]any{"type": "boolean", "description": "Delete a non-empty directory with its contents."},
		}, "path"),
		nil,
		hints{title: "Delete file", destructive: true, idempotent: true})
}

// workspace is an open context workspace.
type workspace struct {
	root     *os.Root
	uid, gid int // owner of the workspace directory; new files get it
	chown    bool
}

func (w *workspace) Close() error { return w.root.Close() }

// openWorkspace resolves a context's workspace and opens a Root on it.
func (s *Server) openWorkspace(ctx context.Context, c *call, contextID string) (*workspace, error) {
	if err := checkContextID(contextID); err != nil {
		return nil, err
	}
	c.note(slog.String("context_id", contextID))
	dir, err := s.engine.Workspace(ctx, contextID)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening workspace %s: %w", dir, err)
	}
	w := &workspace{root: root}
	if fi, err := root.Stat("."); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			w.uid, w.gid, w.chown = int(st.Uid), int(st.Gid), true
		}
	}
	return w, nil
}

// relPath maps a path given by the model onto a path relative to the
// workspace root. Absolute paths must be under /workspace; anything that
// climbs out lexically is refused here with a clear message (os.Root would
// refuse it anyway, and also catches symlinks).
func relPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", userErrorf("invalid path: it contains a NUL byte")
	}
	if !utf8.ValidString(p) {
		return "", userErrorf("invalid path: it is not valid UTF-8")
	}
	if strings.HasPrefix(p, "/") {
		clean := path.Clean(p)
		switch {
		case clean == workspaceDir:
			return ".", nil
		case strings.HasPrefix(clean, workspaceDir+"/"):
			return strings.TrimPrefix(clean, workspaceDir+"/"), nil
		default:
			return "", userErrorf("path %q is outside /workspace: the file tools can only reach the context's /workspace", truncateRunes(p, 200))
		}
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", userErrorf("path %q leads outside /workspace and was refused", truncateRunes(p, 200))
	}
	return clean, nil
}

// shown is how a workspace-relative path is shown to the model.
func shown(rel string) string {
	if rel == "." || rel == "" {
		return workspaceDir
	}
	return workspaceDir + "/" + rel
}

// fsError explains a filesystem error on rel without host details.
func fsError(doing, rel string, err error) error {
	p := shown(rel)
	var errno syscall.Errno
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "path escapes from parent"):
		return &userError{msg: fmt.Sprintf("%s: %s leads outside /workspace (through \"..\" or a symbolic link) and was refused", doing, p), err: err}
	case errors.Is(err, fs.ErrNotExist):
		return &userError{msg: fmt.Sprintf("%s: %s does not exist", doing, p), err: err}
	case errors.Is(err, fs.ErrPermission):
		return &userError{msg: fmt.Sprintf("%s: permission denied on %s", doing, p), err: err}
	case errors.Is(err, syscall.EISDIR):
		return &userError{msg: fmt.Sprintf("%s: %s is a directory", doing, p), err: err}
	case errors.Is(err, syscall.ENOTDIR):
		return &userError{msg: fmt.Sprintf("%s: a component of %s is not a directory", doing, p), err: err}
	case errors.Is(err, syscall.ELOOP):
		return &userError{msg: fmt.Sprintf("%s: too many symbolic links in %s", doing, p), err: err}
	case errors.Is(err, syscall.ENOTEMPTY):
		return &userError{msg: fmt.Sprintf("%s: directory %s is not empty; pass recursive=true to delete it with its contents", doing, p), err: err}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &userError{msg: fmt.Sprintf("%s: no space left in /workspace", doing), err: err}
	case errors.As(err, &errno):
		return &userError{msg: fmt.Sprintf("%s %s: %s", doing, p, errno.Error()), err: err}
	default:
		return &userError{msg: fmt.Sprintf("%s %s: I/O error", doing, p), err: err}
	}
}

// openRegular opens rel for reading, refusing anything but a regular file.
func (w *workspace) openRegular(doing, rel string) (*os.File, fs.FileInfo, error) {
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
		return nil, nil, userErrorf("%s: %s is a directory; use list_directory", doing, shown(rel))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, userErrorf("%s: %s is not a regular file", doing, shown(rel))
	}
	return f, fi, nil
}

type readFileArgs struct {
	Path      string `json:"path"`
	ContextID string `json:"context_id"`
	Encoding  string `json:"encoding"`
}

func (s *Server) handleReadFile(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a readFileArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.Path == "" {
		return nil, userErrorf("missing argument \"path\"")
	}
	if err := checkEncoding(a.Encoding); err != nil {
		return nil, err
	}
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	w, err := s.openWorkspace(ctx, c, a.ContextID)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	f, fi, err := w.openRegular("reading", rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > s.limits.MaxFileBytes {
		return nil, userErrorf("%s is %s, above the %s read limit; inspect it with run_shell (head, tail, grep, wc) instead", shown(rel), fmtBytes(uint64(fi.Size())), fmtBytes(uint64(s.limits.MaxFileBytes)))
	}
	data, err := io.ReadAll(io.LimitReader(f, s.limits.MaxFileBytes+1))
	if err != nil {
		return nil, fsError("reading", rel, err)
	}
	if int64(len(data)) > s.limits.MaxFileBytes {
		return nil, userErrorf("%s grew above the %s read limit while being read", shown(rel), fmtBytes(uint64(s.limits.MaxFileBytes)))
	}
	c.note(slog.Int("bytes", len(data)))
	if a.Encoding == "base64" {
		return mcpgo.NewToolResultText(base64.StdEncoding.EncodeToString(data)), nil
	}
	if !utf8.Valid(data) {
		return nil, userErrorf("%s is not UTF-8 text (%s, probably binary); call read_file with encoding=\"base64\"", shown(rel), fmtBytes(uint64(len(data))))
	}
	return mcpgo.NewToolResultText(string(data)), nil
}

func checkEncoding(e string) error {
	if e == "" || e == "text" || e == "base64" {
		return nil
	}
	return userErrorf("invalid encoding %q: use text or base64", truncateRunes(e, 32))
}

type writeFileArgs struct {
	Path      string  `json:"path"`
	Content   *string `json:"content"`
	ContextID string  `json:"context_id"`
	Encoding  string  `json:"encoding"`
}

func (s *Server) handleWriteFile(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a writeFileArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.Path == "" {
		return nil, userErrorf("missing argument \"path\"")
	}
	if a.Content == nil {
		return nil, userErrorf("missing argument \"content\" (use \"\" for an empty file)")
	}
	if err := checkEncoding(a.Encoding); err != nil {
		return nil, err
	}
	data := []byte(*a.Content)
	if a.Encoding == "base64" {
		d, err := base64.StdEncoding.DecodeString(*a.Content)
		if err != nil {
			if d, err = base64.RawStdEncoding.DecodeString(*a.Content); err != nil {
				return nil, userErrorf("content is not valid base64")
			}
		}
		data = d
	}
	if int64(len(data)) > s.limits.MaxFileBytes {
		return nil, userErrorf("content is %s, above the %s write limit", fmtBytes(uint64(len(data))), fmtBytes(uint64(s.limits.MaxFileBytes)))
	}
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	if rel == "." {
		return nil, userErrorf("path must name a file inside /workspace")
	}
	c.note(slog.Int("bytes", len(data)))
	w, err := s.openWorkspace(ctx, c, a.ContextID)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := w.mkdirParents(rel); err != nil {
		return nil, err
	}
	f, err := w.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return nil, fsError("writing", rel, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fsError("writing", rel, err)
	} else if !fi.Mode().IsRegular() {
		return nil, userErrorf("writing: %s is not a regular file", shown(rel))
	}
	if err := f.Truncate(0); err != nil {
		return nil, fsError("writing", rel, err)
	}
	if _, err := f.Write(data); err != nil {
		return nil, fsError("writing", rel, err)
	}
	if w.chown {
		if err := f.Chown(w.uid, w.gid); err != nil {
			return nil, fsError("writing", rel, err)
		}
	}
	if err := f.Close(); err != nil {
		return nil, fsError("writing", rel, err)
	}
	return mcpgo.NewToolResultText(fmt.Sprintf("wrote %s to %s", fmtBytes(uint64(len(data))), shown(rel))), nil
}

// mkdirParents creates the missing parent directories of rel, one at a
// time through the Root, giving each the workspace's owner.
func (w *workspace) mkdirParents(rel string) error {
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
				return userErrorf("creating directory: %s exists and is not a directory", shown(cur))
			}
		default:
			return fsError("creating directory", cur, err)
		}
	}
	return nil
}

type listDirectoryArgs struct {
	Path      string `json:"path"`
	ContextID string `json:"context_id"`
}

type entryView struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Size       int64  `json:"size"`
	Modified   string `json:"modified"`
	LinkTarget string `json:"link_target,omitempty"`
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

func (s *Server) handleListDirectory(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a listDirectoryArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	rel := "."
	if a.Path != "" {
		r, err := relPath(a.Path)
		if err != nil {
			return nil, err
		}
		rel = r
	}
	w, err := s.openWorkspace(ctx, c, a.ContextID)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	d, err := w.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fsError("listing", rel, err)
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil {
		return nil, fsError("listing", rel, err)
	} else if !fi.IsDir() {
		return nil, userErrorf("listing: %s is not a directory; use read_file", shown(rel))
	}
	max := s.limits.MaxListEntries
	ents, err := d.ReadDir(max + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fsError("listing", rel, err)
	}
	truncated := len(ents) > max
	if truncated {
		ents = ents[:max]
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	views := make([]entryView, 0, len(ents))
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d entries", shown(rel), len(ents))
	if truncated {
		fmt.Fprintf(&b, " (truncated at %d)", max)
	}
	b.WriteString("\n")
	for _, e := range ents {
		v := entryView{Name: sanitize(e.Name()), Type: entryType(e.Type())}
		if info, err := e.Info(); err == nil {
			v.Modified = info.ModTime().UTC().Format(time.RFC3339)
			if info.Mode().IsRegular() {
				v.Size = info.Size()
			}
		}
		if v.Type == "symlink" {
			if t, err := w.root.Readlink(path.Join(rel, e.Name())); err == nil {
				v.LinkTarget = sanitize(t)
			}
		}
		views = append(views, v)
		switch v.Type {
		case "dir":
			fmt.Fprintf(&b, "%s/\n", v.Name)
		case "symlink":
			fmt.Fprintf(&b, "%s -> %s\n", v.Name, v.LinkTarget)
		case "file":
			fmt.Fprintf(&b, "%s  (%s)\n", v.Name, fmtBytes(uint64(v.Size)))
		default:
			fmt.Fprintf(&b, "%s  (special file)\n", v.Name)
		}
	}
	return &mcpgo.CallToolResult{
		Content:           []mcpgo.Content{mcpgo.NewTextContent(strings.TrimRight(b.String(), "\n"))},
		StructuredContent: map[string]any{"path": shown(rel), "entries": views, "truncated": truncated},
	}, nil
}

type searchFilesArgs struct {
	Pattern    string `json:"pattern"`
	Path       string `json:"path"`
	Contains   string `json:"contains"`
	ContextID  string `json:"context_id"`
	MaxResults *int   `json:"max_results"`
}

type matchView struct {
	Path  string     `json:"path"`
	Type  string     `json:"type"`
	Size  int64      `json:"size"`
	Lines []lineView `json:"lines,omitempty"`
}

type lineView struct {
	Line int    `json:"line"`
	Text string `json:"text"`
}

// Search bounds: entries visited, bytes read for content matching, and
// matching lines reported per file.
const (
	maxSearchVisits     = 100_000
	maxSearchBytes      = 256 << 20
	maxLinesPerMatch    = 5
	maxSearchLineLength = 300
)

var errStopWalk = errors.New("stop walking")

func (s *Server) handleSearchFiles(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a searchFilesArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.Pattern == "" {
		return nil, userErrorf("missing argument \"pattern\" (use \"*\" to match every file)")
	}
	glob := strings.ContainsAny(a.Pattern, "*?[")
	if glob {
		if _, err := path.Match(a.Pattern, ""); err != nil {
			return nil, userErrorf("invalid glob pattern %q", truncateRunes(a.Pattern, 200))
		}
	}
	limit := s.limits.MaxSearchResults
	if a.MaxResults != nil {
		if *a.MaxResults < 1 {
			return nil, userErrorf("max_results must be at least 1")
		}
		limit = min(limit, *a.MaxResults)
	}
	rel := "."
	if a.Path != "" {
		r, err := relPath(a.Path)
		if err != nil {
			return nil, err
		}
		rel = r
	}
	w, err := s.openWorkspace(ctx, c, a.ContextID)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if fi, err := w.root.Stat(rel); err != nil {
		return nil, fsError("searching", rel, err)
	} else if !fi.IsDir() {
		return nil, userErrorf("searching: %s is not a directory", shown(rel))
	}

	lowerPat := strings.ToLower(a.Pattern)
	matchName := func(p string) bool {
		sub := strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")
		if rel == "." {
			sub = p
		}
		if !glob {
			return strings.Contains(strings.ToLower(sub), lowerPat)
		}
		target := path.Base(p)
		if strings.Contains(a.Pattern, "/") {
			target = sub
		}
		ok, _ := path.Match(a.Pattern, target)
		return ok
	}

	var (
		matches   []matchView
		truncated bool
		visits    int
		scanned   int64
		skipped   int
	)
	walkErr := fs.WalkDir(w.root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if p == rel {
				return err
			}
			return nil // unreadable entries are skipped
		}
		visits++
		if visits > maxSearchVisits {
			truncated = true
			return errStopWalk
		}
		if p == rel || !matchName(p) {
			return nil
		}
		m := matchView{Path: sanitize(shown(p)), Type: entryType(d.Type())}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			m.Size = info.Size()
		}
		if a.Contains != "" {
			if m.Type != "file" || m.Size > s.limits.MaxFileBytes || scanned+m.Size > maxSearchBytes {
				if m.Type == "file" {
					skipped++
				}
				return nil
			}
			scanned += m.Size
			lines, ok := w.grep(p, a.Contains, s.limits.MaxFileBytes)
			if !ok {
				return nil
			}
			m.Lines = lines
		}
		if len(matches) == limit {
			truncated = true
			return errStopWalk
		}
		matches = append(matches, m)
		return nil
	})
	if walkErr != nil && !errors.Is(walkErr, errStopWalk) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fsError("searching", rel, walkErr)
	}
	c.note(slog.Int("matches", len(matches)))

	var b strings.Builder
	fmt.Fprintf(&b, "%d match(es) under %s", len(matches), shown(rel))
	if truncated {
		b.WriteString(" (stopped early: the result limit was reached; narrow the pattern or path)")
	}
	if skipped > 0 {
		fmt.Fprintf(&b, "; %d file(s) too large to search inside were skipped", skipped)
	}
	b.WriteString("\n")
	for _, m := range matches {
		switch m.Type {
		case "dir":
			fmt.Fprintf(&b, "%s/\n", m.Path)
		case "file":
			fmt.Fprintf(&b, "%s  (%s)\n", m.Path, fmtBytes(uint64(m.Size)))
		default:
			fmt.Fprintf(&b, "%s  (%s)\n", m.Path, m.Type)
		}
		for _, l := range m.Lines {
			fmt.Fprintf(&b, "  %d: %s\n", l.Line, l.Text)
		}
	}
	if matches == nil {
		matches = []matchView{}
	}
	return &mcpgo.CallToolResult{
		Content:           []mcpgo.Content{mcpgo.NewTextContent(strings.TrimRight(b.String(), "\n"))},
		StructuredContent: map[string]any{"matches": matches, "truncated": truncated},
	}, nil
}

// grep reports whether the regular, non-binary file rel contains needle,
// with the first matching lines.
func (w *workspace) grep(rel, needle string, limit int64) ([]lineView, bool) {
	f, err := w.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
	var lines []lineView
	for i, line := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(line, []byte(needle)) {
			lines = append(lines, lineView{Line: i + 1, Text: truncateRunes(string(line), maxSearchLineLength)})
			if len(lines) == maxLinesPerMatch {
				break
			}
		}
	}
	return lines, true
}

type deleteFileArgs struct {
	Path      string `json:"path"`
	ContextID string `json:"context_id"`
	Recursive bool   `json:"recursive"`
}

func (s *Server) handleDeleteFile(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a deleteFileArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.Path == "" {
		return nil, userErrorf("missing argument \"path\"")
	}
	rel, err := relPath(a.Path)
	if err != nil {
		return nil, err
	}
	if rel == "." {
		return nil, userErrorf("refusing to delete /workspace itself; delete the entries inside it")
	}
	w, err := s.openWorkspace(ctx, c, a.ContextID)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	fi, err := w.root.Lstat(rel)
	if err != nil {
		return nil, fsError("deleting", rel, err)
	}
	if fi.IsDir() && a.Recursive {
		err = w.root.RemoveAll(rel)
	} else {
		err = w.root.Remove(rel)
	}
	if err != nil {
		return nil, fsError("deleting", rel, err)
	}
	what := entryType(fi.Mode())
	if what == "dir" {
		what = "directory"
	}
	return mcpgo.NewToolResultText(fmt.Sprintf("deleted %s %s", what, shown(rel))), nil
}
