package main

import (
	"flag"
	"fmt"
	"slices"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/mcp"
)

// applyServeConfig applies the layered configuration of agent (from
// configDir, "" for the default) onto cfg: runtime, image, limits, the
// call timeout — which is also the ceiling a model cannot raise — and the
// enabled tools. Flags given explicitly on the command line win.
func applyServeConfig(g *globals, fs *flag.FlagSet, configDir, agent string, cfg *serveConfig) error {
	if configDir == "" {
		configDir = envOr("VIAL_CONFIG_DIR", "/etc/vial")
	}
	res, err := loadResolved(configDir, agent, nil)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		g.Log.Warn(w)
	}
	if res.Mode == config.ModeLocal {
		// Deny by default: vial serve never runs a model's code unsandboxed.
		return fmt.Errorf("agent %q uses sandbox.mode = \"local\" (no isolation); vial serve only runs sandboxed code: set sandbox.mode = \"docker\"", agent)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["runtime"] && res.Runtime != "" {
		cfg.Runtime = res.Runtime
	}
	if !set["image"] && res.Image != "" {
		cfg.Image = res.Image
	}
	limitsFromConfig(res, set, &cfg.Limits)
	if t := res.Timeout(); t > 0 {
		if !set["timeout"] {
			cfg.MCP.Limits.DefaultTimeout = t
		}
		if !set["max-timeout"] {
			cfg.MCP.Limits.MaxTimeout = t
		}
	}
	if !set["tools"] {
		// The configuration names tools canonically (run_python and
		// execute_python are run_code); offer every MCP tool whose
		// canonical name is enabled.
		cfg.MCP.Tools = nil
		for _, n := range mcp.ToolNames() {
			if slices.Contains(res.Tools.Enabled, config.CanonicalTool(n)) {
				cfg.MCP.Tools = append(cfg.MCP.Tools, n)
			}
		}
		if len(cfg.MCP.Tools) == 0 {
			return fmt.Errorf("agent %q enables no tool vial implements (enabled: %v)", agent, res.Tools.Enabled)
		}
	}
	g.Log.Info("configuration applied", "agent", agent, "runtime", cfg.Runtime, "image", cfg.Image, "tools", cfg.MCP.Tools)
	return nil
}
