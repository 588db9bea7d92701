package config

import (
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// tree builds a configuration directory from file contents.
func tree(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

// TestMergeRules has one case per rule of merge.go (and
// docs/configuration.md): system, template t and agent a.
func TestMergeRules(t *testing.T) {
	tests := []struct {
		name                    string
		system, template, agent string
		sets                    []string
		get                     func(*Resolved) any
		want                    any
	}{
		{
			name:     "1 tables merge key by key",
			system:   "[shell.env]\nA = \"sys\"\nB = \"sys\"\n",
			template: "[shell.env]\nB = \"tpl\"\nC = \"tpl\"\n",
			agent:    "extends = \"t\"\n[shell.env]\nC = \"agent\"\n",
			get:      func(r *Resolved) any { return r.Shell.Env },
			want:     map[string]string{"A": "sys", "B": "tpl", "C": "agent"},
		},
		{
			name:     "1 nested tables merge at every depth",
			system:   "[sandbox.resources]\nmemory_limit = \"512m\"\ncpu_limit = 3.0\n",
			template: "[sandbox.resources]\nmemory_limit = \"1g\"\n",
			agent:    "extends = \"t\"\n",
			get:      func(r *Resolved) any { return []any{r.MemoryBytes, r.CPUs} },
			want:     []any{int64(1 << 30), 3.0},
		},
		{
			name:   "2 a later false wins",
			system: "[sandbox.security]\nread_only_root = true\n",
			agent:  "[sandbox.security]\nread_only_root = false\n",
			get:    func(r *Resolved) any { return r.Security.ReadOnlyRoot },
			want:   false,
		},
		{
			name:   "2 a later 0 wins",
			system: "[logging]\nretention_days = 7\n",
			agent:  "[logging]\nretention_days = 0\n",
			get:    func(r *Resolved) any { return r.Logging.RetentionDays },
			want:   0,
		},
		{
			name:     "2 a later scalar wins over template",
			template: "[sandbox]\ntimeout_seconds = 60\n",
			agent:    "extends = \"t\"\n[sandbox]\ntimeout_seconds = 120\n",
			sets:     []string{"sandbox.timeout_seconds=300"},
			get:      func(r *Resolved) any { return r.TimeoutSeconds },
			want:     300,
		},
		{
			name:     "3 arrays replace",
			system:   "[sandbox.network]\nallowed_hosts = [\"a.com\", \"b.com\"]\n",
			template: "[sandbox.network]\nallowed_hosts = [\"pypi.org\"]\n",
			agent:    "extends = \"t\"\n[sandbox.network]\nallowed_hosts = [\"arxiv.org\"]\n",
			get:      func(r *Resolved) any { return r.Network.AllowedHosts },
			want:     []string{"arxiv.org"},
		},
		{
			name:   "3 an empty array replaces too",
			system: "[sandbox.docker]\npackages = [\"numpy\"]\n",
			agent:  "[sandbox.docker]\npackages = []\n",
			get:    func(r *Resolved) any { return r.Packages },
			want:   []string{},
		},
		{
			name:     "4 tools.enabled accumulates",
			system:   "[tools]\nenabled = [\"read_file\"]\n",
			template: "[tools]\nenabled = [\"run_python\"]\n",
			agent:    "extends = \"t\"\n[tools]\nenabled = [\"web_search\", \"execute_python\"]\n",
			get:      func(r *Resolved) any { return r.Tools.Enabled },
			want:     []string{"create_context", "list_contexts", "read_file", "run_code", "stop_context", "web_search"},
		},
		{
			name:   "context tools travel with the code tools unless disabled by name",
			system: "[tools]\nenabled = [\"run_shell\"]\ndisabled = [\"stop_context\"]\n",
			get:    func(r *Resolved) any { return r.Tools.Enabled },
			want:   []string{"create_context", "list_contexts", "run_shell"},
		},
		{
			name:     "4 tools.disabled removes, a higher enabled restores",
			system:   "[tools]\nenabled = [\"read_file\", \"run_shell\", \"write_file\"]\n",
			template: "[tools]\ndisabled = [\"run_shell\", \"write_file\"]\n",
			agent:    "extends = \"t\"\n[tools]\nenabled = [\"write_file\"]\n",
			get:      func(r *Resolved) any { return r.Tools.Enabled },
			want:     []string{"read_file", "write_file"},
		},
		{
			name:   "4 no tools.enabled anywhere: enabled_by_default",
			system: "[sandbox]\ntimeout_seconds = 5\n",
			agent:  "[tools]\ndisabled = [\"run_shell\"]\n",
			get:    func(r *Resolved) any { return r.Tools.Enabled },
			want: []string{"create_context", "list_contexts", "list_directory", "read_file",
				"run_code", "search_files", "stop_context", "write_file"},
		},
		{
			name:     "5 metadata is not merged",
			system:   "[metadata]\ndescription = \"sys\"\nversion = \"1.0\"\n",
			template: "[metadata]\nname = \"t\"\ntags = [\"x\"]\n",
			agent:    "extends = \"t\"\n[metadata]\nname = \"agent\"\n",
			get:      func(r *Resolved) any { return r.Metadata },
			want:     Metadata{Name: "agent"},
		},
		{
			name:     "5 the seed's [metadata] extends works",
			template: "[metadata]\nname = \"t\"\nextends = \"\"\n[sandbox]\ntimeout_seconds = 77\n",
			agent:    "[metadata]\nagent_id = \"a\"\nextends = \"t\"\n",
			get:      func(r *Resolved) any { return r.TimeoutSeconds },
			want:     77,
		},
		{
			name:   "6 free-form tool config: a different kind replaces",
			system: "[mcp.servers.s]\nurl = \"http://s\"\n[mcp.servers.s.config]\nx = [1]\n",
			agent:  "[mcp.servers.s.config]\nx = { y = 2 }\n",
			get:    func(r *Resolved) any { return r.MCPServers["s"].Config["x"] },
			want:   map[string]any{"y": int64(2)},
		},
		{
			name:     "tool config under any name of the tool merges",
			template: "[tools.config.run_python]\nblocked_imports = [\"socket\"]\n",
			agent:    "extends = \"t\"\n[tools.config.execute_python]\nblocked_paths = [\"/x\"]\n",
			get: func(r *Resolved) any {
				p := r.Policy("run_python")
				return []any{p.Constraints.BlockedImports, p.Constraints.BlockedPaths, r.Tools.Config["run_code"]["blocked_imports"]}
			},
			want: []any{[]string{"socket"}, []string{"/x"}, []any{"socket"}},
		},
		{
			name:  "mcp.toml servers are the base of [mcp.servers]",
			agent: "[mcp.servers]\nbrowser = { url = \"http://localhost:3001\", enabled = true }\n",
			get: func(r *Resolved) any {
				return []any{r.MCPServers["browser"].Enabled, r.MCPServers["browser"].Transport}
			},
			want:   []any{true, "http"},
			system: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{
				"config/execution.toml":      tt.system,
				"config/environments/t.toml": tt.template,
				"agents/a/agent.toml":        tt.agent,
				"config/mcp.toml":            "[servers.browser]\nurl = \"http://x\"\ntransport = \"http\"\nenabled = false\n",
			}
			r, err := Load(Options{FS: tree(files), Dir: "d", AgentID: "a", Sets: tt.sets, Env: env()})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, tt.get(r)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestOverrides covers level 4: --set values and API maps.
func TestOverrides(t *testing.T) {
	tests := []struct {
		name      string
		sets      []string
		overrides map[string]any
		get       func(*Resolved) any
		want      any
	}{
		{name: "integer", sets: []string{"sandbox.timeout_seconds=300"}, get: func(r *Resolved) any { return r.TimeoutSeconds }, want: 300},
		{name: "bare size string", sets: []string{"sandbox.resources.memory_limit=2g"}, get: func(r *Resolved) any { return r.MemoryBytes }, want: int64(2 << 30)},
		{name: "string key keeps true as text", sets: []string{"shell.env.DEBUG=true"}, get: func(r *Resolved) any { return r.Shell.Env["DEBUG"] }, want: "true"},
		{name: "quoted string", sets: []string{`shell.env.X="a b"`}, get: func(r *Resolved) any { return r.Shell.Env["X"] }, want: "a b"},
		{name: "array", sets: []string{`sandbox.network.allowed_hosts=["a.org","b.org"]`}, get: func(r *Resolved) any { return r.Network.AllowedHosts }, want: []string{"a.org", "b.org"}},
		{name: "boolean", sets: []string{"sandbox.network.enabled=true"}, get: func(r *Resolved) any { return r.Network.Enabled }, want: true},
		{name: "later --set wins", sets: []string{"sandbox.runtime=crun", "sandbox.runtime=runsc"}, get: func(r *Resolved) any { return r.Runtime }, want: "runsc"},
		{name: "seed's runtime_overrides map",
			overrides: map[string]any{"sandbox": map[string]any{"timeout_seconds": float64(180)}, "shell": map[string]any{"env": map[string]any{"DEBUG": "1"}}},
			get:       func(r *Resolved) any { return []any{r.TimeoutSeconds, r.Shell.Env["DEBUG"]} },
			want:      []any{180, "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Load(Options{Sets: tt.sets, Overrides: tt.overrides, Env: env()})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, tt.get(r)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if o := r.Provenance["sandbox.timeout_seconds"]; len(tt.sets) > 0 && tt.name == "integer" && o.Level != LevelRuntime {
				t.Errorf("provenance = %v", o)
			}
		})
	}
}

func TestInterpolation(t *testing.T) {
	v := &vars{
		builtin: map[string]string{"WORKSPACE": "/workspace"},
		dotenv:  map[string]string{"TOKEN": "from-dotenv", "SHARED": "dotenv"},
		envFile: "agents/a/.env",
		env:     env("HOME", "/root", "SHARED", "process", "EMPTY", "", "WORKSPACE", "/elsewhere", "API_KEY", "k"),
	}
	tests := []struct {
		in, want string
		secret   bool
		err      string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOME}", want: "/root"},
		{in: "a-${HOME}-b", want: "a-/root-b"},
		{in: "${MISSING:fallback}", want: "fallback"},
		{in: "${MISSING:}", want: ""},
		{in: "${MISSING:a:b}", want: "a:b"},
		{in: "${EMPTY:default}", want: ""},
		{in: "$${HOME}", want: "${HOME}"},
		{in: "$$${HOME}", want: "$${HOME}"},
		{in: "$HOME", want: "$HOME"},
		{in: "${WORKSPACE}/out", want: "/workspace/out"},
		{in: "${SHARED}", want: "dotenv", secret: true},
		{in: "${TOKEN}", want: "from-dotenv", secret: true},
		{in: "${API_KEY}", want: "k", secret: true},
		{in: "${MISSING}", err: "${MISSING} is not set (set it in the environment or agents/a/.env, or write ${MISSING:default})"},
		{in: "${1X}", err: `${1X}: "1X" is not a variable name (valid: letters, digits and _, not starting with a digit)`},
		{in: "${HOME", err: `unterminated ${ in "${HOME" (write $${ for a literal ${)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, _, secret, err := v.expand(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || secret != tt.secret {
				t.Errorf("expand(%q) = %q secret %v, want %q secret %v", tt.in, got, secret, tt.want, tt.secret)
			}
		})
	}
}

func TestInterpolationFromDotEnv(t *testing.T) {
	files := map[string]string{
		"agents/a/agent.toml": "[shell.env]\nKEY = \"${SEARCH_KEY}\"\nOPEN = \"${PLAIN:x}\"\n[sandbox.resources]\nmemory_limit = \"${MEM:512m}\"\n",
		"agents/a/.env":       "# comment\nexport SEARCH_KEY='s3cret'\nMEM=\"1g\"\n",
	}
	r, err := Load(Options{FS: tree(files), Dir: "d", AgentID: "a", Env: env("SEARCH_KEY", "process-loses")})
	if err != nil {
		t.Fatal(err)
	}
	if r.Shell.Env["KEY"] != "s3cret" || !r.Secret("shell.env.KEY") || r.Secret("shell.env.OPEN") {
		t.Errorf("env %v, provenance %v", r.Shell.Env, r.Provenance["shell.env.KEY"])
	}
	if r.MemoryBytes != 1<<30 {
		t.Errorf("memory = %d", r.MemoryBytes)
	}
}

func TestDotEnv(t *testing.T) {
	var errs errList
	got := parseDotEnv(".env", []byte(`# c
A=1
export B = two words # comment
C="quoted # not a comment\n"
D='single $x'
E=
`), &errs)
	want := map[string]string{"A": "1", "B": "two words", "C": "quoted # not a comment\n", "D": "single $x", "E": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	if errs.err() != nil {
		t.Error(errs.err())
	}
}
