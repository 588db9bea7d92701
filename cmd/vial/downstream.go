package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/mcp/downstream"
	"github.com/vial-run/vial/policy"
)

// downstreamFromConfig maps the agent's MCP servers (mcp.toml merged with
// the layers' [mcp.servers]) onto the MCP front end's options. Servers
// that are disabled are left out. A server name that cannot namespace its
// tools is an error: renaming it would make patterns like git__* miss.
func downstreamFromConfig(res *config.Resolved) (*mcp.DownstreamOptions, error) {
	set := downstream.Settings{
		ConnectionTimeout: res.MCPSettings.ConnectionTimeout,
		ToolTimeout:       res.MCPSettings.ToolTimeout,
		MaxRetries:        res.MCPSettings.MaxRetries,
		CacheTools:        res.MCPSettings.CacheTools,
		CacheTTL:          res.MCPSettings.CacheTTL,
	}
	o := &mcp.DownstreamOptions{Binds: map[string][]string{}, Version: version}
	for _, name := range slices.Sorted(keys(res.MCPServers)) {
		s := res.MCPServers[name]
		if !s.Enabled {
			continue
		}
		if err := downstream.ValidateServerName(name); err != nil {
			return nil, fmt.Errorf("mcp server %q: %w", name, err)
		}
		d := downstream.Server{
			Name:        name,
			Title:       s.Title,
			AutoStart:   s.AutoStart,
			Transport:   downstream.Transport(s.Transport),
			Command:     s.Command,
			Sandboxed:   s.Sandboxed,
			BearerToken: s.APIKey,
			Settings:    set,
		}
		if d.Transport != downstream.TransportStdio {
			d.URL = s.URL
		}
		if len(s.Binds) > 0 {
			o.Binds[name] = s.Binds
		}
		o.Servers = append(o.Servers, d)
	}
	if len(o.Servers) == 0 {
		return nil, nil
	}
	return o, nil
}

// addDownstreamRules makes the policy know the downstream servers' tools:
// every tool of an enabled server is enabled (SERVER__*), except those
// tools.disabled names; require_confirmation and auto_approve_patterns
// apply to the namespaced names as to vial's own.
func addDownstreamRules(r *policy.Rules, res *config.Resolved, o *mcp.DownstreamOptions) {
	if o == nil {
		return
	}
	for _, s := range o.Servers {
		// Tool annotations come from the (untrusted) server and never
		// decide anything: a server's tools ask only when the operator's
		// lists say so.
		r.Tools[s.Name+downstream.Separator+"*"] = policy.ToolRules{Enabled: true}
	}
	for _, d := range res.Tools.Disabled {
		if strings.Contains(d, downstream.Separator) {
			r.Tools[d] = policy.ToolRules{Enabled: false}
		}
	}
}

func keys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
