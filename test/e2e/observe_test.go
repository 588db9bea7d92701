package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/observe/metrics"
	"github.com/vial-run/vial/observe/metrics/metricstest"
)

// getMetrics fetches url with an optional bearer token.
func getMetrics(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *session) metricsResource() metrics.Snapshot {
	s.t.Helper()
	res, err := s.cs.ReadResource(s.ctx, &sdk.ReadResourceParams{URI: "vial://metrics"})
	if err != nil {
		s.t.Fatalf("reading vial://metrics: %v", err)
	}
	if len(res.Contents) != 1 || res.Contents[0].MIMEType != "application/json" {
		s.t.Fatalf("vial://metrics: %+v", res.Contents)
	}
	var snap metrics.Snapshot
	if err := json.Unmarshal([]byte(res.Contents[0].Text), &snap); err != nil {
		s.t.Fatalf("vial://metrics: %v\n%s", err, res.Contents[0].Text)
	}
	return snap
}

// auditLines waits until the day's audit file of stateDir holds n lines
// (the writer is asynchronous) and returns them.
func auditLines(t *testing.T, stateDir string, n int) []map[string]any {
	t.Helper()
	path := filepath.Join(stateDir, "audit", "audit-"+time.Now().UTC().Format(time.DateOnly)+".jsonl")
	var lines []map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		lines = nil
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("audit line %q: %v", sc.Text(), err)
				}
				lines = append(lines, m)
			}
			f.Close()
		}
		if len(lines) >= n || time.Now().After(deadline) {
			break
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
	return lines
}

// TestMetricsAndAudit: over `vial serve --http` with a token, a known
// sequence of calls on runc shows exactly in /metrics (which needs a
// token) and in the vial://metrics resource, and the audit file under the
// state directory has one line per call.
func TestMetricsAndAudit(t *testing.T) {
	const token = "e2e-observe-token-0123456789"
	const mtoken = "e2e-scraper-token-0123456789"
	// No warm pool: the test counts every sandbox.
	h := startHTTPServe(t, []string{"VIAL_HTTP_TOKEN=" + token, "VIAL_METRICS_TOKEN=" + mtoken}, "--pool-size", "0")
	s := h.connect(t, token, "observer")
	calls := []struct {
		tool, outcome string
		args          map[string]any
	}{
		{"run_code", "ok", map[string]any{"code": "x = 6 * 7\nx"}},
		{"run_code", "program_error", map[string]any{"code": "1/0"}},
		{"run_code", "timed_out", map[string]any{"code": "import time\ntime.sleep(30)", "timeout": 1}},
		{"run_shell", "program_error", map[string]any{"command": "exit 3"}},
		{"execute_python", "ok", map[string]any{"code": "print('once')"}},
		{"list_contexts", "ok", nil},
		{"read_file", "tool_error", map[string]any{"path": "../../etc/shadow"}},
		{"write_file", "ok", map[string]any{"path": "a.txt", "content": "hello"}},
		{"run_code", "tool_error", map[string]any{"code": 5}},
	}
	for _, c := range calls {
		r := s.call(c.tool, c.args)
		if r.isError != (c.outcome == "tool_error") {
			t.Fatalf("%s(%v): isError=%v: %s", c.tool, c.args, r.isError, r.text)
		}
	}

	// /metrics on the HTTP listener: the token is required.
	url := strings.TrimSuffix(h.endpoint, "/mcp") + "/metrics"
	if code, _ := getMetrics(t, url, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d", code)
	}
	if code, _ := getMetrics(t, url, mtoken); code != http.StatusOK {
		t.Errorf("/metrics with the metrics token: %d", code)
	}
	code, body := getMetrics(t, url, token)
	if code != http.StatusOK {
		t.Fatalf("/metrics with the MCP token: %d\n%s", code, body)
	}
	got, err := metricstest.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got = metricstest.Without(got, "_sum", "_count")
	for k := range got {
		if strings.HasPrefix(k, "vial_build_info") {
			delete(got, k)
		}
	}
	want := map[string]float64{
		// run_code ×4 (ok, program_error, timed_out, refused), run_shell
		// (exit 3), execute_python (ok).
		"vial_executions_total": 6, "vial_executions_successful_total": 2, "vial_executions_failed_total": 4,
		"vial_execution_seconds_total": got["vial_execution_seconds_total"],
		// The default python and bash contexts (still live), the one-shot
		// sandbox (stopped).
		"vial_sandboxes_live": 2, "vial_sandboxes_pooled": 0, "vial_sandboxes_started_total": 3,
		`vial_sandboxes_ended_total{how="stopped"}`: 1, `vial_sandboxes_ended_total{how="expired"}`: 0,
		"vial_oom_kills_total": 0, "vial_timeouts_total": 1,
		"vial_policy_denials_total":                         0,
		`vial_egress_connections_total{decision="allowed"}`: 0, `vial_egress_connections_total{decision="denied"}`: 0,
		`vial_egress_bytes_total{direction="up"}`: 0, `vial_egress_bytes_total{direction="down"}`: 0,
		"vial_audit_records_written_total": got["vial_audit_records_written_total"], "vial_audit_records_dropped_total": 0,
	}
	for _, c := range calls {
		want[`vial_tool_calls_total{outcome="`+c.outcome+`",tool="`+c.tool+`"}`]++
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/metrics (-want +got):\n%s", diff)
	}
	if got["vial_execution_seconds_total"] < 1 {
		t.Errorf("execution time %v s, below the 1 s timeout alone", got["vial_execution_seconds_total"])
	}

	// The resource says the same.
	snap := s.metricsResource()
	if snap.TotalExecutions != 6 || snap.SuccessfulExecutions != 2 || snap.FailedExecutions != 4 || snap.SuccessRate == nil ||
		*snap.SuccessRate != 2.0/6 || snap.Timeouts != 1 || snap.Sandboxes != (metrics.SandboxStats{Live: 2, Started: 3, Stopped: 1}) {
		t.Errorf("vial://metrics: %+v", snap)
	}
	if n := snap.Tools["run_code"].Calls; n != 4 {
		t.Errorf("vial://metrics: run_code %d calls", n)
	}

	// The audit log: one line per call, in order.
	lines := auditLines(t, h.stateDir, len(calls))
	if len(lines) != len(calls) {
		t.Fatalf("%d audit lines for %d calls", len(lines), len(calls))
	}
	for i, c := range calls {
		l := lines[i]
		if l["tool"] != c.tool || l["outcome"] != c.outcome || l["client"] != "observer/1" || l["kind"] != "call" || len(l["args_digest"].(string)) != 64 {
			t.Errorf("audit line %d: %v", i, l)
		}
	}
	if l := lines[0]; l["runtime"] != "runc" || l["image"] != "host" || l["limits"] == nil || l["usage"] == nil || l["context"] == nil {
		t.Errorf("run_code's audit line lacks where it ran: %v", l)
	}
	time.Sleep(200 * time.Millisecond)
	if more := auditLines(t, h.stateDir, 0); len(more) != len(calls) {
		t.Errorf("%d audit lines after the wait, want %d", len(more), len(calls))
	}
}

// TestMetricsListenerForStdio: `vial serve --metrics ADDR` (stdio) serves
// /metrics on a loopback listener of its own, open to loopback only.
func TestMetricsListenerForStdio(t *testing.T) {
	addr := freePort(t)
	s := startServe(t, "runc", "--metrics", addr, "--audit-dir", "none")
	s.mustOK("run_code", map[string]any{"code": "print(1)"})
	var got map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := getMetrics(t, "http://"+addr+"/metrics", "")
		if code == http.StatusOK {
			var err error
			if got, err = metricstest.Parse(strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics on %s: %d %s", addr, code, body)
		}
	}
	if got["vial_executions_total"] != 1 || got["vial_executions_successful_total"] != 1 {
		t.Errorf("executions: %v", got)
	}
	if _, ok := got["vial_audit_records_written_total"]; ok {
		t.Errorf("audit figures with --audit-dir none")
	}
	if _, err := os.Stat(filepath.Join(s.stateDir, "audit")); err == nil {
		t.Errorf("--audit-dir none made an audit directory")
	}
}
