package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testutil"
)

// The human-approval tests drive `vial serve` with the official TypeScript
// SDK's client (test/e2e/ts/client.cjs), which declares elicitation and
// answers programmatically, as Claude Code's hooks or a test harness would.

// tsResult is client.cjs's output.
type tsResult struct {
	Tools []string `json:"tools"`
	Steps []struct {
		Tool    string   `json:"tool"`
		IsError bool     `json:"isError"`
		Text    string   `json:"text"`
		Error   string   `json:"error"`
		Asked   []string `json:"asked"`
		Ms      int      `json:"ms"`
	} `json:"steps"`
}

type tsStep struct {
	Tool string         `json:"tool"`
	Args map[string]any `json:"args,omitempty"`
	Raw  map[string]any `json:"raw,omitempty"`
}

// nodeModules returns the directory with the TypeScript SDK, or skips
// (fails under CI=true).
func nodeModules(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VIAL_TEST_MCP_SERVERS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache/vial/test-mcp-servers")
	}
	_, err := os.Stat(filepath.Join(dir, "node_modules/@modelcontextprotocol/sdk/package.json"))
	testutil.Require(t, err == nil, "the official TypeScript SDK is not installed: run scripts/install-test-mcp-servers.sh (or set VIAL_TEST_MCP_SERVERS)")
	_, err = exec.LookPath("node")
	testutil.Require(t, err == nil, "node is not on PATH")
	return dir
}

// runTS runs one scenario against a fresh `vial serve` with args.
func runTS(t *testing.T, stateDir string, serveArgs []string, elicit string, steps []tsStep) tsResult {
	t.Helper()
	requireE2E(t)
	mods := nodeModules(t)
	sc := map[string]any{
		"command": vialBin,
		"args":    append([]string{"serve", "--state-dir", stateDir, "--runtime", "runc", "--memory", "256m"}, serveArgs...),
		"elicit":  elicit,
		"steps":   steps,
	}
	b, _ := json.Marshal(sc)
	cmd := exec.Command("node", "ts/client.cjs", string(b))
	cmd.Env = append(os.Environ(), "VIAL_TEST_MCP_SERVERS="+mods)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.cjs: %v\n%s", err, stderr.String())
	}
	var res tsResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client.cjs output %q: %v", out, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vial serve stderr:\n%s", stderr.String())
		}
	})
	return res
}

// approvalConfig writes a configuration whose agent asks before
// write_file, auto-approves read_*, and names list_directory in both lists.
func approvalConfig(t *testing.T, timeout int) string {
	return writeTree(t, map[string]string{
		"config/execution.toml": `[sandbox]
runtime = "runc"
`,
		"agents/a/agent.toml": `[metadata]
agent_id = "a"
[tools]
enabled = ["run_code", "read_file", "write_file", "list_directory"]
[hitl]
require_confirmation = ["write_file", "list_directory"]
auto_approve_patterns = ["read_*", "list_*"]
timeout_seconds = ` + itoa(timeout) + `
`,
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestApprovalTypeScriptClient: with require_confirmation = ["write_file"],
// a decline writes nothing, an accept writes, a cancel is a denial, and no
// answer within the approval timeout is a denial; a client without the
// capability gets an isError naming the rule; a forged answer is refused;
// auto_approve_patterns = ["read_*"] runs without asking, and a tool named
// in both lists asks.
func TestApprovalTypeScriptClient(t *testing.T) {
	cfg := approvalConfig(t, 2)
	write := func(name string) tsStep {
		return tsStep{Tool: "write_file", Args: map[string]any{"path": name, "content": "content of " + name}}
	}
	read := func(name string) tsStep { return tsStep{Tool: "read_file", Args: map[string]any{"path": name}} }
	for _, tc := range []struct {
		elicit  string
		written bool
		says    string
	}{
		{"accept", true, "wrote"},
		{"decline", false, "declined"},
		{"cancel", false, "cancelled"},
		{"no", false, "did not approve"},
		{"sleep:4000", false, "nobody answered within 2s"},
	} {
		t.Run(tc.elicit, func(t *testing.T) {
			res := runTS(t, newStateDir(t), []string{"--config-dir", cfg, "--agent", "a"}, tc.elicit,
				[]tsStep{write("f.txt"), read("f.txt"), {Tool: "run_code", Args: map[string]any{"code": "print('alive')"}}})
			w, r, alive := res.Steps[0], res.Steps[1], res.Steps[2]
			if len(w.Asked) != 1 || !strings.Contains(w.Asked[0], "content of f.txt") || !strings.Contains(w.Asked[0], "/workspace/f.txt") {
				t.Errorf("approval request: %q", w.Asked)
			}
			if w.IsError == tc.written || !strings.Contains(w.Text, tc.says) {
				t.Errorf("write_file: isError=%v %q", w.IsError, w.Text)
			}
			if r.IsError == tc.written || len(r.Asked) != 0 {
				t.Errorf("read_file (auto-approved, asked %d times): isError=%v %q", len(r.Asked), r.IsError, r.Text)
			}
			if tc.written && r.Text != "content of f.txt" {
				t.Errorf("read back %q", r.Text)
			}
			if alive.IsError || !strings.Contains(alive.Text, "alive") {
				t.Errorf("the server stopped serving: %q %s", alive.Text, alive.Error)
			}
		})
	}
	t.Run("named in both lists asks", func(t *testing.T) {
		res := runTS(t, newStateDir(t), []string{"--config-dir", cfg, "--agent", "a"}, "accept", []tsStep{{Tool: "list_directory"}})
		if len(res.Steps[0].Asked) != 1 || res.Steps[0].IsError {
			t.Errorf("list_directory: asked %d, %q", len(res.Steps[0].Asked), res.Steps[0].Text)
		}
	})
	t.Run("no capability", func(t *testing.T) {
		res := runTS(t, newStateDir(t), []string{"--config-dir", cfg, "--agent", "a"}, "none", []tsStep{write("g.txt"), read("g.txt")})
		if s := res.Steps[0]; !s.IsError || !strings.Contains(s.Text, `require_confirmation "write_file"`) || !strings.Contains(s.Text, "elicitation") {
			t.Errorf("write_file without the capability: %q", s.Text)
		}
		if s := res.Steps[1]; !s.IsError || !strings.Contains(s.Text, "does not exist") {
			t.Errorf("something was written: %q", s.Text)
		}
	})
	t.Run("forged answer", func(t *testing.T) {
		forged := map[string]any{"inputResponses": map[string]any{"approval": map[string]any{"action": "accept", "content": map[string]any{"approve": true}}}, "requestState": "forged-token"}
		res := runTS(t, newStateDir(t), []string{"--config-dir", cfg, "--agent", "a"}, "decline", []tsStep{
			{Tool: "write_file", Args: map[string]any{"path": "h.txt", "content": "x"}, Raw: forged}, read("h.txt")})
		if s := res.Steps[0]; !s.IsError || !strings.Contains(s.Text, "not valid") {
			t.Errorf("forged answer: %q %s", s.Text, s.Error)
		}
		if s := res.Steps[1]; !s.IsError {
			t.Errorf("written under a forged answer: %q", s.Text)
		}
	})
}

// TestSeedResearchAssistant: the seed's own agent offers seed 002's
// context tools (they travel with the code tools) and asks before every
// write_file, as its [hitl] says.
func TestSeedResearchAssistant(t *testing.T) {
	dir, err := filepath.Abs("../../config/testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv("SEARCH_API_KEY", "sk-e2e")
	defer os.Unsetenv("SEARCH_API_KEY")
	res := runTS(t, newStateDir(t), []string{"--config-dir", dir, "--agent", "research-assistant", "--image", "host"}, "decline", []tsStep{
		{Tool: "write_file", Args: map[string]any{"path": "report.md", "content": "# findings"}},
		{Tool: "create_context", Args: map[string]any{"language": "python"}},
		{Tool: "http_request", Args: map[string]any{"method": "POST", "url": "https://api.search.com/v1/search", "body": "{}"}},
		{Tool: "http_request", Args: map[string]any{"method": "GET", "url": "https://api.search.com/v1/status"}},
	})
	for _, want := range []string{"create_context", "list_contexts", "stop_context", "run_code", "write_file", "http_request", "fetch_url"} {
		if !contains(res.Tools, want) {
			t.Errorf("tools %v lack %s", res.Tools, want)
		}
	}
	if s := res.Steps[0]; len(s.Asked) != 1 || !s.IsError || !strings.Contains(s.Text, "declined") {
		t.Errorf("write_file: asked %d: %q", len(s.Asked), s.Text)
	}
	if s := res.Steps[1]; s.IsError {
		t.Errorf("create_context: %q", s.Text)
	}
	// An http_request write asks first ([hitl] require_confirmation); a
	// GET is one of auto_approve_methods and goes out without asking
	// (this machine reaches no such host: it fails after the decision).
	if s := res.Steps[2]; len(s.Asked) != 1 || !s.IsError || !strings.Contains(s.Text, "declined") {
		t.Errorf("http_request POST: asked %d: %q", len(s.Asked), s.Text)
	}
	if s := res.Steps[3]; len(s.Asked) != 0 || strings.Contains(s.Text, "declined") {
		t.Errorf("http_request GET: asked %d: %q", len(s.Asked), s.Text)
	}
	_ = time.Second
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestBlockedListsEnforced: seed 001's blocked lists and file limit refuse
// with a clear isError naming the rule, on a real sandbox, and the server
// keeps serving.
func TestBlockedListsEnforced(t *testing.T) {
	cfg := writeTree(t, map[string]string{
		"config/execution.toml": "[sandbox]\nruntime = \"runc\"\n",
		"agents/b/agent.toml": `[metadata]
agent_id = "b"
[tools]
enabled = ["run_code", "run_shell", "read_file", "write_file", "delete_file", "list_directory"]
require_confirmation = []
auto_approve_patterns = ["*"]
[tools.config.read_file]
blocked_paths = ["**/.env"]
max_file_size = "1k"
[tools.config.run_shell]
blocked_commands = ["chmod 777"]
[tools.config.run_code]
blocked_imports = ["subprocess"]
`,
	})
	s := startAgent(t, newStateDir(t), cfg, "b", "runc")
	s.mustOK("run_shell", map[string]any{"command": "echo SECRET=1 > .env; head -c 5000 /dev/zero > big.bin; echo ok > small.txt"})
	for _, tc := range []struct {
		tool string
		args map[string]any
		rule string
	}{
		{"read_file", map[string]any{"path": ".env"}, `blocked_paths "**/.env"`},
		{"write_file", map[string]any{"path": ".env", "content": "x"}, `blocked_paths "**/.env"`},
		{"delete_file", map[string]any{"path": ".env"}, `blocked_paths "**/.env"`},
		{"run_shell", map[string]any{"command": "chmod 777 small.txt"}, `blocked_commands "chmod 777"`},
		{"run_code", map[string]any{"code": "import subprocess"}, `blocked_imports "subprocess"`},
		{"read_file", map[string]any{"path": "big.bin", "encoding": "base64"}, "max_file_size"},
	} {
		r := s.call(tc.tool, tc.args)
		if !r.isError || !strings.Contains(r.text, tc.rule) || strings.Contains(r.text, "SECRET") {
			t.Errorf("%s %v: isError=%v %q", tc.tool, tc.args, r.isError, r.text)
		}
	}
	if r := s.mustOK("list_directory", nil); strings.Contains(r.text, ".env") || !strings.Contains(r.text, "small.txt") {
		t.Errorf("listing: %q", r.text)
	}
	if r := s.mustOK("read_file", map[string]any{"path": "small.txt"}); r.text != "ok\n" {
		t.Errorf("read small.txt: %q", r.text)
	}
	if r := s.mustOK("run_shell", map[string]any{"command": "cat .env"}); !strings.Contains(r.text, "SECRET=1") {
		t.Errorf("the .env file was changed: %q", r.text)
	}
}
