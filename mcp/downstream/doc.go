// Package downstream is vial's client side of the MCP servers an operator
// configures in mcp.toml (seed 001's [servers.X] and an agent's
// [mcp.servers.X]): it connects to them over stdio (a host process, or a
// sandbox the caller starts through a Starter) or streamable HTTP, lists
// their tools, offers each as "<server>__<tool>", and routes calls to them.
//
// A downstream server is treated as untrusted, like sandboxed code: every
// message it sends is bounded in size, non-JSON output is dropped and
// counted, each request it is sent is bounded in time, a bearer token it was
// given never leaves this package in an error, a log line, a tool
// definition or a result, and no failure of one server (a missing command,
// a crash, a hang, garbage) reaches the others or the Manager. What a
// server may ask of vial is nothing: the client declares no capabilities,
// so sampling, elicitation and roots requests from a server are refused.
//
// The package does not read configuration (cmd/vial maps config.MCPServer
// and config.MCPSettings onto Server) and does not decide policy: the
// caller offers the tools under vial's own policy and audit.
package downstream
