package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/observe/audit"
	"github.com/vial-run/vial/observe/metrics"
	"github.com/vial-run/vial/observe/metrics/metricstest"
	"github.com/vial-run/vial/service"
)

// TestMetricsAndAuditThroughTheStack drives a known sequence of tool calls
// through the real mcp and service packages (fake sandboxes) and checks
// that the vial://metrics resource, the Prometheus text and the audit log
// account for exactly those calls.
func TestMetricsAndAuditThroughTheStack(t *testing.T) {
	const secret = "sk-stack-secret-4242"
	var bus observe.Bus
	auditDir := t.TempDir()
	al, err := audit.Open(audit.Options{Dir: auditDir, RetentionDays: 7, Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	al.Subscribe(&bus)
	m := metrics.New(metrics.Options{Audit: al.Stats})
	m.Subscribe(&bus)
	s, _, lb := newTestServer(t, Options{Resources: []Resource{{
		URI: "vial://metrics", Name: "metrics", MIMEType: "application/json",
		Read: func(context.Context) ([]byte, error) { return m.JSON() },
	}}}, service.Options{Events: &bus})
	rs := startRaw(t, s, lb)
	rs.initialize()

	ctxID := ""
	calls := []struct {
		tool    string
		args    map[string]any
		isError bool
	}{
		{"run_code", map[string]any{"code": "echo hi"}, false},
		{"run_code", map[string]any{"code": "raise"}, false},
		{"run_code", map[string]any{"code": "sleep 10000", "timeout": 0.1}, false},
		{"create_context", map[string]any{"language": "python"}, false},
		{"run_code", map[string]any{"code": "oom", "context_id": "$ctx"}, false},
		{"stop_context", map[string]any{"context_id": "$ctx"}, false},
		{"run_shell", map[string]any{"command": "exit 3"}, false},
		{"execute_python", map[string]any{"code": "echo once"}, false},
		{"run_code", map[string]any{"code": 5}, true},               // refused by mcp: not a string
		{"create_context", map[string]any{}, true},                  // refused by mcp: no language
		{"list_contexts", nil, false},                               // served without a sandbox
		{"read_file", map[string]any{"path": "../" + secret}, true}, // refused by the service
		{"write_file", map[string]any{"path": "a.txt", "content": "x"}, false},
	}
	for _, c := range calls {
		for k, v := range c.args {
			if v == "$ctx" {
				c.args[k] = ctxID
			}
		}
		r := rs.tool(c.tool, c.args)
		if r.isError() != c.isError {
			t.Fatalf("%s(%v): isError %v: %s", c.tool, c.args, r.isError(), r.text())
		}
		if c.tool == "create_context" && !c.isError {
			ctxID = r.structured()["context_id"].(string)
		}
	}

	// resources/list offers the resource; resources/read is the snapshot.
	list := rs.call("resources/list", map[string]any{})
	if e := list["error"]; e != nil {
		t.Fatalf("resources/list: %v", e)
	}
	res := list["result"].(map[string]any)["resources"].([]any)
	if len(res) != 1 || res[0].(map[string]any)["uri"] != "vial://metrics" || res[0].(map[string]any)["mimeType"] != "application/json" {
		t.Fatalf("resources: %v", res)
	}
	read := rs.call("resources/read", map[string]any{"uri": "vial://metrics"})
	if e := read["error"]; e != nil {
		t.Fatalf("resources/read: %v", e)
	}
	contents := read["result"].(map[string]any)["contents"].([]any)[0].(map[string]any)
	var snap metrics.Snapshot
	if err := json.Unmarshal([]byte(contents["text"].(string)), &snap); err != nil {
		t.Fatalf("%v: %s", err, contents["text"])
	}
	rate := 2.0 / 7
	outcomes := func(kv ...any) map[string]uint64 {
		m := map[string]uint64{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = uint64(kv[i+1].(int))
		}
		return m
	}
	want := metrics.Snapshot{
		// run_code ×5 (ok, program_error, timed_out, oom_killed, refused),
		// run_shell ×1 (exit 3), execute_python ×1 (ok).
		TotalExecutions: 7, SuccessfulExecutions: 2, FailedExecutions: 5, SuccessRate: &rate,
		Tools: map[string]metrics.ToolStats{
			"run_code":       {Calls: 5, Outcomes: outcomes("ok", 1, "program_error", 1, "timed_out", 1, "oom_killed", 1, "tool_error", 1)},
			"create_context": {Calls: 2, Outcomes: outcomes("ok", 1, "tool_error", 1)},
			"stop_context":   {Calls: 1, Outcomes: outcomes("ok", 1)},
			"run_shell":      {Calls: 1, Outcomes: outcomes("program_error", 1)},
			"execute_python": {Calls: 1, Outcomes: outcomes("ok", 1)},
			"list_contexts":  {Calls: 1, Outcomes: outcomes("ok", 1)},
			"read_file":      {Calls: 1, Outcomes: outcomes("tool_error", 1)},
			"write_file":     {Calls: 1, Outcomes: outcomes("ok", 1)},
		},
		// The default python and bash contexts, the created one (stopped),
		// the one-shot run (stopped).
		Sandboxes: metrics.SandboxStats{Live: 2, Started: 4, Stopped: 2},
		OOMKills:  1, Timeouts: 1,
		Decisions: map[string]uint64{},
		Audit:     &metrics.AuditStats{}, // compared below, once the writer caught up
	}
	ignore := cmp.FilterPath(func(p cmp.Path) bool {
		switch p.Last().String() {
		case ".TotalExecutionTime", ".Seconds", ".Since", ".Audit":
			return true
		}
		return false
	}, cmp.Ignore())
	if diff := cmp.Diff(want, snap, ignore); diff != "" {
		t.Errorf("vial://metrics (-want +got):\n%s", diff)
	}
	if snap.TotalExecutionTime <= 0 || snap.Tools["run_code"].Seconds < 0.1 {
		t.Errorf("execution time %v, run_code %v s", snap.TotalExecutionTime, snap.Tools["run_code"].Seconds)
	}

	// /metrics says the same.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got, err := metricstest.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]float64{
		"vial_executions_total": 7, "vial_executions_successful_total": 2, "vial_executions_failed_total": 5,
		"vial_sandboxes_live": 2, "vial_sandboxes_started_total": 4, `vial_sandboxes_ended_total{how="stopped"}`: 2,
		"vial_oom_kills_total": 1, "vial_timeouts_total": 1,
		`vial_tool_calls_total{outcome="timed_out",tool="run_code"}`:            1,
		`vial_tool_call_duration_seconds_count{outcome="ok",tool="write_file"}`: 1,
		`vial_tool_calls_total{outcome="tool_error",tool="create_context"}`:     1,
	} {
		if got[k] != v {
			t.Errorf("/metrics %s = %v, want %v", k, got[k], v)
		}
	}

	// The audit log: one line per call, in order, the secret masked.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := al.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if w, d := al.Stats(); w != uint64(len(calls)) || d != 0 {
		t.Errorf("audit: %d written, %d dropped; want %d, 0", w, d, len(calls))
	}
	files, _ := filepath.Glob(filepath.Join(auditDir, "audit-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("audit files: %v", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) {
		t.Errorf("the secret is in the audit log")
	}
	var tools []string
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		tools = append(tools, r.Tool+":"+r.Outcome)
		if r.Session != "stdio" || r.Client != "raw/1" || len(r.ArgsDigest) != 64 || r.DurationMS == nil {
			t.Errorf("audit record %+v", r)
		}
		if r.Tool == "read_file" && !strings.Contains(r.Error, "********") {
			t.Errorf("read_file error %q does not show the masked secret", r.Error)
		}
		if r.Tool == "execute_python" && (r.Runtime != "runc" || r.Image != "host" || r.Limits == nil || r.Limits.TimeoutMS == 0 || r.Usage == nil || r.Context == "") {
			t.Errorf("execute_python record lacks where it ran: %+v", r)
		}
	}
	var wantTools []string
	for i, c := range calls {
		outcome := "ok"
		switch {
		case c.isError:
			outcome = "tool_error"
		case i == 1 || i == 6:
			outcome = "program_error"
		case i == 2:
			outcome = "timed_out"
		case i == 4:
			outcome = "oom_killed"
		}
		wantTools = append(wantTools, fmt.Sprintf("%s:%s", c.tool, outcome))
	}
	if diff := cmp.Diff(wantTools, tools); diff != "" {
		t.Errorf("audit lines (-want +got):\n%s", diff)
	}
}

// TestNoResources: without resources the capability is not declared and
// resources/list answers -32601, as before.
func TestNoResources(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	rs := startRaw(t, s, lb)
	rs.initialize()
	if code := errorCode(rs.call("resources/list", map[string]any{})); code != -32601 {
		t.Errorf("resources/list: code %d, want -32601", code)
	}
}

// TestBadResources: resource options are validated at once.
func TestBadResources(t *testing.T) {
	read := func(context.Context) ([]byte, error) { return nil, nil }
	_, err := NewServer(Options{Service: &service.Service{}, Resources: []Resource{
		{URI: "", Read: read}, {URI: "vial://x"}, {URI: "vial://y", Read: read}, {URI: "vial://y", Read: read},
	}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"needs a scheme", "no Read function", "given twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
