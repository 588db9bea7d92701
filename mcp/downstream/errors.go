package downstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
)

// Error is a failure of one downstream server: it could not be started or
// reached, it went away, it did not answer in time, it sent something that
// is not MCP, or it answered a request with a JSON-RPC error. Its message
// names the server and says what vial was doing; it never holds the
// server's bearer token, and the detail a server sent is cut to a few
// hundred bytes. It is safe to show to the model.
//
// Errors carry classes, checked with errors.Is: errdefs.ErrUnavailable
// (could not start or reach it, it exited, it timed out, it sent garbage),
// errdefs.ErrUnauthenticated (the server refused the token),
// errdefs.ErrResourceExhausted (it sent a message over the size bound, or
// does not read its input), errdefs.ErrFailedPrecondition (disabled, or
// sandboxed without a Starter), errdefs.ErrInvalidArgument or
// errdefs.ErrUnknown (a JSON-RPC error answer), and
// context.DeadlineExceeded for timeouts. The cause itself is not kept: its
// text may hold what the server sent before redaction.
type Error struct {
	Server string // the server's name
	Op     string // what vial was doing: "connecting", "calling tool echo", ...
	msg    string // the detail, redacted and bounded
	class  []error
}

func (e *Error) Error() string {
	return fmt.Sprintf("mcp server %q: %s: %s", e.Server, e.Op, e.msg)
}

// Unwrap returns the error's classes.
func (e *Error) Unwrap() []error { return e.class }

// Detail is the error's message without the server and the operation.
func (e *Error) Detail() string { return e.msg }

// newError builds an Error, running the detail through red and bounding it.
func newError(server, op string, red *redactor, detail string, class ...error) *Error {
	return &Error{Server: server, Op: op, msg: bound(red.replace(detail), maxErrorDetail), class: class}
}

// classes of an error from mcp-go or the transport, for errors.Is.
func classesOf(err error) []error {
	var out []error
	for _, c := range []error{
		errdefs.ErrUnavailable, errdefs.ErrUnauthenticated, errdefs.ErrResourceExhausted,
		errdefs.ErrFailedPrecondition, errdefs.ErrInvalidArgument, errdefs.ErrNotFound,
		errdefs.ErrUnknown, context.DeadlineExceeded, context.Canceled,
	} {
		if errors.Is(err, c) {
			out = append(out, c)
		}
	}
	return out
}

// bound cuts s to at most n bytes on a rune boundary, marking the cut, and
// makes control characters visible so that a server cannot forge log
// lines.
func bound(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	return human.TruncBytes(s, n)
}

// classErr is an error whose message does not repeat its class ("...:
// not found") but which errors.Is finds.
type classErr struct {
	msg   string
	class error
}

func (e *classErr) Error() string { return e.msg }
func (e *classErr) Unwrap() error { return e.class }

func errorWithClass(class error, format string, args ...any) error {
	return &classErr{msg: fmt.Sprintf(format, args...), class: class}
}
