package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/runtime"
)

// userError is a tool failure whose message was written for the model and
// is safe to show: it names no host path and no runtime internals.
type userError struct {
	msg string
	err error // cause, logged only
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.err }

// userErrorf makes a userError. Callers must only format values the model
// gave or may see (workspace-relative paths, context ids, limits).
func userErrorf(format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...)}
}

// errorResult turns a handler's error into an isError result and records
// the outcome. Only userErrors and engine errors of a class about the
// request itself (not found, invalid, exhausted) show their text, and that
// text is scrubbed of absolute host paths; anything else shows a generic
// message and goes to the log in full.
func (s *Server) errorResult(ctx context.Context, c *call, err error) *mcpgo.CallToolResult {
	c.outcome = "tool_error"
	var ue *userError
	switch {
	case errors.As(err, &ue):
		if ue.err != nil {
			c.note(errAttr(ue.err))
		}
		return toolFailure(ue.msg)
	case errors.Is(err, runtime.ErrNotFound):
		c.note(errAttr(err))
		return toolFailure(scrubPaths(err.Error()))
	case errors.Is(err, runtime.ErrInvalid):
		c.note(errAttr(err))
		return toolFailure("invalid request: " + scrubPaths(err.Error()))
	case errors.Is(err, runtime.ErrExhausted):
		c.note(errAttr(err))
		return toolFailure("limit reached: " + scrubPaths(err.Error()) + ". Stop a context you no longer need (stop_context) and try again.")
	case errors.Is(err, runtime.ErrUnavailable):
		c.outcome = "internal_error"
		c.note(errAttr(err))
		return toolFailure("the sandbox is unavailable on this host right now; the operator can find the cause in vial's log")
	case ctx.Err() != nil:
		c.note(errAttr(err))
		return toolFailure("the call was cancelled")
	default:
		c.outcome = "internal_error"
		c.note(errAttr(err))
		s.log.Error("tool call failed", "error", err)
		return toolFailure("internal error in vial; the operator can find the cause in vial's log")
	}
}

func errAttr(err error) slog.Attr { return slog.String("error", err.Error()) }

// hostPath matches absolute paths other than /workspace ones, so engine
// messages shown to the model never reveal the host's layout.
var hostPath = regexp.MustCompile(`(^|[\s"'(=:\[,])/[^\s"'():,\]]*`)

// scrubPaths replaces absolute host paths in msg with "<host path>",
// keeping paths inside the sandbox's /workspace.
func scrubPaths(msg string) string {
	return hostPath.ReplaceAllStringFunc(msg, func(m string) string {
		i := strings.IndexByte(m, '/')
		p := m[i:]
		if p == "/" || p == "/workspace" || strings.HasPrefix(p, "/workspace/") {
			return m
		}
		return m[:i] + "<host path>"
	})
}

// sanitize makes s valid UTF-8, replacing invalid bytes with U+FFFD, so a
// program's raw output can always be sent as JSON text.
func sanitize(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
