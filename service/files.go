package service

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/policy"
)

// Files reaches one /workspace. Paths are workspace-relative and already
// cleaned by the service (never absolute, never climbing out); an
// implementation must still refuse anything that would leave the
// workspace through a symbolic link or a race with the sandboxed code,
// which controls the directory's contents. Errors it returns for the
// caller are *Error values naming /workspace paths only. HostFiles is the
// implementation for a workspace on this host.
type Files interface {
	// Read reads up to n bytes of the regular file rel from offset off and
	// returns them with the file's size.
	Read(ctx context.Context, rel string, off, n int64) (data []byte, size int64, err error)
	// Write creates or replaces the regular file rel with data, creating
	// missing parent directories.
	Write(ctx context.Context, rel string, data []byte) error
	// List lists directory rel sorted by name: at most max entries,
	// truncated when there were more.
	List(ctx context.Context, rel string, max int) (entries []Entry, truncated bool, err error)
	// Search walks the tree under directory rel without following
	// symbolic links, within q's bounds.
	Search(ctx context.Context, rel string, q SearchQuery) (SearchResult, error)
	// Remove removes rel: a file, a symbolic link, an empty directory, or
	// with recursive a whole tree. It returns the kind removed. With
	// protected set, a tree holding an entry it reports is not touched
	// (PermissionDenied).
	Remove(ctx context.Context, rel string, recursive bool, protected func(rel string) bool) (kind string, err error)
	// Stat describes rel, following symbolic links inside the workspace.
	Stat(ctx context.Context, rel string) (Entry, error)
	// Resolve returns the workspace path rel leads to once symbolic links
	// are followed, as far as it exists: the path a call really touches,
	// which the policy must judge too (a link "x" to ".env" is ".env").
	Resolve(ctx context.Context, rel string) (string, error)
}

// Entry is one directory entry.
type Entry struct {
	Name       string
	Path       string // workspace-relative
	Type       string // file, dir, symlink, other
	Size       int64  // regular files only
	Modified   time.Time
	LinkTarget string // symlinks only
}

// SearchQuery is what to look for and how far to go.
type SearchQuery struct {
	// Pattern is a glob (*, ?, [...]) matched against the entry's name, or
	// against its path under the search directory when it contains a
	// slash; without wildcards it matches any path containing it,
	// case-insensitively.
	Pattern string
	// Contains, if set, keeps only regular text files that contain it,
	// with their matching lines.
	Contains   string
	MaxResults int
	// Bounds: directory depth under the search directory, entries visited,
	// bytes read for Contains, the largest file looked inside, and a
	// deadline. Reaching one stops the walk and says which.
	MaxDepth     int
	MaxVisits    int
	MaxBytes     int64
	MaxFileBytes int64
	MaxTime      time.Duration
	// Skip, if set, reports paths to leave out: not matched, not looked
	// inside, not descended into.
	Skip func(rel string) bool
}

// SearchResult is what a search found.
type SearchResult struct {
	Dir       string // the directory searched, as /workspace/...
	Matches   []Match
	Truncated bool
	// Stopped says why the walk ended early ("" if it did not): the result
	// limit, the depth, visit, byte or time bound.
	Stopped string
	// Skipped counts files too large to look inside; DeepDirs directories
	// below the depth bound that were not entered.
	Skipped  int
	DeepDirs int
}

// Match is one search hit.
type Match struct {
	Entry
	Lines []Line // with Contains: the first matching lines
}

// Line is a matching line of a file.
type Line struct {
	N    int
	Text string
}

// WorkspaceDir is where the workspace appears inside a sandbox.
const WorkspaceDir = "/workspace"

// Shown is how a workspace-relative path is shown to the caller.
func Shown(rel string) string {
	if rel == "." || rel == "" {
		return WorkspaceDir
	}
	return WorkspaceDir + "/" + rel
}

// relPath maps a path given by the caller onto a path relative to the
// workspace. Absolute paths must be under /workspace; anything that climbs
// out lexically is refused here with a clear message (the Files
// implementation refuses symbolic links out as well).
func relPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", errorf(errdefs.ErrInvalidArgument, "invalid path: it contains a NUL byte")
	}
	if !utf8.ValidString(p) {
		return "", errorf(errdefs.ErrInvalidArgument, "invalid path: it is not valid UTF-8")
	}
	if len(p) > 4096 {
		return "", errorf(errdefs.ErrInvalidArgument, "invalid path: it is longer than 4096 bytes")
	}
	if strings.HasPrefix(p, "/") {
		clean := path.Clean(p)
		switch {
		case clean == WorkspaceDir:
			return ".", nil
		case strings.HasPrefix(clean, WorkspaceDir+"/"):
			return strings.TrimPrefix(clean, WorkspaceDir+"/"), nil
		default:
			return "", errorf(errdefs.ErrInvalidArgument, "path %q is outside /workspace: the file tools can only reach the context's /workspace", human.Trunc(p, 200))
		}
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errorf(errdefs.ErrInvalidArgument, "path %q leads outside /workspace and was refused", human.Trunc(p, 200))
	}
	return clean, nil
}

// files returns the Files of the session's context id, or of its shared
// workspace when id is "" (no sandbox is started for it).
func (s *Session) files(ctx context.Context, id string) (Files, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if id == "" {
		ws, err := s.workspace(ctx)
		if err != nil {
			return nil, err
		}
		return ws.Files(), nil
	}
	e, err := s.svc.reg.get(s.id, id)
	if err != nil {
		return nil, err
	}
	if dead, why := e.c.Dead(); dead {
		return nil, errorf(errdefs.ErrNotFound, "context %s is dead (%s); its files are gone", id, why)
	}
	return e.sb.Files(), nil
}

// ReadRequest asks for (a page of) a file.
type ReadRequest struct {
	ContextID string
	Path      string
	// Offset and Length select a page; Length 0 means as much as one read
	// returns (Limits.MaxReadBytes), and more is lowered to that.
	Offset, Length int64
}

// FileContent is a page of a file.
type FileContent struct {
	Path   string // as /workspace/...
	Data   []byte
	Offset int64 // where Data starts
	Size   int64 // the whole file's size
}

// ReadFile reads a page of a file: large files are read in pages of at
// most Limits.MaxReadBytes, so no answer is larger than a client accepts.
func (s *Session) ReadFile(ctx context.Context, r ReadRequest) (fc FileContent, err error) {
	o := s.begin("read_file", map[string]any{"path": r.Path, "context_id": r.ContextID, "offset": r.Offset, "length": r.Length})
	o.ev.Context = r.ContextID
	defer func() { o.end("", err) }()
	if r.Path == "" {
		return FileContent{}, errorf(errdefs.ErrInvalidArgument, "missing argument \"path\"")
	}
	if r.Offset < 0 || r.Length < 0 {
		return FileContent{}, errorf(errdefs.ErrInvalidArgument, "offset and length must not be negative")
	}
	rel, err := relPath(r.Path)
	if err != nil {
		return FileContent{}, err
	}
	n := s.svc.limits.MaxReadBytes
	if r.Length > 0 && r.Length < n {
		n = r.Length
	}
	f, err := s.files(ctx, r.ContextID)
	if err != nil {
		return FileContent{}, err
	}
	call := s.fileCall(ctx, f, "read_file", rel, map[string]any{"path": rel, "context_id": r.ContextID, "offset": r.Offset, "length": r.Length})
	call.Size = -1
	if st, err := f.Stat(ctx, rel); err == nil {
		call.Size = st.Size
	}
	if _, err := s.authorize(ctx, call, Summary{Tool: "read_file", Action: "read " + Shown(rel)}); err != nil {
		return FileContent{}, err
	}
	data, size, err := f.Read(ctx, rel, r.Offset, n)
	if err != nil {
		return FileContent{}, err
	}
	if size > call.Size {
		// It grew (or was swapped) after the check: judge what was read.
		if err := s.recheck(call, size); err != nil {
			return FileContent{}, err
		}
	}
	return FileContent{Path: Shown(rel), Data: data, Offset: r.Offset, Size: size}, nil
}

// WriteRequest replaces a file's content.
type WriteRequest struct {
	ContextID string
	Path      string
	Data      []byte
}

// WriteFile creates or replaces a file, creating missing parent
// directories; it returns the path written, as /workspace/....
func (s *Session) WriteFile(ctx context.Context, r WriteRequest) (shown string, err error) {
	o := s.begin("write_file", map[string]any{"path": r.Path, "context_id": r.ContextID, "content_sha256": digest("", map[string]any{"c": string(r.Data)})})
	o.ev.Context = r.ContextID
	defer func() { o.end("", err) }()
	if r.Path == "" {
		return "", errorf(errdefs.ErrInvalidArgument, "missing argument \"path\"")
	}
	if max := s.svc.limits.MaxFileBytes; int64(len(r.Data)) > max {
		return "", errorf(errdefs.ErrInvalidArgument, "content is %s, above the %s write limit", human.Bytes(uint64(len(r.Data))), human.Bytes(uint64(max)))
	}
	rel, err := relPath(r.Path)
	if err != nil {
		return "", err
	}
	if rel == "." {
		return "", errorf(errdefs.ErrInvalidArgument, "path must name a file inside /workspace")
	}
	f, err := s.files(ctx, r.ContextID)
	if err != nil {
		return "", err
	}
	call := s.fileCall(ctx, f, "write_file", rel, map[string]any{"path": rel, "context_id": r.ContextID, "content": string(r.Data)})
	call.Size = int64(len(r.Data))
	if _, err := s.authorize(ctx, call, Summary{Tool: "write_file", Action: fmt.Sprintf("write %s to %s%s", human.Bytes(uint64(len(r.Data))), Shown(rel), where(r.ContextID)),
		Detail: detail(string(r.Data))}); err != nil {
		return "", err
	}
	if err := f.Write(ctx, rel, r.Data); err != nil {
		return "", err
	}
	return Shown(rel), nil
}

// Listing is a directory's entries.
type Listing struct {
	Path      string // as /workspace/...
	Entries   []Entry
	Truncated bool
}

// ListDirectory lists a directory ("" = /workspace), sorted by name, up to
// Limits.MaxListEntries entries.
func (s *Session) ListDirectory(ctx context.Context, contextID, p string) (l Listing, err error) {
	o := s.begin("list_directory", map[string]any{"path": p, "context_id": contextID})
	o.ev.Context = contextID
	defer func() { o.end("", err) }()
	rel := "."
	if p != "" {
		if rel, err = relPath(p); err != nil {
			return Listing{}, err
		}
	}
	f, err := s.files(ctx, contextID)
	if err != nil {
		return Listing{}, err
	}
	if _, err := s.authorize(ctx, s.fileCall(ctx, f, "list_directory", rel, map[string]any{"path": rel, "context_id": contextID}),
		Summary{Tool: "list_directory", Action: "list " + Shown(rel)}); err != nil {
		return Listing{}, err
	}
	ents, truncated, err := f.List(ctx, rel, s.svc.limits.MaxListEntries)
	if err != nil {
		return Listing{}, err
	}
	// Protected entries are left out of listings, and so are links to
	// them (their target would name the protected file).
	ents = slices.DeleteFunc(ents, func(e Entry) bool {
		if s.hidden("list_directory", e.Path) {
			return true
		}
		if e.Type == "symlink" && s.svc.opts.Policy != nil {
			final, err := f.Resolve(ctx, e.Path)
			return err != nil || s.hidden("list_directory", final)
		}
		return false
	})
	return Listing{Path: Shown(rel), Entries: ents, Truncated: truncated}, nil
}

// SearchRequest finds files by name and optionally content.
type SearchRequest struct {
	ContextID  string
	Path       string // directory to search; "" = /workspace
	Pattern    string
	Contains   string
	MaxResults int // 0 = Limits.MaxSearchResults; never above it
}

// SearchFiles searches a directory tree within the service's bounds
// (results, depth, entries, bytes, time); a search that reaches one says
// which.
func (s *Session) SearchFiles(ctx context.Context, r SearchRequest) (res SearchResult, err error) {
	o := s.begin("search_files", map[string]any{"path": r.Path, "context_id": r.ContextID, "pattern": r.Pattern, "contains": r.Contains, "max_results": r.MaxResults})
	o.ev.Context = r.ContextID
	defer func() { o.end("", err) }()
	lim := s.svc.limits
	if r.Pattern == "" {
		return SearchResult{}, errorf(errdefs.ErrInvalidArgument, "missing argument \"pattern\" (use \"*\" to match every file)")
	}
	if strings.ContainsAny(r.Pattern, "*?[") {
		if _, err := path.Match(r.Pattern, ""); err != nil {
			return SearchResult{}, errorf(errdefs.ErrInvalidArgument, "invalid glob pattern %q", human.Trunc(r.Pattern, 200))
		}
	}
	if r.MaxResults < 0 {
		return SearchResult{}, errorf(errdefs.ErrInvalidArgument, "max_results must be at least 1")
	}
	rel := "."
	if r.Path != "" {
		if rel, err = relPath(r.Path); err != nil {
			return SearchResult{}, err
		}
	}
	f, err := s.files(ctx, r.ContextID)
	if err != nil {
		return SearchResult{}, err
	}
	if _, err := s.authorize(ctx, s.fileCall(ctx, f, "search_files", rel, map[string]any{"path": rel, "context_id": r.ContextID, "pattern": r.Pattern, "contains": r.Contains, "max_results": r.MaxResults}),
		Summary{Tool: "search_files", Action: fmt.Sprintf("search %s for %q", Shown(rel), r.Pattern)}); err != nil {
		return SearchResult{}, err
	}
	q := SearchQuery{
		Pattern:      r.Pattern,
		Contains:     r.Contains,
		MaxResults:   lim.MaxSearchResults,
		MaxDepth:     lim.MaxSearchDepth,
		MaxVisits:    lim.MaxSearchVisits,
		MaxBytes:     lim.MaxSearchBytes,
		MaxFileBytes: lim.MaxFileBytes,
		MaxTime:      lim.MaxSearchTime,
	}
	if r.MaxResults > 0 {
		q.MaxResults = min(q.MaxResults, r.MaxResults)
	}
	if s.svc.opts.Policy != nil {
		// Protected files are neither listed nor looked inside.
		q.Skip = func(p string) bool { return s.hidden("search_files", p) }
	}
	return f.Search(ctx, rel, q)
}

// DeleteFile removes a file, symbolic link or empty directory, or with
// recursive a whole tree; it returns the path and the kind removed.
func (s *Session) DeleteFile(ctx context.Context, contextID, p string, recursive bool) (shown, kind string, err error) {
	o := s.begin("delete_file", map[string]any{"path": p, "context_id": contextID, "recursive": recursive})
	o.ev.Context = contextID
	defer func() { o.end("", err) }()
	if p == "" {
		return "", "", errorf(errdefs.ErrInvalidArgument, "missing argument \"path\"")
	}
	rel, err := relPath(p)
	if err != nil {
		return "", "", err
	}
	if rel == "." {
		return "", "", errorf(errdefs.ErrInvalidArgument, "refusing to delete /workspace itself; delete the entries inside it")
	}
	f, err := s.files(ctx, contextID)
	if err != nil {
		return "", "", err
	}
	if _, err := s.authorize(ctx, s.fileCall(ctx, f, "delete_file", rel, map[string]any{"path": rel, "context_id": contextID, "recursive": recursive}),
		Summary{Tool: "delete_file", Action: fmt.Sprintf("delete %s%s%s", Shown(rel), map[bool]string{true: " and everything in it", false: ""}[recursive], where(contextID))}); err != nil {
		return "", "", err
	}
	var protected func(string) bool
	if s.svc.opts.Policy != nil {
		protected = func(p string) bool { return s.hidden("delete_file", p) }
	}
	kind, err = f.Remove(ctx, rel, recursive, protected)
	if err != nil {
		return "", "", err
	}
	return Shown(rel), kind, nil
}

// fileCall is the policy call of a file tool on rel: the path as given and
// the path it leads to through symbolic links, both judged.
func (s *Session) fileCall(ctx context.Context, f Files, tool, rel string, args map[string]any) policy.Call {
	call := policy.Call{Tool: tool, Args: args, Paths: []string{rel}}
	if final, err := f.Resolve(ctx, rel); err == nil && final != rel {
		call.Paths = append(call.Paths, final)
	}
	return call
}

// recheck judges call again with the size really moved; only a denial
// counts (the call was already approved or allowed).
func (s *Session) recheck(call policy.Call, size int64) error {
	call.Size = size
	call.Session, call.Client, call.Agent = s.id, s.clientName(), s.svc.opts.Agent
	if d := s.svc.opts.Policy.Decide(call); d.Effect == policy.Deny {
		return &Error{msg: d.ModelText(), class: errdefs.ErrPermissionDenied}
	}
	return nil
}

// hidden reports whether the policy protects rel from tool: such entries
// are left out of listings and searches and block a recursive delete.
func (s *Session) hidden(tool, rel string) bool {
	rules := s.svc.opts.Policy
	return rules != nil && rules.Hidden(tool, rel)
}

// where names the context of a file call for a person.
func where(contextID string) string {
	if contextID == "" {
		return ""
	}
	return " in context " + contextID
}
