package runtime

import (
	"context"
	"io"
	"syscall"
	"time"
)

// Language names a stateful interpreter session a context can hold.
type Language string

// The languages a context can run.
const (
	Python     Language = "python"
	JavaScript Language = "javascript"
	Bash       Language = "bash"
)

// ExecRequest is one call into a context.
type ExecRequest struct {
	Code    string
	Timeout time.Duration // 0 means the context's default
}

// ExecResult is what one call into a context produced. A failing program
// (an exception, a non-zero exit, a timeout, an OOM kill) is described here;
// it is not an error of the call.
type ExecResult struct {
	Stdout, Stderr                   string
	StdoutTruncated, StderrTruncated bool
	// Value is the repr of a trailing expression, as a notebook cell shows
	// it; HasValue tells an empty repr from no expression.
	Value    string
	HasValue bool
	Error    *ExecError // nil when the code ran to completion
	// ExitStatus is 0 on success; for bash the command's status, for
	// python/javascript 1 when Error is set.
	ExitStatus int
	TimedOut   bool
	OOMKilled  bool
	// Dead reports that the context is gone after this call (OOM kill,
	// crash, or killed because it did not answer an interrupt); its next
	// use fails with ErrNotFound-class "context is dead".
	Dead bool
	// Busy is set with TimedOut and Dead when the interrupted code had
	// started something that kept using CPU after the call ended (a
	// thread, a background process): the context was stopped, and its
	// state is lost, rather than left burning CPU.
	Busy       bool
	Duration   time.Duration
	CPUTime    time.Duration
	PeakMemory uint64 // bytes
	Images     []Image
	// ImagesOmitted counts the images the call made but that were left
	// out: past 16, or past the context's image byte budget
	// (ContextOptions.ImageBytes).
	ImagesOmitted int
}

// ExecError is an exception or error raised by the executed code.
type ExecError struct {
	Name      string // e.g. "ZeroDivisionError"
	Message   string
	Traceback string
}

// Image is a figure produced by the code (e.g. a matplotlib plot).
type Image struct {
	MIMEType string // "image/png"
	Data     []byte
}

// Transport is the connection to a driver process running inside a
// sandbox: its stdio pipes plus control over its lifetime. *Sandbox
// implements it; tests use a host process.
type Transport interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	Stderr() io.Reader
	// Signal delivers sig to the driver process (the sandbox's init).
	Signal(ctx context.Context, sig syscall.Signal) error
	// Usage reports the sandbox's resource use so far. Its CPU must
	// count every process in the sandbox: after a timed-out call a
	// context samples it to see whether something the call started is
	// still running (a zero CPU reads as "cannot tell").
	Usage() (Usage, error)
	// Done is closed when the driver process has exited.
	Done() <-chan struct{}
	// Close kills the driver and releases everything it held.
	Close() error
}

// Usage is a sandbox's resource use, read back from its cgroup.
type Usage struct {
	PeakMemory  uint64 // bytes
	Memory      uint64 // bytes in use now
	CPU         time.Duration
	OOMKills    uint64
	MemoryLimit int64 // bytes; 0 if unlimited
}
