package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/vial-run/vial/internal/lazyre"
)

// The schema: what keys each file may hold and what their values must be.
// Checking is split in two passes. The first runs on each file as written:
// unknown keys, kinds, ranges, choices. A string holding ${...} cannot be
// judged before it is expanded, so its content checks wait for the second
// pass, which runs on the merged tree after interpolation and looks only at
// the strings that were expanded.

type typ uint8

const (
	tAny     typ = iota // any value
	tString             // a string
	tInt                // an integer
	tNumber             // an integer or a float
	tBool               // a boolean
	tSize               // a size string ("256m") or an integer of bytes
	tStrings            // an array of strings
	tArray              // an array of anything
	tTable              // a table with the keys in fields only
	tMap                // a table with any keys (keyCheck), values elem
	tFree               // a table with any keys; keys in fields are typed
	tToolCfg            // [tools.config]: known tool → that tool's config
)

// spec describes one key's value.
type spec struct {
	t        typ
	fields   map[string]*spec
	elem     *spec
	keyCheck func(c *checker, key string) string // "" if fine, else the problem
	enum     []string
	lo, hi   float64                           // a range, when hi > lo
	each     func(c *checker, s string) string // content check of a string (or each element)
}

func (s *spec) noun() string {
	switch s.t {
	case tString:
		return "a string"
	case tInt:
		return "an integer"
	case tNumber:
		return "a number"
	case tBool:
		return "a boolean (true or false)"
	case tSize:
		return `a size such as "256m" or "1g"`
	case tStrings:
		return "an array of strings"
	case tArray:
		return "an array"
	case tTable, tMap, tFree, tToolCfg:
		return "a table"
	}
	return "a value"
}

func (s *spec) accepts(k kind) bool {
	switch s.t {
	case tAny:
		return true
	case tString:
		return k == kString
	case tInt:
		return k == kInt
	case tNumber:
		return k == kInt || k == kFloat
	case tBool:
		return k == kBool
	case tSize:
		return k == kString || k == kInt
	case tStrings, tArray:
		return k == kArray
	}
	return k == kTable
}

// checker walks a tree against a spec, collecting errors.
type checker struct {
	errs *errList
	cat  *catalogue // known tools, for names and [tools.config.X]
	// after marks the second pass: only content checks of strings that
	// were expanded.
	after bool
}

func (c *checker) check(n *node, s *spec, p string) {
	if !c.after && !s.accepts(n.kind) {
		c.errs.add(n.valPos(), "%s must be %s, not %s", p, s.noun(), n.kind.noun())
		return
	}
	switch s.t {
	case tTable, tFree:
		for _, k := range n.sortedKeys() {
			v := n.tbl[k]
			if fs, ok := s.fields[k]; ok {
				c.check(v, fs, joinPath(p, k))
			} else if s.t == tTable && !c.after {
				c.unknownKey(v, p, k, s.fields)
			}
		}
	case tMap:
		for _, k := range n.sortedKeys() {
			v := n.tbl[k]
			if s.keyCheck != nil && !c.after {
				if msg := s.keyCheck(c, k); msg != "" {
					c.errs.add(v.key, "%s: %s", joinPath(p, k), msg)
					continue
				}
			}
			c.check(v, s.elem, joinPath(p, k))
		}
	case tToolCfg:
		for _, k := range n.sortedKeys() {
			v := n.tbl[k]
			def := c.cat.lookup(k)
			if def == nil {
				if !c.after {
					c.errs.add(v.key, "%s: unknown tool %q%s (valid: %s)", p, k, suggest(k, c.cat.names()), strings.Join(c.cat.names(), ", "))
				}
				continue
			}
			c.check(v, def.configSpec(), joinPath(p, k))
		}
	case tStrings:
		for i, e := range n.arr {
			ep := fmt.Sprintf("%s[%d]", p, i)
			if e.kind != kString {
				if !c.after {
					c.errs.add(e.valPos(), "%s must be a string, not %s", ep, e.kind.noun())
				}
				continue
			}
			c.content(e, s, ep)
		}
	case tString:
		c.content(n, s, p)
	case tInt, tNumber:
		if c.after || s.hi <= s.lo {
			return
		}
		v := float64(n.i)
		if n.kind == kFloat {
			v = n.f
		}
		if v < s.lo || v > s.hi || math.IsNaN(v) {
			c.errs.add(n.valPos(), "%s: %s is out of range (valid: %s to %s)", p, num(v), num(s.lo), num(s.hi))
		}
	case tSize:
		if n.kind == kInt {
			if !c.after {
				c.sizeRange(n, s, p, n.i)
			}
			return
		}
		if !c.due(n) {
			return
		}
		v, err := ParseSize(n.s)
		if err != nil {
			c.errs.add(n.valPos(), "%s: %v", p, err)
			return
		}
		c.sizeRange(n, s, p, v)
	}
}

// due reports whether a string's content is checked in this pass.
func (c *checker) due(n *node) bool {
	if c.after {
		return n.interp
	}
	return !strings.Contains(n.s, "${")
}

func (c *checker) content(n *node, s *spec, p string) {
	if !c.due(n) {
		return
	}
	if len(s.enum) > 0 && !slices.Contains(s.enum, n.s) {
		c.errs.add(n.valPos(), "%s: %q is not a choice%s (valid: %s)", p, n.s, suggest(n.s, s.enum), strings.Join(s.enum, ", "))
		return
	}
	if s.each != nil {
		if msg := s.each(c, n.s); msg != "" {
			c.errs.add(n.valPos(), "%s: %s", p, msg)
		}
	}
}

func (c *checker) sizeRange(n *node, s *spec, p string, v int64) {
	if s.hi > s.lo && (float64(v) < s.lo || float64(v) > s.hi) {
		c.errs.add(n.valPos(), "%s: %s is out of range (valid: %s to %s)", p, FormatSize(v), FormatSize(int64(s.lo)), FormatSize(int64(s.hi)))
	}
}

func (c *checker) unknownKey(v *node, p, k string, fields map[string]*spec) {
	valid := make([]string, 0, len(fields))
	for f := range fields {
		valid = append(valid, f)
	}
	slices.Sort(valid)
	where := ""
	if p != "" {
		where = " in [" + p + "]"
	}
	c.errs.add(v.key, "unknown key %q%s%s (valid: %s)", k, where, suggest(k, valid), strings.Join(valid, ", "))
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// suggest returns ", did you mean X?" when one valid word is close to w.
func suggest(w string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(strings.ToLower(w), strings.ToLower(v)); d < bestD {
			best, bestD = v, d
		}
	}
	if best == "" || best == w {
		return ""
	}
	return fmt.Sprintf(", did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// --- spec constructors ---------------------------------------------------------

func str() *spec                                    { return &spec{t: tString} }
func strEnum(v ...string) *spec                     { return &spec{t: tString, enum: v} }
func strWith(f func(*checker, string) string) *spec { return &spec{t: tString, each: f} }
func integer(lo, hi float64) *spec                  { return &spec{t: tInt, lo: lo, hi: hi} }
func number(lo, hi float64) *spec                   { return &spec{t: tNumber, lo: lo, hi: hi} }
func boolean() *spec                                { return &spec{t: tBool} }
func size(lo, hi int64) *spec                       { return &spec{t: tSize, lo: float64(lo), hi: float64(hi)} }
func strs(f func(*checker, string) string) *spec    { return &spec{t: tStrings, each: f} }
func strsEnum(v ...string) *spec                    { return &spec{t: tStrings, enum: v} }
func table(f map[string]*spec) *spec                { return &spec{t: tTable, fields: f} }

func mapOf(key func(*checker, string) string, elem *spec) *spec {
	return &spec{t: tMap, keyCheck: key, elem: elem}
}

// --- content checks ------------------------------------------------------------

var (
	hostLabel  = `[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?`
	hostRE     = lazyre.New(`^` + hostLabel + `(\.` + hostLabel + `)*\.?$`)
	nameRE     = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	toolNameRE = lazyre.New(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
)

// checkHost accepts a host name, "*.domain", an IP address or a CIDR
// block, each with an optional :port.
func checkHostKey(_ *checker, k string) string {
	if !hostRE.MatchString(k) || strings.HasPrefix(k, "*") {
		return "not a host name (valid: a name like \"mirror.internal\")"
	}
	return ""
}

func checkIP(_ *checker, s string) string {
	if net.ParseIP(s) == nil {
		return fmt.Sprintf("%q is not an IP address", s)
	}
	return ""
}

func checkCIDR(_ *checker, s string) string {
	if net.ParseIP(s) != nil {
		return ""
	}
	if _, n, err := net.ParseCIDR(s); err != nil {
		return fmt.Sprintf("%q is not a CIDR block or an address (valid: \"10.20.0.0/16\")", s)
	} else if ones, _ := n.Mask.Size(); ones == 0 {
		return fmt.Sprintf("%q would allow every address", s)
	}
	return ""
}

func checkHost(_ *checker, h string) string {
	bad := fmt.Sprintf("%q is not a host (valid: a name like \"pypi.org\", a wildcard like \"*.example.com\", an IP address or CIDR block, each with an optional :port)", h)
	host := h
	if strings.Count(h, ":") == 1 || strings.HasPrefix(h, "[") {
		hh, port, err := net.SplitHostPort(h)
		if err != nil {
			return bad
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad
		}
		host = hh
	}
	if net.ParseIP(host) != nil {
		return ""
	}
	if _, _, err := net.ParseCIDR(host); err == nil {
		return ""
	}
	host = strings.TrimPrefix(host, "*.")
	if host == "" || len(host) > 253 || !hostRE.MatchString(host) {
		return bad
	}
	return ""
}

// capabilities are the Linux capability names drop_capabilities accepts
// (with or without CAP_, any case), plus ALL.
var capabilities = []string{
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
	"KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
	"NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
	"SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE",
	"SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG",
	"WAKE_ALARM",
}

// canonicalCap returns CAP_X for any spelling of a capability, "ALL" for
// all, or "" if name is not one.
func canonicalCap(name string) string {
	n := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	if n == "ALL" {
		return "ALL"
	}
	if slices.Contains(capabilities, n) {
		return "CAP_" + n
	}
	return ""
}

func checkCap(_ *checker, s string) string {
	if canonicalCap(s) == "" {
		return fmt.Sprintf("%q is not a Linux capability%s (valid: ALL, or a name such as CAP_NET_RAW or NET_RAW)", s, suggest(strings.TrimPrefix(strings.ToUpper(s), "CAP_"), capabilities))
	}
	return ""
}

func checkAbs(_ *checker, s string) string {
	if !path.IsAbs(s) {
		return fmt.Sprintf("%q is not an absolute path (valid: a path starting with /)", s)
	}
	return ""
}

func checkEnvKey(_ *checker, k string) string {
	if !envName.MatchString(k) {
		return "not a variable name (valid: letters, digits and _, not starting with a digit)"
	}
	return ""
}

func checkEnvName(c *checker, s string) string {
	if s != "" && checkEnvKey(c, s) != "" {
		return fmt.Sprintf("%q is not a variable name (valid: letters, digits and _, not starting with a digit)", s)
	}
	return ""
}

func checkName(_ *checker, k string) string {
	if !nameRE.MatchString(k) {
		return "not a valid name (valid: letters, digits, _ . and -, starting with a letter or digit)"
	}
	return ""
}

func checkToolKey(_ *checker, k string) string {
	if !toolNameRE.MatchString(k) {
		return "not a valid tool name (valid: letters, digits, _ . and -, starting with a letter)"
	}
	return ""
}

// checkTool accepts a tool the catalogue or tools.toml defines, by any of
// its names.
func checkTool(c *checker, s string) string {
	if c.cat.lookup(s) != nil {
		return ""
	}
	// A downstream MCP server's tool, namespaced SERVER__TOOL; the tool
	// part may be a pattern (git__*). The server's tools are known only
	// once it is connected, so only the shape is checked here.
	if server, tool, ok := strings.Cut(s, "__"); ok && nameRE.MatchString(server) && tool != "" {
		if _, err := path.Match(tool, ""); err == nil {
			return ""
		}
	}
	return fmt.Sprintf("unknown tool %q%s (valid: %s)", s, suggest(s, c.cat.names()), strings.Join(c.cat.names(), ", "))
}

func checkPattern(_ *checker, s string) string {
	if _, err := path.Match(s, ""); err != nil || s == "" {
		return fmt.Sprintf("%q is not a valid pattern (valid: a tool name with * and ? wildcards, e.g. \"read_*\")", s)
	}
	return ""
}

func checkNonEmpty(_ *checker, s string) string {
	if strings.TrimSpace(s) == "" {
		return "must not be empty"
	}
	return ""
}

func checkServerURL(_ *checker, s string) string {
	if cmd, ok := strings.CutPrefix(s, "stdio://"); ok {
		if strings.TrimSpace(cmd) == "" {
			return fmt.Sprintf("%q names no command (valid: \"stdio://COMMAND ARGS...\")", s)
		}
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q is not a server address (valid: \"http://host:port/path\", \"https://...\" or \"stdio://COMMAND ARGS...\")", s)
	}
	return ""
}

// --- the schemas ---------------------------------------------------------------

const maxTimeout = 86400 // a day

var (
	metadataFields = map[string]*spec{
		"version": str(), "name": str(), "description": str(),
		"tags": strs(nil), "agent_id": str(), "author": str(),
	}
	metadataSpec = table(metadataFields)

	sandboxSpec = table(map[string]*spec{
		"mode":            strEnum(ModeDocker, ModeLocal),
		"runtime":         strEnum("runc", "crun", "runsc"),
		"timeout_seconds": integer(1, maxTimeout),
		"resources": table(map[string]*spec{
			"memory_limit": size(4<<20, 1<<40),
			"cpu_limit":    number(0.01, 1024),
			"disk_limit":   size(1<<20, 16<<40),
			"tmp_limit":    size(1<<20, 1<<40),
			"pids_limit":   integer(1, 4194304),
		}),
		"network": table(map[string]*spec{
			"enabled":       boolean(),
			"allowed_hosts": strs(checkHost),
			// hosts: the operator's static name → address table, used
			// before DNS (an internal mirror, an air-gapped host).
			"hosts": mapOf(checkHostKey, strWith(checkIP)),
			// allow_private_cidrs: private ranges the proxy may dial for
			// an allowed name.
			"allow_private_cidrs": strs(checkCIDR),
		}),
		"security": table(map[string]*spec{
			"read_only_root":    boolean(),
			"no_new_privileges": boolean(),
			"drop_capabilities": strs(checkCap),
			// seed 000's check of code for dangerous patterns: a guard
			// in front of the sandbox (off, warn: a notice in the
			// result, deny).
			"dangerous_patterns": strEnum("off", "warn", "deny"),
		}),
		"docker": table(map[string]*spec{
			"image":    strWith(checkNonEmpty),
			"packages": strs(checkNonEmpty),
		}),
	})

	shellSpec = table(map[string]*spec{
		"default_shell": strWith(checkAbs),
		"work_dir":      strWith(checkAbs),
		"env":           mapOf(checkEnvKey, str()),
	})

	toolsSpec = table(map[string]*spec{
		"enabled":               strs(checkTool),
		"disabled":              strs(checkTool),
		"require_confirmation":  strs(checkTool),
		"auto_approve_patterns": strs(checkPattern),
		"config":                {t: tToolCfg},
	})

	mcpSettingsSpec = table(map[string]*spec{
		"connection_timeout": integer(1, 3600),
		"tool_timeout":       integer(1, maxTimeout),
		"max_retries":        integer(0, 100),
		"cache_tools":        boolean(),
		"cache_ttl":          integer(0, 7*maxTimeout),
	})

	serverSpec = table(map[string]*spec{
		"name":        str(),
		"description": str(),
		"url":         strWith(checkServerURL),
		"transport":   strEnum("stdio", "http", "sse"),
		"enabled":     boolean(),
		"auto_start":  boolean(),
		"sandboxed":   boolean(),
		"api_key_env": strWith(checkEnvName),
		// binds: host directories bound read-only, at the same path,
		// into a sandboxed server's sandbox (its program, when it is not
		// in the image).
		"binds":  strs(checkAbs),
		"config": {t: tFree},
	})

	mcpSpec = table(map[string]*spec{
		"settings": mcpSettingsSpec,
		"servers":  mapOf(checkName, serverSpec),
	})

	hitlSpec = table(map[string]*spec{
		"require_confirmation":  strs(checkTool),
		"auto_approve_patterns": strs(checkPattern),
		"timeout_seconds":       integer(1, maxTimeout),
		// unattended: tool patterns the operator lets run when a call
		// needs a human and the client cannot ask one. Empty: denied.
		"unattended": strs(checkPattern),
		// operator_queue: a call that needs approval from a client that
		// cannot ask a person waits for the operator's answer on the
		// page or the API (vial serve --http), up to timeout_seconds.
		"operator_queue": boolean(),
	})

	// poolSpec is seed 002's session pool: warm sandboxes per environment
	// and language in use.
	poolSpec = table(map[string]*spec{
		"size":             integer(0, 64),
		"lifetime_minutes": integer(1, 1440),
		"wait_seconds":     integer(0, 600),
		"on_empty":         strEnum("start", "fail"),
		"languages":        strsEnum("python", "javascript", "bash"),
	})

	// cacheSpec is seed 000's result cache, for execute_python only.
	cacheSpec = table(map[string]*spec{
		"enabled":     boolean(),
		"max_entries": integer(1, 100000),
		"ttl_seconds": integer(1, 86400*30),
	})

	loggingSpec = table(map[string]*spec{
		"level":          strEnum("debug", "info", "warn", "warning", "error"),
		"format":         strEnum("text", "json"),
		"retention_days": integer(0, 3650),
		"log_tool_calls": boolean(),
	})

	// constraintFields are the policy keys a tool definition may carry, in
	// [tools.X.constraints] or [tools.X.config], and an agent may override
	// in [tools.config.X].
	constraintFields = map[string]*spec{
		"max_file_size":        size(1, 1<<40),
		"blocked_paths":        strs(checkNonEmpty),
		"workspace_only":       boolean(),
		"blocked_imports":      strs(checkNonEmpty),
		"blocked_commands":     strs(checkNonEmpty),
		"blocked_hosts":        strs(checkHost),
		"auto_approve_methods": strsEnum("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"),
	}

	paramSpec = table(map[string]*spec{
		"type":        strEnum("string", "integer", "number", "boolean", "array", "object"),
		"description": str(),
		"required":    boolean(),
		"default":     {t: tAny},
		"enum":        {t: tArray},
	})

	toolDefSpec = table(map[string]*spec{
		"name":                  strWith(checkToolKey),
		"description":           str(),
		"category":              str(),
		"requires_confirmation": boolean(),
		"enabled_by_default":    boolean(),
		"parameters":            mapOf(checkEnvKey, paramSpec),
		"constraints":           table(constraintFields),
		"config":                {t: tFree, fields: constraintFields},
	})

	toolsFileSpec = table(map[string]*spec{
		"metadata": metadataSpec,
		"tools":    mapOf(checkToolKey, toolDefSpec),
	})

	mcpFileSpec = table(map[string]*spec{
		"metadata": metadataSpec,
		"settings": mcpSettingsSpec,
		"servers":  mapOf(checkName, serverSpec),
	})
)

// fileKind is which layer file a spec is for.
type fileKind int

const (
	fileSystem fileKind = iota
	fileTemplate
	fileAgent
	fileRuntime
)

// layerSpec is the schema of execution.toml, a template, an agent file or
// a runtime override. Only templates and agents may extend; overrides carry
// no metadata.
func layerSpec(k fileKind) *spec {
	f := map[string]*spec{
		"sandbox": sandboxSpec,
		"shell":   shellSpec,
		"tools":   toolsSpec,
		"mcp":     mcpSpec,
		"hitl":    hitlSpec,
		"logging": loggingSpec,
		"pool":    poolSpec,
		"cache":   cacheSpec,
	}
	switch k {
	case fileSystem:
		f["metadata"] = metadataSpec
	case fileTemplate, fileAgent:
		// The seed writes extends after [metadata], which in TOML makes it
		// metadata.extends; a top-level extends (before any table) is
		// accepted too.
		m := maps.Clone(metadataFields)
		m["extends"] = str()
		f["metadata"] = table(m)
		f["extends"] = str()
	}
	return table(f)
}
