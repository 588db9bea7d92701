// Package e2e drives the built vial binary end to end with MCP clients this
// project did not write (the official Go SDK's), on real runtimes.
//
// The tests run when VIAL_E2E=1 or CI=true. They need root and the OCI
// runtime under test on PATH; when a requirement is missing they skip with
// the reason, except under CI=true, where that is a failure so a missing
// install step cannot hide.
//
//	sudo VIAL_E2E=1 go test ./test/e2e/ -v
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/testutil"
)

// vialBin is the binary under test, built once by TestMain.
var vialBin string

func TestMain(m *testing.M) {
	code := func() int {
		if !enabled() {
			return m.Run() // every test skips with the reason
		}
		dir, err := os.MkdirTemp("", "vial-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		vialBin = filepath.Join(dir, "vial")
		build := exec.Command("go", "build", "-o", vialBin, "github.com/vial-run/vial/cmd/vial")
		// Static, as `make build` makes it: the binary is also the contexts'
		// init inside the sandbox, where a cgo build needs the host's loader.
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building vial: %v\n", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func enabled() bool { return os.Getenv("VIAL_E2E") == "1" || os.Getenv("CI") == "true" }

// requireE2E skips the test (fails it under CI=true) unless the end-to-end
// tests are on, it runs as root, and each of runtimes is installed.
func requireE2E(t *testing.T, runtimes ...string) {
	t.Helper()
	testutil.Require(t, enabled(), "set VIAL_E2E=1 (as root, with runc, crun and runsc installed) to run the end-to-end tests")
	testutil.RequireRoot(t)
	for _, rt := range runtimes {
		testutil.RequireBinary(t, rt)
	}
}

// session is one running `vial serve` with a connected client.
type session struct {
	t        *testing.T
	cs       *sdk.ClientSession
	stateDir string
	cmd      *exec.Cmd
	stderr   *lockedBuffer
	ctx      context.Context
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServe(t *testing.T, runtimeName string, extra ...string) *session {
	t.Helper()
	requireE2E(t, runtimeName)

	stateDir := newStateDir(t)

	args := append([]string{"--state-dir", stateDir, "--log-level", "info", "serve", "--runtime", runtimeName,
		"--memory", "256m", "--max-contexts", "12"}, extra...)
	// VIAL_E2E_SERVE_ARGS adds flags to every vial serve, e.g. to try a
	// limit by hand.
	args = append(args, strings.Fields(os.Getenv("VIAL_E2E_SERVE_ARGS"))...)
	return connect(t, exec.Command(vialBin, args...), stateDir, "vial serve")
}

// connect starts cmd, a `vial serve` on stdio with state directory
// stateDir, and connects the official SDK client to it. The session is
// closed (vial serve sees end of input, and the client waits for it to
// exit) when the test ends, before the state directory is checked; what
// names it in failures.
func connect(t *testing.T, cmd *exec.Cmd, stateDir, what string) *session {
	t.Helper()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	client := sdk.NewClient(&sdk.Implementation{Name: "vial-e2e", Version: "1"}, nil)
	// TerminateDuration: vial serve's own teardown, not the client's
	// SIGTERM, must be what ends it after stdin closes.
	cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 30 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v\nstderr:\n%s", what, err, stderr)
	}
	t.Cleanup(func() {
		cs.Close()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", what, stderr)
		}
	})
	return &session{t: t, cs: cs, stateDir: stateDir, cmd: cmd, stderr: stderr, ctx: ctx}
}

// on returns the session bound to t, so failures in a subtest fail that
// subtest.
func (s *session) on(t *testing.T) *session {
	c := *s
	c.t = t
	return &c
}

// result is a decoded tool result.
type result struct {
	text    string
	isError bool
	sc      map[string]any
	images  int
}

func (s *session) call(name string, args map[string]any) result {
	s.t.Helper()
	res, err := s.cs.CallTool(s.ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	return decode(res)
}

func decode(res *sdk.CallToolResult) result {
	var r result
	var parts []string
	for _, c := range res.Content {
		switch c := c.(type) {
		case *sdk.TextContent:
			parts = append(parts, c.Text)
		case *sdk.ImageContent:
			r.images++
		}
	}
	r.text = strings.Join(parts, "\n")
	r.isError = res.IsError
	r.sc, _ = res.StructuredContent.(map[string]any)
	return r
}

func (s *session) mustOK(name string, args map[string]any) result {
	s.t.Helper()
	r := s.call(name, args)
	if r.isError {
		s.t.Fatalf("%s(%v): tool error: %s", name, args, r.text)
	}
	return r
}

func (s *session) newContext(lang string) string {
	s.t.Helper()
	r := s.mustOK("create_context", map[string]any{"language": lang})
	return r.sc["context_id"].(string)
}

// sandboxIDs lists the sandboxes `vial ps` reports in the session's state
// directory.
func (s *session) sandboxIDs() []string {
	s.t.Helper()
	out, err := exec.Command(vialBin, "--state-dir", s.stateDir, "ps").CombinedOutput()
	if err != nil {
		s.t.Fatalf("vial ps: %v\n%s", err, out)
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] != "ID" {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// closeAndCheckClean disconnects the client and checks that vial serve
// exits and leaves no sandbox, state directory, mount or cgroup behind.
func (s *session) closeAndCheckClean(ids []string) {
	s.t.Helper()
	start := time.Now()
	// Close closes vial's stdin and waits for it to exit.
	if err := s.cs.Close(); err != nil {
		s.t.Logf("closing the client: %v", err)
	}
	took := time.Since(start)
	s.t.Logf("vial serve exited %v after stdin EOF", took)
	if took > 20*time.Second {
		s.t.Errorf("vial serve took %v to exit after the client disconnected", took)
	}
	if st := s.cmd.ProcessState; st == nil || st.ExitCode() != 0 {
		s.t.Errorf("vial serve exit: %v", st)
	}
	if left := s.sandboxIDs(); len(left) > 0 {
		s.t.Errorf("sandboxes left after disconnect: %v", left)
	}
	if ents, err := os.ReadDir(filepath.Join(s.stateDir, "sandboxes")); err == nil && len(ents) > 0 {
		s.t.Errorf("%d entries left in %s/sandboxes", len(ents), s.stateDir)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), s.stateDir+"/sandboxes") {
		s.t.Errorf("mounts left under %s/sandboxes", s.stateDir)
	}
	for _, id := range ids {
		matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroups.Parent, id))
		more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", cgroups.Parent, id))
		if left := append(matches, more...); len(left) > 0 {
			s.t.Errorf("cgroups left for sandbox %s: %v", id, left)
		}
	}
}

func runtimes() []string { return []string{"runc", "runsc"} }

func TestServe(t *testing.T) {
	for _, rt := range runtimes() {
		t.Run(rt, func(t *testing.T) {
			s := startServe(t, rt)
			t.Run("state persists", func(t *testing.T) { testStatePersists(t, s.on(t)) })
			t.Run("timeout", func(t *testing.T) { testTimeout(t, s.on(t)) })
			t.Run("output flood", func(t *testing.T) { testFlood(t, s.on(t)) })
			t.Run("memory bomb", func(t *testing.T) { testOOM(t, s.on(t)) })
			t.Run("files", func(t *testing.T) { testFiles(t, s.on(t)) })
			t.Run("path escapes", func(t *testing.T) { testEscapes(t, s.on(t)) })
			t.Run("concurrency", func(t *testing.T) { testConcurrency(t, s.on(t)) })
			t.Run("execute_python", func(t *testing.T) {
				r := s.on(t).mustOK("execute_python", map[string]any{"code": "print(6*7)"})
				if r.sc["stdout"] != "42\n" {
					t.Errorf("stdout = %q", r.sc["stdout"])
				}
			})
			ids := s.sandboxIDs()
			if len(ids) == 0 {
				t.Errorf("vial ps shows no sandboxes while contexts are live")
			}
			s.closeAndCheckClean(ids)
		})
	}
}

func testStatePersists(t *testing.T, s *session) {
	for _, tc := range []struct{ lang, set, get, want string }{
		{"python", "import math\nx = 41", "x + 1", "42"},
		{"javascript", "var x = 41; function inc(v) { return v + 1 }", "inc(x)", "42"},
	} {
		s.mustOK("run_code", map[string]any{"language": tc.lang, "code": tc.set})
		r := s.mustOK("run_code", map[string]any{"language": tc.lang, "code": tc.get})
		if r.sc["value"] != tc.want {
			t.Errorf("%s: value = %v, want %s\n%s", tc.lang, r.sc["value"], tc.want, r.text)
		}
	}
	s.mustOK("run_shell", map[string]any{"command": "X=41; mkdir -p /workspace/d && cd /workspace/d"})
	r := s.mustOK("run_shell", map[string]any{"command": "echo $((X+1)) $(pwd)"})
	if r.sc["stdout"] != "42 /workspace/d\n" {
		t.Errorf("bash: stdout = %q", r.sc["stdout"])
	}
	r = s.mustOK("run_shell", map[string]any{"command": "exit 3"})
	if r.sc["exit_status"] != float64(3) || !strings.HasPrefix(r.text, "status: exited with status 3") {
		t.Errorf("bash exit status: %v %q", r.sc["exit_status"], r.text)
	}
	r = s.mustOK("run_code", map[string]any{"code": "1/0"})
	if e, _ := r.sc["error"].(map[string]any); e["name"] != "ZeroDivisionError" || !strings.Contains(fmt.Sprint(e["traceback"]), "ZeroDivisionError") {
		t.Errorf("exception: %v", r.sc["error"])
	}
}

func testTimeout(t *testing.T, s *session) {
	id := s.newContext("python")
	s.mustOK("run_code", map[string]any{"context_id": id, "code": "kept = 'yes'"})
	start := time.Now()
	r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "while True: pass", "timeout": 1})
	took := time.Since(start)
	if r.sc["timed_out"] != true {
		t.Fatalf("timed_out = %v: %s", r.sc["timed_out"], r.text)
	}
	t.Logf("timeout=1 answered after %v", took)
	if took > 3*time.Second {
		t.Errorf("timeout=1 took %v to answer, want about 2 s at most", took)
	}
	r = s.mustOK("run_code", map[string]any{"context_id": id, "code": "kept"})
	if r.sc["value"] != "'yes'" {
		t.Errorf("context did not survive the timeout: %v %s", r.sc["value"], r.text)
	}
}

func testFlood(t *testing.T, s *session) {
	r := s.mustOK("run_code", map[string]any{"code": "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 65536)\nprint('done')"})
	if r.sc["stdout_truncated"] != true || !strings.Contains(r.text, "[stdout truncated") {
		t.Errorf("flood not truncated: truncated=%v", r.sc["stdout_truncated"])
	}
	if n := len(fmt.Sprint(r.sc["stdout"])); n > 2<<20 {
		t.Errorf("stdout is %d bytes", n)
	}
	r = s.mustOK("run_shell", map[string]any{"command": "yes | head -c 50000000"})
	if r.sc["stdout_truncated"] != true {
		t.Errorf("shell flood not truncated: %v, stdout %d bytes\n%.2000s", r.sc["stdout_truncated"], len(fmt.Sprint(r.sc["stdout"])), r.text)
	}
}

func testOOM(t *testing.T, s *session) {
	id := s.newContext("python")
	r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "b = []\nwhile True:\n    b.append(bytearray(32 << 20))", "timeout": 60})
	if r.sc["oom_killed"] != true {
		t.Fatalf("memory bomb: oom_killed = %v\n%s", r.sc["oom_killed"], r.text)
	}
	if r.sc["dead"] == true {
		again := s.call("run_code", map[string]any{"context_id": id, "code": "1"})
		if !again.isError {
			t.Errorf("a dead context ran code: %s", again.text)
		}
	}
	// The default context is unaffected.
	if r := s.mustOK("run_code", map[string]any{"code": "2 + 2"}); r.sc["value"] != "4" {
		t.Errorf("default context after another context's OOM: %v", r.sc["value"])
	}
}

func testFiles(t *testing.T, s *session) {
	s.mustOK("write_file", map[string]any{"path": "in/data.csv", "content": "a,b\n1,2\n"})
	r := s.mustOK("run_code", map[string]any{"code": "open('/workspace/in/data.csv').read().splitlines()[1]"})
	if r.sc["value"] != "'1,2'" {
		t.Errorf("code did not see the written file: %v", r.sc["value"])
	}
	s.mustOK("run_code", map[string]any{"code": "open('/workspace/out.txt', 'w').write('from python')"})
	if r := s.mustOK("read_file", map[string]any{"path": "/workspace/out.txt"}); r.text != "from python" {
		t.Errorf("read_file = %q", r.text)
	}
	// A file written by the tool can be modified by the sandbox user.
	s.mustOK("run_code", map[string]any{"code": "open('/workspace/in/data.csv', 'a').write('3,4\\n')"})
	if r := s.mustOK("search_files", map[string]any{"pattern": "*.csv", "contains": "3,4"}); !strings.Contains(r.text, "/workspace/in/data.csv") {
		t.Errorf("search_files: %q", r.text)
	}
	if r := s.mustOK("list_directory", nil); !strings.Contains(r.text, "out.txt") {
		t.Errorf("list_directory: %q", r.text)
	}
	s.mustOK("delete_file", map[string]any{"path": "out.txt"})
	if r := s.mustOK("run_code", map[string]any{"code": "import os; os.path.exists('/workspace/out.txt')"}); r.sc["value"] != "False" {
		t.Errorf("deleted file still visible: %v", r.sc["value"])
	}
}

func testEscapes(t *testing.T, s *session) {
	s.mustOK("run_code", map[string]any{"code": "import os\nfor name, target in [('shadow', '/etc/shadow'), ('up', '../../../../../../etc'), ('root', '/')]:\n    os.symlink(target, '/workspace/' + name)"})
	for _, p := range []string{"../../etc/shadow", "/etc/shadow", "shadow", "up/passwd", "root/etc/shadow"} {
		r := s.call("read_file", map[string]any{"path": p})
		if !r.isError || strings.Contains(r.text, "root:") {
			t.Errorf("read_file(%q) not refused: %q", p, r.text)
		}
		if strings.Contains(r.text, s.stateDir) || strings.Contains(r.text, "/var/lib") {
			t.Errorf("read_file(%q) leaked a host path: %q", p, r.text)
		}
	}
	if r := s.call("write_file", map[string]any{"path": "up/vial-e2e-evil", "content": "x"}); !r.isError {
		t.Errorf("write through a symlink escape not refused: %q", r.text)
	}
	if _, err := os.Stat("/etc/vial-e2e-evil"); err == nil {
		os.Remove("/etc/vial-e2e-evil")
		t.Errorf("a file was written into the host's /etc")
	}
}

func testConcurrency(t *testing.T, s *session) {
	var ids []string
	for range 4 {
		ids = append(ids, s.newContext("python"))
	}
	for i, id := range ids {
		s.mustOK("run_code", map[string]any{"context_id": id, "code": fmt.Sprintf("base = %d", i*1000)})
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ctxIdx := i % 4
			res, err := s.cs.CallTool(s.ctx, &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{
				"context_id": ids[ctxIdx],
				"code":       fmt.Sprintf("import time\ntime.sleep(0.05)\nbase + %d", i),
			}})
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			r := decode(res)
			if want := fmt.Sprint(ctxIdx*1000 + i); r.sc["value"] != want {
				t.Errorf("call %d: value %v, want %s (%s)", i, r.sc["value"], want, r.text)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		s.mustOK("stop_context", map[string]any{"context_id": id})
	}
}

// TestSIGTERMTearsDown checks that SIGTERM ends vial serve and removes
// every sandbox within seconds.
func TestSIGTERMTearsDown(t *testing.T) {
	s := startServe(t, "runc")
	s.mustOK("run_code", map[string]any{"code": "1"})
	s.newContext("bash")
	ids := s.sandboxIDs()
	if len(ids) < 2 {
		t.Fatalf("vial ps shows %v, want at least 2 sandboxes", ids)
	}
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cs.Wait(); close(exited) }()
	select {
	case <-exited:
		t.Logf("vial serve closed its output %v after SIGTERM", time.Since(start))
	case <-time.After(20 * time.Second):
		t.Errorf("vial serve ignored SIGTERM for 20 s")
	}
	_ = s.cs.Close() // reap it
	if left := s.sandboxIDs(); len(left) > 0 {
		t.Errorf("sandboxes left after SIGTERM: %v", left)
	}
}
