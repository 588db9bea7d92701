package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/service"
)

// isolation ranks the runtimes by how strongly they isolate: an
// environment a model selects may move a context to a stronger runtime,
// never to a weaker one than the agent's.
var isolation = map[string]int{"runc": 1, "crun": 1, "runsc": 2}

// localAckFlag is the flag with which the operator acknowledges that
// sandbox.mode = "local" runs code with no isolation.
const localAckFlag = "allow-unsandboxed"

// applyServeConfig applies the layered configuration of agent (from
// configDir, "" for the default) onto cfg: runtime, image, limits, the
// call timeout — which is also the ceiling a model cannot raise — the
// enabled tools, the sandbox environment, the named environments
// create_context may select, [logging] and sandbox.mode. Flags given
// explicitly on the command line win.
func applyServeConfig(g *globals, fs *flag.FlagSet, configDir, agent string, cfg *serveConfig) error {
	if configDir == "" {
		configDir = envOr("VIAL_CONFIG_DIR", "/etc/vial")
	}
	res, err := loadResolved(configDir, agent, nil)
	if err != nil {
		return err
	}
	if err := applyLogging(g, res.Logging, res.SecretValues()); err != nil {
		return err
	}
	cfg.Secrets = res.SecretValues()
	cfg.RetentionDays = res.Logging.RetentionDays
	for _, w := range res.Warnings {
		g.Log.Warn(w)
	}
	for _, w := range unenforced(res) {
		g.Log.Warn("configuration not enforced: " + w)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if res.Mode == config.ModeLocal {
		if !cfg.AllowUnsandboxed {
			return localRefusal(agent, res, fmt.Sprintf("vial serve refuses it unless the operator acknowledges it with --%s; for sandboxed code set sandbox.mode = \"docker\"", localAckFlag))
		}
		cfg.Local = true
	}
	if !set["runtime"] && res.Runtime != "" {
		cfg.Env.Runtime = res.Runtime
	}
	if !set["image"] && res.Image != "" {
		cfg.Env.Image = res.Image
	}
	limitsFromConfig(res, set, &cfg.Env.Limits)
	if t := res.Timeout(); t > 0 {
		if !set["timeout"] {
			cfg.Limits.DefaultTimeout = t
		}
		if !set["max-timeout"] {
			cfg.Limits.MaxTimeout = t
		}
	}
	cfg.Env.Env = envList(res.Shell.Env)
	// The network: the agent's own sandboxes, and http_request and
	// fetch_url (which vial runs itself), under the same allowlist; the
	// http_request tool's blocked_hosts always win.
	blocked := res.Policy("http_request").Constraints.BlockedHosts
	cfg.HTTP = &service.NetworkPolicy{Allowed: res.Network.AllowedHosts, Blocked: blocked, Hosts: res.Network.Hosts, AllowPrivateCIDRs: res.Network.AllowPrivateCIDRs}
	if !res.Network.Enabled {
		cfg.HTTP.Allowed = nil // nothing is reachable
	} else {
		cfg.Env.Network = cfg.HTTP
	}
	if !set["tools"] {
		// The configuration names tools canonically (run_python and
		// execute_python are run_code); offer every MCP tool whose
		// canonical name is enabled.
		// The network tools are left out while the network is closed:
		// they could only ever answer so.
		cfg.MCP.Tools = nil
		var closed []string
		for _, n := range mcp.ToolNames() {
			switch {
			case !slices.Contains(res.Tools.Enabled, config.CanonicalTool(n)):
			case mcp.NeedsNetwork(n) && !res.Network.Enabled:
				closed = append(closed, n)
			default:
				cfg.MCP.Tools = append(cfg.MCP.Tools, n)
			}
		}
		if len(closed) > 0 {
			g.Log.Warn("tools not offered: the agent's network is closed ([sandbox.network] enabled = false)", "tools", closed)
		}
		if len(cfg.MCP.Tools) == 0 {
			return fmt.Errorf("agent %q enables no tool vial implements (enabled: %v)", agent, res.Tools.Enabled)
		}
	}
	envs, err := loadEnvironments(configDir, *cfg)
	if err != nil {
		return err
	}
	cfg.Environments = envs
	// The policy covers what is offered: the configuration's tools, or
	// the operator's --tools.
	offered := cfg.MCP.Tools
	if offered == nil {
		offered = mcp.ToolNames()
	}
	cfg.Policy = policyFromConfig(res, offered)
	down, err := downstreamFromConfig(res)
	if err != nil {
		return err
	}
	cfg.MCP.Downstream = down
	addDownstreamRules(cfg.Policy, res, down)
	if err := cfg.Policy.Validate(); err != nil {
		return fmt.Errorf("the configuration's policy: %w", err)
	}
	cfg.ApprovalTimeout = res.HITL.Timeout
	cfg.OperatorApprovals = res.HITL.OperatorQueue
	if res.Cache.Enabled {
		cfg.Cache = service.CacheOptions{Entries: res.Cache.MaxEntries, TTL: res.Cache.TTL}
	}
	if !set["pool-size"] {
		cfg.Pool = poolFromConfig(res.Pool)
	}
	cfg.Agent = agent
	kv, err := blockedImportsEnv(cfg.Policy)
	if err != nil {
		return err
	}
	if kv != "" {
		cfg.Env.Env = append(cfg.Env.Env, kv)
		for name, e := range cfg.Environments {
			e.Env = append(e.Env, kv)
			cfg.Environments[name] = e
		}
	}
	g.Log.Info("configuration applied", "agent", agent, "runtime", cfg.Env.Runtime, "image", cfg.Env.Image, "tools", cfg.MCP.Tools,
		"environments", slices.Sorted(maps.Keys(envs)), "local", cfg.Local)
	return nil
}

// localRefusal is the error for sandbox.mode = "local" that is not run:
// what the configuration asks for, where, what it would mean, and remedy.
func localRefusal(agent string, res *config.Resolved, remedy string) error {
	who := "the system defaults"
	if agent != "" {
		who = fmt.Sprintf("agent %q", agent)
	}
	return fmt.Errorf("%s uses sandbox.mode = \"local\" (%s): code would run directly on this host with NO ISOLATION "+
		"(no namespaces, seccomp, cgroup limits or read-only root; it could read and change whatever its user can, and reach any network); %s",
		who, res.Provenance["sandbox.mode"].Pos, remedy)
}

// loadEnvironments resolves every template of the configuration as an
// environment create_context may select, tightened to the ceilings of
// cfg (the agent's configuration with the operator's flags). A template
// that does not resolve is an error: the configuration is the source of
// truth, and config validate reports the same problem.
func loadEnvironments(configDir string, cfg serveConfig) (map[string]service.Environment, error) {
	opts := configOptions(configDir, "", nil)
	list, err := config.Templates(opts)
	if err != nil {
		return nil, err
	}
	out := map[string]service.Environment{}
	var errs []error
	for _, t := range list {
		opts.Template = t.Name
		res, err := config.Load(opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", t.Name, err))
			continue
		}
		e := tightenEnvironment(t.Name, res, cfg)
		// Its packages: checked against its image when a model selects
		// it (service.EngineProvider refuses an image that lacks one).
		if len(res.Packages) > 0 {
			e.Packages, _ = rootfs.DebianPackages(res.Packages)
			e.BuildCommand = "vial rootfs build --env " + t.Name
			if configDir != config.DefaultDir {
				e.BuildCommand += " --config-dir " + configDir
			}
		}
		out[t.Name] = e
	}
	return out, errors.Join(errs...)
}

// tightenEnvironment maps a resolved template onto an environment whose
// limits, timeout and runtime are no looser than cfg's: an environment is
// chosen by a model's create_context argument, and a model's arguments may
// tighten a limit, never loosen it. The operator's configuration of the
// template still decides everything below the ceiling.
func tightenEnvironment(name string, res *config.Resolved, cfg serveConfig) service.Environment {
	ceil := cfg.Env.Limits.WithDefaults()
	lower := func(v, c int64) int64 {
		if v <= 0 || v > c {
			return c
		}
		return v
	}
	e := service.Environment{
		Name:    name,
		Runtime: res.Runtime,
		Image:   res.Image,
		Limits: runtime.Limits{
			MemoryBytes: lower(res.MemoryBytes, ceil.MemoryBytes),
			Pids:        lower(res.PidsLimit, ceil.Pids),
			TmpBytes:    lower(res.TmpBytes, ceil.TmpBytes),
			DiskBytes:   lower(res.DiskBytes, ceil.DiskBytes),
			CPUs:        ceil.CPUs,
		},
		Timeout: time.Duration(lower(int64(res.Timeout()), int64(maxTimeout(cfg.Limits)))),
		Env:     envList(res.Shell.Env),
	}
	if res.CPUs > 0 && res.CPUs < ceil.CPUs {
		e.Limits.CPUs = res.CPUs
	}
	if e.Runtime == "" || isolation[e.Runtime] < isolation[cfg.Env.Runtime] {
		e.Runtime = cfg.Env.Runtime
	}
	if e.Image == "" {
		e.Image = cfg.Env.Image
	}
	if res.Mode == config.ModeLocal {
		e.Refused = "it runs code without isolation (sandbox.mode = \"local\"), which only the operator can choose"
	}
	// A template opens the network only within the agent's: both must
	// allow a host.
	if res.Network.Enabled && cfg.Env.Network != nil {
		e.Network = &service.NetworkPolicy{Allowed: res.Network.AllowedHosts, Blocked: cfg.Env.Network.Blocked,
			Hosts: cfg.Env.Network.Hosts, AllowPrivateCIDRs: cfg.Env.Network.AllowPrivateCIDRs, Within: cfg.Env.Network}
	}
	return e
}

// maxTimeout is the call-timeout ceiling the service will use for l.
func maxTimeout(l service.Limits) time.Duration {
	if l.MaxTimeout > 0 {
		return l.MaxTimeout
	}
	return max(service.DefaultLimits.MaxTimeout, l.DefaultTimeout)
}

// envList turns [shell.env] into KEY=VALUE entries, sorted.
func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// poolFromConfig maps [pool] onto the service's pool options.
func poolFromConfig(p config.Pool) service.PoolOptions {
	o := service.PoolOptions{Size: p.Size, Lifetime: p.Lifetime, Wait: p.Wait, FailWhenEmpty: p.OnEmpty == "fail"}
	for _, l := range p.Languages {
		o.Languages = append(o.Languages, service.Language(l))
	}
	return o
}
