package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"

	"github.com/vial-run/vial/api"
	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/internal/lazyre"
)

// configAPI serves the layered configuration of one directory to the REST
// API (api.Config). Files are named relative to the directory in
// everything it returns, so the page shows "agents/x/agent.toml:17:1"
// rather than host paths. It reads the directory afresh on every call, so
// an edit on disk shows at once; writes are serialised.
type configAPI struct {
	dir string
	// env looks up variables for ${...}; nil means os.LookupEnv.
	env func(string) (string, bool)
	mu  sync.Mutex // held while writing an agent file
}

var _ api.Config = (*configAPI)(nil)

// newAgentID is the agent a body is validated as when the request names
// none.
const newAgentID = "new-agent"

// recorder remembers the values a load looked up — process variables and
// the agent's .env — so that messages can be scrubbed of them. Config
// masks secrets in the values it resolves; an error message about a value
// (e.g. `sandbox.mode: "<expanded>" is not a choice`) comes before any
// of that, and must not carry a secret to the page either.
type recorder struct {
	mu     sync.Mutex
	values map[string]bool
}

func (r *recorder) add(v string) {
	// Short values ("1", "true") are not secrets and would mask words.
	if len(v) < 4 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string]bool{}
	}
	r.values[v] = true
}

// scrub masks every recorded value (and extra) in s, longest first.
func (r *recorder) scrub(s string, extra ...string) string {
	r.mu.Lock()
	vals := slices.Collect(maps.Keys(r.values))
	r.mu.Unlock()
	vals = append(vals, extra...)
	slices.SortFunc(vals, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, v := range vals {
		if v != "" {
			s = strings.ReplaceAll(s, v, api.Masked)
		}
	}
	return s
}

// recordingFS records the values of the .env files read through it.
type recordingFS struct {
	fs.FS
	rec *recorder
}

var dotenvLine = lazyre.New(`^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=\s*(.*?)\s*$`)

func (r recordingFS) ReadFile(name string) ([]byte, error) {
	b, err := fs.ReadFile(r.FS, name)
	if err == nil && path.Base(name) == ".env" {
		for line := range strings.SplitSeq(string(b), "\n") {
			if m := dotenvLine.FindStringSubmatch(line); m != nil {
				r.rec.add(strings.Trim(m[1], `"'`))
			}
		}
	}
	return b, err
}

// ReadDir and Stat pass through, so that an overlay's file shows in
// listings.
func (r recordingFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(r.FS, name) }
func (r recordingFS) Stat(name string) (fs.FileInfo, error)      { return fs.Stat(r.FS, name) }

// options are the load options for agent ("" for none) over fsys (nil:
// the directory), recording looked-up values in rec.
func (c *configAPI) options(agent string, fsys fs.FS, rec *recorder) config.Options {
	lookup := c.env
	if lookup == nil {
		lookup = os.LookupEnv
	}
	o := config.Options{
		AgentID:     agent,
		Implemented: configImplementedTools,
		Builtins:    map[string]string{"CONFIG_DIR": c.dir},
		Env: func(k string) (string, bool) {
			v, ok := lookup(k)
			if ok {
				rec.add(v)
			}
			return v, ok
		},
	}
	if fsys == nil {
		if st, err := os.Stat(c.dir); err == nil && st.IsDir() {
			fsys = os.DirFS(c.dir)
		}
	}
	if fsys != nil {
		// Dir stays "": files are named relative to the directory.
		o.FS = recordingFS{fsys, rec}
	} else {
		o.Dir = c.dir // does not exist: built-in defaults, with a warning
	}
	return o
}

// loadErr turns a load error into the API's: an unknown agent or template
// keeps its class (404), every configuration problem becomes a Problem of
// an *api.ConfigError (422). Messages are scrubbed.
func loadErr(err error, rec *recorder) error {
	if errors.Is(err, config.ErrNotFound) {
		return fmt.Errorf("%s: %w", rec.scrub(err.Error()), errdefs.ErrNotFound)
	}
	errs := config.Errors(err)
	if len(errs) == 0 {
		return fmt.Errorf("loading the configuration: %w", err)
	}
	return &api.ConfigError{Problems: problems(errs, rec)}
}

func problems(errs []*config.Error, rec *recorder) []api.Problem {
	out := make([]api.Problem, 0, len(errs))
	for _, e := range errs {
		out = append(out, api.Problem{File: e.Pos.File, Line: e.Pos.Line, Col: e.Pos.Col, Message: rec.scrub(e.Msg)})
	}
	return out
}

func (c *configAPI) Templates(ctx context.Context) ([]api.Template, error) {
	rec := &recorder{}
	ts, err := config.Templates(c.options("", nil, rec))
	if err != nil {
		return nil, loadErr(err, rec)
	}
	out := make([]api.Template, 0, len(ts))
	for _, t := range ts {
		out = append(out, api.Template{Name: t.Name, Extends: t.Extends, Description: t.Description, Tags: nonNilStrings(t.Tags), File: t.File})
	}
	return out, nil
}

func (c *configAPI) Template(ctx context.Context, name string) (*api.TemplateDetail, error) {
	ts, err := c.Templates(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(ts, func(t api.Template) bool { return t.Name == name })
	if i < 0 {
		names := make([]string, len(ts))
		for j, t := range ts {
			names[j] = t.Name
		}
		return nil, fmt.Errorf("environment template %q not found (valid: %s): %w", name, strings.Join(names, ", "), errdefs.ErrNotFound)
	}
	d := &api.TemplateDetail{Template: ts[i]}
	if !strings.HasPrefix(d.File, "builtin:") {
		b, err := c.readFile("config/environments/" + name + ".toml")
		if err != nil {
			return nil, err
		}
		d.TOML = string(b)
	}
	rec := &recorder{}
	o := c.options("", nil, rec)
	o.Template = name
	r, err := config.Load(o)
	if err != nil {
		return nil, loadErr(err, rec)
	}
	if d.Resolved, err = resolvedOf(r, rec); err != nil {
		return nil, err
	}
	return d, nil
}

func (c *configAPI) Agents(ctx context.Context) ([]api.Agent, error) {
	var out []api.Agent
	for _, id := range config.Agents(c.options("", nil, &recorder{})) {
		a := api.Agent{ID: id, File: agentFile(id)}
		r, err := config.Load(c.options(id, nil, &recorder{}))
		if err != nil {
			a.Problems = max(1, len(config.Errors(err)))
		} else {
			a.Name, a.Description, a.Extends = r.Metadata.Name, r.Metadata.Description, r.Template
		}
		out = append(out, a)
	}
	return out, nil
}

func agentFile(id string) string { return "agents/" + id + "/agent.toml" }

// agentExists checks that id is one of the directory's agents.
func (c *configAPI) agentExists(id string) error {
	ids := config.Agents(c.options("", nil, &recorder{}))
	if !slices.Contains(ids, id) {
		valid := strings.Join(ids, ", ")
		if valid == "" {
			valid = "none defined"
		}
		return fmt.Errorf("agent %q not found (valid: %s): %w", id, valid, errdefs.ErrNotFound)
	}
	return nil
}

// readFile reads a file of the directory through an os.Root, so that no
// name and no symbolic link leads outside it.
func (c *configAPI) readFile(rel string) ([]byte, error) {
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, fmt.Errorf("opening the configuration directory: %w", err)
	}
	defer root.Close()
	b, err := root.ReadFile(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: %w", rel, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	return b, nil
}

func (c *configAPI) AgentFile(ctx context.Context, id string) (*api.AgentFile, error) {
	if err := c.agentExists(id); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, fmt.Errorf("opening the configuration directory: %w", err)
	}
	defer root.Close()
	rel := agentFile(id)
	b, st, err := readWithStat(root, rel)
	if err != nil {
		return nil, err
	}
	return &api.AgentFile{ID: id, File: rel, TOML: string(b), SHA256: sha256Hex(b), Modified: st.ModTime().UTC()}, nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (c *configAPI) Resolve(ctx context.Context, id string, overrides map[string]any) (*api.Resolved, error) {
	rec := &recorder{}
	o := c.options(id, nil, rec)
	o.Overrides = overrides
	r, err := config.Load(o)
	if err != nil {
		return nil, loadErr(err, rec)
	}
	return resolvedOf(r, rec)
}

// resolvedOf turns a Resolved into the API's shape: the merged TOML as
// `vial config show` prints it (secrets masked), the same as nested
// values, and every leaf with its origin.
func resolvedOf(r *config.Resolved, rec *recorder) (*api.Resolved, error) {
	var buf bytes.Buffer
	if err := r.Format(&buf, false); err != nil {
		return nil, fmt.Errorf("formatting the configuration: %w", err)
	}
	tree := map[string]any{}
	if err := toml.Unmarshal(buf.Bytes(), &tree); err != nil {
		return nil, fmt.Errorf("reading back the merged configuration: %w", err)
	}
	flat := map[string]any{}
	flatten(tree, "", flat)
	out := &api.Resolved{AgentID: r.AgentID, Template: r.Template, Chain: r.Chain, Config: tree, TOML: buf.String(), Warnings: []string{}}
	secrets := r.SecretValues()
	for _, w := range r.Warnings {
		out.Warnings = append(out.Warnings, rec.scrub(w, secrets...))
	}
	for key, o := range r.Provenance {
		v, ok := flat[key]
		if !ok {
			continue
		}
		out.Values = append(out.Values, api.Value{Key: key, Value: v, Text: tomlText(v), Layer: o.Level.String(), Name: o.Name,
			File: o.Pos.File, Line: o.Pos.Line, Col: o.Pos.Col, Secret: o.Secret})
	}
	slices.SortFunc(out.Values, func(a, b api.Value) int {
		return cmp.Or(cmp.Compare(sectionRank(a.Key), sectionRank(b.Key)), strings.Compare(a.Key, b.Key))
	})
	return out, nil
}

// sections is the order of the top-level tables, as `vial config show`
// prints them (the seed's order).
var sections = []string{"metadata", "extends", "sandbox", "shell", "tools", "mcp", "hitl", "logging"}

func sectionRank(key string) int {
	top, _, _ := strings.Cut(key, ".")
	if i := slices.Index(sections, top); i >= 0 {
		return i
	}
	return len(sections)
}

var bareTOMLKey = lazyre.New(`^[A-Za-z0-9_-]+$`)

// flatten lists the leaves of a tree by dotted key, quoting parts that are
// not bare as the configuration's provenance does; an empty table is a
// leaf.
func flatten(m map[string]any, prefix string, out map[string]any) {
	for k, v := range m {
		if !bareTOMLKey.MatchString(k) {
			k = strconv.Quote(k)
		}
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			flatten(sub, key, out)
			continue
		}
		out[key] = v
	}
}

// tomlText writes a value as TOML does.
func tomlText(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.ContainsAny(s, ".eEnN") {
			s += ".0"
		}
		return s
	case bool:
		return strconv.FormatBool(v)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = tomlText(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := slices.Sorted(maps.Keys(v))
		parts := make([]string, len(keys))
		for i, k := range keys {
			kk := k
			if !bareTOMLKey.MatchString(k) {
				kk = strconv.Quote(k)
			}
			parts[i] = kk + " = " + tomlText(v[k])
		}
		if len(parts) == 0 {
			return "{}"
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// Validate checks body as the file target names, with the rest of the
// directory as it is on disk: the body stands in for that file (an
// overlay; nothing is written).
func (c *configAPI) Validate(ctx context.Context, target api.ValidateTarget, body []byte) (*api.Validation, error) {
	rec := &recorder{}
	var rel string
	var o config.Options
	if target.Template != "" {
		rel = "config/environments/" + target.Template + ".toml"
		o = c.options("", c.overlay(rel, body), rec)
		o.Template = target.Template
	} else {
		id := cmp.Or(target.Agent, newAgentID)
		rel = agentFile(id)
		o = c.options(id, c.overlay(rel, body), rec)
	}
	v := &api.Validation{File: rel, Problems: []api.Problem{}, Warnings: []string{}}
	r, err := config.Load(o)
	if err != nil {
		if errors.Is(err, config.ErrNotFound) {
			return nil, loadErr(err, rec)
		}
		errs := config.Errors(err)
		if len(errs) == 0 {
			return nil, fmt.Errorf("validating: %w", err)
		}
		v.Problems = problems(errs, rec)
		return v, nil
	}
	v.Valid = true
	secrets := r.SecretValues()
	for _, w := range r.Warnings {
		v.Warnings = append(v.Warnings, rec.scrub(w, secrets...))
	}
	return v, nil
}

// overlay is the configuration directory with body standing in for the
// file rel.
func (c *configAPI) overlay(rel string, body []byte) fs.FS {
	var base fs.FS = emptyFS{}
	if st, err := os.Stat(c.dir); err == nil && st.IsDir() {
		base = os.DirFS(c.dir)
	}
	return &overlayFS{base: base, name: rel, data: body, mod: time.Now()}
}

// WriteAgentFile validates body as the agent's file and, only if it is
// valid, replaces agents/ID/agent.toml: the new content goes to a
// temporary file next to it (same owner and mode), synced, the previous
// content to agent.toml.bak the same way, then a rename puts the new file
// in place, so that a reader sees the old file or the new one, never a
// mixture. Every path goes through an os.Root of the directory.
func (c *configAPI) WriteAgentFile(ctx context.Context, id string, body []byte, ifMatch string) (*api.AgentFile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.agentExists(id); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, fmt.Errorf("opening the configuration directory: %w", err)
	}
	defer root.Close()
	rel := agentFile(id)
	old, st, err := readWithStat(root, rel)
	if err != nil {
		return nil, err
	}
	if ifMatch != "" && ifMatch != sha256Hex(old) {
		return nil, fmt.Errorf("%s changed since it was read (its sha256 is no longer %s): reload it and apply the change again: %w", rel, cut64(ifMatch), errdefs.ErrFailedPrecondition)
	}
	v, err := c.Validate(ctx, api.ValidateTarget{Agent: id}, body)
	if err != nil {
		return nil, err
	}
	if !v.Valid {
		return nil, &api.ConfigError{Problems: v.Problems, Warnings: v.Warnings}
	}
	bak := rel + ".bak"
	if err := replaceFile(root, bak, old, st); err != nil {
		return nil, fmt.Errorf("keeping the previous %s: %w", rel, err)
	}
	if err := replaceFile(root, rel, body, st); err != nil {
		return nil, fmt.Errorf("writing %s: %w", rel, err)
	}
	nst, err := root.Stat(rel)
	if err != nil {
		return nil, fmt.Errorf("reading back %s: %w", rel, err)
	}
	return &api.AgentFile{ID: id, File: rel, TOML: string(body), SHA256: sha256Hex(body), Modified: nst.ModTime().UTC(), Backup: bak}, nil
}

func cut64(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// replaceFile writes data to a temporary file beside rel with like's mode
// and owner, syncs it and renames it over rel, then syncs the directory.
func replaceFile(root *os.Root, rel string, data []byte, like fs.FileInfo) error {
	var raw [6]byte
	rand.Read(raw[:])
	dir := path.Dir(rel)
	tmp := path.Join(dir, "."+path.Base(rel)+"."+hex.EncodeToString(raw[:])+".tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, like.Mode().Perm())
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			root.Remove(tmp)
		}
	}()
	if sys, ok := like.Sys().(*syscall.Stat_t); ok {
		if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	if err := f.Chmod(like.Mode().Perm()); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := root.Rename(tmp, rel); err != nil {
		return err
	}
	done = true
	if d, err := root.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (c *configAPI) Tools(ctx context.Context, agent string) ([]api.Tool, error) {
	rec := &recorder{}
	r, err := config.Load(c.options(agent, nil, rec))
	if err != nil {
		return nil, loadErr(err, rec)
	}
	secrets := r.SecretValues()
	out := make([]api.Tool, 0, len(r.ToolDefs))
	for _, name := range slices.Sorted(maps.Keys(r.ToolDefs)) {
		d := r.ToolDefs[name]
		p := r.Policy(name)
		t := api.Tool{Name: name, Aliases: nonNilStrings(d.Aliases), Description: d.Description, Category: d.Category,
			Builtin: d.Builtin, Implemented: d.Implemented, Enabled: p.Enabled, EnabledByDefault: d.EnabledByDefault,
			RequiresConfirmation: d.RequiresConfirmation, ConfirmationRequired: p.ConfirmationRequired,
			Parameters: map[string]api.Param{}, Config: maskAll(p.Config, rec, secrets).(map[string]any),
			Constraints: api.Constraints{MaxFileSize: p.Constraints.MaxFileSize, BlockedPaths: p.Constraints.BlockedPaths,
				WorkspaceOnly: p.Constraints.WorkspaceOnly, BlockedImports: p.Constraints.BlockedImports,
				BlockedCommands: p.Constraints.BlockedCommands, BlockedHosts: p.Constraints.BlockedHosts,
				AutoApproveMethods: p.Constraints.AutoApproveMethods}}
		for pn, pd := range d.Parameters {
			t.Parameters[pn] = api.Param{Type: pd.Type, Description: pd.Description, Required: pd.Required, Default: pd.Default, Enum: pd.Enum}
		}
		out = append(out, t)
	}
	return out, nil
}

// maskAll replaces every string in v that holds a secret value with
// api.Masked.
func maskAll(v any, rec *recorder, secrets []string) any {
	switch v := v.(type) {
	case string:
		if s := rec.scrub(v, secrets...); s != v {
			return api.Masked
		}
		return v
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = maskAll(e, rec, secrets)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = maskAll(e, rec, secrets)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = maskAll(e, rec, secrets)
		}
		return out
	}
	return v
}

func (c *configAPI) MCPServers(ctx context.Context, agent string) ([]api.MCPServer, error) {
	rec := &recorder{}
	r, err := config.Load(c.options(agent, nil, rec))
	if err != nil {
		return nil, loadErr(err, rec)
	}
	secrets := r.SecretValues()
	out := []api.MCPServer{}
	for _, name := range slices.Sorted(maps.Keys(r.MCPServers)) {
		s := r.MCPServers[name]
		cfg := map[string]any{}
		if s.Config != nil {
			cfg = maskAll(s.Config, rec, secrets).(map[string]any)
		}
		out = append(out, api.MCPServer{Name: name, Title: s.Title, Description: s.Description,
			URL: rec.scrub(s.URL, secrets...), Transport: s.Transport, Enabled: s.Enabled, AutoStart: s.AutoStart,
			Sandboxed: s.Sandboxed, APIKeyEnv: s.APIKeyEnv, APIKeySet: s.APIKey != "", Config: cfg,
			From: r.Provenance["mcp.servers."+name+".url"].String()})
	}
	return out, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// readWithStat reads rel of root and stats it.
func readWithStat(root *os.Root, rel string) ([]byte, os.FileInfo, error) {
	b, err := root.ReadFile(rel)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	st, err := root.Stat(rel)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	return b, st, nil
}
