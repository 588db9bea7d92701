package runtime

import (
	"errors"
	"fmt"
	"os/exec"

	"github.com/containerd/errdefs"
)

// Error classes. They are containerd's errdefs classes, the one vocabulary
// of every vial package: errors returned by this package wrap one of them
// so callers (the CLI, the MCP and HTTP front ends) choose an answer with
// errors.Is or errdefs.IsNotFound and friends, never by parsing messages.
var (
	// ErrNotFound: a named thing (image, context, runtime binary) does not exist.
	ErrNotFound = errdefs.ErrNotFound
	// ErrInvalid: the request itself is wrong (a bad limit, a hostile path).
	ErrInvalid = errdefs.ErrInvalidArgument
	// ErrUnavailable: the host cannot do this now (runtime missing, cgroups unusable).
	ErrUnavailable = errdefs.ErrUnavailable
	// ErrExhausted: a configured maximum was reached (contexts, pool).
	ErrExhausted = errdefs.ErrResourceExhausted
)

// CommandError is a runtime CLI (runc, crun, runsc) that failed: which
// runtime, what it was asked to do, its exit status, and the last error
// line of its own log — the runtime's words, not vial's guess. It is of
// class ErrUnavailable: the host could not do the job, the request was
// not at fault.
type CommandError struct {
	Runtime string // "runc", "crun", "runsc"
	Op      string // "run", "start", "kill", "delete", ...
	// ExitCode is the CLI's exit status; -1 when it did not exit (it could
	// not be started, or was killed).
	ExitCode int
	// LastLog is the last error the runtime logged, "" if none.
	LastLog string
	Err     error // the underlying exec error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s %s failed", e.Runtime, e.Op)
	if e.LastLog != "" {
		msg += ": " + e.LastLog
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the class and the cause, so errors.Is finds both.
func (e *CommandError) Unwrap() []error { return []error{errdefs.ErrUnavailable, e.Err} }

// commandError builds a CommandError from a finished (or unstartable) CLI.
func commandError(b *Backend, op string, err error, lastLog string) *CommandError {
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return &CommandError{Runtime: b.Name, Op: op, ExitCode: code, LastLog: lastLog, Err: err}
}
