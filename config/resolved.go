package config

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// Sandbox modes. ModeDocker is the seed's name for container isolation:
// vial runs it on its own OCI backends (sandbox.runtime), with no Docker
// daemon. ModeLocal runs code on the host with no isolation at all.
const (
	ModeDocker = "docker"
	ModeLocal  = "local"
)

// Resolved is the merged configuration of one agent (or of the system
// defaults, with no agent), as plain Go values. Every field is set: a key
// no file mentions has its built-in default. A Resolved is not modified
// after Load returns it and is safe for concurrent reads.
type Resolved struct {
	AgentID  string   // "" for the system defaults
	Template string   // the template the agent extends, "" for none
	Chain    []string // the files merged, lowest layer first
	Metadata Metadata // of the highest file (agent, else template, else system)

	Mode           string // ModeDocker or ModeLocal
	Runtime        string // "runc", "crun" or "runsc"
	TimeoutSeconds int
	MemoryBytes    int64
	CPUs           float64
	DiskBytes      int64 // largest file the sandbox may write
	TmpBytes       int64 // size of the /tmp tmpfs
	PidsLimit      int64
	Network        Network
	Security       Security
	Image          string   // rootfs image name ("host", a stored name, a directory)
	Packages       []string // packages the image should provide

	Shell       Shell
	Tools       Tools
	ToolDefs    map[string]*ToolDef // every defined tool, by canonical name
	MCPServers  map[string]MCPServer
	MCPSettings MCPSettings
	HITL        HITL
	Logging     Logging
	Pool        Pool
	Cache       Cache

	// Warnings are problems that do not stop vial but that an operator
	// must see: local mode, enabled tools vial does not implement, ...
	Warnings []string

	// Provenance maps each dotted key of the merged configuration (as
	// show prints it) to where its value came from.
	Provenance map[string]Origin

	tree *node // the merged, interpolated tree, for Format
}

// Origin is where one value of the merged configuration was set.
type Origin struct {
	Level  Level
	Name   string // template or agent name, "" otherwise
	Pos    Pos
	Secret bool // masked when shown
}

// String formats o as "layer [name], file:line:col", as --explain does.
func (o Origin) String() string {
	if o.Name != "" {
		return fmt.Sprintf("%s %s, %s", o.Level, o.Name, o.Pos)
	}
	return fmt.Sprintf("%s, %s", o.Level, o.Pos)
}

// Metadata is a file's [metadata] table.
type Metadata struct {
	Version, Name, Description, AgentID, Author string
	Tags                                        []string
}

// Network is [sandbox.network]. With Enabled false the sandbox has an empty
// network namespace; with it true, egress reaches AllowedHosts only.
type Network struct {
	Enabled      bool
	AllowedHosts []string
	// Hosts is the operator's static name → address table, used before
	// DNS; AllowPrivateCIDRs are private ranges the proxy may dial.
	Hosts             map[string]string
	AllowPrivateCIDRs []string
}

// Security is [sandbox.security]. DropCapabilities holds canonical names
// ("CAP_NET_RAW") or "ALL".
type Security struct {
	ReadOnlyRoot     bool
	NoNewPrivileges  bool
	DropCapabilities []string
	// DangerousPatterns is seed 000's check of code: "off", "warn" or
	// "deny".
	DangerousPatterns string
}

// Shell is [shell]. Env is the environment every sandboxed process gets,
// interpolated; it may hold secrets (see Resolved.Secret).
type Shell struct {
	Default string
	WorkDir string
	Env     map[string]string
}

// Tools is [tools], with names canonical (run_python is run_code).
type Tools struct {
	// Enabled are the tools offered: enabled by configuration, defined,
	// and implemented. Sorted.
	Enabled []string
	// Unimplemented are tools enabled by configuration that vial has no
	// handler for; they are not offered (and each has a warning).
	Unimplemented []string
	// Disabled is tools.disabled as merged: names (and, for downstream
	// MCP servers' tools, SERVER__TOOL names or patterns) switched off.
	Disabled []string
	// RequireConfirmation lists tools a human must approve.
	RequireConfirmation []string
	// AutoApprovePatterns are path.Match patterns of tool names approved
	// without asking, unless a require_confirmation list names the tool.
	AutoApprovePatterns []string
	// Config is [tools.config.X] by canonical tool name: constraint
	// overrides and tool-specific settings.
	Config map[string]map[string]any
}

// MCPServer is one downstream MCP server, from mcp.toml merged with the
// layers' [mcp.servers.X].
type MCPServer struct {
	Name        string // the table key
	Title       string // its "name" key, for display
	Description string
	URL         string
	Transport   string   // "stdio", "http" or "sse"
	Command     []string // for stdio: the command and arguments from the URL
	Enabled     bool
	AutoStart   bool
	Sandboxed   bool // a stdio server started inside a sandbox
	// Binds are host directories bound read-only into a sandboxed
	// server's sandbox at the same path.
	Binds     []string
	APIKeyEnv string
	APIKey    string // the value of APIKeyEnv, "" if unset; a secret
	Config    map[string]any
}

// MCPSettings is mcp.toml's [settings].
type MCPSettings struct {
	ConnectionTimeout time.Duration
	ToolTimeout       time.Duration
	MaxRetries        int
	CacheTools        bool
	CacheTTL          time.Duration
}

// HITL is [hitl], human-in-the-loop approval.
type HITL struct {
	RequireConfirmation []string
	AutoApprovePatterns []string
	Timeout             time.Duration // how long to wait for a human
	// Unattended are tool patterns allowed to run when a call needs a
	// human and the client cannot ask one; empty denies such calls.
	Unattended []string
	// OperatorQueue lets such calls wait for the operator's answer on the
	// page or the API instead.
	OperatorQueue bool
}

// Pool is [pool]: seed 002's session pool.
type Pool struct {
	Size      int // warm sandboxes per environment and language; 0: none
	Lifetime  time.Duration
	Wait      time.Duration // how long a request waits for a warm one
	OnEmpty   string        // "start" on demand, or "fail"
	Languages []string
}

// Cache is [cache]: seed 000's result cache, for execute_python only.
type Cache struct {
	Enabled    bool
	MaxEntries int
	TTL        time.Duration
}

// Logging is [logging].
type Logging struct {
	Level         string // debug, info, warn or error
	Format        string // text or json
	RetentionDays int
	LogToolCalls  bool
}

// Timeout is TimeoutSeconds as a duration.
func (r *Resolved) Timeout() time.Duration {
	return time.Duration(r.TimeoutSeconds) * time.Second
}

// Limits are the resource limits of one execution. For Tighten, a zero
// field means "as configured".
type Limits struct {
	Timeout     time.Duration
	MemoryBytes int64
	CPUs        float64
	PidsLimit   int64
	DiskBytes   int64
}

// Limits returns the configured limits: the ceilings for every call.
func (r *Resolved) Limits() Limits {
	return Limits{
		Timeout:     r.Timeout(),
		MemoryBytes: r.MemoryBytes,
		CPUs:        r.CPUs,
		PidsLimit:   r.PidsLimit,
		DiskBytes:   r.DiskBytes,
	}
}

// Tighten applies the limits a tool call asks for. A request may lower a
// limit, never raise it: the configuration is a ceiling, because tool
// arguments come from the model, which must not be able to grant itself
// more time, memory or CPU. Zero fields keep the configured value. Every
// field above its ceiling, or negative, is reported (class ErrAboveCeiling
// or ErrInvalid) and nothing is applied.
func (r *Resolved) Tighten(req Limits) (Limits, error) {
	ceil := r.Limits()
	out := ceil
	var errs []error
	tighten := func(name string, want, limit float64, set func(), show func(float64) string) {
		switch {
		case want == 0:
		case want < 0:
			errs = append(errs, fmt.Errorf("%w: %s %s is negative", ErrInvalid, name, show(want)))
		case limit > 0 && want > limit:
			errs = append(errs, fmt.Errorf("%w: %s %s is above the configured %s", ErrAboveCeiling, name, show(want), show(limit)))
		default:
			set()
		}
	}
	dur := func(v float64) string { return time.Duration(v).String() }
	bytes := func(v float64) string { return FormatSize(int64(v)) }
	plain := func(v float64) string { return num(v) }
	tighten("timeout", float64(req.Timeout), float64(ceil.Timeout), func() { out.Timeout = req.Timeout }, dur)
	tighten("memory", float64(req.MemoryBytes), float64(ceil.MemoryBytes), func() { out.MemoryBytes = req.MemoryBytes }, bytes)
	tighten("cpu", req.CPUs, ceil.CPUs, func() { out.CPUs = req.CPUs }, plain)
	tighten("pids", float64(req.PidsLimit), float64(ceil.PidsLimit), func() { out.PidsLimit = req.PidsLimit }, plain)
	tighten("disk", float64(req.DiskBytes), float64(ceil.DiskBytes), func() { out.DiskBytes = req.DiskBytes }, bytes)
	if len(errs) > 0 {
		return ceil, errors.Join(errs...)
	}
	return out, nil
}

// ToolPolicy is everything the policy layer needs about one tool.
type ToolPolicy struct {
	Tool                 string // canonical name
	Enabled              bool   // offered to the model
	ConfirmationRequired bool
	Constraints          Constraints    // definition, overridden by [tools.config.X]
	Config               map[string]any // definition's config, overridden by [tools.config.X]
}

// Policy returns the effective policy of a tool (any of its names). An
// unknown tool is not enabled and requires confirmation.
func (r *Resolved) Policy(tool string) ToolPolicy {
	name := CanonicalTool(tool)
	p := ToolPolicy{Tool: name, ConfirmationRequired: r.ConfirmationRequired(name), Config: map[string]any{}}
	p.Enabled = slices.Contains(r.Tools.Enabled, name)
	if d := r.ToolDefs[name]; d != nil {
		p.Constraints = d.Constraints
		maps.Copy(p.Config, d.Config)
	}
	if cfg := r.tree.get("tools", "config", name); cfg != nil && cfg.kind == kTable {
		applyConstraints(&p.Constraints, cfg)
		for k, v := range cfg.tbl {
			if _, isConstraint := constraintFields[k]; !isConstraint {
				p.Config[k] = v.any()
			}
		}
	}
	return p
}

// ConfirmationRequired reports whether a human must approve a call of the
// tool. In order: a tool named in tools.require_confirmation or
// hitl.require_confirmation always needs approval (a pattern cannot
// override an explicit listing); otherwise a tool matching an
// auto_approve_patterns entry (of [tools] or [hitl]) does not; otherwise
// the definition's requires_confirmation decides. Unknown tools need
// approval.
func (r *Resolved) ConfirmationRequired(tool string) bool {
	name := CanonicalTool(tool)
	if slices.Contains(r.Tools.RequireConfirmation, name) || slices.Contains(r.HITL.RequireConfirmation, name) {
		return true
	}
	for _, pat := range slices.Concat(r.Tools.AutoApprovePatterns, r.HITL.AutoApprovePatterns) {
		for _, n := range append([]string{name}, ToolAliases(name)...) {
			if ok, _ := path.Match(pat, n); ok {
				return false
			}
		}
	}
	d := r.ToolDefs[name]
	return d == nil || d.RequiresConfirmation
}

// Secret reports whether the value at a dotted key (as in Provenance, e.g.
// "shell.env.SEARCH_API_KEY") holds a secret that must not be shown or
// logged.
func (r *Resolved) Secret(key string) bool {
	return r.Provenance[key].Secret
}

// SecretValues returns every distinct secret string of the merged
// configuration (values that took anything from the agent's .env or from a
// secret-looking variable, and the MCP servers' API keys), longest first,
// so that a log handler can mask them wherever they appear. Empty strings
// are left out.
func (r *Resolved) SecretValues() []string {
	seen := map[string]bool{}
	var walk func(n *node)
	walk = func(n *node) {
		if n == nil {
			return
		}
		switch n.kind {
		case kTable:
			for _, v := range n.tbl {
				walk(v)
			}
		case kArray:
			for _, v := range n.arr {
				walk(v)
			}
		case kString:
			if n.secret && n.s != "" {
				seen[n.s] = true
			}
		}
	}
	walk(r.tree)
	for _, s := range r.MCPServers {
		if s.APIKey != "" {
			seen[s.APIKey] = true
		}
	}
	out := slices.Collect(maps.Keys(seen))
	slices.SortFunc(out, func(a, b string) int {
		if d := len(b) - len(a); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return out
}

// decode reads the merged tree into r. The tree has passed the schema, so
// kinds are right; missing keys cannot happen because the built-in
// defaults set every one.
func (r *Resolved) decode(t *node, cat *catalogue, v *vars, opts *Options) {
	r.tree = t
	r.Mode = strAt(t, "sandbox", "mode")
	r.Runtime = strAt(t, "sandbox", "runtime")
	r.TimeoutSeconds = int(intAt(t, "sandbox", "timeout_seconds"))
	res := t.get("sandbox", "resources")
	r.MemoryBytes = sizeAt(res, "memory_limit")
	r.DiskBytes = sizeAt(res, "disk_limit")
	r.TmpBytes = sizeAt(res, "tmp_limit")
	r.PidsLimit = intAt(res, "pids_limit")
	if c := res.get("cpu_limit"); c != nil {
		r.CPUs = c.f
		if c.kind == kInt {
			r.CPUs = float64(c.i)
		}
	}
	r.Network = Network{
		Enabled:           boolAt(t.get("sandbox", "network"), "enabled", false),
		AllowedHosts:      nonNil(t.get("sandbox", "network", "allowed_hosts").strings()),
		Hosts:             map[string]string{},
		AllowPrivateCIDRs: nonNil(t.get("sandbox", "network", "allow_private_cidrs").strings()),
	}
	if hs := t.get("sandbox", "network", "hosts"); hs != nil {
		for k, v := range hs.tbl {
			r.Network.Hosts[k] = v.s
		}
	}
	sec := t.get("sandbox", "security")
	r.Security = Security{
		ReadOnlyRoot:      boolAt(sec, "read_only_root", true),
		NoNewPrivileges:   boolAt(sec, "no_new_privileges", true),
		DangerousPatterns: strAt(sec, "dangerous_patterns"),
	}
	for _, c := range sec.get("drop_capabilities").strings() {
		if cc := canonicalCap(c); cc != "" && !slices.Contains(r.Security.DropCapabilities, cc) {
			r.Security.DropCapabilities = append(r.Security.DropCapabilities, cc)
		}
	}
	r.Security.DropCapabilities = nonNil(r.Security.DropCapabilities)
	r.Image = strAt(t, "sandbox", "docker", "image")
	r.Packages = nonNil(t.get("sandbox", "docker", "packages").strings())

	r.Shell = Shell{
		Default: strAt(t, "shell", "default_shell"),
		WorkDir: strAt(t, "shell", "work_dir"),
		Env:     map[string]string{},
	}
	if env := t.get("shell", "env"); env != nil {
		for k, e := range env.tbl {
			r.Shell.Env[k] = e.s
		}
	}

	r.ToolDefs = cat.defs
	r.decodeTools(t, cat, opts)

	set := t.get("mcp", "settings")
	r.MCPSettings = MCPSettings{
		ConnectionTimeout: time.Duration(intAt(set, "connection_timeout")) * time.Second,
		ToolTimeout:       time.Duration(intAt(set, "tool_timeout")) * time.Second,
		MaxRetries:        int(intAt(set, "max_retries")),
		CacheTools:        boolAt(set, "cache_tools", true),
		CacheTTL:          time.Duration(intAt(set, "cache_ttl")) * time.Second,
	}
	r.MCPServers = map[string]MCPServer{}
	if servers := t.get("mcp", "servers"); servers != nil {
		for _, name := range servers.sortedKeys() {
			s := servers.tbl[name]
			srv := MCPServer{
				Name:        name,
				Title:       strAt(s, "name"),
				Description: strAt(s, "description"),
				URL:         strAt(s, "url"),
				Transport:   strAt(s, "transport"),
				Enabled:     boolAt(s, "enabled", true),
				AutoStart:   boolAt(s, "auto_start", false),
				Sandboxed:   boolAt(s, "sandboxed", false),
				Binds:       nonNil(s.get("binds").strings()),
				APIKeyEnv:   strAt(s, "api_key_env"),
				Config:      map[string]any{},
			}
			if srv.Transport == "" {
				srv.Transport = transportOf(srv.URL)
			}
			if cmd, ok := strings.CutPrefix(srv.URL, "stdio://"); ok {
				srv.Command = strings.Fields(cmd)
			}
			if c := s.get("config"); c != nil && c.kind == kTable {
				srv.Config = c.any().(map[string]any)
			}
			if srv.APIKeyEnv != "" {
				srv.APIKey, _, _ = v.lookup(srv.APIKeyEnv)
			}
			r.MCPServers[name] = srv
		}
	}

	h := t.get("hitl")
	r.HITL = HITL{
		RequireConfirmation: canonicalList(h.get("require_confirmation").strings()),
		AutoApprovePatterns: nonNil(h.get("auto_approve_patterns").strings()),
		Timeout:             time.Duration(intAt(h, "timeout_seconds")) * time.Second,
		Unattended:          nonNil(h.get("unattended").strings()),
		OperatorQueue:       boolAt(h, "operator_queue", false),
	}
	pl := t.get("pool")
	r.Pool = Pool{
		Size:      int(intAt(pl, "size")),
		Lifetime:  time.Duration(intAt(pl, "lifetime_minutes")) * time.Minute,
		Wait:      time.Duration(intAt(pl, "wait_seconds")) * time.Second,
		OnEmpty:   strAt(pl, "on_empty"),
		Languages: nonNil(pl.get("languages").strings()),
	}
	ch := t.get("cache")
	r.Cache = Cache{
		Enabled:    boolAt(ch, "enabled", false),
		MaxEntries: int(intAt(ch, "max_entries")),
		TTL:        time.Duration(intAt(ch, "ttl_seconds")) * time.Second,
	}
	lg := t.get("logging")
	r.Logging = Logging{
		Level:         strAt(lg, "level"),
		Format:        strAt(lg, "format"),
		RetentionDays: int(intAt(lg, "retention_days")),
		LogToolCalls:  boolAt(lg, "log_tool_calls", true),
	}
	if r.Logging.Level == "warning" {
		r.Logging.Level = "warn"
	}
}

func (r *Resolved) decodeTools(t *node, cat *catalogue, opts *Options) {
	tt := t.get("tools")
	var enabled []string
	if en := tt.get("enabled"); en != nil {
		enabled = canonicalList(en.strings())
	} else {
		// Rule 4: no layer set tools.enabled; start from the definitions.
		for name, d := range cat.defs {
			if d.EnabledByDefault {
				enabled = append(enabled, name)
			}
		}
		for _, off := range canonicalList(tt.get("disabled").strings()) {
			enabled = slices.DeleteFunc(enabled, func(s string) bool { return s == off })
		}
	}
	// The context tools travel with the code tools: seed 002's flow
	// (create_context, run_code in it, stop_context) needs them, and the
	// seed's own tools.enabled lists name run_python and run_shell only.
	// The operator can still switch one off by naming it in
	// tools.disabled.
	disabled := canonicalList(tt.get("disabled").strings())
	if slices.Contains(enabled, "run_code") || slices.Contains(enabled, "run_shell") {
		for _, name := range contextTools {
			if !slices.Contains(enabled, name) && !slices.Contains(disabled, name) {
				enabled = append(enabled, name)
			}
		}
	}
	slices.Sort(enabled)
	r.Tools = Tools{
		Enabled:             []string{},
		Unimplemented:       []string{},
		Disabled:            disabled,
		RequireConfirmation: canonicalList(tt.get("require_confirmation").strings()),
		AutoApprovePatterns: nonNil(tt.get("auto_approve_patterns").strings()),
		Config:              map[string]map[string]any{},
	}
	for _, name := range enabled {
		d := cat.defs[name]
		if d == nil {
			continue // reported by the schema check
		}
		if opts.Implemented != nil && !opts.Implemented[name] {
			r.Tools.Unimplemented = append(r.Tools.Unimplemented, name)
			continue
		}
		r.Tools.Enabled = append(r.Tools.Enabled, name)
	}
	if cfg := tt.get("config"); cfg != nil {
		for _, k := range cfg.sortedKeys() {
			if m, ok := cfg.tbl[k].any().(map[string]any); ok {
				r.Tools.Config[CanonicalTool(k)] = m
			}
		}
	}
	for name, d := range cat.defs {
		d.Implemented = opts.Implemented == nil || opts.Implemented[name]
	}
}

// contextTools are enabled whenever a code tool is (see decodeTools).
var contextTools = []string{"create_context", "list_contexts", "stop_context"}

// transportOf infers a server's transport from its URL.
func transportOf(u string) string {
	if strings.HasPrefix(u, "stdio://") {
		return "stdio"
	}
	if u == "" {
		return ""
	}
	return "http"
}

// canonicalList maps tool names to canonical ones, without duplicates,
// keeping order; never nil.
func canonicalList(names []string) []string {
	out := []string{}
	for _, n := range names {
		if c := CanonicalTool(n); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func intAt(n *node, path ...string) int64 {
	if v := n.get(path...); v != nil && v.kind == kInt {
		return v.i
	}
	return 0
}

func sizeAt(n *node, key string) int64 {
	if v := n.get(key); v != nil {
		return sizeOf(v)
	}
	return 0
}
