package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/internal/errclass"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/internal/lazyre"
	"github.com/vial-run/vial/service"
)

// userError is a failure of the MCP layer itself (a bad argument) whose
// message was written for the model.
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
// the outcome. Messages written for the caller (this layer's userErrors
// and the service's *Error) are shown as they are; other errors of a class
// about the request itself show their text scrubbed of host paths; errors
// about vial or the host show a generic message and go to the log in full.
// The class decides, through errclass, as it does for every front end.
func (s *Server) errorResult(ctx context.Context, c *call, err error) *mcpgo.CallToolResult {
	c.outcome = "tool_error"
	c.note(errAttr(err))
	var ue *userError
	if errors.As(err, &ue) {
		return toolFailure(ue.msg)
	}
	class := errclass.Of(err)
	msg, public := service.PublicMessage(err)
	switch {
	case class == errclass.Canceled || (ctx.Err() != nil && class != errclass.Exhausted):
		return toolFailure("the call was cancelled")
	case public && class == errclass.Exhausted:
		return toolFailure("limit reached: " + msg)
	case public && class != errclass.Unavailable && class != errclass.Unknown && class != errclass.Internal:
		return toolFailure(msg)
	case class == errclass.Exhausted:
		return toolFailure("limit reached: " + scrubPaths(err.Error()) + ". Stop a context you no longer need (stop_context) and try again.")
	case class == errclass.Invalid:
		return toolFailure("invalid request: " + scrubPaths(err.Error()))
	case class.AboutRequest():
		return toolFailure(scrubPaths(err.Error()))
	case class == errclass.Unavailable:
		c.outcome = "internal_error"
		if public {
			return toolFailure(msg)
		}
		return toolFailure("the sandbox is unavailable on this host right now; the operator can find the cause in vial's log")
	default:
		c.outcome = "internal_error"
		s.log.Error("tool call failed", "error", err)
		return toolFailure("internal error in vial; the operator can find the cause in vial's log")
	}
}

func errAttr(err error) slog.Attr { return slog.String("error", err.Error()) }

// hostPath matches absolute paths other than /workspace ones, so engine
// messages shown to the model never reveal the host's layout.
var hostPath = lazyre.New(`(^|[\s"'(=:\[,])/[^\s"'():,\]]*`)

// scrubPaths replaces absolute host paths in msg with "<host path>",
// keeping paths inside the sandbox's /workspace.
func scrubPaths(msg string) string {
	return hostPath.ReplaceAllStringFunc(human.Valid(msg), func(m string) string {
		i := strings.IndexByte(m, '/')
		p := m[i:]
		if p == "/" || p == "/workspace" || strings.HasPrefix(p, "/workspace/") {
			return m
		}
		return m[:i] + "<host path>"
	})
}
