// Package mcp is vial's Model Context Protocol front end: the tool schemas,
// thin handlers that decode arguments, call the application core
// (package service) and render its answers, and the stdio and streamable
// HTTP transports (built on mark3labs/mcp-go).
//
// The package decides nothing about sandboxes, limits, paths or
// ownership — the service does, the same for every front end. What is
// MCP's alone is here: one service session per MCP session (the stdio
// client; each HTTP session, with IDs vial issues), the response budget
// (no result larger than clients accept), bounded writes to a client that
// stops reading, and progress notifications.
//
// Results and failures. A program that fails (an exception, a non-zero
// exit, a timeout, an OOM kill) is a normal tool result: isError is false,
// the text starts with a status line that says what happened, and the
// structured content carries every field. isError is true only for tool
// failures: a bad argument, an unknown or dead context, a refused path, a
// size limit, a sandbox that could not start. Their text is written for the
// model; internal details (host paths, runtime stderr) go to the log only.
package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/service"
)

// Options configure a Server. Service is required; every other zero
// field has a documented default.
type Options struct {
	// Service is the application core every tool calls. The server opens
	// one session in it per MCP session (the stdio client, each HTTP
	// session) and closes it when the MCP session ends.
	Service *service.Service
	// Tools names the enabled tools; nil enables every implemented tool
	// (ToolNames). An unknown name is an error, so a typo in configuration
	// cannot silently change what is offered.
	Tools []string
	// Log receives one record per tool call (name, duration, outcome; never
	// code or file contents) and every internal error. nil discards. It must
	// not write to the stdio transport's output.
	Log *slog.Logger
	// Version is reported to clients as the server version.
	Version string
	// Instructions are offered to the client for the model's system
	// prompt; "" uses a built-in text describing the tools.
	Instructions string
	// ProgressInterval is how often notifications/progress are sent while
	// a call that carries a progressToken runs; 0 means 2 s.
	ProgressInterval time.Duration
	// MaxMessageBytes caps one JSON-RPC message on stdio and one HTTP
	// request body; 0 means 32 MiB. Larger messages are answered with an
	// error and skipped; the server keeps serving.
	MaxMessageBytes int64
	// ResponseBudget caps one tool result as the client receives it (text,
	// structured content and images together, JSON-encoded); 0 means
	// DefaultResponseBudget. Output beyond it is cut, with a notice the
	// model can read.
	ResponseBudget int
	// WriteTimeout bounds one write of a message to the stdio client; a
	// client that stops reading for longer is disconnected. 0 means 30 s.
	WriteTimeout time.Duration
	// LegacyProtocol answers server/discover with -32601 Method not found,
	// so clients fall back to the initialize handshake (protocol
	// 2025-11-25). By default mcp-go serves server/discover and clients
	// that speak 2026-07-28 use it.
	LegacyProtocol bool
	// OpenWorld says sandboxes may reach the network; it sets openWorldHint
	// on the code-running tools.
	OpenWorld bool
	// Downstream are the downstream MCP servers whose tools vial offers as
	// SERVER__TOOL; nil for none.
	Downstream *DownstreamOptions
	// Resources are read-only MCP resources (resources/list,
	// resources/read), e.g. the metrics. With none, the server does not
	// declare the resources capability and resources/list answers -32601.
	Resources []Resource
	// HTTPRoutes are other handlers served on the HTTP listener beside
	// /mcp (by ServeMux pattern): the REST API, metrics, the page. Each
	// does its own authentication; the MCP token does not cover them.
	HTTPRoutes map[string]http.Handler
}

// DefaultResponseBudget keeps every result well under the 10 MiB at which
// mainstream clients (the official TypeScript SDK) drop the connection.
const DefaultResponseBudget = 4 << 20

// Server is a configured MCP server. It is safe for concurrent use; the
// tool calls it serves run concurrently.
type Server struct {
	svc       *service.Service
	limits    service.Limits
	log       *slog.Logger
	progress  time.Duration
	maxMsg    int64
	budget    int
	writeTO   time.Duration
	legacy    bool
	openWorld bool
	mcp       *mcpserver.MCPServer
	toolNames []string
	sessions  *sessions
	routes    map[string]http.Handler
	down      *downstreams
}

// ToolNames lists every tool this package implements, sorted.
func ToolNames() []string {
	names := make([]string, 0, len(toolTable))
	for _, t := range toolTable {
		names = append(names, t.name)
	}
	sort.Strings(names)
	return names
}

// NewServer validates opts and builds a Server. Every problem with opts is
// reported at once.
func NewServer(opts Options) (*Server, error) {
	var errs []error
	if opts.Service == nil {
		errs = append(errs, errors.New("no service"))
	}
	maxMsg := opts.MaxMessageBytes
	if maxMsg == 0 {
		maxMsg = 32 << 20
	}
	if maxMsg < 1<<10 {
		errs = append(errs, fmt.Errorf("max message size %d is below 1 KiB", maxMsg))
	}
	budget := opts.ResponseBudget
	if budget == 0 {
		budget = DefaultResponseBudget
	}
	if budget < 64<<10 {
		errs = append(errs, fmt.Errorf("response budget %d is below 64 KiB", budget))
	}
	enabled := opts.Tools
	if enabled == nil {
		enabled = ToolNames()
	}
	known := ToolNames()
	for _, n := range enabled {
		if !slices.Contains(known, n) {
			errs = append(errs, fmt.Errorf("unknown tool %q (known: %v)", n, known))
		}
	}
	if err := checkResources(opts.Resources); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring mcp server: %w", err)
	}

	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := opts.ProgressInterval
	if progress <= 0 {
		progress = 2 * time.Second
	}
	writeTO := opts.WriteTimeout
	if writeTO <= 0 {
		writeTO = 30 * time.Second
	}
	instructions := opts.Instructions
	if instructions == "" {
		instructions = defaultInstructions
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	s := &Server{
		svc:       opts.Service,
		limits:    opts.Service.Limits(),
		log:       log,
		progress:  progress,
		maxMsg:    maxMsg,
		budget:    budget,
		writeTO:   writeTO,
		legacy:    opts.LegacyProtocol,
		openWorld: opts.OpenWorld,
		routes:    opts.HTTPRoutes,
	}
	s.sessions = newSessions(s)
	s.down = newDownstreams(s, opts.Downstream)
	hooks := &mcpserver.Hooks{}
	hooks.AddOnUnregisterSession(func(ctx context.Context, cs mcpserver.ClientSession) { s.sessions.end(cs.SessionID()) })
	if s.down != nil {
		// Downstream tools are listed when the client lists tools (the
		// first use of a server without auto_start).
		hooks.AddBeforeListTools(func(ctx context.Context, _ any, _ *mcpgo.ListToolsRequest) {
			if sess, err := s.sessions.of(ctx); err == nil {
				s.down.sync(ctx, sess)
			}
		})
	}
	serverOpts := []mcpserver.ServerOption{
		mcpserver.WithToolCapabilities(s.down != nil), // list_changed passes downstream changes on
		mcpserver.WithInstructions(instructions),
		mcpserver.WithTitle("vial sandbox"),
		mcpserver.WithRecovery(),
		mcpserver.WithHooks(hooks),
	}
	if len(opts.Resources) > 0 {
		serverOpts = append(serverOpts, mcpserver.WithResourceCapabilities(false, false))
	}
	s.mcp = mcpserver.NewMCPServer("vial", version, serverOpts...)
	s.addResources(opts.Resources)
	var tools []mcpserver.ServerTool
	for _, t := range toolTable {
		if !slices.Contains(enabled, t.name) {
			continue
		}
		tools = append(tools, mcpserver.ServerTool{Tool: t.build(s), Handler: s.wrap(t.name, t.handle)})
		s.toolNames = append(s.toolNames, t.name)
	}
	sort.Strings(s.toolNames)
	if len(tools) > 0 {
		s.mcp.AddTools(tools...)
	}
	return s, nil
}

// Close ends every session's downstream connections (their sandboxes and
// processes). Call it when serving has ended, before closing the service.
func (s *Server) Close() { s.down.closeAll() }

// Tools lists the tools this server offers, sorted.
func (s *Server) Tools() []string { return slices.Clone(s.toolNames) }

// MCPServer exposes the underlying mcp-go server, for in-process clients
// and for adding resources or prompts from other packages.
func (s *Server) MCPServer() *mcpserver.MCPServer { return s.mcp }

// toolDef is one entry of toolTable: how to describe a tool and how to
// serve it.
type toolDef struct {
	name   string
	build  func(s *Server) mcpgo.Tool
	handle func(s *Server, ctx context.Context, c *call) (*mcpgo.CallToolResult, error)
}

// call carries one tool call through its handler; handlers record what the
// log line should say about it.
type call struct {
	req     mcpgo.CallToolRequest
	sess    *service.Session // the caller's session in the service
	served  bool             // the call reached the service (core was called)
	outcome string           // "" = ok
	attrs   []slog.Attr
}

func (c *call) note(attrs ...slog.Attr) { c.attrs = append(c.attrs, attrs...) }

// core returns the caller's session for the one service call a handler
// makes, and notes that the service saw the call (and published its
// event).
func (c *call) core() *service.Session {
	c.served = true
	return c.sess
}

// wrap turns a handler into an mcp-go handler that decodes failures into
// isError results and logs the call.
func (s *Server) wrap(name string, h func(*Server, context.Context, *call) (*mcpgo.CallToolResult, error)) mcpserver.ToolHandlerFunc {
	return func(ctx context.Context, req mcpgo.CallToolRequest) (res *mcpgo.CallToolResult, err error) {
		start := time.Now()
		c := &call{req: req}
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("tool handler panicked", "tool", name, "panic", r)
				res, err = toolFailure("internal error in vial (see the server log)"), nil
				c.outcome = "internal_error"
			}
			level := slog.LevelInfo
			outcome := c.outcome
			if outcome == "" {
				outcome = "ok"
			}
			if outcome == "tool_error" || outcome == "internal_error" {
				level = slog.LevelWarn
			}
			attrs := append([]slog.Attr{
				slog.String("tool", name),
				slog.Duration("duration", time.Since(start)),
				slog.String("outcome", outcome),
			}, c.attrs...)
			s.log.LogAttrs(context.WithoutCancel(ctx), level, "tool call", attrs...)
		}()
		sess, serr := s.sessions.of(ctx)
		if serr != nil {
			return s.errorResult(ctx, c, serr), nil
		}
		c.sess = sess
		res, herr := h(s, service.WithAsking(ctx, s.asking(ctx, req)), c)
		var ar *service.ApprovalRequired
		if errors.As(herr, &ar) {
			res, herr = s.approve(ctx, c, h, ar)
		}
		if herr != nil {
			if !c.served {
				// Refused here, before the service: report it so the
				// metrics and the audit log see every call.
				sess.Refused(name, req.GetArguments(), time.Since(start), herr)
			}
			return s.errorResult(ctx, c, herr), nil
		}
		return s.withinBudget(c, res), nil
	}
}

// toolFailure is an isError result carrying msg for the model.
func toolFailure(msg string) *mcpgo.CallToolResult {
	return &mcpgo.CallToolResult{
		Content: []mcpgo.Content{mcpgo.NewTextContent(human.Valid(msg))},
		IsError: true,
	}
}

const defaultInstructions = `vial runs code in hardened, isolated Linux sandboxes with no network by default.

- run_code keeps state between calls (variables, imports, functions, files) in a context, like a notebook kernel. Without context_id it uses one default context per language (python, javascript, bash). create_context gives you extra, separate contexts; stop_context releases one.
- run_shell runs shell commands in a persistent bash context (the working directory and variables persist).
- execute_python runs a self-contained script in a fresh throw-away sandbox; nothing persists.
- The default contexts (no context_id) share one /workspace directory, so files written by one tool are visible to the others; a context from create_context has a private /workspace of its own. read_file, write_file, list_directory, search_files and delete_file work on it; paths are relative to /workspace (or start with /workspace/). Nothing outside /workspace is reachable.
- A program that fails is a normal result: read the status line (first line) and the error and traceback. A timeout interrupts the code and the context normally survives; an out-of-memory kill ends the context.`

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
