package service

import (
	"context"

	"github.com/vial-run/vial/runtime"
)

// Provider starts sandboxes for the service: the runtime engine
// (EngineProvider), local mode (LocalProvider) or a fake in tests. It must
// be safe for concurrent use.
type Provider interface {
	// Start starts lang's context driver in a sandbox built for r.Env.
	// r.Workspace is bound at /workspace; nil means a fresh private
	// workspace the sandbox owns and removes when it is closed.
	Start(ctx context.Context, r StartRequest) (Sandbox, error)
	// NewWorkspace creates a workspace that outlives sandboxes: a
	// session's shared one, which its default contexts bind and the file
	// tools reach without starting a sandbox. env's limits bound it (its
	// disk limit, where the provider enforces one).
	NewWorkspace(ctx context.Context, env Environment) (Workspace, error)
	// Notice is a line every result of this provider's sandboxes carries
	// ("" for none): local mode says that code ran without isolation.
	Notice() string
	// Close releases what the provider holds (its workspaces). Sandboxes
	// are closed by the service before.
	Close() error
}

// StartRequest describes a sandbox to start.
type StartRequest struct {
	Language  Language
	Env       Environment
	Workspace Workspace // nil: a private one
	// DriverEnv tells the driver the caps vial reads its answers with
	// (runtime.DriverEnv); the provider adds it to the sandbox's
	// environment.
	DriverEnv []string
}

// Sandbox is a running context driver: the transport to it (stdio,
// signals, usage, lifetime) and its /workspace.
type Sandbox interface {
	runtime.Transport
	// Files reaches the sandbox's /workspace.
	Files() Files
}

// Workspace is a /workspace that is not tied to one sandbox.
type Workspace interface {
	Files() Files
	// Close removes it and everything in it.
	Close() error
}

// ProgramRequest describes a program to run in a sandbox of its own that
// is not a context: a downstream MCP server the operator configured.
type ProgramRequest struct {
	Argv []string
	Env  []string // KEY=VALUE, on top of the environment's
	// Binds are host directories bound read-only at the same path (the
	// server's program, when it is not in the image).
	Binds       []string
	Environment Environment // where it runs: image, runtime, limits
	Workspace   Workspace   // bound at /workspace; nil: a private one
}

// ProgramStarter is implemented by providers that can run a program other
// than a context driver in a sandbox. Its stdio is the program's.
type ProgramStarter interface {
	StartProgram(ctx context.Context, r ProgramRequest) (Sandbox, error)
}
