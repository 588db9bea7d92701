package downstream

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Separator joins a server's name and its tool's name into the name vial
// offers: "everything" and "echo" become "everything__echo".
//
// MCP 2025-11-25 ("Tool names") says a tool name SHOULD be 1 to 128
// characters of ASCII letters, digits, "_", "-" and ".", case-sensitive and
// unique within a server. The model APIs behind MCP clients accept less:
// Claude's tool names must match ^[a-zA-Z0-9_-]{1,128}$ (no dot), so "."
// and "/" would make a client's whole request fail. "-" and a single "_"
// are common inside server and tool names ("server-filesystem",
// "read_file"), so either alone would be ambiguous. "__" is in both
// character sets, is what Claude Code itself uses between "mcp", a server
// and a tool, and cannot occur in a server name (ValidateServerName), so
// the first "__" of an offered name always ends the server's name. vial's
// own tools have no "__" and can never collide with a downstream one.
const Separator = "__"

// Bounds on names, from MCP's 128 characters: a server name leaves room
// for a tool name of at least 61 characters.
const (
	maxServerName = 64
	maxToolName   = 128
)

// ValidateServerName reports whether name can be a server's namespace: 1
// to 64 ASCII letters, digits, "-" and "_", starting with a letter, with no
// "__" and no "_" at the end (either would make "<name>__<tool>" split in
// the wrong place). Such names are refused, not rewritten: policy patterns
// like "git__*" are written against the configured name, and a silent
// rename would make them miss.
func ValidateServerName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("mcp server name %q: %s: %w", name, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxServerName:
		return bad(fmt.Sprintf("longer than %d characters", maxServerName))
	case !isLetter(name[0]):
		return bad("must start with an ASCII letter")
	case strings.Contains(name, Separator):
		return bad(`must not contain "__", which separates server and tool names`)
	case strings.HasSuffix(name, "_"):
		return bad(`must not end with "_"`)
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return bad("only ASCII letters, digits, '-' and '_' are allowed")
		}
	}
	return nil
}

// offeredName returns the name vial offers for a server's tool, with any
// character outside [A-Za-z0-9_-] of the tool's own name replaced by "_"
// (so "files.read" becomes "files_read"), and false if the tool has no
// name or the result is longer than MCP allows.
func offeredName(server, tool string) (string, bool) {
	if tool == "" {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(server) + len(Separator) + len(tool))
	b.WriteString(server)
	b.WriteString(Separator)
	for i := 0; i < len(tool); i++ {
		c := tool[i]
		if !isNameChar(c) {
			c = '_'
		}
		b.WriteByte(c)
	}
	if b.Len() > maxToolName {
		return "", false
	}
	return b.String(), true
}

// SplitName splits an offered name at its first Separator into the server's
// name and the rest. The rest is the downstream tool's name unless that
// name had characters that offeredName replaced; route calls with the
// Manager, which remembers the original.
func SplitName(name string) (server, tool string, ok bool) {
	return strings.Cut(name, Separator)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isNameChar(c byte) bool {
	return isLetter(c) || c >= '0' && c <= '9' || c == '_' || c == '-'
}
