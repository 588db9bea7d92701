package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vial-run/vial/mcp/downstream"
	"github.com/vial-run/vial/service"
)

// Downstream MCP servers (seed 001's mcp.toml) behind vial. Each session
// has its own connections to the configured servers — a sandboxed stdio
// server binds that session's /workspace, so it sees that session's files
// and no other's — and their tools are offered as SERVER__TOOL. Every call
// goes through the service, which decides it (policy, approval) and
// records it like a call of vial's own tools.

// DownstreamOptions configure the downstream servers.
type DownstreamOptions struct {
	Servers []downstream.Server
	// Binds are host directories bound read-only into a sandboxed
	// server's sandbox at the same path, by server name (its program, when
	// it is not in the image).
	Binds map[string][]string
	// Version is vial's version in its clientInfo.
	Version string
}

// downstreams holds each session's connections.
type downstreams struct {
	srv  *Server
	opts DownstreamOptions

	mu       sync.Mutex
	managers map[string]*downstream.Manager // service session ID → its connections
	offered  map[string]bool                // tools registered with mcp-go
}

func newDownstreams(srv *Server, o *DownstreamOptions) *downstreams {
	if o == nil || len(o.Servers) == 0 {
		return nil
	}
	return &downstreams{srv: srv, opts: *o, managers: map[string]*downstream.Manager{}, offered: map[string]bool{}}
}

// manager returns sess's connections, opening them on first use: servers
// with auto_start connect at once, in the background.
func (d *downstreams) manager(sess *service.Session) (*downstream.Manager, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m := d.managers[sess.ID()]; m != nil {
		return m, false, nil
	}
	starter := func(ctx context.Context, server string, argv, env []string) (io.WriteCloser, io.Reader, io.Closer, error) {
		p, err := sess.StartProgram(ctx, argv, env, d.opts.Binds[server])
		if err != nil {
			return nil, nil, nil, err
		}
		// The server's stderr is its log: drained, or the server would
		// block once the pipe fills.
		go io.Copy(io.Discard, p.Stderr())
		return p.Stdin(), p.Stdout(), p, nil
	}
	m, err := downstream.NewManager(downstream.Options{
		Servers:        d.opts.Servers,
		Starter:        starter,
		Log:            d.srv.log.With("session", sess.ID()),
		OnToolsChanged: func() { d.sync(context.Background(), sess) },
		ResponseBudget: d.srv.budget / 2,
		ClientVersion:  d.opts.Version,
	})
	if err != nil {
		return nil, false, err
	}
	d.managers[sess.ID()] = m
	go func() {
		if err := m.Start(context.WithoutCancel(context.Background())); err != nil {
			d.srv.log.Warn("starting downstream MCP servers", "session", sess.ID(), "error", err)
		}
		d.sync(context.Background(), sess)
	}()
	return m, true, nil
}

// end closes the connections of a session that ended.
func (d *downstreams) end(sessionID string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	m := d.managers[sessionID]
	delete(d.managers, sessionID)
	d.mu.Unlock()
	if m != nil {
		if err := m.Close(); err != nil {
			d.srv.log.Warn("closing downstream MCP servers", "session", sessionID, "error", err)
		}
	}
}

// closeAll closes every session's connections.
func (d *downstreams) closeAll() {
	if d == nil {
		return
	}
	d.mu.Lock()
	ids := make([]string, 0, len(d.managers))
	for id := range d.managers {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		d.end(id)
	}
}

// sync lists sess's downstream tools and makes vial offer exactly those:
// new ones are added, gone ones removed; mcp-go tells the client
// (notifications/tools/list_changed).
func (d *downstreams) sync(ctx context.Context, sess *service.Session) {
	m, _, err := d.manager(sess)
	if err != nil {
		d.srv.log.Warn("downstream MCP servers", "error", err)
		return
	}
	tools := m.Tools(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	now := map[string]bool{}
	var add []mcpserver.ServerTool
	for _, t := range tools {
		now[t.Def.Name] = true
		if !d.offered[t.Def.Name] {
			add = append(add, mcpserver.ServerTool{Tool: t.Def, Handler: d.srv.wrap(t.Def.Name, d.handle)})
		}
	}
	var gone []string
	for name := range d.offered {
		if !now[name] {
			gone = append(gone, name)
		}
	}
	d.offered = now
	if len(add) > 0 {
		d.srv.mcp.AddTools(add...)
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		d.srv.mcp.DeleteTools(gone...)
	}
}

// handle serves a call of a downstream tool.
func (d *downstreams) handle(s *Server, ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	name := c.req.Params.Name
	server, _, _ := downstream.SplitName(name)
	m, fresh, err := d.manager(c.sess)
	if err != nil {
		return nil, err
	}
	if fresh {
		d.sync(ctx, c.sess) // a call before any listing: learn the tools first
	}
	var args map[string]any
	if raw := c.req.Params.RawArguments; len(raw) > 0 {
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, userErrorf("arguments must be a JSON object")
		}
	} else {
		args = c.req.GetArguments()
	}
	c.note(slog.String("server", server))
	var res *mcpgo.CallToolResult
	err = c.sess.Downstream(ctx, service.ToolCall{Tool: name, Server: server, Args: args}, func(ctx context.Context) (bool, error) {
		r, err := m.Call(ctx, name, args)
		if err != nil {
			return false, err
		}
		res = r
		return r.IsError, nil
	})
	if err != nil {
		var de *downstream.Error
		if errors.As(err, &de) {
			// It names the server and what went wrong, and carries no
			// secret: fit for the model.
			return nil, &userError{msg: de.Error(), err: err}
		}
		return nil, err
	}
	if res.IsError {
		c.outcome = "tool_error"
	}
	return res, nil
}
