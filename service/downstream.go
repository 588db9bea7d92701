package service

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/policy"
)

// A downstream MCP server's tool (SERVER__TOOL) is one more tool the core
// admits, decides on and records: the front end that talks to the server
// calls Session.Downstream around each call, and sandboxed servers are
// started by Session.StartProgram with the session's workspace and the
// agent's environment.

// ToolCall is a call of a tool vial does not implement itself.
type ToolCall struct {
	Tool   string         // the namespaced name, e.g. "git__status"
	Server string         // the downstream server
	Args   map[string]any // the arguments as the client sent them
}

// Downstream decides and records call, and runs it with run when it may
// run. run reports whether the tool's own result was an error (isError),
// which is recorded as such.
func (s *Session) Downstream(ctx context.Context, call ToolCall, run func(context.Context) (isError bool, err error)) (err error) {
	o := s.begin(call.Tool, call.Args)
	result := ""
	defer func() { o.end(result, err) }()
	if err := s.checkOpen(); err != nil {
		return err
	}
	args, _ := json.Marshal(call.Args)
	if _, err := s.authorize(ctx, policy.Call{Tool: call.Tool, Args: call.Args}, Summary{
		Tool:   call.Tool,
		Action: fmt.Sprintf("call the tool %q of the MCP server %q", call.Tool, call.Server),
		Detail: detail("arguments: " + string(args)),
	}); err != nil {
		return err
	}
	isError, err := run(ctx)
	if err == nil {
		result = "ok"
		if isError {
			result = "tool_error"
		}
	}
	return err
}

// Program is a program running in a sandbox of its own.
type Program = Sandbox

// StartProgram starts argv in a sandbox of the agent's environment that
// binds the session's shared workspace at /workspace (so a filesystem
// server sees the session's files, not the host's), with binds read-only.
// It holds an admission slot until it is closed.
func (s *Session) StartProgram(ctx context.Context, argv, env, binds []string) (Program, error) {
	starter, ok := s.svc.provider.(ProgramStarter)
	if !ok {
		return nil, errorf(errdefs.ErrUnavailable, "this sandbox provider cannot run programs")
	}
	ws, err := s.workspace(ctx)
	if err != nil {
		return nil, err
	}
	release, err := s.svc.adm.acquire(ctx, "an MCP server")
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	sb, err := starter.StartProgram(ctx, ProgramRequest{Argv: argv, Env: env, Binds: binds, Environment: s.svc.opts.Default, Workspace: ws})
	if err != nil {
		release()
		return nil, err
	}
	s.svc.log.Info("program started", "session", s.id, "program", human.Trunc(argv[0], 100), "took", time.Since(t0).Round(time.Microsecond))
	return &admitted{Sandbox: sb, release: release}, nil
}
