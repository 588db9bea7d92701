package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/mountinfo"
	"github.com/vial-run/vial/internal/testutil"
)

// agentsConfig is a configuration directory with two agents that differ in
// runtime, memory, timeout, tools and logging, plus two templates an agent's
// create_context may select.
var agentsConfig = map[string]string{
	"config/execution.toml": `
[sandbox]
runtime = "runc"
timeout_seconds = 30

[sandbox.resources]
memory_limit = "512m"

[tools]
enabled = []  # each agent lists its own
# These tests are about limits and tools, not approval (approval_test.go):
# nothing asks a person.
require_confirmation = []
auto_approve_patterns = ["*"]

[logging]
level = "warn"
`,
	// tight is below both agents' ceilings: it applies as written.
	"config/environments/tight.toml": `
[metadata]
name = "tight"

[sandbox]
timeout_seconds = 3

[sandbox.resources]
memory_limit = "100m"

[shell.env]
VIAL_E2E_ENV = "tight"
`,
	// roomy is above every ceiling: the agent's limits apply instead.
	"config/environments/roomy.toml": `
[metadata]
name = "roomy"

[sandbox]
timeout_seconds = 600

[sandbox.resources]
memory_limit = "2g"
`,
	"agents/alpha/agent.toml": `
[metadata]
agent_id = "alpha"

[sandbox]
runtime = "runc"
timeout_seconds = 20

[sandbox.resources]
memory_limit = "256m"

[shell.env]
ALPHA_TOKEN = "${VIAL_E2E_ALPHA_TOKEN}"

[tools]
enabled = ["run_python", "read_file"]

[logging]
log_tool_calls = true
`,
	"agents/beta/agent.toml": `
[metadata]
agent_id = "beta"

[sandbox]
runtime = "runsc"
timeout_seconds = 10

[sandbox.resources]
memory_limit = "128m"

[tools]
enabled = ["run_code", "run_shell", "write_file", "list_directory", "create_context", "list_contexts", "stop_context"]

[logging]
log_tool_calls = false
`,
}

const alphaToken = "e2e-secret-alpha-0123456789"

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newStateDir returns a fresh state directory, removed after the test.
//
// Its cleanup runs after every vial process of the test has ended (the
// sessions' cleanups, registered later, run first), so anything still
// mounted under it was left behind by vial: the test fails, naming the
// mounts. vial gc then collects them, so a failing run does not leave
// loop mounts and namespace pins on the host.
func newStateDir(t *testing.T) string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	stateDir := "/var/lib/vial-e2e-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() {
		if _, err := os.Stat(stateDir); err != nil {
			return // no vial ran (the test was skipped before it started one)
		}
		if left := mountinfo.PointsUnder(stateDir); len(left) > 0 {
			t.Errorf("vial left %d mount(s) under its state directory after it exited: %s", len(left), strings.Join(left, ", "))
		}
		if out, err := exec.Command(vialBin, "--state-dir", stateDir, "gc").CombinedOutput(); err != nil {
			t.Errorf("vial gc of %s: %v\n%s", stateDir, err, out)
		}
		if err := os.RemoveAll(stateDir); err != nil {
			t.Errorf("removing the state directory: %v", err)
		}
	})
	return stateDir
}

// startAgent starts `vial serve --agent ID` on a configuration directory,
// with no other flag, so everything comes from the configuration.
//
// Concurrent vial processes must share one state directory, as they do in
// a deployment: start-up recovery removes every vial cgroup that no live
// sandbox of its own state directory owns.
func startAgent(t *testing.T, stateDir, configDir, agent, runtimeName string, extra ...string) *session {
	t.Helper()
	requireE2E(t, runtimeName)
	args := []string{"--state-dir", stateDir}
	if lvl := os.Getenv("VIAL_E2E_AGENT_LOG_LEVEL"); lvl != "" {
		args = append(args, "--log-level", lvl) // to debug by hand; the test checks the configured logging
	}
	cmd := exec.Command(vialBin, append(append(args, "serve", "--config-dir", configDir, "--agent", agent), extra...)...)
	cmd.Env = append(os.Environ(), "VIAL_E2E_ALPHA_TOKEN="+alphaToken)
	cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "VIAL_LOG_LEVEL=") })
	return connect(t, cmd, stateDir, "vial serve --agent "+agent)
}

func (s *session) toolNames() []string {
	s.t.Helper()
	res, err := s.cs.ListTools(s.ctx, nil)
	if err != nil {
		s.t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// ownSandboxes lists the sandboxes of the state directory that this
// session's vial serve owns (vial ps's OWNER PID column).
func (s *session) ownSandboxes() []string {
	s.t.Helper()
	out, err := exec.Command(vialBin, "--state-dir", s.stateDir, "ps").CombinedOutput()
	if err != nil {
		s.t.Fatalf("vial ps: %v\n%s", err, out)
	}
	var ids []string
	pid := strconv.Itoa(s.cmd.Process.Pid)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[3] == pid {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// memoryLimits returns the cgroup v1 memory limit of each of the
// session's sandboxes, read on the host.
func (s *session) memoryLimits() map[string]int64 {
	s.t.Helper()
	out := map[string]int64{}
	for _, id := range s.ownSandboxes() {
		files, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/memory", cgroups.Parent, id, "*", "memory.limit_in_bytes"))
		files = append(files, filepath.Join("/sys/fs/cgroup/memory", cgroups.Parent, id, "memory.limit_in_bytes"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err == nil && (out[id] == 0 || n < out[id]) {
				out[id] = n
			}
		}
	}
	return out
}

// hasLimit reports whether one of the session's sandboxes has exactly the
// memory limit want.
func (s *session) hasLimit(want int64) bool {
	for _, v := range s.memoryLimits() {
		if v == want {
			return true
		}
	}
	return false
}

// TestAgents runs two agents with different configurations from the same
// binary and checks that each gets its own tools, runtime, memory limit,
// timeout ceiling and logging, that named environments apply under the
// agent's ceilings, and that the default contexts share one workspace.
func TestAgents(t *testing.T) {
	cfg := writeTree(t, agentsConfig)
	hostVersion, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	release := strings.Fields(string(hostVersion))[2]
	stateDir := newStateDir(t)
	a := startAgent(t, stateDir, cfg, "alpha", "runc")
	b := startAgent(t, stateDir, cfg, "beta", "runsc")

	t.Run("tools", func(t *testing.T) {
		// run_python is run_code, which execute_python also serves.
		// The context tools travel with the code tools.
		if got, want := a.on(t).toolNames(), []string{"create_context", "execute_python", "list_contexts", "read_file", "run_code", "stop_context"}; !slices.Equal(got, want) {
			t.Errorf("alpha offers %v, want %v", got, want)
		}
		want := []string{"create_context", "execute_python", "list_contexts", "list_directory", "run_code", "run_shell", "stop_context", "write_file"}
		if got := b.on(t).toolNames(); !slices.Equal(got, want) {
			t.Errorf("beta offers %v, want %v", got, want)
		}
		res, err := a.cs.CallTool(a.ctx, &sdk.CallToolParams{Name: "run_shell", Arguments: map[string]any{"command": "true"}})
		if err == nil && !res.IsError {
			t.Errorf("alpha ran run_shell, which it does not enable: %s", decode(res).text)
		}
	})

	t.Run("runtime", func(t *testing.T) {
		code := "open('/proc/version').read()"
		if r := a.on(t).mustOK("run_code", map[string]any{"code": code}); !strings.Contains(r.sc["value"].(string), release) {
			t.Errorf("alpha (runc) should see the host kernel %s: %v", release, r.sc["value"])
		}
		r := b.on(t).mustOK("run_code", map[string]any{"code": code})
		if v := r.sc["value"].(string); strings.Contains(v, release) {
			t.Errorf("beta (runsc) sees the host kernel, so it is not under gVisor: %v", v)
		}
	})

	t.Run("memory", func(t *testing.T) {
		if !a.hasLimit(256<<20) || !b.hasLimit(128<<20) {
			t.Errorf("cgroup memory limits: alpha %v (want 256m), beta %v (want 128m)", a.memoryLimits(), b.memoryLimits())
		}
		// 160 MiB fits alpha's 256m and not beta's 128m.
		alloc := "x = bytearray(160 << 20)\nlen(x) >> 20"
		if r := a.on(t).mustOK("run_code", map[string]any{"code": alloc}); r.sc["value"] != "160" {
			t.Errorf("alpha could not allocate 160 MiB under 256m: %s", r.text)
		}
		id := b.on(t).newContext("python")
		if r := b.on(t).mustOK("run_code", map[string]any{"context_id": id, "code": alloc}); r.sc["oom_killed"] != true {
			t.Errorf("beta allocated 160 MiB under 128m: %s", r.text)
		}
		ctxA := a.on(t)
		if r := ctxA.mustOK("execute_python", map[string]any{"code": "x = bytearray(400 << 20)"}); r.sc["oom_killed"] != true {
			t.Errorf("alpha allocated 400 MiB under 256m: %s", r.text)
		}
	})

	t.Run("timeout ceiling", func(t *testing.T) {
		for _, tc := range []struct {
			s    *session
			want float64
		}{{a, 20000}, {b, 10000}} {
			r := tc.s.on(t).mustOK("run_code", map[string]any{"code": "1", "timeout": 600})
			if r.sc["timeout_ms"] != tc.want || !strings.Contains(r.text, "lowered") {
				t.Errorf("timeout 600 s: timeout_ms = %v, want %v (clamped)\n%s", r.sc["timeout_ms"], tc.want, r.text)
			}
		}
	})

	t.Run("environments", func(t *testing.T) {
		s := b.on(t)
		tight := s.mustOK("create_context", map[string]any{"language": "python", "environment": "tight"}).sc["context_id"].(string)
		r := s.mustOK("run_code", map[string]any{"context_id": tight, "code": "import os, time\nt = time.time()\ntry:\n    time.sleep(8)\nfinally:\n    print(os.environ.get('VIAL_E2E_ENV'), open('/proc/version').read())"})
		if r.sc["timed_out"] != true {
			t.Errorf("tight (timeout 3 s) let an 8 s sleep finish: %s", r.text)
		}
		if !strings.Contains(fmt.Sprint(r.sc["stdout"]), "tight") {
			t.Errorf("tight's [shell.env] not applied: %q", r.sc["stdout"])
		}
		if strings.Contains(fmt.Sprint(r.sc["stdout"]), release) {
			t.Errorf("tight inherits runtime runc, but an environment must not weaken beta's runsc: %q", r.sc["stdout"])
		}
		if !s.hasLimit(100 << 20) {
			t.Errorf("no sandbox with tight's 100m: %v", s.memoryLimits())
		}
		roomy := s.mustOK("create_context", map[string]any{"language": "bash", "environment": "roomy"}).sc["context_id"].(string)
		before := s.memoryLimits()
		for _, v := range before {
			if v > 128<<20 {
				t.Errorf("a sandbox of beta has %d bytes of memory, above its 128m ceiling (roomy asks for 2g)", v)
			}
		}
		s.mustOK("stop_context", map[string]any{"context_id": roomy})
		s.mustOK("stop_context", map[string]any{"context_id": tight})

		r = s.call("create_context", map[string]any{"language": "python", "environment": "pyhton-dev"})
		if !r.isError || !strings.Contains(r.text, "valid: ") || !strings.Contains(r.text, "tight") {
			t.Errorf("unknown environment: %q", r.text)
		}
		r = s.call("create_context", map[string]any{"language": "python", "environment": "local-dev"})
		if !r.isError || !strings.Contains(r.text, "local") {
			t.Errorf("a model selected the unsandboxed local-dev environment: %q", r.text)
		}
	})

	t.Run("shared default workspace", func(t *testing.T) {
		s := b.on(t)
		s.mustOK("write_file", map[string]any{"path": "notes/from-tool.txt", "content": "written by write_file\n"})
		if r := s.mustOK("run_shell", map[string]any{"command": "cat /workspace/notes/from-tool.txt"}); r.sc["stdout"] != "written by write_file\n" {
			t.Errorf("run_shell did not see write_file's file: %q %s", r.sc["stdout"], r.text)
		}
		s.mustOK("run_code", map[string]any{"code": "open('/workspace/from-python.txt', 'w').write('py')"})
		if r := s.mustOK("run_shell", map[string]any{"command": "cat /workspace/from-python.txt"}); r.sc["stdout"] != "py" {
			t.Errorf("run_shell did not see run_code's file: %q", r.sc["stdout"])
		}
		s.mustOK("run_shell", map[string]any{"command": "echo sh > /workspace/from-shell.txt"})
		if r := s.mustOK("list_directory", nil); !strings.Contains(r.text, "from-shell.txt") || !strings.Contains(r.text, "from-python.txt") {
			t.Errorf("list_directory of the default workspace: %q", r.text)
		}
		// A created context has a workspace of its own.
		id := s.newContext("bash")
		if r := s.mustOK("run_shell", map[string]any{"context_id": id, "command": "ls /workspace"}); strings.Contains(fmt.Sprint(r.sc["stdout"]), "from-shell.txt") {
			t.Errorf("a created context sees the default workspace: %q", r.sc["stdout"])
		}
		s.mustOK("stop_context", map[string]any{"context_id": id})
	})

	t.Run("logging", func(t *testing.T) {
		// alpha: level warn, log_tool_calls = true: tool calls are logged
		// even below the level; beta logs none.
		if log := a.stderr.String(); !strings.Contains(log, `msg="tool call" tool=run_code`) {
			t.Errorf("alpha's tool calls were not logged:\n%s", log)
		}
		if log := b.stderr.String(); strings.Contains(log, `msg="tool call"`) {
			t.Errorf("beta logged tool calls with log_tool_calls = false:\n%s", log)
		}
		if r := a.on(t).mustOK("run_code", map[string]any{"code": "import os; os.environ['ALPHA_TOKEN'] == " + strconv.Quote(alphaToken)}); r.sc["value"] != "True" {
			t.Errorf("alpha's [shell.env] did not reach the sandbox: %s", r.text)
		}
		if strings.Contains(a.stderr.String(), alphaToken) {
			t.Errorf("alpha's secret appears in its log")
		}
	})

	// alpha first: beta's sandboxes must survive another vial's exit.
	ids := a.sandboxIDs()
	if err := a.cs.Close(); err != nil {
		t.Logf("closing alpha's client: %v", err)
	}
	if st := a.cmd.ProcessState; st == nil || st.ExitCode() != 0 {
		t.Errorf("vial serve --agent alpha exit: %v", st)
	}
	b.on(t).mustOK("run_code", map[string]any{"code": "'still here'"})
	b.on(t).closeAndCheckClean(ids)
	if ents, _ := os.ReadDir(filepath.Join(stateDir, "workspaces")); len(ents) > 0 {
		t.Errorf("workspaces left in %s: %d", stateDir, len(ents))
	}
}

// TestLocalMode checks that sandbox.mode = "local" is refused without the
// operator's acknowledgement, and with it runs on the host, loudly.
func TestLocalMode(t *testing.T) {
	cfg := writeTree(t, map[string]string{
		"agents/dev/agent.toml": "extends = \"local-dev\"\n[sandbox]\ntimeout_seconds = 5\n[tools]\nenabled = [\"run_code\", \"write_file\", \"run_shell\"]\nrequire_confirmation = []\nauto_approve_patterns = [\"*\"]\n",
	})
	testutil.Require(t, enabled(), "set VIAL_E2E=1 to run the end-to-end tests")
	stateDir := newStateDir(t)
	out, err := exec.Command(vialBin, "--state-dir", stateDir, "serve", "--config-dir", cfg, "--agent", "dev").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--allow-unsandboxed") || !strings.Contains(string(out), "NO ISOLATION") {
		t.Fatalf("local mode without --allow-unsandboxed: err %v\n%s", err, out)
	}
	s := startAgent(t, stateDir, cfg, "dev", "runc", "--allow-unsandboxed")
	if log := s.stderr.String(); !strings.Contains(log, "WARNING") || !strings.Contains(log, "NO ISOLATION") {
		t.Errorf("no start-up warning:\n%s", log)
	}
	s.mustOK("write_file", map[string]any{"path": "f.txt", "content": "shared"})
	r := s.mustOK("run_shell", map[string]any{"command": "cat f.txt; id -u"})
	if !strings.HasPrefix(fmt.Sprint(r.sc["stdout"]), "shared") || !strings.Contains(r.text, "LOCAL MODE") {
		t.Errorf("local run_shell: %q\n%s", r.sc["stdout"], r.text)
	}
	if strings.Contains(fmt.Sprint(r.sc["stdout"]), "\n0\n") {
		t.Errorf("local mode ran as root: %q", r.sc["stdout"])
	}
	if r := s.mustOK("run_code", map[string]any{"code": "import time; time.sleep(30)", "timeout": 1}); r.sc["timed_out"] != true {
		t.Errorf("local timeout: %s", r.text)
	}
	if err := s.cs.Close(); err != nil {
		t.Logf("closing: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(stateDir, "workspaces")); len(ents) > 0 {
		t.Errorf("workspaces left: %d", len(ents))
	}
}
