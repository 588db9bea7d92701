// Package service is vial's application core: the one API every front end
// (the MCP server, the REST API, the CLI's serve) calls. It owns what sits
// between a tool call and a sandbox:
//
//   - sessions: each MCP client (a stdio client, an HTTP session) gets a
//     Session and sees only its own contexts and workspace files; a
//     session that ends releases its sandboxes;
//   - environments: the agent's own and the named ones create_context may
//     select, already tightened to the agent's ceilings by the caller;
//   - contexts: default ones (one per language per session, created on
//     first use and replaced — with a notice — when they die or expire)
//     and named ones, their idle timeout and lifetime;
//   - one-shot runs (execute_python);
//   - file operations on a context's /workspace, behind the Files
//     interface (the host implementation opens everything through an
//     os.Root);
//   - effective limits, decided here and only here: a call's time limit is
//     the lowest of what it asks, its environment's ceiling and the
//     server's, and the result reports the limit that applied;
//   - one admission bound shared by every sandbox it starts (contexts,
//     one-shot runs);
//   - events (observe.Event) for every call and sandbox, which the log,
//     metrics and audit consume.
//
// Sandboxes come from a Provider: the runtime engine (EngineProvider),
// local mode (LocalProvider), or a fake in tests (servicetest). The
// package never reads configuration files: cmd/vial maps the resolved
// configuration onto Options.
//
// Errors carry errdefs classes. An *Error carries a message written for
// the caller (no host paths, no runtime internals) that front ends show
// as is; any other error's text is for the operator's log.
package service
