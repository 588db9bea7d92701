package policy

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Canonical names of the tools whose guards travel with the code they
// carry: a blocked command stays blocked whichever tool carries the shell
// code, and a blocked import whichever tool carries the Python code.
const (
	ShellTool  = "run_shell"
	PythonTool = "run_code"
	HTTPTool   = "http_request"
)

// Effect is what a decision tells the enforcer to do.
//
// The zero Effect is Deny: a Decision that was never filled in, or an
// Effect that was never set, must not let a call through.
type Effect int

const (
	Deny  Effect = iota // refuse the call; Decision.Rule names why
	Allow               // run the call
	Ask                 // a human must approve the call first
)

// String returns "deny", "allow" or "ask".
func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case Ask:
		return "ask"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("effect(%d)", int(e))
}

// MarshalText makes an Effect print as its name in JSON and slog.
func (e Effect) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// Decision is the answer of Rules.Decide for one call. The zero Decision
// denies.
type Decision struct {
	Tool   string // the tool decided about, as in Call.Tool
	Effect Effect
	// Rule is the configuration rule that decided, as a key and the
	// entry that matched, e.g. `tools.read_file.constraints.blocked_paths
	// "**/.env"` or `hitl.require_confirmation "write_file"`.
	Rule string
	// Reason says why, in words a model (and a person) can act on.
	Reason string
	// Notices are findings that did not decide (dangerous patterns in
	// warn mode); the enforcer shows them with the result.
	Notices []string
	// Guard is true when the deciding check is a guard in front of the
	// sandbox — command, import or pattern matching on text the sandbox
	// will interpret — rather than the isolation boundary itself. A guard
	// stops the obvious spelling of an action, not a determined program.
	Guard bool
}

// Call is one tool call as the enforcer sees it, after it has resolved
// every argument the decision depends on. Fields the tool does not use are
// left zero; each check applies to what the call carries (Paths are
// checked against blocked_paths whichever tool carries them).
type Call struct {
	// Tool is the canonical tool name ("run_code", not "run_python"), or a
	// namespaced downstream tool ("git__commit").
	Tool string
	// Args are the tool's arguments, for records and digests; Decide reads
	// only the resolved fields below.
	Args map[string]any
	// Session, Client, Environment and Agent identify who calls and where;
	// they are carried into records. Rules are per agent and environment:
	// the caller picks the Rules.
	Session, Client, Environment, Agent string
	// Language is the language Code will run in, resolved by the enforcer
	// (from the context when the call names one): "python" (also "" — the
	// default of run_code — "python3", "py"), "bash" ("sh", "shell"), or
	// another.
	Language string
	Code     string // code sent to an interpreter
	Command  string // a shell command line (run_shell)
	// Paths are the workspace-relative paths the call reads, writes,
	// deletes or lists, cleaned by the enforcer. Decide cleans them again;
	// an absolute path under /workspace is made relative, and any other
	// absolute path or one climbing out with ".." is denied.
	Paths []string
	// Size is the number of bytes a read or write moves; -1 when unknown
	// (the enforcer must then apply MaxFileSize while it copies).
	Size   int64
	Method string // HTTP method of a network call
	Host   string // host of a network call (name or IP literal, no port)
	Port   int    // its port; 0 when unknown
}

// Rules is the operator's policy: what cmd/vial maps the resolved
// configuration onto. A Rules is not modified after it is built and is
// then safe for concurrent use; the zero Rules (and a nil *Rules) denies
// every call.
type Rules struct {
	// Tools holds each tool's rules by canonical name. A key may also be a
	// path.Match pattern ("git__*": every tool of the downstream server
	// git). An exact name wins over patterns; among patterns the longest
	// key wins (ties: the lexically smallest), so a more specific entry
	// overrides a broader one. A tool no key matches is denied.
	Tools map[string]ToolRules

	// RequireConfirmation lists tools a human must approve, with the key
	// that listed them (tools.require_confirmation,
	// hitl.require_confirmation). Values are names or path.Match patterns.
	RequireConfirmation []Listed
	// AutoApprovePatterns are path.Match patterns of tool names approved
	// without asking — unless RequireConfirmation names the tool.
	AutoApprovePatterns []Listed

	// Dangerous is seed 000's dangerous-pattern check on code.
	Dangerous DangerousPatterns

	// UnattendedPatterns are path.Match patterns of tools the operator
	// allows to run when a call needs a human and no human can be asked
	// (the client cannot elicit). Empty: such calls are denied. See
	// Unattended.
	UnattendedPatterns []string
}

// ToolRules are one tool's rules: its definition's constraints merged with
// [tools.config.X], and whether it is offered. Zero values mean "no
// constraint", except Enabled: a zero ToolRules denies the tool.
type ToolRules struct {
	Enabled bool
	// Aliases are the tool's other names ("run_python" for run_code):
	// patterns in RequireConfirmation, AutoApprovePatterns and
	// UnattendedPatterns match them too, as configuration does.
	Aliases []string
	// Confirm is the definition's requires_confirmation: the answer when
	// neither RequireConfirmation nor AutoApprovePatterns names the tool.
	Confirm bool

	MaxFileSize int64 // bytes a read or write may move; 0: unlimited
	// BlockedPaths are globs on workspace-relative paths (see
	// MatchPath). They protect a path from every file tool, whichever
	// tool's table lists them.
	BlockedPaths []string
	// WorkspaceOnly names the rule that refuses paths outside the
	// workspace. Such paths are refused with or without it (deny by
	// default); with it, the decision names this rule.
	WorkspaceOnly   bool
	BlockedImports  []string // Python modules or module.attr (see BlockedImport)
	BlockedCommands []string // shell command patterns (see MatchCommand)
	BlockedHosts    []string // host entries (see HostRules)
	// AutoApproveMethods are HTTP methods (any case) a call may use
	// without a human's approval; blocked hosts still apply.
	AutoApproveMethods []string
}

// Listed is an entry of a configuration list together with the key that
// set it, so that a decision can name the rule that decided.
type Listed struct {
	Value string // a tool name or pattern
	Key   string // e.g. "hitl.require_confirmation"; "" is shown as the field's name
}

// List tags values with the configuration key that set them.
func List(key string, values ...string) []Listed {
	out := make([]Listed, 0, len(values))
	for _, v := range values {
		out = append(out, Listed{Value: v, Key: key})
	}
	return out
}

// Tool returns the rules that apply to a tool (see Rules.Tools for how a
// name is looked up) and the key they are stored under; ok is false when
// no entry applies, and the tool is then denied.
func (r *Rules) Tool(name string) (rules ToolRules, key string, ok bool) {
	if r == nil {
		return ToolRules{}, "", false
	}
	if t, ok := r.Tools[name]; ok {
		return t, name, true
	}
	for k, t := range r.Tools {
		if !hasMeta(k) {
			continue
		}
		if m, err := path.Match(k, name); err != nil || !m {
			continue
		}
		if !ok || len(k) > len(key) || (len(k) == len(key) && k < key) {
			rules, key, ok = t, k, true
		}
	}
	return rules, key, ok
}

// Decide decides one call. It is pure: it reads only r and c. The checks
// run in this order, and the first that decides wins:
//
//  1. the tool is unknown or not enabled → deny;
//  2. blocked paths, paths outside the workspace, max_file_size, blocked
//     commands, blocked imports, blocked or invalid hosts → deny, naming
//     the rule and entry;
//  3. dangerous patterns → deny (mode deny) or a notice (mode warn);
//  4. an HTTP method in auto_approve_methods → allow, without asking;
//  5. confirmation (require_confirmation, auto_approve_patterns, the
//     definition's requires_confirmation) → ask or allow.
//
// Limits and blocked lists come before approval so that a human is never
// asked to approve what would be refused anyway, and so that no approval
// can lift a blocked list: only the operator can.
func (r *Rules) Decide(c Call) Decision {
	d := Decision{Tool: c.Tool, Effect: Deny}
	tr, _, ok := r.Tool(c.Tool)
	if !ok {
		// Deny by default: a tool the configuration does not define has
		// no constraints, so nothing could be checked about it.
		d.Rule = "tools.enabled"
		d.Reason = fmt.Sprintf("%s is not a tool this configuration defines", quoteName(c.Tool))
		return d
	}
	if !tr.Enabled {
		d.Rule = "tools.enabled"
		d.Reason = fmt.Sprintf("%s is not enabled by the configuration", c.Tool)
		return d
	}
	if r.decideLimits(&d, c, tr) {
		return d
	}
	if r.decideDangerous(&d, c) {
		return d
	}
	if c.Method != "" {
		for _, m := range tr.AutoApproveMethods {
			if strings.EqualFold(strings.TrimSpace(m), c.Method) {
				// The operator judged this method harmless for the
				// tool (seed 001: GET and HEAD of http_request); the
				// blocked hosts above still applied.
				return allow(d, fmt.Sprintf("tools.%s.constraints.auto_approve_methods %q", c.Tool, m),
					fmt.Sprintf("%s requests are approved without asking", strings.ToUpper(c.Method)))
			}
		}
	}
	return r.decideConfirmation(d, c.Tool, tr)
}

func allow(d Decision, rule, reason string) Decision {
	d.Effect, d.Rule, d.Reason, d.Guard = Allow, rule, reason, false
	return d
}

// decideLimits applies the blocked lists and limits; it reports whether
// it decided (always a denial).
func (r *Rules) decideLimits(d *Decision, c Call, tr ToolRules) bool {
	deny := func(rule, reason string, guard bool) bool {
		d.Effect, d.Rule, d.Reason, d.Guard = Deny, rule, reason, guard
		return true
	}
	for _, p := range c.Paths {
		rel, inside := workspaceRel(p)
		if owner, pat, hit := r.blockedPath(rel); hit {
			return deny(fmt.Sprintf("tools.%s.constraints.blocked_paths %q", owner, pat),
				fmt.Sprintf("%s is protected by the operator: the file tools may not read, write, delete or list it", shownPath(rel)), false)
		}
		if !inside {
			// The file tools reach only /workspace (os.Root is the
			// boundary); a path that leaves it is refused here too, so
			// that the refusal names a rule and never depends on
			// workspace_only being set.
			rule := "workspace"
			if tr.WorkspaceOnly {
				rule = fmt.Sprintf("tools.%s.constraints.workspace_only", c.Tool)
			}
			return deny(rule, fmt.Sprintf("path %q is outside /workspace; the file tools only reach /workspace", truncate(p, 200)), false)
		}
	}
	if tr.MaxFileSize > 0 && c.Size > tr.MaxFileSize {
		return deny(fmt.Sprintf("tools.%s.constraints.max_file_size %s", c.Tool, formatBytes(tr.MaxFileSize)),
			fmt.Sprintf("the file is %s, above the limit of %s for %s", formatBytes(c.Size), formatBytes(tr.MaxFileSize), c.Tool), false)
	}
	shellCode := ""
	if c.Code != "" && isShell(c.Language) {
		shellCode = c.Code
	}
	for _, cmd := range []string{c.Command, shellCode} {
		if cmd == "" {
			continue
		}
		for _, l := range r.commandLists(c.Tool, tr) {
			if pat, hit := BlockedCommand(l.patterns, cmd); hit {
				return deny(fmt.Sprintf("tools.%s.constraints.blocked_commands %q", l.owner, pat),
					fmt.Sprintf("the command matches the blocked pattern %q", pat), true)
			}
		}
	}
	if c.Code != "" && isPython(c.Language) {
		if entry, ref, hit := BlockedImport(r.BlockedImportsFor(c.Tool), c.Code); hit {
			owner := r.importOwner(c.Tool, tr, entry)
			what := fmt.Sprintf("the code uses %s", shown(ref, 100))
			if ref != entry {
				what += fmt.Sprintf(", which %q blocks", entry)
			}
			return deny(fmt.Sprintf("tools.%s.constraints.blocked_imports %q", owner, entry), what, true)
		}
	}
	if c.Host != "" {
		v := HostRules{Blocked: tr.BlockedHosts}.check(c.Host, c.Port)
		if !v.ok {
			rule := fmt.Sprintf("tools.%s.constraints.blocked_hosts %q", c.Tool, v.entry)
			if v.entry == "" {
				rule = "hosts"
			}
			return deny(rule, v.reason, false)
		}
	}
	return false
}

type commandList struct {
	owner    string
	patterns []string
}

// commandLists are the blocked_commands that apply to shell text carried by
// tool: its own, then run_shell's. A command blocked for run_shell must not
// run as run_code with language bash, or through a downstream shell tool.
func (r *Rules) commandLists(tool string, tr ToolRules) []commandList {
	out := []commandList{{tool, tr.BlockedCommands}}
	if tool != ShellTool {
		if sh, _, ok := r.Tool(ShellTool); ok {
			out = append(out, commandList{ShellTool, sh.BlockedCommands})
		}
	}
	return out
}

// BlockedImportsFor returns the Python modules (and module.attr names)
// blocked for code run by tool: its own blocked_imports and run_code's,
// sorted, without duplicates or blanks. The driver's import hook reads
// this list from VIAL_BLOCKED_IMPORTS, comma-separated; Validate refuses
// entries that are not dotted Python names, so none holds a comma.
func (r *Rules) BlockedImportsFor(tool string) []string {
	var out []string
	add := func(name string) {
		if t, _, ok := r.Tool(name); ok {
			for _, e := range t.BlockedImports {
				if e = strings.TrimSpace(e); e != "" {
					out = append(out, e)
				}
			}
		}
	}
	add(tool)
	if tool != PythonTool {
		add(PythonTool)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// importOwner names the tool whose list holds entry.
func (r *Rules) importOwner(tool string, tr ToolRules, entry string) string {
	if slices.ContainsFunc(tr.BlockedImports, func(e string) bool { return strings.TrimSpace(e) == entry }) {
		return tool
	}
	return PythonTool
}

// decideDangerous applies the dangerous-pattern check to c.Code.
func (r *Rules) decideDangerous(d *Decision, c Call) bool {
	mode := r.Dangerous.Mode
	if c.Code == "" || mode == DangerOff || mode == "" {
		return false
	}
	findings := r.Dangerous.Check(c.Code)
	if len(findings) == 0 {
		return false
	}
	if mode == DangerWarn {
		for _, f := range findings {
			d.Notices = append(d.Notices, fmt.Sprintf("dangerous pattern %q: %s (a warning from a text guard, not a refusal; the sandbox is the boundary)", f.Pattern, f.What))
		}
		return false
	}
	// DangerDeny, and any mode Validate would refuse: fail closed.
	f := findings[0]
	d.Effect, d.Guard = Deny, true
	d.Rule = fmt.Sprintf("dangerous_patterns %q", f.Pattern)
	d.Reason = fmt.Sprintf("the code contains %q: %s", f.Pattern, f.What)
	return true
}

// decideConfirmation is the last step: ask or allow. The order is the one
// of config.Resolved.ConfirmationRequired.
func (r *Rules) decideConfirmation(d Decision, tool string, tr ToolRules) Decision {
	names := append([]string{tool}, tr.Aliases...)
	// An explicit listing always asks: a broad auto-approve pattern
	// ("write_*") must not silently override the operator naming a tool.
	if l, ok := matchListed(r.RequireConfirmation, names); ok {
		d.Effect, d.Rule = Ask, fmt.Sprintf("%s %q", keyOr(l.Key, "require_confirmation"), l.Value)
		d.Reason = fmt.Sprintf("the operator requires a human to approve every %s call", tool)
		return d
	}
	if l, ok := matchListed(r.AutoApprovePatterns, names); ok {
		return allow(d, fmt.Sprintf("%s %q", keyOr(l.Key, "auto_approve_patterns"), l.Value),
			fmt.Sprintf("%s is approved without asking", tool))
	}
	if tr.Confirm {
		d.Effect, d.Rule = Ask, fmt.Sprintf("tools.%s.requires_confirmation", tool)
		d.Reason = fmt.Sprintf("%s is defined to need a human's approval", tool)
		return d
	}
	return allow(d, fmt.Sprintf("tools.%s.requires_confirmation false", tool), fmt.Sprintf("%s needs no approval", tool))
}

// Unattended reports whether the operator allows tool to run without a
// human when one is needed and none can be asked (UnattendedPatterns,
// matched against the name and its aliases). The default is no: silence
// is never consent. An explicit require_confirmation listing does not
// override it: the operator who lists a tool here has said what to do
// when nobody can answer.
func (r *Rules) Unattended(tool string) bool {
	if r == nil {
		return false
	}
	names := []string{tool}
	if t, _, ok := r.Tool(tool); ok {
		names = append(names, t.Aliases...)
	}
	_, ok := matchListed(List("", r.UnattendedPatterns...), names)
	return ok
}

// Hidden reports whether a listing by tool (list_directory, search_files)
// must leave out the entry at relPath: it is protected by blocked_paths.
// Every file tool shares the protected set, so tool does not change the
// answer today; it is there for per-tool listings to come.
func (r *Rules) Hidden(tool, relPath string) bool {
	rel, _ := workspaceRel(relPath)
	_, _, hit := r.blockedPath(rel)
	return hit
}

// blockedPath checks a cleaned path against the blocked_paths of every
// tool, in sorted tool order so the answer is deterministic. A path
// blocked for one file tool is blocked for all: .env listed under
// read_file (as in seed 001) would not be protected if write_file could
// overwrite it, delete_file remove it or list_directory show it.
func (r *Rules) blockedPath(rel string) (owner, pattern string, hit bool) {
	if r == nil {
		return "", "", false
	}
	keys := make([]string, 0, len(r.Tools))
	for k, t := range r.Tools {
		if len(t.BlockedPaths) > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if pat, ok := BlockedPath(r.Tools[k].BlockedPaths, rel); ok {
			return k, pat, true
		}
	}
	return "", "", false
}

// matchListed finds the first entry whose value matches one of names,
// exactly or as a path.Match pattern.
func matchListed(list []Listed, names []string) (Listed, bool) {
	for _, l := range list {
		v := strings.TrimSpace(l.Value)
		for _, n := range names {
			if v == n {
				return l, true
			}
			if m, err := path.Match(v, n); err == nil && m {
				return l, true
			}
		}
	}
	return Listed{}, false
}

func keyOr(k, def string) string {
	if k == "" {
		return def
	}
	return k
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func isPython(lang string) bool {
	switch strings.ToLower(strings.TrimSpace(lang)) {
	case "", "python", "python3", "py":
		return true
	}
	return false
}

func isShell(lang string) bool {
	switch strings.ToLower(strings.TrimSpace(lang)) {
	case "bash", "sh", "shell":
		return true
	}
	return false
}

func quoteName(s string) string {
	if s == "" {
		return "an unnamed tool"
	}
	return fmt.Sprintf("%q", truncate(s, 100))
}

// shown makes text from a call (a path, a module name, a tool name) safe
// to put in a one-line reason: as it is when it is plain, quoted when it
// holds spaces, quotes, backslashes or anything unprintable — a path with
// a newline must not forge a line of the log.
func shown(s string, max int) string {
	s = truncate(s, max)
	for _, r := range s {
		if r == ' ' || r == '"' || r == '\\' || !unicode.IsGraphic(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// formatBytes shows a size as a person writes it in configuration.
func formatBytes(n int64) string {
	const k = 1024
	switch {
	case n < 0:
		return "an unknown size"
	case n >= k*k*k && n%(k*k*k) == 0:
		return fmt.Sprintf("%dg", n/(k*k*k))
	case n >= k*k && n%(k*k) == 0:
		return fmt.Sprintf("%dm", n/(k*k))
	case n >= k && n%k == 0:
		return fmt.Sprintf("%dk", n/k)
	}
	return fmt.Sprintf("%d bytes", n)
}
