package config

import (
	"maps"
	"slices"
	"sort"
)

// toolAliases maps each other name of a tool to its canonical name. The
// seeds name the Python tool three ways: run_python (001), execute_python
// (000) and run_code (002); configuration accepts all three.
var toolAliases = map[string]string{
	"run_python":     "run_code",
	"execute_python": "run_code",
}

// CanonicalTool returns the canonical name of a tool name: run_python and
// execute_python are run_code; every other name is itself.
func CanonicalTool(name string) string {
	if c, ok := toolAliases[name]; ok {
		return c
	}
	return name
}

// ToolAliases returns the other names configuration accepts for a
// canonical tool name, sorted.
func ToolAliases(canonical string) []string {
	var out []string
	for a, c := range toolAliases {
		if c == canonical {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// ToolDef is one tool's definition: vial's catalogue merged with
// config/tools.toml.
type ToolDef struct {
	Name        string   // canonical name
	Aliases     []string // other accepted names
	Description string
	Category    string // "file", "code", "network", "context", "data", ...
	// RequiresConfirmation is the tool's default: a human approves each
	// call unless auto_approve_patterns say otherwise (see
	// Resolved.ConfirmationRequired).
	RequiresConfirmation bool
	// EnabledByDefault tools are enabled when no layer sets tools.enabled.
	EnabledByDefault bool
	// Builtin is true for tools in vial's catalogue; false for tools
	// defined only in tools.toml.
	Builtin bool
	// Implemented is true when vial has a handler for the tool (the set
	// passed in Options.Implemented). An unimplemented tool is never
	// offered, even when enabled.
	Implemented bool
	Parameters  map[string]Param
	Constraints Constraints
	// Config holds the tool's other [tools.X.config] keys (not
	// constraints), e.g. web_search's provider.
	Config map[string]any

	node *node
}

// Param describes one parameter of a tool.
type Param struct {
	Type        string // string, integer, number, boolean, array, object
	Description string
	Required    bool
	Default     any   // nil: none
	Enum        []any // nil: any value
}

// Constraints are the policy limits of one tool. Zero values mean "no
// constraint" (MaxFileSize 0: unlimited; empty lists: nothing blocked).
type Constraints struct {
	MaxFileSize        int64    // bytes a read or write may move
	BlockedPaths       []string // glob patterns (** matches any depth)
	WorkspaceOnly      bool     // writes only inside the workspace
	BlockedImports     []string // Python modules (or module.attr) code may not use
	BlockedCommands    []string // shell command patterns refused
	BlockedHosts       []string // host patterns network tools refuse
	AutoApproveMethods []string // HTTP methods that need no confirmation
}

// catalogue is the set of known tools.
type catalogue struct {
	defs map[string]*ToolDef // by canonical name
}

// lookup finds a tool by any of its names; nil if unknown.
func (c *catalogue) lookup(name string) *ToolDef {
	if c == nil {
		return nil
	}
	return c.defs[CanonicalTool(name)]
}

// names lists every accepted tool name, aliases included, sorted.
func (c *catalogue) names() []string {
	if c == nil {
		return nil
	}
	var out []string
	for n, d := range c.defs {
		out = append(out, n)
		out = append(out, d.Aliases...)
	}
	sort.Strings(out)
	return out
}

// configSpec is what [tools.config.X] may hold for this tool: any
// constraint key and, for a built-in tool, the config keys its catalogue
// entry lists, with the same kinds. A tool defined only in tools.toml takes
// any keys, since vial cannot know them.
func (d *ToolDef) configSpec() *spec {
	if !d.Builtin {
		return &spec{t: tFree, fields: constraintFields}
	}
	f := maps.Clone(constraintFields)
	for k, v := range d.Config {
		switch v.(type) {
		case string:
			f[k] = str()
		case int64:
			f[k] = &spec{t: tInt}
		case float64:
			f[k] = &spec{t: tNumber}
		case bool:
			f[k] = boolean()
		case []any:
			f[k] = &spec{t: tArray}
		default:
			f[k] = &spec{t: tAny}
		}
	}
	return table(f)
}

// canonicalizeTools renames alias keys of a tools.toml-shaped tree's
// [tools] table to canonical names, and checks that each definition's name
// matches its key.
func canonicalizeTools(root *node, errs *errList) {
	tools := root.get("tools")
	if tools == nil || tools.kind != kTable {
		return
	}
	for _, k := range tools.sortedKeys() {
		def := tools.tbl[k]
		c := CanonicalTool(k)
		if n := def.get("name"); n != nil && n.kind == kString && CanonicalTool(n.s) != c {
			errs.add(n.valPos(), "tools.%s.name: %q does not match the table's name %q", k, n.s, k)
		}
		if c == k {
			continue
		}
		if other, dup := tools.tbl[c]; dup {
			errs.add(def.key, "tools.%s: defined twice, as %q and as %q (line %d); %s is another name for %s", k, k, c, other.key.Line, k, c)
			continue
		}
		delete(tools.tbl, k)
		tools.tbl[c] = def
	}
}

// decodeTools builds the definitions from a merged tools tree.
func decodeTools(root *node, builtin map[string]bool) *catalogue {
	cat := &catalogue{defs: map[string]*ToolDef{}}
	tools := root.get("tools")
	if tools == nil {
		return cat
	}
	for _, name := range tools.sortedKeys() {
		n := tools.tbl[name]
		if n.kind != kTable {
			continue
		}
		d := &ToolDef{
			Name:                 name,
			Aliases:              ToolAliases(name),
			Description:          strAt(n, "description"),
			Category:             strAt(n, "category"),
			RequiresConfirmation: boolAt(n, "requires_confirmation", false),
			EnabledByDefault:     boolAt(n, "enabled_by_default", false),
			Builtin:              builtin[name],
			Parameters:           map[string]Param{},
			Config:               map[string]any{},
			node:                 n,
		}
		if ps := n.get("parameters"); ps != nil && ps.kind == kTable {
			for _, pn := range ps.sortedKeys() {
				p := ps.tbl[pn]
				par := Param{Type: strAt(p, "type"), Description: strAt(p, "description"), Required: boolAt(p, "required", false)}
				if v := p.get("default"); v != nil {
					par.Default = v.any()
				}
				if v := p.get("enum"); v != nil && v.kind == kArray {
					par.Enum = v.any().([]any)
				}
				d.Parameters[pn] = par
			}
		}
		// Constraint keys may be written in [config] (the seed does, for
		// blocked_imports and blocked_commands) or in [constraints], which
		// wins where both set one.
		if cfg := n.get("config"); cfg != nil && cfg.kind == kTable {
			applyConstraints(&d.Constraints, cfg)
			for _, k := range cfg.sortedKeys() {
				if _, isConstraint := constraintFields[k]; !isConstraint {
					d.Config[k] = cfg.tbl[k].any()
				}
			}
		}
		if c := n.get("constraints"); c != nil && c.kind == kTable {
			applyConstraints(&d.Constraints, c)
		}
		cat.defs[name] = d
	}
	return cat
}

// applyConstraints sets the constraints t holds, leaving the others.
func applyConstraints(c *Constraints, t *node) {
	if v := t.get("max_file_size"); v != nil {
		c.MaxFileSize = sizeOf(v)
	}
	if v := t.get("workspace_only"); v != nil && v.kind == kBool {
		c.WorkspaceOnly = v.b
	}
	for key, dst := range map[string]*[]string{
		"blocked_paths":        &c.BlockedPaths,
		"blocked_imports":      &c.BlockedImports,
		"blocked_commands":     &c.BlockedCommands,
		"blocked_hosts":        &c.BlockedHosts,
		"auto_approve_methods": &c.AutoApproveMethods,
	} {
		if v := t.get(key); v != nil && v.kind == kArray {
			*dst = v.strings()
		}
	}
}

// sizeOf reads a checked size node; 0 if it does not parse (the error has
// been reported).
func sizeOf(n *node) int64 {
	switch n.kind {
	case kInt:
		return n.i
	case kString:
		v, _ := ParseSize(n.s)
		return v
	}
	return 0
}

func strAt(n *node, path ...string) string {
	if v := n.get(path...); v != nil && v.kind == kString {
		return v.s
	}
	return ""
}

func boolAt(n *node, key string, def bool) bool {
	if v := n.get(key); v != nil && v.kind == kBool {
		return v.b
	}
	return def
}
