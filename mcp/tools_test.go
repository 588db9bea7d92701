package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/service"
)

// callDirect calls a tool through the mcp-go server without a transport.
func callDirect(t *testing.T, s *Server, name string, args map[string]any) toolResult {
	t.Helper()
	msg, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": name, "arguments": args},
	})
	resp := s.MCPServer().HandleMessage(context.Background(), msg)
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["error"] != nil {
		t.Fatalf("%s: JSON-RPC error %v", name, m["error"])
	}
	return toolResult(m["result"].(map[string]any))
}

func TestRunCodeResults(t *testing.T) {
	s, _, _ := newTestServer(t, Options{}, service.Options{Context: runtime.ContextOptions{OutputCap: 1000, Grace: 200 * time.Millisecond}})
	for _, tc := range []struct {
		name     string
		code     string
		timeout  float64
		status   string
		wantText []string
		check    func(t *testing.T, sc map[string]any)
	}{
		{name: "ok", code: "echo hello", status: "status: ok", wantText: []string{"--- stdout ---\nhello"}},
		{name: "exception", code: "raise", status: "status: error: ZeroDivisionError: division by zero",
			wantText: []string{"--- error ---\nTraceback", "ZeroDivisionError: division by zero"},
			check: func(t *testing.T, sc map[string]any) {
				e := sc["error"].(map[string]any)
				if e["name"] != "ZeroDivisionError" || sc["exit_status"] != float64(1) {
					t.Errorf("structured error = %v exit %v", e, sc["exit_status"])
				}
			}},
		{name: "exit status", code: "exit 3", status: "status: exited with status 3"},
		{name: "timeout", code: "sleep 10000", timeout: 0.2, status: "status: TIMED OUT after 200ms: the code was interrupted; the context is still usable",
			check: func(t *testing.T, sc map[string]any) {
				if sc["timed_out"] != true || sc["dead"] != false {
					t.Errorf("timed_out=%v dead=%v", sc["timed_out"], sc["dead"])
				}
			}},
		{name: "oom", code: "oom", status: "status: OUT OF MEMORY",
			check: func(t *testing.T, sc map[string]any) {
				if sc["oom_killed"] != true || sc["dead"] != true {
					t.Errorf("oom_killed=%v dead=%v", sc["oom_killed"], sc["dead"])
				}
			}},
		{name: "flood", code: "flood 5000", status: "status: ok", wantText: []string{"[stdout truncated"},
			check: func(t *testing.T, sc map[string]any) {
				if sc["stdout_truncated"] != true {
					t.Errorf("stdout_truncated = %v", sc["stdout_truncated"])
				}
			}},
		{name: "value", code: "set x 41", status: "status: ok", wantText: []string{"(no output)"},
			check: func(t *testing.T, sc map[string]any) {
				if sc["value"] != nil {
					t.Errorf("value = %v, want null", sc["value"])
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := map[string]any{"code": tc.code}
			if tc.timeout > 0 {
				args["timeout"] = tc.timeout
			}
			r := callDirect(t, s, "run_code", args)
			if r.isError() {
				t.Fatalf("a program outcome must not be a tool error: %s", r.text())
			}
			if !strings.HasPrefix(r.text(), tc.status) {
				t.Errorf("status line = %q, want prefix %q", strings.SplitN(r.text(), "\n", 2)[0], tc.status)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(r.text(), w) {
					t.Errorf("text %q lacks %q", r.text(), w)
				}
			}
			sc := r.structured()
			for _, k := range []string{"stdout", "stderr", "value", "error", "exit_status", "timed_out", "oom_killed", "dead", "duration_ms", "peak_memory_bytes", "cpu_time_ms", "stdout_truncated", "stderr_truncated"} {
				if _, ok := sc[k]; !ok {
					t.Errorf("structured content lacks %q: %v", k, sc)
				}
			}
			if tc.check != nil {
				tc.check(t, sc)
			}
		})
	}
}

func TestStatePersistsAndDeadContexts(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	callDirect(t, s, "run_code", map[string]any{"code": "set x 42"})
	r := callDirect(t, s, "run_code", map[string]any{"code": "get x"})
	if r.structured()["value"] != "42" || !strings.Contains(r.text(), "--- value ---\n42") {
		t.Errorf("state lost: %q", r.text())
	}
	c := callDirect(t, s, "create_context", map[string]any{"language": "python", "name": "scratch"})
	id := c.structured()["context_id"].(string)
	if r := callDirect(t, s, "run_code", map[string]any{"code": "get x", "context_id": id}); !strings.Contains(r.text(), "NameError") {
		t.Errorf("contexts share state: %q", r.text())
	}
	if r := callDirect(t, s, "run_code", map[string]any{"code": "oom", "context_id": id}); !r.structured()["dead"].(bool) {
		t.Errorf("oom did not report dead")
	}
	r = callDirect(t, s, "run_code", map[string]any{"code": "echo hi", "context_id": id})
	if !r.isError() || !strings.Contains(r.text(), "is dead") {
		t.Errorf("dead context: isError=%v %q", r.isError(), r.text())
	}
}

func TestContextTools(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	r := callDirect(t, s, "create_context", map[string]any{"language": "bash", "name": "sh"})
	id := r.structured()["context_id"].(string)
	if r.isError() || !strings.Contains(r.text(), "created bash context "+id) {
		t.Fatalf("create_context: %q", r.text())
	}
	r = callDirect(t, s, "list_contexts", nil)
	if !strings.Contains(r.text(), id+"  bash") || !strings.Contains(r.text(), `name="sh"`) {
		t.Errorf("list_contexts: %q", r.text())
	}
	if list := r.structured()["contexts"].([]any); len(list) != 1 {
		t.Errorf("structured contexts = %v", list)
	}
	// Language mismatches are explained.
	if r := callDirect(t, s, "run_code", map[string]any{"code": "1", "context_id": id, "language": "python"}); !r.isError() || !strings.Contains(r.text(), "runs bash, not python") {
		t.Errorf("language mismatch: %q", r.text())
	}
	if r := callDirect(t, s, "run_code", map[string]any{"code": "echo x", "context_id": id}); r.isError() || r.structured()["language"] != "bash" {
		t.Errorf("run_code in bash context: %q %v", r.text(), r.structured()["language"])
	}
	py := callDirect(t, s, "create_context", map[string]any{"language": "python"}).structured()["context_id"].(string)
	if r := callDirect(t, s, "run_shell", map[string]any{"command": "ls", "context_id": py}); !r.isError() || !strings.Contains(r.text(), "run_shell needs a bash context") {
		t.Errorf("run_shell in python context: %q", r.text())
	}
	if r := callDirect(t, s, "stop_context", map[string]any{"context_id": id}); r.isError() {
		t.Errorf("stop_context: %q", r.text())
	}
	if r := callDirect(t, s, "stop_context", map[string]any{"context_id": id}); !r.isError() || !strings.Contains(r.text(), id+" was stopped") {
		t.Errorf("second stop_context: %q", r.text())
	}
	// Unknown environments are explained, without host paths.
	r = callDirect(t, s, "create_context", map[string]any{"language": "python", "environment": "missing"})
	if !r.isError() || strings.Contains(r.text(), "/etc/vial") || !strings.Contains(r.text(), `environment "missing"`) {
		t.Errorf("unknown environment: %q", r.text())
	}
}

func TestSandboxLimitExplained(t *testing.T) {
	s, _, _ := newTestServer(t, Options{}, service.Options{MaxSandboxes: 1})
	if r := callDirect(t, s, "create_context", map[string]any{"language": "python"}); r.isError() {
		t.Fatalf("create_context: %q", r.text())
	}
	if r := callDirect(t, s, "create_context", map[string]any{"language": "python"}); !r.isError() || !strings.Contains(r.text(), "limit reached") || !strings.Contains(r.text(), "stop_context") {
		t.Errorf("exhausted: %q", r.text())
	}
}

func TestTimeoutClampAndDefaults(t *testing.T) {
	s, _, _ := newTestServer(t, Options{}, service.Options{Limits: service.Limits{DefaultTimeout: 10 * time.Second, MaxTimeout: 60 * time.Second}})
	for _, tc := range []struct {
		name    string
		timeout any
		want    time.Duration
		clamped bool
	}{
		{"default", nil, 10 * time.Second, false},
		{"lower", 1, time.Second, false},
		{"fraction", 0.5, 500 * time.Millisecond, false},
		{"above ceiling", 3600, 60 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := map[string]any{"code": "echo x"}
			if tc.timeout != nil {
				args["timeout"] = tc.timeout
			}
			r := callDirect(t, s, "run_code", args)
			if got := r.structured()["timeout_ms"]; got != float64(tc.want.Milliseconds()) {
				t.Errorf("timeout_ms %v, want %v", got, tc.want.Milliseconds())
			}
			if got := strings.Contains(r.text(), "lowered"); got != tc.clamped {
				t.Errorf("clamp note = %v, want %v: %q", got, tc.clamped, r.text())
			}
		})
	}
	r := callDirect(t, s, "execute_python", map[string]any{"code": "echo once", "timeout": 99999})
	if got := r.structured()["timeout_ms"]; got != float64(60000) {
		t.Errorf("execute_python timeout_ms %v, want the 60s ceiling", got)
	}
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	s, env, lb := newTestServer(t, Options{})
	for _, fail := range []error{
		fmt.Errorf("starting runc in /var/lib/vial/sandboxes/x: exec: \"runc\": executable file not found in $PATH: %w", errdefs.ErrUnavailable),
		fmt.Errorf("reading /var/lib/vial/secret/state.json: unexpected EOF"),
	} {
		env.p.Fail = fail
		r := callDirect(t, s, "run_code", map[string]any{"code": "echo", "language": "javascript"})
		if !r.isError() {
			t.Errorf("%v: not an error", fail)
		}
		if strings.Contains(r.text(), "/var/lib") || strings.Contains(r.text(), "runc") {
			t.Errorf("%v: host details leaked: %q", fail, r.text())
		}
	}
	if !strings.Contains(lb.String(), "/var/lib/vial/secret") {
		t.Errorf("internal error not logged: %s", lb.String())
	}
	if !strings.Contains(lb.String(), "tool=run_code") || !strings.Contains(lb.String(), "outcome=internal_error") {
		t.Errorf("tool call log line missing: %s", lb.String())
	}
}

func TestImagesAndExecuteOnce(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	r := callDirect(t, s, "run_code", map[string]any{"code": "image 1"})
	var img map[string]any
	for _, c := range r["content"].([]any) {
		if m := c.(map[string]any); m["type"] == "image" {
			img = m
		}
	}
	if img == nil || img["mimeType"] != "image/png" || img["data"] == "" || r.structured()["images"] != float64(1) {
		t.Errorf("image content missing: %v", r)
	}
	// execute_python keeps no state.
	callDirect(t, s, "execute_python", map[string]any{"code": "set y 1"})
	if r := callDirect(t, s, "execute_python", map[string]any{"code": "get y"}); !strings.Contains(r.text(), "NameError") {
		t.Errorf("execute_python kept state: %q", r.text())
	}
}

func TestScrubPaths(t *testing.T) {
	for in, want := range map[string]string{
		"context ctx-1: not found":                          "context ctx-1: not found",
		"open /var/lib/vial/x: no such file":                "open <host path>: no such file",
		"file /workspace/a.txt: not found":                  "file /workspace/a.txt: not found",
		`environment "py" (/etc/vial/environments/py.toml)`: `environment "py" (<host path>)`,
		"and/or ratio 1/2":                                  "and/or ratio 1/2",
	} {
		if got := scrubPaths(in); got != want {
			t.Errorf("scrubPaths(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewServerValidation(t *testing.T) {
	_, err := NewServer(Options{Tools: []string{"run_code", "rm_rf"}, ResponseBudget: 10})
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"no service", `unknown tool "rm_rf"`, "response budget"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	s, _, _ := newTestServer(t, Options{Tools: []string{"run_code", "list_contexts"}})
	if got := fmt.Sprint(s.Tools()); got != "[list_contexts run_code]" {
		t.Errorf("Tools() = %s", got)
	}
	resp := s.MCPServer().HandleMessage(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	b, _ := json.Marshal(resp)
	if strings.Contains(string(b), "write_file") {
		t.Errorf("disabled tool listed: %s", b)
	}
}

func TestAnnotations(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	tools := s.MCPServer().ListTools()
	want := map[string]struct{ readOnly, destructive bool }{
		"list_contexts": {true, false}, "read_file": {true, false}, "list_directory": {true, false}, "search_files": {true, false},
		"stop_context": {false, true}, "delete_file": {false, true}, "write_file": {false, true}, "run_code": {false, true}, "run_shell": {false, true},
		"create_context": {false, false}, "execute_python": {false, false},
		"http_request": {false, true}, "fetch_url": {true, false}, "install_package": {false, true},
	}
	if len(tools) != len(want) {
		t.Errorf("%d tools, want %d", len(tools), len(want))
	}
	for name, w := range want {
		st, ok := tools[name]
		if !ok {
			t.Errorf("tool %s missing", name)
			continue
		}
		a := st.Tool.Annotations
		if got := a.ReadOnlyHint != nil && *a.ReadOnlyHint; got != w.readOnly {
			t.Errorf("%s readOnlyHint = %v, want %v", name, got, w.readOnly)
		}
		if got := a.DestructiveHint != nil && *a.DestructiveHint; got != w.destructive {
			t.Errorf("%s destructiveHint = %v, want %v", name, got, w.destructive)
		}
		if st.Tool.Description == "" {
			t.Errorf("%s has no description", name)
		}
	}
	_ = mcpgo.Tool{}
}
