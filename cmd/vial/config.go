package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/mcp"
)

// configImplementedTools are the canonical names of the tools the MCP
// server has handlers for. An enabled tool outside this set is reported by
// "vial config validate" and not offered.
var configImplementedTools = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range mcp.ToolNames() {
		m[config.CanonicalTool(n)] = true
	}
	return m
}()

func init() {
	register("config", "validate, show and scaffold the layered configuration", cmdConfig)
}

const configUsage = `usage: vial config COMMAND [flags]

commands:
  validate [--agent ID] [--set k=v]...     check every file (or one agent) and report all problems
  show [--agent ID] [--set k=v]... [--explain]
                                           print the merged configuration, secrets masked
  templates                                list environment templates
  tools [--agent ID]                       list tool definitions
  mcp-servers [--agent ID]                 list downstream MCP servers
  init DIR                                 write a commented starter configuration into DIR

every command takes --config-dir DIR (default $VIAL_CONFIG_DIR or /etc/vial)
`

// loadResolved resolves the configuration of an agent ("" for the system
// defaults) with --set overrides, for run and serve. Warnings are in the
// result's Warnings; the caller prints them.
func loadResolved(configDir, agentID string, sets []string) (*config.Resolved, error) {
	return config.Load(configOptions(configDir, agentID, sets))
}

func configOptions(configDir, agentID string, sets []string) config.Options {
	return config.Options{
		Dir:         configDir,
		AgentID:     agentID,
		Sets:        sets,
		Implemented: configImplementedTools,
	}
}

// configSets collects repeated --set flags.
type configSets []string

func (s *configSets) String() string     { return strings.Join(*s, " ") }
func (s *configSets) Set(v string) error { *s = append(*s, v); return nil }

// configFlags are the flags the config subcommands share.
type configFlags struct {
	fs      *flag.FlagSet
	dir     string
	agent   string
	sets    configSets
	explain bool
}

func newConfigFlags(g *globals, name string, agent, sets, explain bool) *configFlags {
	f := &configFlags{fs: newFlagSet(g, "vial config "+name)}
	f.fs.StringVar(&f.dir, "config-dir", envOr("VIAL_CONFIG_DIR", config.DefaultDir), "configuration directory")
	if agent {
		f.fs.StringVar(&f.agent, "agent", "", "agent ID (agents/ID/agent.toml)")
	}
	if sets {
		f.fs.Var(&f.sets, "set", "runtime override key=value (repeatable), e.g. sandbox.timeout_seconds=60")
	}
	if explain {
		f.fs.BoolVar(&f.explain, "explain", false, "show which layer and file:line:col each value came from")
	}
	return f
}

func cmdConfig(_ context.Context, g *globals, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(g.Stderr, configUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "validate":
		return configValidate(g, rest)
	case "show":
		return configShow(g, rest)
	case "templates":
		return configTemplates(g, rest)
	case "tools":
		return configTools(g, rest)
	case "mcp-servers":
		return configMCPServers(g, rest)
	case "init":
		return configInit(g, rest)
	}
	fmt.Fprintf(g.Stderr, "vial config: unknown command %q\n\n%s", sub, configUsage)
	return exitUsage
}

// parse parses flags; ok is false with the exit code to return.
func (f *configFlags) parse(args []string, positional int) (code int, ok bool) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return exitUsage, false
	}
	if f.fs.NArg() != positional {
		fmt.Fprintf(f.fs.Output(), "%s: want %d argument(s), got %d\n", f.fs.Name(), positional, f.fs.NArg())
		return exitUsage, false
	}
	return 0, true
}

// configReport prints configuration errors, one per line, and returns the
// exit code 1.
func configReport(g *globals, err error) int {
	errs := config.Errors(err)
	if len(errs) == 0 {
		fmt.Fprintf(g.Stderr, "vial config: %v\n", err)
		return 1
	}
	for _, e := range errs {
		fmt.Fprintln(g.Stderr, e)
	}
	if len(errs) > 1 {
		fmt.Fprintf(g.Stderr, "%d problems\n", len(errs))
	}
	return 1
}

func configWarn(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "WARNING: %s\n", s)
	}
}

func configValidate(g *globals, args []string) int {
	f := newConfigFlags(g, "validate", true, true, false)
	if code, ok := f.parse(args, 0); !ok {
		return code
	}
	opts := configOptions(f.dir, f.agent, f.sets)
	rep, err := config.Validate(opts)
	if rep != nil {
		configWarn(g.Stderr, rep.Warnings)
	}
	if err != nil {
		return configReport(g, err)
	}
	// What the configuration asks for that vial does not apply: the
	// system defaults, then each agent.
	seen := map[string]bool{}
	for _, agent := range append([]string{""}, rep.Agents...) {
		res, err := config.Load(configOptions(f.dir, agent, f.sets))
		if err != nil {
			continue // reported above
		}
		for _, w := range unenforced(res) {
			if seen[w] {
				continue // as for the system defaults
			}
			if agent != "" {
				w = "agent " + agent + ": " + w
			}
			if !seen[w] {
				seen[w] = true
				fmt.Fprintf(g.Stderr, "NOT ENFORCED: %s\n", w)
			}
		}
	}
	fmt.Fprintf(g.Stdout, "configuration is valid: %d files, %d templates, %d agents\n", len(rep.Files), len(rep.Templates), len(rep.Agents))
	return 0
}

func configShow(g *globals, args []string) int {
	f := newConfigFlags(g, "show", true, true, true)
	if code, ok := f.parse(args, 0); !ok {
		return code
	}
	r, err := config.Load(configOptions(f.dir, f.agent, f.sets))
	if err != nil {
		return configReport(g, err)
	}
	configWarn(g.Stderr, r.Warnings)
	who := "the system defaults"
	if r.AgentID != "" {
		who = "agent " + r.AgentID
	}
	fmt.Fprintf(g.Stdout, "# vial configuration of %s\n# merged, lowest layer first: %s\n", who, strings.Join(r.Chain, ", "))
	if len(f.sets) > 0 {
		fmt.Fprintf(g.Stdout, "# runtime overrides: --set %s\n", strings.Join(f.sets, " --set "))
	}
	if len(r.Tools.Unimplemented) > 0 {
		fmt.Fprintf(g.Stdout, "# enabled but not implemented, not offered: %s\n", strings.Join(r.Tools.Unimplemented, ", "))
	}
	fmt.Fprintln(g.Stdout)
	if err := r.Format(g.Stdout, f.explain); err != nil {
		fmt.Fprintf(g.Stderr, "vial config show: %v\n", err)
		return 1
	}
	return 0
}

func configTemplates(g *globals, args []string) int {
	f := newConfigFlags(g, "templates", false, false, false)
	if code, ok := f.parse(args, 0); !ok {
		return code
	}
	ts, err := config.Templates(configOptions(f.dir, "", nil))
	if err != nil {
		configReport(g, err)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tEXTENDS\tDESCRIPTION\tFILE")
	for _, t := range ts {
		ext := t.Extends
		if ext == "" {
			ext = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, ext, t.Description, t.File)
	}
	tw.Flush()
	if err != nil {
		return 1
	}
	return 0
}

func configTools(g *globals, args []string) int {
	f := newConfigFlags(g, "tools", true, false, false)
	if code, ok := f.parse(args, 0); !ok {
		return code
	}
	r, err := config.Load(configOptions(f.dir, f.agent, nil))
	if err != nil {
		return configReport(g, err)
	}
	names := make([]string, 0, len(r.ToolDefs))
	for n := range r.ToolDefs {
		names = append(names, n)
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tALIASES\tCATEGORY\tSTATUS\tENABLED\tCONFIRM\tDESCRIPTION")
	for _, n := range names {
		d := r.ToolDefs[n]
		p := r.Policy(n)
		status := "implemented"
		if !d.Implemented {
			status = "not implemented"
		}
		enabled := "no"
		switch {
		case p.Enabled:
			enabled = "yes"
		case slices.Contains(r.Tools.Unimplemented, n):
			enabled = "yes, not offered"
		}
		confirm := "no"
		if p.ConfirmationRequired {
			confirm = "yes"
		}
		aliases := strings.Join(d.Aliases, ",")
		if aliases == "" {
			aliases = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, aliases, d.Category, status, enabled, confirm, d.Description)
	}
	tw.Flush()
	return 0
}

func configMCPServers(g *globals, args []string) int {
	f := newConfigFlags(g, "mcp-servers", true, false, false)
	if code, ok := f.parse(args, 0); !ok {
		return code
	}
	r, err := config.Load(configOptions(f.dir, f.agent, nil))
	if err != nil {
		return configReport(g, err)
	}
	names := make([]string, 0, len(r.MCPServers))
	for n := range r.MCPServers {
		names = append(names, n)
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTRANSPORT\tENABLED\tURL\tFROM")
	for _, n := range names {
		s := r.MCPServers[n]
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", n, s.Transport, s.Enabled, s.URL, r.Provenance["mcp.servers."+n+".url"])
	}
	tw.Flush()
	return 0
}

func configInit(g *globals, args []string) int {
	f := newConfigFlags(g, "init", false, false, false)
	f.fs.Usage = func() { fmt.Fprintln(g.Stderr, "usage: vial config init DIR") }
	if code, ok := f.parse(args, 1); !ok {
		return code
	}
	dir := f.fs.Arg(0)
	written, err := config.WriteStarter(dir)
	for _, p := range written {
		fmt.Fprintln(g.Stdout, p)
	}
	if err != nil {
		fmt.Fprintf(g.Stderr, "vial config init: %v\n", err)
		return 1
	}
	fmt.Fprintf(g.Stdout, "\nwrote a starter configuration; check it with: vial config validate --config-dir %s\n", dir)
	return 0
}
