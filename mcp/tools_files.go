package mcp

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/service"
)

// The file tools reach a context's /workspace through the service, which
// decides paths and limits and opens everything through the sandbox's
// Files (an os.Root on the host). This file only describes the tools and
// renders their results.

func buildReadFile(s *Server) mcpgo.Tool {
	return newTool("read_file",
		fmt.Sprintf("Read a file from a context's /workspace. Returns the file's contents as text (UTF-8), or base64 with encoding=\"base64\" (use that for binary files). A read returns at most %s: for larger files the result says where the page ended; call again with offset to read on (or inspect the file with run_shell: head, tail, grep).", human.Bytes(uint64(s.limits.MaxReadBytes))),
		object(map[string]any{
			"path":       str("File path relative to /workspace (e.g. \"data/out.csv\"), or an absolute path under /workspace."),
			"context_id": contextIDProp("the default workspace"),
			"encoding":   map[string]any{"type": "string", "enum": []string{"text", "base64"}, "description": "text (default; the file must be UTF-8) or base64."},
			"offset":     map[string]any{"type": "integer", "minimum": 0, "description": "Byte offset to start reading at (default 0)."},
			"length":     map[string]any{"type": "integer", "minimum": 1, "description": fmt.Sprintf("Bytes to read (default and maximum %s).", human.Bytes(uint64(s.limits.MaxReadBytes)))},
		}, "path"),
		nil,
		hints{title: "Read file", readOnly: true, idempotent: true})
}

func buildWriteFile(s *Server) mcpgo.Tool {
	return newTool("write_file",
		fmt.Sprintf("Create or overwrite a file in a context's /workspace; missing parent directories are created. The code in the context sees it at once. content is UTF-8 text, or base64 with encoding=\"base64\" for binary data; at most %s.", human.Bytes(uint64(s.limits.MaxFileBytes))),
		object(map[string]any{
			"path":       str("File path relative to /workspace, or an absolute path under /workspace."),
			"content":    str("The new contents of the file."),
			"context_id": contextIDProp("the default workspace"),
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
			"context_id": contextIDProp("the default workspace"),
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
			"context_id":  contextIDProp("the default workspace"),
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
			"context_id": contextIDProp("the default workspace"),
			"recursive":  map[string]any{"type": "boolean", "description": "Delete a non-empty directory with its contents."},
		}, "path"),
		nil,
		hints{title: "Delete file", destructive: true, idempotent: true})
}

type readFileArgs struct {
	Path      string `json:"path"`
	ContextID string `json:"context_id"`
	Encoding  string `json:"encoding"`
	Offset    *int64 `json:"offset"`
	Length    *int64 `json:"length"`
}

func checkEncoding(e string) error {
	if e == "" || e == "text" || e == "base64" {
		return nil
	}
	return userErrorf("invalid encoding %q: use text or base64", human.Trunc(e, 32))
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
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	r := service.ReadRequest{ContextID: a.ContextID, Path: a.Path}
	if a.Offset != nil {
		r.Offset = *a.Offset
	}
	if a.Length != nil {
		if *a.Length < 1 {
			return nil, userErrorf("length must be at least 1")
		}
		r.Length = *a.Length
	}
	// A page must also fit the response budget once encoded: base64 takes
	// 4/3 of the bytes; text is cut below by its JSON cost.
	room := int64(s.budget - 8<<10)
	if a.Encoding == "base64" {
		room = room / 4 * 3
	}
	if r.Length == 0 || r.Length > room {
		r.Length = min(room, s.limits.MaxReadBytes)
	}
	fc, err := c.core().ReadFile(ctx, r)
	if err != nil {
		return nil, err
	}
	data := fc.Data
	var text string
	if a.Encoding == "base64" {
		text = base64.StdEncoding.EncodeToString(data)
	} else {
		// A page may end inside a character: end it before.
		if end := fc.Offset + int64(len(data)); end < fc.Size {
			for i := 0; i < utf8.UTFMax && len(data) > 0 && !utf8.Valid(data); i++ {
				data = data[:len(data)-1]
			}
		}
		if !utf8.Valid(data) {
			return nil, userErrorf("%s is not UTF-8 text (%s, probably binary); call read_file with encoding=\"base64\"", fc.Path, human.Bytes(uint64(fc.Size)))
		}
		text = cutToCost(string(data), int(room))
		data = data[:len(text)]
	}
	c.note(slog.Int("bytes", len(data)))
	end := fc.Offset + int64(len(data))
	if fc.Offset == 0 && end == fc.Size {
		return mcpgo.NewToolResultText(text), nil
	}
	note := fmt.Sprintf("[bytes %d to %d of %d of %s", fc.Offset, end, fc.Size, fc.Path)
	if end < fc.Size {
		note += fmt.Sprintf("; call read_file again with offset=%d to read on]", end)
	} else {
		note += "; end of file]"
	}
	return &mcpgo.CallToolResult{Content: []mcpgo.Content{mcpgo.NewTextContent(text), mcpgo.NewTextContent(note)}}, nil
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
	if err := checkContextID(a.ContextID); err != nil {
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
	c.note(slog.Int("bytes", len(data)), slog.String("context_id", a.ContextID))
	shown, err := c.core().WriteFile(ctx, service.WriteRequest{ContextID: a.ContextID, Path: a.Path, Data: data})
	if err != nil {
		return nil, err
	}
	return mcpgo.NewToolResultText(fmt.Sprintf("wrote %s to %s", human.Bytes(uint64(len(data))), shown)), nil
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

func (s *Server) handleListDirectory(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a listDirectoryArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	l, err := c.core().ListDirectory(ctx, a.ContextID, a.Path)
	if err != nil {
		return nil, err
	}
	views := make([]entryView, 0, len(l.Entries))
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d entries", l.Path, len(l.Entries))
	if l.Truncated {
		fmt.Fprintf(&b, " (truncated at %d)", len(l.Entries))
	}
	b.WriteString("\n")
	for _, e := range l.Entries {
		v := entryView{Name: human.Valid(e.Name), Type: e.Type, Size: e.Size, LinkTarget: human.Valid(e.LinkTarget)}
		if !e.Modified.IsZero() {
			v.Modified = e.Modified.UTC().Format(time.RFC3339)
		}
		views = append(views, v)
		switch v.Type {
		case "dir":
			fmt.Fprintf(&b, "%s/\n", v.Name)
		case "symlink":
			fmt.Fprintf(&b, "%s -> %s\n", v.Name, v.LinkTarget)
		case "file":
			fmt.Fprintf(&b, "%s  (%s)\n", v.Name, human.Bytes(uint64(v.Size)))
		default:
			fmt.Fprintf(&b, "%s  (special file)\n", v.Name)
		}
	}
	return &mcpgo.CallToolResult{
		Content:           []mcpgo.Content{mcpgo.NewTextContent(strings.TrimRight(b.String(), "\n"))},
		StructuredContent: map[string]any{"path": l.Path, "entries": views, "truncated": l.Truncated},
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

func (s *Server) handleSearchFiles(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a searchFilesArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.Pattern == "" {
		return nil, userErrorf("missing argument \"pattern\" (use \"*\" to match every file)")
	}
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	r := service.SearchRequest{ContextID: a.ContextID, Path: a.Path, Pattern: a.Pattern, Contains: a.Contains}
	if a.MaxResults != nil {
		if *a.MaxResults < 1 {
			return nil, userErrorf("max_results must be at least 1")
		}
		r.MaxResults = *a.MaxResults
	}
	res, err := c.core().SearchFiles(ctx, r)
	if err != nil {
		return nil, err
	}
	c.note(slog.Int("matches", len(res.Matches)))
	matches := make([]matchView, 0, len(res.Matches))
	var b strings.Builder
	fmt.Fprintf(&b, "%d match(es) under %s", len(res.Matches), res.Dir)
	if res.Stopped != "" {
		fmt.Fprintf(&b, " (stopped early: %s; narrow the pattern or path)", res.Stopped)
	}
	if res.Skipped > 0 {
		fmt.Fprintf(&b, "; %d file(s) too large to search inside were skipped", res.Skipped)
	}
	b.WriteString("\n")
	for _, m := range res.Matches {
		v := matchView{Path: human.Valid(service.Shown(m.Path)), Type: m.Type, Size: m.Size}
		for _, l := range m.Lines {
			v.Lines = append(v.Lines, lineView{Line: l.N, Text: l.Text})
		}
		matches = append(matches, v)
		switch v.Type {
		case "dir":
			fmt.Fprintf(&b, "%s/\n", v.Path)
		case "file":
			fmt.Fprintf(&b, "%s  (%s)\n", v.Path, human.Bytes(uint64(v.Size)))
		default:
			fmt.Fprintf(&b, "%s  (%s)\n", v.Path, v.Type)
		}
		for _, l := range v.Lines {
			fmt.Fprintf(&b, "  %d: %s\n", l.Line, l.Text)
		}
	}
	return &mcpgo.CallToolResult{
		Content:           []mcpgo.Content{mcpgo.NewTextContent(strings.TrimRight(b.String(), "\n"))},
		StructuredContent: map[string]any{"matches": matches, "truncated": res.Truncated},
	}, nil
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
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	shown, kind, err := c.core().DeleteFile(ctx, a.ContextID, a.Path, a.Recursive)
	if err != nil {
		return nil, err
	}
	return mcpgo.NewToolResultText(fmt.Sprintf("deleted %s %s", kind, shown)), nil
}
