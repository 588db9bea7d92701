package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", p, diff)
	}
}

// env returns a fake process environment.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var seedEnv = env("SEARCH_API_KEY", "sk-test-123")

// TestSeedExamplesValidate loads every example of seed 001, unchanged.
func TestSeedExamplesValidate(t *testing.T) {
	rep, err := Validate(Options{Dir: "testdata/seed", Env: seedEnv})
	if err != nil {
		t.Fatalf("seed examples do not validate:\n%v", err)
	}
	for _, f := range []string{
		"config/execution.toml", "config/tools.toml", "config/mcp.toml",
		"config/environments/python-dev.toml", "config/environments/local-dev.toml",
		"agents/research-assistant/agent.toml", "agents/custom-mcp/agent.toml",
	} {
		if !strings.Contains(strings.Join(rep.Files, "\n"), filepath.Join("testdata/seed", f)) {
			t.Errorf("%s was not read; files: %v", f, rep.Files)
		}
	}
	if diff := cmp.Diff([]string{"custom-mcp", "local-agent", "research-assistant"}, rep.Agents); diff != "" {
		t.Errorf("agents (-want +got):\n%s", diff)
	}
}

// TestResearchAssistant pins the merged result of the seed's agent.
func TestResearchAssistant(t *testing.T) {
	r, err := Load(Options{Dir: "testdata/seed", AgentID: "research-assistant", Env: seedEnv})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"timeout from agent", r.TimeoutSeconds, 120},
		{"memory from agent", r.MemoryBytes, int64(1 << 30)},
		{"cpu from python-dev", r.CPUs, 2.0},
		{"disk from system", r.DiskBytes, int64(1 << 30)},
		{"mode", r.Mode, ModeDocker},
		{"runtime default", r.Runtime, "runc"},
		{"image from python-dev", r.Image, "python:3.11-slim"},
		{"network from agent", r.Network, Network{Enabled: true, AllowedHosts: []string{"api.search.com", "arxiv.org", "github.com"}, Hosts: map[string]string{}, AllowPrivateCIDRs: []string{}}},
		{"key from environment", r.Shell.Env["SEARCH_API_KEY"], "sk-test-123"},
		{"env from python-dev", r.Shell.Env["PYTHONPATH"], "/workspace/src"},
		{"env from system", r.Shell.Env["TZ"], "Asia/Shanghai"},
		{"key is secret", r.Secret("shell.env.SEARCH_API_KEY"), true},
		{"template", r.Template, "python-dev"},
		{"metadata from agent", r.Metadata.Name, "研究助手"},
		{"tools enabled accumulate", r.Tools.Enabled, []string{
			"create_context", "fetch_url", "http_request", "install_package", "list_contexts", "list_directory", "read_file",
			"run_code", "run_shell", "save_artifact", "search_files", "stop_context", "web_search", "write_file"}},
		{"web_search config", r.Tools.Config["web_search"], map[string]any{"provider": "tavily", "max_results": int64(10)}},
		{"hitl", r.HITL.RequireConfirmation, []string{"write_file", "http_request"}},
		{"browser enabled by agent", r.MCPServers["browser"].Enabled, true},
		{"browser transport from mcp.toml", r.MCPServers["browser"].Transport, "http"},
		{"WORKSPACE built-in", r.MCPServers["filesystem"].Config["allowed_directories"], []any{"/workspace"}},
		{"filesystem command", r.MCPServers["filesystem"].Command, []string{"npx", "-y", "@anthropic/mcp-server-filesystem"}},
		{"run_python constraints", r.Policy("run_python").Constraints.BlockedImports, []string{"subprocess", "os.system"}},
		{"provenance of cpu", r.Provenance["sandbox.resources.cpu_limit"].Name, "python-dev"},
		{"provenance of timeout", r.Provenance["sandbox.timeout_seconds"].Pos.String(), "testdata/seed/agents/research-assistant/agent.toml:17:1"},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	var show, explain bytes.Buffer
	if err := r.Format(&show, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Format(&explain, true); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(show.String()+explain.String(), "sk-test-123") {
		t.Error("config show output contains the secret")
	}
	golden(t, "research-assistant.toml", show.String())
	golden(t, "research-assistant.explain", explain.String())
}

func TestBuiltinDefaultsAlone(t *testing.T) {
	r, err := Load(Options{Env: env()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != ModeDocker || r.Network.Enabled || !r.Security.ReadOnlyRoot || !r.Security.NoNewPrivileges {
		t.Errorf("built-in defaults are not the safe ones: %+v", r)
	}
	if diff := cmp.Diff([]string{"ALL"}, r.Security.DropCapabilities); diff != "" {
		t.Error(diff)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("warnings: %v", r.Warnings)
	}
	// A directory that does not exist falls back too, with a warning.
	rep, err := Validate(Options{Dir: filepath.Join(t.TempDir(), "nope"), Env: env()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "does not exist") {
		t.Errorf("warnings = %v", rep.Warnings)
	}
}

func TestLocalModeWarns(t *testing.T) {
	r, err := Load(Options{Dir: "testdata/seed", AgentID: "local-agent", Env: env()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != ModeLocal || r.Security.ReadOnlyRoot {
		t.Errorf("mode %q, read_only_root %v", r.Mode, r.Security.ReadOnlyRoot)
	}
	if len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "NO ISOLATION") {
		t.Errorf("no loud warning: %v", r.Warnings)
	}
}

func TestCustomMCPServer(t *testing.T) {
	r, err := Load(Options{Dir: "testdata/seed", AgentID: "custom-mcp", Env: env("MY_SERVER_API_KEY", "k")})
	if err != nil {
		t.Fatal(err)
	}
	want := MCPServer{
		Name: "my_custom_server", Title: "My Custom Server", URL: "http://my-server:8080",
		Transport: "http", Enabled: true, Binds: []string{}, APIKeyEnv: "MY_SERVER_API_KEY", APIKey: "k", Config: map[string]any{},
	}
	if diff := cmp.Diff(want, r.MCPServers["my_custom_server"]); diff != "" {
		t.Error(diff)
	}
}

func TestImplementedFiltersTools(t *testing.T) {
	r, err := Load(Options{Dir: "testdata/seed", AgentID: "research-assistant", Env: seedEnv,
		Implemented: map[string]bool{"read_file": true, "run_code": true}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"read_file", "run_code"}, r.Tools.Enabled); diff != "" {
		t.Errorf("enabled (-want +got):\n%s", diff)
	}
	if len(r.Tools.Unimplemented) != 12 {
		t.Errorf("unimplemented = %v", r.Tools.Unimplemented)
	}
	var n int
	for _, w := range r.Warnings {
		if strings.Contains(w, "does not implement it yet; it is not offered") {
			n++
		}
	}
	if n != 12 {
		t.Errorf("%d warnings for unimplemented tools, want 12: %v", n, r.Warnings)
	}
	if r.ToolDefs["web_search"].Implemented || !r.ToolDefs["run_code"].Implemented {
		t.Error("ToolDef.Implemented is wrong")
	}
}

func TestUnknownAgent(t *testing.T) {
	_, err := Load(Options{Dir: "testdata/seed", AgentID: "research-assistent"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	golden(t, "unknown-agent.err", err.Error()+"\n")
	_, err = Load(Options{Dir: "testdata/seed", AgentID: "../etc"})
	if err == nil || !strings.Contains(err.Error(), "not a valid agent ID") {
		t.Fatalf("err = %v", err)
	}
}

func TestTighten(t *testing.T) {
	r := &Resolved{TimeoutSeconds: 120, MemoryBytes: 1 << 30, CPUs: 2, PidsLimit: 256, DiskBytes: 1 << 30}
	tests := []struct {
		name    string
		req     Limits
		want    Limits
		wantErr string
	}{
		{name: "zero keeps the ceiling", req: Limits{}, want: r.Limits()},
		{name: "lower is applied",
			req:  Limits{Timeout: 10 * time.Second, MemoryBytes: 256 << 20, CPUs: 0.5, PidsLimit: 16, DiskBytes: 1 << 20},
			want: Limits{Timeout: 10 * time.Second, MemoryBytes: 256 << 20, CPUs: 0.5, PidsLimit: 16, DiskBytes: 1 << 20}},
		{name: "equal is fine", req: Limits{Timeout: 120 * time.Second}, want: r.Limits()},
		{name: "higher is refused", req: Limits{Timeout: time.Hour, MemoryBytes: 2 << 30, CPUs: 4},
			want:    r.Limits(),
			wantErr: "above the configured limit: timeout 1h0m0s is above the configured 2m0s\nabove the configured limit: memory 2g is above the configured 1g\nabove the configured limit: cpu 4 is above the configured 2"},
		{name: "negative is refused", req: Limits{PidsLimit: -1}, want: r.Limits(),
			wantErr: "invalid configuration: pids -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Tighten(tt.req)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "above") && !errors.Is(err, ErrAboveCeiling) {
					t.Error("not ErrAboveCeiling")
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "256m", want: 256 << 20},
		{in: "1g", want: 1 << 30},
		{in: "1G", want: 1 << 30},
		{in: "1.5g", want: 3 << 29},
		{in: "512KiB", want: 512 << 10},
		{in: "10MB", want: 10 << 20},
		{in: "100", want: 100},
		{in: "100b", want: 100},
		{in: " 2t ", want: 2 << 40},
		{in: "lots", bad: true},
		{in: "", bad: true},
		{in: "1x", bad: true},
		{in: "-1g", bad: true},
		{in: "1..5g", bad: true},
		{in: ".5g", bad: true},
		{in: "99999999999t", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.bad != (err != nil) {
				t.Fatalf("ParseSize(%q) = %d, %v", tt.in, got, err)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
	for n, want := range map[int64]string{256 << 20: "256m", 1 << 30: "1g", 1000: "1000", 1536: "1536", 3 << 29: "1536m", 0: "0"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestConfirmationRequired(t *testing.T) {
	r, err := Load(Options{Dir: "testdata/seed", AgentID: "research-assistant", Env: seedEnv})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool string
		want bool
	}{
		{"write_file", true},     // listed, and a listing beats patterns
		{"run_shell", true},      // listed in [tools]
		{"read_file", false},     // read_* pattern
		{"fetch_url", false},     // hitl pattern names it
		{"run_python", false},    // definition says no
		{"http_request", true},   // listed in [hitl]
		{"query_database", true}, // definition says yes
		{"no_such_tool", true},   // unknown tools always ask
	}
	for _, tt := range tests {
		if got := r.ConfirmationRequired(tt.tool); got != tt.want {
			t.Errorf("ConfirmationRequired(%q) = %v, want %v", tt.tool, got, tt.want)
		}
	}
}

func TestFormatIsTOML(t *testing.T) {
	r, err := Load(Options{Dir: "testdata/seed", AgentID: "research-assistant", Env: seedEnv})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.Format(&b, true); err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{"agents/x/agent.toml": {Data: b.Bytes()}}
	if _, err := Load(Options{FS: fsys, Dir: "shown", AgentID: "x", Env: env()}); err != nil {
		t.Fatalf("show output is not a valid agent file:\n%v\n%s", err, b.String())
	}
}

func TestWriteStarter(t *testing.T) {
	dir := t.TempDir()
	written, err := WriteStarter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) < 9 {
		t.Errorf("wrote %v", written)
	}
	rep, err := Validate(Options{Dir: dir, Env: env()})
	if err != nil {
		t.Fatalf("starter tree does not validate:\n%v", err)
	}
	if len(rep.Agents) != 1 {
		t.Errorf("agents = %v", rep.Agents)
	}
	if _, err := WriteStarter(dir); !errors.Is(err, os.ErrExist) {
		t.Errorf("second WriteStarter: err = %v, want ErrExist", err)
	}
}

// FuzzLoadConfig feeds arbitrary bytes as an agent file and as the system
// file. Property: Load never panics; it either fails with *Error values
// that carry a file name, or succeeds and show's output parses as TOML.
func FuzzLoadConfig(f *testing.F) {
	for _, p := range []string{
		"testdata/seed/agents/research-assistant/agent.toml",
		"testdata/seed/config/execution.toml",
		"testdata/seed/config/environments/python-dev.toml",
	} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Add([]byte("[sandbox]\ntimeout_seconds = \"${T:5}\"\n[[x]]\na=1\n[x.b]\n"), false)
	f.Add([]byte("extends = \"a\"\n[metadata]\nextends = \"b\"\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, asSystem bool) {
		fsys := fstest.MapFS{
			"agents/f/agent.toml":                 {Data: []byte("extends = \"t\"\n")},
			"agents/f/.env":                       {Data: data},
			"config/environments/t.toml":          {Data: []byte("[sandbox]\ntimeout_seconds = 5\n")},
			"config/environments/self.toml":       {Data: []byte("extends = \"self\"\n")},
			"config/environments/python-dev.toml": {Data: []byte("")},
		}
		if asSystem {
			fsys["config/execution.toml"] = &fstest.MapFile{Data: data}
		} else {
			fsys["agents/f/agent.toml"] = &fstest.MapFile{Data: data}
		}
		r, err := Load(Options{FS: fsys, Dir: "fz", AgentID: "f", Env: env("A", "1")})
		if err != nil {
			for _, e := range Errors(err) {
				if e.Pos.File == "" || e.Msg == "" {
					t.Fatalf("error without a place or message: %#v", e)
				}
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
			}
			return
		}
		var b bytes.Buffer
		if err := r.Format(&b, true); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := toml.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatalf("show output is not TOML: %v\n%s", err, b.String())
		}
	})
}

// TestTemplateAlone resolves an environment template without an agent, as
// vial serve does for create_context(environment=...).
func TestTemplateAlone(t *testing.T) {
	r, err := Load(Options{Template: "data-science"})
	if err != nil {
		t.Fatal(err)
	}
	// data-science extends python-dev over the system defaults.
	if r.Template != "data-science" || r.TimeoutSeconds != 300 || r.MemoryBytes != 2<<30 || r.Image != "data-science" || r.Runtime != "runc" {
		t.Errorf("data-science: template %q timeout %d memory %d image %q runtime %q", r.Template, r.TimeoutSeconds, r.MemoryBytes, r.Image, r.Runtime)
	}
	if r.Shell.Env["PYTHONPATH"] != "/workspace/src" || r.Shell.Env["MPLBACKEND"] != "Agg" {
		t.Errorf("shell env not merged through the chain: %v", r.Shell.Env)
	}
	_, err = Load(Options{Template: "pyhton-dev"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown template: err = %v, want ErrNotFound", err)
	}
	want := `environment "pyhton-dev" not found, did you mean "python-dev"? (valid: data-science, local-dev, minimal, node-dev, python-dev)`
	if err.Error() != want {
		t.Errorf("unknown template:\n got %s\nwant %s", err, want)
	}
	if _, err := Load(Options{Template: "../agents/x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("path-like template: err = %v, want ErrNotFound", err)
	}
}

// TestSecretValues lists the values a log must mask.
func TestSecretValues(t *testing.T) {
	fsys := fstest.MapFS{
		"agents/a/agent.toml": {Data: []byte("[shell.env]\nKEY = \"${SEARCH_API_KEY}\"\nPLAIN = \"${HOME_DIR}\"\nFROM_ENV_FILE = \"${DB_PASS}\"\n")},
		"agents/a/.env":       {Data: []byte("DB_PASS=hunter22\n")},
	}
	r, err := Load(Options{FS: fsys, Dir: "cfg", AgentID: "a", Env: env("SEARCH_API_KEY", "sk-test-123", "HOME_DIR", "/home/x")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"sk-test-123", "hunter22"}, r.SecretValues()); diff != "" {
		t.Errorf("secret values (-want +got):\n%s", diff)
	}
}
