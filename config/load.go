package config

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/vial-run/vial/internal/tomltext"
)

// builtinFS holds level 0: the defaults of every key and the tool
// catalogue.
//
//go:embed builtin/defaults.toml builtin/catalogue.toml
var builtinFS embed.FS

// defaultsFS holds the files vial uses when the configuration directory
// lacks them, so that vial runs with no files at all. They are also what
// "vial config init" writes.
//
//go:embed all:defaults
var defaultsFS embed.FS

// starterFS holds the extra files "vial config init" writes (an example
// agent).
//
//go:embed all:starter
var starterFS embed.FS

// DefaultDir is where vial looks for its configuration unless told.
const DefaultDir = "/etc/vial"

// Options say what to load.
type Options struct {
	// Dir is the configuration directory. A file it lacks is taken from
	// the built-in defaults; "" or a directory that does not exist means
	// built-in defaults only (the latter with a warning).
	Dir string
	// FS, if set, is read instead of Dir (tests and fuzzing); Dir is then
	// only the name shown in messages.
	FS fs.FS
	// AgentID selects agents/ID/agent.toml; "" resolves the system
	// defaults alone.
	AgentID string
	// Template, with no AgentID, resolves the system defaults with the
	// named environment template (and its extends chain) over them: what
	// an agent extending it would get before its own file. An unknown
	// template is an error of class ErrNotFound that lists the valid
	// names. Ignored when AgentID is set.
	Template string
	// Sets are level 4 overrides as "dotted.key=value"; the value is TOML
	// (300, true, ["a", "b"]) or, failing that, a bare string (2g).
	Sets []string
	// Overrides are level 4 overrides as nested maps, the shape of the
	// seed's runtime_overrides and of JSON: {"sandbox": {"timeout_seconds":
	// 300}}. Merged after Sets.
	Overrides map[string]any
	// Env looks up process environment variables; nil means os.LookupEnv.
	Env func(string) (string, bool)
	// Builtins are vial's own variables for ${...}, over the defaults
	// WORKSPACE=/workspace, AGENT_ID and CONFIG_DIR.
	Builtins map[string]string
	// Implemented is the set of canonical tool names vial has handlers
	// for. An enabled tool outside it is not offered and gets a warning.
	// nil treats every defined tool as implemented.
	Implemented map[string]bool
}

// Load resolves the configuration of opts.AgentID (or the system defaults)
// through every layer. All problems found are returned together (see
// Errors); an agent with no directory is an error of class ErrNotFound.
func Load(opts Options) (*Resolved, error) {
	l := newLoader(opts)
	if opts.AgentID != "" {
		if err := l.agentExists(opts.AgentID); err != nil {
			return nil, err
		}
	} else if opts.Template != "" {
		if err := l.templateExists(opts.Template); err != nil {
			return nil, err
		}
	}
	r := l.resolve(opts.AgentID)
	if err := l.errs.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// Report is what Validate checked.
type Report struct {
	Files     []string // every file read, as shown in messages
	Templates []string
	Agents    []string
	Warnings  []string // each prefixed with the agent it concerns, if any
}

// Validate checks the whole configuration directory: the system files,
// every template (and its extends chain), the system defaults resolved
// alone, and every agent resolved with opts.Sets and opts.Overrides.
// opts.AgentID, if set, limits the agents to that one. Every error found is
// returned together.
func Validate(opts Options) (*Report, error) {
	l := newLoader(opts)
	rep := &Report{}
	l.catalogue()
	rep.Templates = l.templateNames()
	for _, t := range rep.Templates {
		if f := l.template(t); f != nil && f.tree != nil {
			l.chain(l.extendsOf(f.tree), t)
		}
	}
	if r := l.resolve(""); r != nil {
		rep.Warnings = append(rep.Warnings, r.Warnings...)
	}
	agents := l.agentNames()
	if opts.AgentID != "" {
		if err := l.agentExists(opts.AgentID); err != nil {
			return nil, err
		}
		agents = []string{opts.AgentID}
	}
	rep.Agents = agents
	for _, a := range agents {
		if r := l.resolve(a); r != nil {
			for _, w := range r.Warnings {
				if w = "agent " + a + ": " + w; !slices.Contains(rep.Warnings, w) {
					rep.Warnings = append(rep.Warnings, w)
				}
			}
		}
	}
	rep.Warnings = append(l.warnings, rep.Warnings...)
	rep.Files = l.order
	return rep, l.errs.err()
}

// TemplateInfo describes one environment template.
type TemplateInfo struct {
	Name        string
	Extends     string
	Description string
	Tags        []string
	File        string
}

// Templates lists the environment templates, built-in and in the
// directory (a file there replaces the built-in one of the same name).
func Templates(opts Options) ([]TemplateInfo, error) {
	l := newLoader(opts)
	l.catalogue()
	var out []TemplateInfo
	for _, name := range l.templateNames() {
		f := l.template(name)
		if f == nil || f.tree == nil {
			continue
		}
		out = append(out, TemplateInfo{
			Name:        name,
			Extends:     strOf(l.extendsOf(f.tree)),
			Description: strAt(f.tree, "metadata", "description"),
			Tags:        f.tree.get("metadata", "tags").strings(),
			File:        f.src.File,
		})
	}
	return out, l.errs.err()
}

// Agents lists the agents of the directory: each agents/ID with an
// agent.toml.
func Agents(opts Options) []string {
	return newLoader(opts).agentNames()
}

// file is one parsed configuration file.
type file struct {
	src  *source
	tree *node // nil if it did not parse
}

// loader reads and caches files for one Load or Validate.
type loader struct {
	opts     Options
	fsys     fs.FS // the directory, nil if none
	errs     errList
	warnings []string
	files    map[string]*file // by path in the tree
	order    []string         // files read, as shown
	cat      *catalogue
	defsTree *node // catalogue + tools.toml, before interpolation
}

func newLoader(opts Options) *loader {
	l := &loader{opts: opts, files: map[string]*file{}}
	switch {
	case opts.FS != nil:
		l.fsys = opts.FS
	case opts.Dir != "":
		if st, err := os.Stat(opts.Dir); err == nil && st.IsDir() {
			l.fsys = os.DirFS(opts.Dir)
		} else {
			l.warnings = append(l.warnings, fmt.Sprintf("configuration directory %s does not exist; using the built-in defaults", opts.Dir))
		}
	}
	return l
}

// display is how a path in the directory appears in messages.
func (l *loader) display(rel string) string {
	if l.opts.Dir == "" {
		return rel
	}
	return filepath.Join(l.opts.Dir, filepath.FromSlash(rel))
}

// read returns a file of the directory, falling back to the built-in one
// when fallback is set. ok is false if neither exists.
func (l *loader) read(rel string, fallback bool) (data []byte, shown string, ok bool) {
	if l.fsys != nil {
		data, err := fs.ReadFile(l.fsys, rel)
		if err == nil {
			return data, l.display(rel), true
		}
		if !errors.Is(err, fs.ErrNotExist) {
			l.errs.add(Pos{File: l.display(rel)}, "reading: %v", unwrapPathErr(err))
			return nil, "", false
		}
	}
	if fallback {
		if data, err := fs.ReadFile(defaultsFS, "defaults/"+rel); err == nil {
			return data, "builtin:" + rel, true
		}
	}
	return nil, "", false
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// load parses and checks one file, once.
func (l *loader) load(rel string, fallback bool, src source, s *spec) *file {
	if f, ok := l.files[rel]; ok {
		return f
	}
	data, shown, ok := l.read(rel, fallback)
	if !ok {
		l.files[rel] = nil
		return nil
	}
	return l.parseChecked(rel, shown, data, src, s)
}

func (l *loader) parseChecked(key, shown string, data []byte, src source, s *spec) *file {
	src.File = shown
	f := &file{src: &src}
	l.files[key] = f
	l.order = append(l.order, shown)
	l.errs.fileRank(shown, src.Level)
	tree, perr := parse(shown, data, f.src)
	if perr != nil {
		l.errs.addErr(perr)
		return f
	}
	f.tree = tree
	c := &checker{errs: &l.errs, cat: l.cat}
	c.check(tree, s, "")
	return f
}

// catalogue loads the built-in catalogue and config/tools.toml, merged.
func (l *loader) catalogue() *catalogue {
	if l.cat != nil {
		return l.cat
	}
	data, _ := builtinFS.ReadFile("builtin/catalogue.toml")
	bf := l.parseChecked("builtin/catalogue.toml", "builtin:catalogue.toml", data, source{Level: LevelBuiltin}, toolsFileSpec)
	acc := bf.tree
	canonicalizeTools(acc, &l.errs)
	builtin := map[string]bool{}
	for k := range acc.get("tools").tbl {
		builtin[k] = true
	}
	if f := l.load("config/tools.toml", true, source{Level: LevelSystem}, toolsFileSpec); f != nil && f.tree != nil {
		canonicalizeTools(f.tree, &l.errs)
		mergeInto(acc, f.tree, "")
	}
	l.defsTree = acc
	l.cat = decodeTools(acc, builtin)
	return l.cat
}

// templateNames lists the templates, directory and built-in, sorted.
func (l *loader) templateNames() []string {
	var names []string
	add := func(fsys fs.FS, dir string) {
		matches, _ := fs.Glob(fsys, dir+"/*.toml")
		for _, m := range matches {
			n := strings.TrimSuffix(path.Base(m), ".toml")
			if nameRE.MatchString(n) && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if l.fsys != nil {
		add(l.fsys, "config/environments")
	}
	add(defaultsFS, "defaults/config/environments")
	slices.Sort(names)
	return names
}

func (l *loader) template(name string) *file {
	f := l.load("config/environments/"+name+".toml", true, source{Level: LevelTemplate, Name: name}, layerSpec(fileTemplate))
	if f != nil && f.tree != nil {
		if n := f.tree.get("metadata", "name"); n != nil && n.kind == kString && n.s != name {
			l.errs.add(n.valPos(), "metadata.name: %q does not match the file name %q", n.s, name+".toml")
		}
	}
	return f
}

// chain follows extends from a file (named self) to the system defaults
// and returns the templates to merge, lowest first. A missing template or
// a cycle is reported at the extends that names it.
func (l *loader) chain(ext *node, self string) []*file {
	var out []*file
	seen := []string{self}
	for ext != nil && ext.kind == kString && ext.s != "" {
		name := ext.s
		if slices.Contains(seen, name) {
			l.errs.add(ext.valPos(), "extends: cycle %s -> %s", strings.Join(seen, " -> "), name)
			return out
		}
		names := l.templateNames()
		if !nameRE.MatchString(name) || !slices.Contains(names, name) {
			l.errs.add(ext.valPos(), "extends: unknown template %q%s (valid: %s)", name, suggest(name, names), strings.Join(names, ", "))
			return out
		}
		f := l.template(name)
		if f == nil || f.tree == nil {
			return out
		}
		seen = append(seen, name)
		out = append([]*file{f}, out...)
		ext = l.extendsOf(f.tree)
	}
	return out
}

// extendsOf returns a file's extends: top-level, or in [metadata] as the
// seed writes it. Both at once is an error.
func (l *loader) extendsOf(t *node) *node {
	top, meta := t.get("extends"), t.get("metadata", "extends")
	if top != nil && meta != nil {
		l.errs.add(meta.key, "extends is set twice, here and at line %d (valid: one extends, top-level or in [metadata])", top.key.Line)
	}
	if top != nil {
		return top
	}
	return meta
}

func strOf(n *node) string {
	if n != nil && n.kind == kString {
		return n.s
	}
	return ""
}

func (l *loader) agentNames() []string {
	if l.fsys == nil {
		return nil
	}
	matches, _ := fs.Glob(l.fsys, "agents/*/agent.toml")
	var out []string
	for _, m := range matches {
		if id := path.Base(path.Dir(m)); nameRE.MatchString(id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// agentExists checks an agent ID before it becomes a path component.
func (l *loader) agentExists(id string) error {
	if !nameRE.MatchString(id) || strings.Contains(id, "..") {
		return &Error{Msg: fmt.Sprintf("agent %q: not a valid agent ID (valid: letters, digits, _ . and -, starting with a letter or digit)", id)}
	}
	names := l.agentNames()
	if !slices.Contains(names, id) {
		valid := strings.Join(names, ", ")
		if valid == "" {
			valid = "none defined"
		}
		return &Error{Pos: Pos{File: l.display("agents/" + id + "/agent.toml")}, Msg: fmt.Sprintf("agent %q not found%s (valid: %s)", id, suggest(id, names), valid), class: ErrNotFound}
	}
	return nil
}

// templateExists checks a template name before it becomes a path
// component.
func (l *loader) templateExists(name string) error {
	names := l.templateNames()
	if nameRE.MatchString(name) && !strings.Contains(name, "..") && slices.Contains(names, name) {
		return nil
	}
	return &Error{Msg: fmt.Sprintf("environment %q not found%s (valid: %s)", name, suggest(name, names), strings.Join(names, ", ")), class: ErrNotFound}
}

// resolve merges every layer for an agent ("" for none) and decodes the
// result. Errors go to l.errs; the result is nil only if nothing could be
// merged.
func (l *loader) resolve(agentID string) *Resolved {
	cat := l.catalogue()
	data, _ := builtinFS.ReadFile("builtin/defaults.toml")
	df := l.files["builtin/defaults.toml"]
	if df == nil {
		df = l.parseChecked("builtin/defaults.toml", "builtin:defaults.toml", data, source{Level: LevelBuiltin}, layerSpec(fileSystem))
	}
	acc := df.tree.clone()
	r := &Resolved{AgentID: agentID, Chain: []string{df.src.File}}
	meta := df.tree

	// mcp.toml is level 1: its [settings] and [servers] are the layers'
	// [mcp.settings] and [mcp.servers].
	if f := l.load("config/mcp.toml", true, source{Level: LevelSystem}, mcpFileSpec); f != nil && f.tree != nil {
		layer := newTable(f.tree.key, f.src)
		m := newTable(f.tree.key, f.src)
		for _, k := range []string{"settings", "servers"} {
			if v := f.tree.tbl[k]; v != nil {
				m.tbl[k] = v
			}
		}
		layer.tbl["mcp"] = m
		mergeLayer(acc, layer)
		r.Chain = append(r.Chain, f.src.File)
	}
	if f := l.load("config/execution.toml", true, source{Level: LevelSystem}, layerSpec(fileSystem)); f != nil && f.tree != nil {
		mergeLayer(acc, f.tree)
		r.Chain = append(r.Chain, f.src.File)
		meta = f.tree
	}

	var agent *file
	var dotenv map[string]string
	envFile := ""
	if agentID != "" {
		agent = l.load("agents/"+agentID+"/agent.toml", false, source{Level: LevelAgent, Name: agentID}, layerSpec(fileAgent))
		if agent != nil && agent.tree != nil {
			if n := agent.tree.get("metadata", "agent_id"); n != nil && n.kind == kString && n.s != agentID {
				l.errs.add(n.valPos(), "metadata.agent_id: %q does not match the agent's directory %q", n.s, agentID)
			}
			for _, t := range l.chain(l.extendsOf(agent.tree), "agent "+agentID) {
				mergeLayer(acc, t.tree)
				r.Chain = append(r.Chain, t.src.File)
				r.Template = t.src.Name
			}
			if ext := l.extendsOf(agent.tree); ext != nil && ext.kind == kString {
				r.Template = ext.s
			}
			mergeLayer(acc, agent.tree)
			r.Chain = append(r.Chain, agent.src.File)
			meta = agent.tree
		}
		rel := "agents/" + agentID + "/.env"
		if data, shown, ok := l.read(rel, false); ok {
			envFile = shown
			l.errs.fileRank(shown, LevelAgent)
			dotenv = parseDotEnv(shown, data, &l.errs)
		} else {
			envFile = l.display(rel)
		}
	}

	if agentID == "" && l.opts.Template != "" {
		if f := l.template(l.opts.Template); f != nil && f.tree != nil {
			for _, t := range l.chain(l.extendsOf(f.tree), l.opts.Template) {
				mergeLayer(acc, t.tree)
				r.Chain = append(r.Chain, t.src.File)
			}
			mergeLayer(acc, f.tree)
			r.Chain = append(r.Chain, f.src.File)
			r.Template = l.opts.Template
			meta = f.tree
		}
	}

	// Level 4.
	for _, s := range l.opts.Sets {
		if layer := l.parseSet(s); layer != nil {
			mergeLayer(acc, layer)
		}
	}
	if len(l.opts.Overrides) > 0 {
		src := &source{Level: LevelRuntime, File: "runtime overrides"}
		layer, err := fromGo(l.opts.Overrides, Pos{File: src.File}, src)
		if err != nil {
			l.errs.add(Pos{File: src.File}, "%v", err)
		} else {
			(&checker{errs: &l.errs, cat: cat}).check(layer, layerSpec(fileRuntime), "")
			mergeLayer(acc, layer)
		}
	}

	v := &vars{builtin: map[string]string{"WORKSPACE": "/workspace", "AGENT_ID": agentID, "CONFIG_DIR": l.opts.Dir}, dotenv: dotenv, envFile: envFile, env: l.opts.Env}
	if v.env == nil {
		v.env = os.LookupEnv
	}
	for k, val := range l.opts.Builtins {
		v.builtin[k] = val
	}
	v.interpolate(acc, "", &l.errs)
	defs := l.defsTree.clone()
	v.interpolate(defs, "", &l.errs)
	after := &checker{errs: &l.errs, cat: cat, after: true}
	after.check(acc, layerSpec(fileRuntime), "")
	after.check(defs, toolsFileSpec, "")
	l.checkServers(acc)

	r.Metadata = Metadata{
		Version:     strAt(meta, "metadata", "version"),
		Name:        strAt(meta, "metadata", "name"),
		Description: strAt(meta, "metadata", "description"),
		AgentID:     strAt(meta, "metadata", "agent_id"),
		Author:      strAt(meta, "metadata", "author"),
		Tags:        meta.get("metadata", "tags").strings(),
	}
	r.decode(acc, decodeTools(defs, builtinSet(cat)), v, &l.opts)
	r.Provenance = provenance(acc)
	r.warn()
	return r
}

func builtinSet(cat *catalogue) map[string]bool {
	m := map[string]bool{}
	for name, d := range cat.defs {
		m[name] = d.Builtin
	}
	return m
}

// checkServers checks what only the merged servers can show: an enabled
// server needs an address, and its transport must fit the address.
func (l *loader) checkServers(acc *node) {
	servers := acc.get("mcp", "servers")
	if servers == nil {
		return
	}
	for _, name := range servers.sortedKeys() {
		s := servers.tbl[name]
		if s.kind != kTable || !boolAt(s, "enabled", true) {
			continue
		}
		u := s.get("url")
		if u == nil || u.kind != kString || u.s == "" {
			l.errs.add(s.key, "%s: an enabled server needs a url (valid: \"http://host:port/path\" or \"stdio://COMMAND ARGS...\")", serverKey(s, name))
			continue
		}
		t := s.get("transport")
		if t == nil || t.kind != kString {
			continue
		}
		stdio := strings.HasPrefix(u.s, "stdio://")
		if (t.s == "stdio") != stdio {
			want := "http or sse"
			if stdio {
				want = "stdio"
			}
			l.errs.add(t.valPos(), "%s.transport: %q does not fit url %q (valid: %s)", serverKey(t, name), t.s, u.s, want)
		}
	}
}

// serverKey names a server's table as the file holding n spells it:
// mcp.toml has [servers.X], the layers [mcp.servers.X].
func serverKey(n *node, name string) string {
	if n.src != nil && n.src.Level == LevelSystem && strings.HasSuffix(n.src.File, "mcp.toml") {
		return joinPath("servers", name)
	}
	return joinPath("mcp.servers", name)
}

// parseSet turns one --set key=value into a layer.
func (l *loader) parseSet(s string) *node {
	src := &source{Level: LevelRuntime, File: "--set " + s}
	pos := Pos{File: src.File}
	key, raw, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		l.errs.add(pos, "want key=value, e.g. sandbox.timeout_seconds=60")
		return nil
	}
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if !tomltext.BareKey.MatchString(p) {
			l.errs.add(pos, "%q is not a dotted key (valid: parts of letters, digits, _ and -, joined by .)", key)
			return nil
		}
	}
	var val *node
	target := specAt(layerSpec(fileRuntime), parts)
	var doc map[string]any
	err := toml.Unmarshal([]byte("v = "+raw), &doc)
	switch {
	case err == nil && (target == nil || target.t != tString && target.t != tSize || isString(doc["v"])):
		if val, err = fromGo(doc["v"], pos, src); err != nil {
			val = &node{kind: kString, s: raw, key: pos, src: src}
		}
	default:
		// Not TOML, or a string key: the value is the text as written.
		val = &node{kind: kString, s: raw, key: pos, src: src}
	}
	root := newTable(pos, src)
	t := root
	for _, p := range parts[:len(parts)-1] {
		c := newTable(pos, src)
		t.tbl[p] = c
		t = c
	}
	t.tbl[parts[len(parts)-1]] = val
	(&checker{errs: &l.errs, cat: l.cat}).check(root, layerSpec(fileRuntime), "")
	return root
}

func isString(v any) bool { _, ok := v.(string); return ok }

// specAt finds the spec of a dotted key; nil if the schema does not say.
func specAt(s *spec, parts []string) *spec {
	for _, p := range parts {
		switch {
		case s == nil:
			return nil
		case s.t == tTable || s.t == tFree:
			s = s.fields[p]
		case s.t == tMap:
			s = s.elem
		default:
			return nil
		}
	}
	return s
}

// provenance lists where each leaf (scalar or array) of the tree came
// from, by dotted key.
func provenance(t *node) map[string]Origin {
	out := map[string]Origin{}
	var walk func(n *node, p string)
	walk = func(n *node, p string) {
		if n.kind == kTable {
			for k, v := range n.tbl {
				walk(v, joinPath(p, k))
			}
			if len(n.tbl) > 0 || p == "" {
				return
			}
		}
		o := Origin{Pos: n.key, Secret: n.secret}
		if n.src != nil {
			o.Level, o.Name = n.src.Level, n.src.Name
		}
		for _, e := range n.arr {
			o.Secret = o.Secret || e.secret
		}
		out[p] = o
	}
	walk(t, "")
	return out
}

// warn adds the warnings an operator must see.
func (r *Resolved) warn() {
	if r.Mode == ModeLocal {
		o := r.Provenance["sandbox.mode"]
		r.Warnings = append(r.Warnings, fmt.Sprintf("sandbox.mode = \"local\" (%s): code runs directly on this host with NO ISOLATION — no namespaces, seccomp, capability dropping, cgroup limits or read-only root; use it only for development", o.Pos))
	}
	for _, name := range r.Tools.Unimplemented {
		r.Warnings = append(r.Warnings, fmt.Sprintf("tool %s is enabled (%s) but vial does not implement it yet; it is not offered", name, r.Provenance["tools.enabled"].Pos))
	}
	if r.Mode != ModeLocal && r.Network.Enabled && len(r.Network.AllowedHosts) == 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("sandbox.network.enabled = true (%s) but allowed_hosts is empty: no host is reachable", r.Provenance["sandbox.network.enabled"].Pos))
	}
	for _, name := range sortedServerNames(r.MCPServers) {
		s := r.MCPServers[name]
		if s.Enabled && s.APIKeyEnv != "" && s.APIKey == "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("mcp server %s: api_key_env %s is not set", name, s.APIKeyEnv))
		}
	}
}

func sortedServerNames(m map[string]MCPServer) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// WriteStarter writes a commented starter configuration tree into dir:
// the built-in system files and templates and an example agent. It writes
// nothing if any of the files exists already, and returns the files
// written.
func WriteStarter(dir string) ([]string, error) {
	type entry struct {
		rel  string
		data []byte
	}
	var files []entry
	for _, root := range []struct {
		fsys   fs.FS
		prefix string
	}{{defaultsFS, "defaults"}, {starterFS, "starter"}} {
		err := fs.WalkDir(root.fsys, root.prefix, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := fs.ReadFile(root.fsys, p)
			if err != nil {
				return err
			}
			files = append(files, entry{strings.TrimPrefix(p, root.prefix+"/"), data})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading built-in files: %w", err)
		}
	}
	var exist []string
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f.rel))); err == nil {
			exist = append(exist, f.rel)
		}
	}
	if len(exist) > 0 {
		return nil, fmt.Errorf("writing starter configuration: %w: %s already has %s", fs.ErrExist, dir, strings.Join(exist, ", "))
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, fmt.Errorf("writing starter configuration: %w", err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(path.Base(f.rel), ".env") {
			mode = 0o600
		}
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return written, fmt.Errorf("writing starter configuration: %w", err)
		}
		_, err = fh.Write(f.data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return written, fmt.Errorf("writing %s: %w", p, err)
		}
		written = append(written, p)
	}
	return written, nil
}
