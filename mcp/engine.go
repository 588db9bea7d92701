package mcp

import (
	"context"
	"time"

	"github.com/vial-run/vial/runtime"
)

// Engine is everything the MCP server needs from the sandbox side. It is
// defined here, by its consumer, so the tool layer can be tested with a fake
// and knows nothing of kernels, runtimes or images; cmd/vial adapts the real
// runtime to it.
//
// Implementations must be safe for concurrent use: the server calls them
// from one goroutine per in-flight tool call. Errors should wrap one of the
// runtime error classes (runtime.ErrNotFound, ErrInvalid, ErrUnavailable,
// ErrExhausted); the server turns them into messages a model can act on and
// keeps the error text itself out of results unless its class says it is
// about the caller's request (see errorResult).
type Engine interface {
	// CreateContext starts a new stateful context running lang. name is an
	// optional label chosen by the caller; environment names an execution
	// environment from the configuration ("" = the default one).
	CreateContext(ctx context.Context, lang runtime.Language, name, environment string) (ContextInfo, error)
	// ListContexts describes every live context, default ones included.
	ListContexts() []ContextInfo
	// StopContext stops a context and releases its sandbox; an unknown id
	// is an ErrNotFound-class error.
	StopContext(ctx context.Context, id string) error
	// RunCode runs req in contextID, or in the default context of lang when
	// contextID is "" (starting it on first use). A failing program is a
	// result, not an error; an error means the call could not be made
	// (unknown or dead context, sandbox failure).
	RunCode(ctx context.Context, contextID string, lang runtime.Language, req runtime.ExecRequest) (runtime.ExecResult, error)
	// ExecuteOnce runs code in a fresh one-shot sandbox that is removed
	// afterwards (seed 000's execute_python).
	ExecuteOnce(ctx context.Context, lang runtime.Language, req runtime.ExecRequest) (runtime.ExecResult, error)
	// Workspace returns the host directory bound at /workspace in a context
	// ("" = the default python context, started if needed). The server only
	// ever opens it through an os.Root and never shows it to the client.
	Workspace(ctx context.Context, contextID string) (string, error)
}

// ContextInfo describes one live context as list_contexts shows it. It must
// not carry host details (paths, runtime ids): it is shown to the model.
type ContextInfo struct {
	ID          string
	Name        string // label given at creation; may be ""
	Language    runtime.Language
	Environment string // execution environment name; "" = default
	// Default marks the per-language context used when a tool call names
	// no context_id.
	Default bool
	// Dead marks a context that can no longer run code (OOM kill, crash);
	// it stays listed until the engine forgets it.
	Dead     bool
	Created  time.Time
	LastUsed time.Time // zero if never used
}
