package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/testutil"
)

// httpServe is a `vial serve --http` on a free loopback port.
type httpServe struct {
	cmd      *exec.Cmd
	endpoint string
	stateDir string
	stderr   *lockedBuffer
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startHTTPServe(t *testing.T, env []string, extra ...string) *httpServe {
	t.Helper()
	requireE2E(t, "runc")
	stateDir := newStateDir(t)
	addr := freePort(t)
	args := append([]string{"serve", "--state-dir", stateDir, "--log-level", "info", "--http", addr, "--runtime", "runc", "--memory", "256m"}, extra...)
	cmd := exec.Command(vialBin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &httpServe{cmd: cmd, endpoint: "http://" + addr + "/mcp", stateDir: stateDir, stderr: stderr}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("vial serve --http ignored SIGTERM")
		}
		if t.Failed() {
			t.Logf("vial serve --http stderr:\n%s", stderr)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("vial serve --http did not listen on %s: %v\n%s", addr, err, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

func (h *httpServe) connect(t *testing.T, token, name string) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	client := sdk.NewClient(&sdk.Implementation{Name: name, Version: "1"}, nil)
	tr := &sdk.StreamableClientTransport{Endpoint: h.endpoint, HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}}, MaxRetries: -1}
	cs, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connecting %s: %v\n%s", name, err, h.stderr)
	}
	t.Cleanup(func() { cs.Close() })
	return &session{t: t, cs: cs, stateDir: h.stateDir, cmd: h.cmd, stderr: h.stderr, ctx: ctx}
}

func post(t *testing.T, url, token string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPSessionsAndToken: over --http every request needs the bearer
// token, and each client's session owns its contexts and files — a second
// client cannot list, run in, read, write or stop the first one's.
func TestHTTPSessionsAndToken(t *testing.T) {
	const token = "e2e-http-token-0123456789abcdef"
	// No warm pool: the test counts the sandboxes each session holds.
	h := startHTTPServe(t, []string{"VIAL_HTTP_TOKEN=" + token}, "--pool-size", "0")
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong-token-0123456789", 401}, {token + "x", 401}, {token, 200}} {
		if got := post(t, h.endpoint, tc.token); got != tc.want {
			t.Errorf("token %q: status %d, want %d", tc.token, got, tc.want)
		}
	}
	a := h.connect(t, token, "client-a")
	b := h.connect(t, token, "client-b")
	id := a.newContext("python")
	a.mustOK("run_code", map[string]any{"context_id": id, "code": "secret = 'a-only-42'"})
	a.mustOK("run_code", map[string]any{"code": "mine = 1"}) // a's default context
	a.mustOK("write_file", map[string]any{"path": "a.txt", "content": "a's shared file"})
	a.mustOK("write_file", map[string]any{"context_id": id, "path": "p.txt", "content": "a's private file"})

	if r := b.mustOK("list_contexts", nil); strings.Contains(r.text, id) || len(r.sc["contexts"].([]any)) != 0 {
		t.Errorf("b lists a's contexts: %q", r.text)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"run_code", map[string]any{"context_id": id, "code": "secret"}},
		{"read_file", map[string]any{"context_id": id, "path": "p.txt"}},
		{"write_file", map[string]any{"context_id": id, "path": "b.txt", "content": "b was here"}},
		{"list_directory", map[string]any{"context_id": id}},
		{"search_files", map[string]any{"context_id": id, "pattern": "*"}},
		{"delete_file", map[string]any{"context_id": id, "path": "p.txt"}},
		{"stop_context", map[string]any{"context_id": id}},
	} {
		r := b.call(tc.tool, tc.args)
		if !r.isError || strings.Contains(r.text, "a-only-42") || strings.Contains(r.text, "private") {
			t.Errorf("b %s on a's context %s: isError=%v %q", tc.tool, id, r.isError, r.text)
		}
	}
	if r := b.call("read_file", map[string]any{"path": "a.txt"}); !r.isError {
		t.Errorf("b read a's shared workspace: %q", r.text)
	}
	if r := b.mustOK("run_code", map[string]any{"code": "mine"}); !strings.Contains(r.text, "NameError") {
		t.Errorf("b's default context is a's: %q", r.text)
	}
	// a still has everything.
	if r := a.mustOK("run_code", map[string]any{"context_id": id, "code": "secret"}); r.sc["value"] != "'a-only-42'" {
		t.Errorf("a's context: %q", r.text)
	}
	if r := a.mustOK("read_file", map[string]any{"context_id": id, "path": "p.txt"}); r.text != "a's private file" {
		t.Errorf("a's private file: %q", r.text)
	}
	// When a's session ends, its sandboxes go; b's stay.
	if err := a.cs.Close(); err != nil {
		t.Logf("closing a: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command(vialBin, "--state-dir", h.stateDir, "ps").CombinedOutput()
		if n := strings.Count(string(out), "\n") - 1; n == 1 {
			break // b's default context
		} else if time.Now().After(deadline) {
			t.Errorf("sandboxes after a's session ended:\n%s", out)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestHTTPNoAuthOnlyOnLoopback: --http-no-auth is refused on any address a
// remote host could reach.
func TestHTTPNoAuthOnlyOnLoopback(t *testing.T) {
	testutil.Require(t, enabled(), "set VIAL_E2E=1 to run the end-to-end tests")
	out, err := exec.Command(vialBin, "serve", "--state-dir", newStateDir(t), "--http", "0.0.0.0:0", "--http-no-auth").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "only on a loopback address") {
		t.Errorf("--http-no-auth on 0.0.0.0: exit %d\n%s", code, out)
	}
}

// TestGeneratedHTTPToken: without a token given, vial makes one, prints it
// and writes it to a 0600 file under the state directory; it works.
func TestGeneratedHTTPToken(t *testing.T) {
	h := startHTTPServe(t, []string{"VIAL_HTTP_TOKEN="})
	path := filepath.Join(h.stateDir, "http-token")
	var tok []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if tok, err = os.ReadFile(path); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || len(strings.TrimSpace(string(tok))) < 32 {
		t.Fatalf("token file: %v %v %q", fi, err, tok)
	}
	if !strings.Contains(h.stderr.String(), strings.TrimSpace(string(tok))) {
		t.Errorf("the token was not printed to stderr")
	}
	s := h.connect(t, strings.TrimSpace(string(tok)), "gen")
	s.mustOK("list_contexts", nil)
	if post(t, h.endpoint, "") != 401 {
		t.Errorf("no token accepted")
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestEnvironmentTimeoutReported: an environment limits calls to 1 s; a
// call asking 10 s is stopped after about 1 s, and the result says 1 s —
// the limit is decided in one place and the result reports it.
func TestEnvironmentTimeoutReported(t *testing.T) {
	cfg := writeTree(t, map[string]string{
		"config/execution.toml": `[sandbox]
runtime = "runc"
timeout_seconds = 60
`,
		"config/environments/quick.toml": `[metadata]
name = "quick"
[sandbox]
timeout_seconds = 1
`,
	})
	s := startAgent(t, newStateDir(t), cfg, "", "runc")
	id := s.mustOK("create_context", map[string]any{"language": "python", "environment": "quick"}).sc["context_id"].(string)
	start := time.Now()
	r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "import time\ntime.sleep(30)", "timeout": 10})
	took := time.Since(start)
	if !strings.HasPrefix(r.text, "status: TIMED OUT after 1s") || r.sc["timeout_ms"] != float64(1000) || r.sc["timed_out"] != true {
		t.Errorf("result: timeout_ms %v\n%s", r.sc["timeout_ms"], r.text)
	}
	if !strings.Contains(r.text, "lowered to it") {
		t.Errorf("the result does not say the request was lowered: %q", r.text)
	}
	if took > 8*time.Second {
		t.Errorf("the call took %v under a 1 s limit", took)
	}
}

// TestSIGKILLedServeCollected: a `vial serve` killed with SIGKILL in the
// middle of a call leaves sandboxes, cgroups, processes and its
// workspaces; `vial gc` removes every one of them.
func TestSIGKILLedServeCollected(t *testing.T) {
	s := startServe(t, "runc")
	s.mustOK("write_file", map[string]any{"path": "keep.txt", "content": "agent files"})
	id := s.newContext("bash")
	s.mustOK("run_code", map[string]any{"code": "x = 1"})
	ids := s.sandboxIDs()
	if len(ids) < 2 {
		t.Fatalf("vial ps shows %v, want 2 sandboxes", ids)
	}
	ws, _ := filepath.Glob(filepath.Join(s.stateDir, "workspaces", "serve-*"))
	if len(ws) != 1 {
		t.Fatalf("workspaces: %v", ws)
	}
	// A call in flight: sleeping in the sandbox.
	go s.cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "run_shell", Arguments: map[string]any{"command": "sleep 60", "context_id": id}})
	time.Sleep(500 * time.Millisecond)
	pids := sandboxPIDs(t, ids)
	if len(pids) == 0 {
		t.Fatalf("no sandbox processes found for %v", ids)
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()
	out, err := exec.Command(vialBin, "--state-dir", s.stateDir, "gc").CombinedOutput()
	if err != nil {
		t.Fatalf("vial gc: %v\n%s", err, out)
	}
	t.Logf("vial gc: %s", out)
	if !strings.Contains(string(out), "1 workspaces") {
		t.Errorf("gc did not report the workspaces: %s", out)
	}
	if left := s.sandboxIDs(); len(left) > 0 {
		t.Errorf("sandboxes left: %v", left)
	}
	if ws, _ := filepath.Glob(filepath.Join(s.stateDir, "workspaces", "serve-*")); len(ws) > 0 {
		t.Errorf("workspaces left: %v", ws)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), s.stateDir) {
		t.Errorf("mounts left under %s", s.stateDir)
	}
	for _, id := range ids {
		matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroups.Parent, id))
		if len(matches) > 0 {
			t.Errorf("cgroups left for %s: %v", id, matches)
		}
	}
	for _, pid := range pids {
		if alive(pid, 5*time.Second) {
			t.Errorf("sandbox process %d still runs", pid)
		}
	}
	if out, err := exec.Command(vialBin, "--state-dir", s.stateDir, "gc").CombinedOutput(); err != nil || !strings.Contains(string(out), "removed 0 sandboxes") {
		t.Errorf("a second gc: %v %s", err, out)
	}
}

// sandboxPIDs returns the host pids in the sandboxes' cgroups.
func sandboxPIDs(t *testing.T, ids []string) []int {
	t.Helper()
	var pids []int
	for _, id := range ids {
		files, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", cgroups.Parent, id, "*", "cgroup.procs"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
					pids = append(pids, n)
				}
			}
			fh.Close()
		}
	}
	return pids
}

// alive reports whether process pid still runs (not a zombie waiting for
// its parent) after waiting up to d for it to end.
func alive(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return false
		}
		// The state follows the command name in parentheses.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(strings.TrimSpace(string(st[i+1:])), "Z") {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStartupCheck: vial serve refuses to start, saying why, when a real
// sandbox of the agent's environment does not work — a broken image (no
// interpreter in it) or a broken runtime.
func TestStartupCheck(t *testing.T) {
	requireE2E(t)
	img := t.TempDir()
	for _, d := range []string{"proc", "sys", "dev", "tmp", "workspace", "etc", "usr/bin"} {
		os.MkdirAll(filepath.Join(img, d), 0o755)
	}
	fakeRuntime := t.TempDir()
	os.WriteFile(filepath.Join(fakeRuntime, "runc"), []byte("#!/bin/sh\necho 'runc: broken on purpose' >&2\nexit 1\n"), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"broken image", []string{"--image", img}, nil},
		{"broken runtime", nil, []string{"PATH=" + fakeRuntime + ":" + os.Getenv("PATH")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(vialBin, append([]string{"serve", "--state-dir", newStateDir(t), "--pool-size", "0"}, tc.args...)...)
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if exitCode(err) != 125 || !strings.Contains(string(out), "start-up check failed") {
				t.Errorf("exit %d:\n%s", exitCode(err), out)
			}
		})
	}
}
