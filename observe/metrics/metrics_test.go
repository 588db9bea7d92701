package metrics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/observe/metrics"
	"github.com/vial-run/vial/observe/metrics/metricstest"
)

func call(tool, outcome string, d time.Duration) observe.Event {
	return observe.Event{Kind: observe.KindCall, Tool: tool, Outcome: outcome, Duration: d, Session: "s-1", Client: "c/1"}
}

// sequence is a known sequence of events covering every kind.
func sequence() []observe.Event {
	ms := time.Millisecond
	return []observe.Event{
		{Kind: observe.KindSandbox, Action: "start", Duration: 40 * ms},
		call("run_code", "ok", 10*ms),
		call("run_code", "program_error", 20*ms),
		call("run_shell", "timed_out", 1000*ms),
		{Kind: observe.KindSandbox, Action: "start", Duration: 60 * ms},
		call("execute_python", "oom_killed", 300*ms),
		call("execute_python", "tool_error", 1*ms),
		call("read_file", "ok", 2*ms),
		call("list_contexts", "ok", 0),
		call("run_code", "something new", 5*ms),
		{Kind: observe.KindSandbox, Action: "start", Duration: 50 * ms},
		{Kind: observe.KindSandbox, Action: "stop", Reason: "stopped"},
		{Kind: observe.KindSandbox, Action: "expire", Reason: "idle"},
		{Kind: observe.KindSandbox, Action: "reset"},
		// The pool: two warm members start, one is taken (and later
		// stopped as a context), one is discarded from the pool.
		{Kind: observe.KindSandbox, Action: "start", Pooled: true, Duration: 30 * ms},
		{Kind: observe.KindSandbox, Action: "start", Pooled: true, Duration: 30 * ms},
		{Kind: observe.KindSandbox, Action: "take", Pooled: true},
		{Kind: observe.KindSandbox, Action: "stop"},
		{Kind: observe.KindSandbox, Action: "expire", Pooled: true},
		{Kind: observe.KindDecision, Decision: "allow"},
		{Kind: observe.KindDecision, Decision: "deny", Rule: "blocked_commands"},
		{Kind: observe.KindDecision, Decision: "ask"},
		{Kind: observe.KindDecision, Decision: "approved", AnsweredBy: "elicitation"},
		{Kind: observe.KindDecision, Decision: "declined"},
		{Kind: observe.KindDecision, Decision: "timeout"},
		{Kind: observe.KindDecision, Decision: "perhaps"},
		{Kind: observe.KindEgress, Host: "pypi.org", Port: 443, Decision: "allow", BytesUp: 100, BytesDown: 2000},
		{Kind: observe.KindEgress, Host: "evil.example", Port: 443, Decision: "deny"},
		{Kind: observe.KindEgress, Host: "x", Decision: "bogus"},
	}
}

// TestKnownSequence: /metrics and the snapshot show exactly the counts of
// a known sequence of events.
func TestKnownSequence(t *testing.T) {
	var bus observe.Bus
	var written, dropped uint64 = 7, 2
	m := metrics.New(metrics.Options{Version: "v-test", Process: true, Audit: func() (uint64, uint64) { return written, dropped }})
	m.Subscribe(&bus)
	for _, e := range sequence() {
		bus.Publish(e)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "# HELP vial_executions_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	got, err := metricstest.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`vial_build_info{version="v-test"}`:                 1,
		`vial_executions_total`:                             6,
		`vial_executions_successful_total`:                  1,
		`vial_executions_failed_total`:                      5,
		`vial_execution_seconds_total`:                      1.336,
		`vial_oom_kills_total`:                              1,
		`vial_timeouts_total`:                               1,
		`vial_sandboxes_live`:                               1,
		`vial_sandboxes_pooled`:                             0,
		`vial_sandboxes_started_total`:                      5,
		`vial_sandboxes_ended_total{how="stopped"}`:         2,
		`vial_sandboxes_ended_total{how="expired"}`:         2,
		`vial_sandbox_start_duration_seconds_count`:         5,
		`vial_policy_decisions_total{decision="allow"}`:     1,
		`vial_policy_decisions_total{decision="deny"}`:      1,
		`vial_policy_decisions_total{decision="ask"}`:       1,
		`vial_policy_decisions_total{decision="approved"}`:  1,
		`vial_policy_decisions_total{decision="declined"}`:  1,
		`vial_policy_decisions_total{decision="timeout"}`:   1,
		`vial_policy_decisions_total{decision="other"}`:     1,
		`vial_policy_denials_total`:                         3,
		`vial_egress_connections_total{decision="allowed"}`: 1,
		`vial_egress_connections_total{decision="denied"}`:  2,
		`vial_egress_bytes_total{direction="up"}`:           100,
		`vial_egress_bytes_total{direction="down"}`:         2000,
		`vial_audit_records_written_total`:                  7,
		`vial_audit_records_dropped_total`:                  2,
	}
	calls := map[[2]string]float64{
		{"run_code", "ok"}: 1, {"run_code", "program_error"}: 1, {"run_code", "other"}: 1,
		{"run_shell", "timed_out"}: 1, {"execute_python", "oom_killed"}: 1, {"execute_python", "tool_error"}: 1,
		{"read_file", "ok"}: 1, {"list_contexts", "ok"}: 1,
	}
	for k, n := range calls {
		l := fmt.Sprintf(`{outcome=%q,tool=%q}`, k[1], k[0])
		want["vial_tool_calls_total"+l] = n
		want["vial_tool_call_duration_seconds_count"+l] = n
	}
	got = metricstest.Without(got, "_sum")
	delete(want, "vial_sandbox_start_duration_seconds_sum")
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("/metrics (-want +got):\n%s", diff)
	}

	// Metrics() (for the operator API) is the same text.
	text, err := m.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	fromText, err := metricstest.Parse(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, metricstest.Without(fromText, "_sum"), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("Metrics() differs from /metrics:\n%s", diff)
	}

	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	rate := 1.0 / 6
	wantSnap := metrics.Snapshot{
		TotalExecutions: 6, SuccessfulExecutions: 1, FailedExecutions: 5, TotalExecutionTime: 1.336, SuccessRate: &rate,
		Tools: map[string]metrics.ToolStats{
			"run_code":       {Calls: 3, Seconds: 0.035, Outcomes: map[string]uint64{"ok": 1, "program_error": 1, "other": 1}},
			"run_shell":      {Calls: 1, Seconds: 1, Outcomes: map[string]uint64{"timed_out": 1}},
			"execute_python": {Calls: 2, Seconds: 0.301, Outcomes: map[string]uint64{"oom_killed": 1, "tool_error": 1}},
			"read_file":      {Calls: 1, Seconds: 0.002, Outcomes: map[string]uint64{"ok": 1}},
			"list_contexts":  {Calls: 1, Seconds: 0, Outcomes: map[string]uint64{"ok": 1}},
		},
		Sandboxes: metrics.SandboxStats{Live: 1, Started: 5, Stopped: 2, Expired: 2},
		OOMKills:  1, Timeouts: 1,
		Decisions: map[string]uint64{"allow": 1, "deny": 1, "ask": 1, "approved": 1, "declined": 1, "timeout": 1, "other": 1},
		Denials:   3,
		Egress:    metrics.EgressStats{Allowed: 1, Denied: 2, BytesUp: 100, BytesDown: 2000},
		Audit:     &metrics.AuditStats{Written: 7, Dropped: 2},
	}
	if diff := cmp.Diff(wantSnap, snap, cmpopts.EquateApprox(0, 1e-9), cmpopts.IgnoreFields(metrics.Snapshot{}, "Since")); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}

	// The JSON carries the seed's names.
	b, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"total_executions", "successful_executions", "failed_executions", "total_execution_time", "success_rate", "tools", "sandboxes", "decisions", "egress", "since"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON lacks %q:\n%s", k, b)
		}
	}
}

// TestEmpty: before any event every figure is zero and the success rate is
// null (not a division by zero).
func TestEmpty(t *testing.T) {
	m := metrics.New(metrics.Options{})
	b, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["success_rate"] != nil || raw["total_executions"] != 0.0 {
		t.Errorf("empty snapshot: %s", b)
	}
	if _, ok := raw["audit"]; ok {
		t.Errorf("audit figures without an audit log: %s", b)
	}
}

// TestLabelsBounded: a flood of distinct tool names and odd words cannot
// grow the registry without bound.
func TestLabelsBounded(t *testing.T) {
	m := metrics.New(metrics.Options{})
	for i := range 10 * metrics.MaxTools {
		m.Observe(call(fmt.Sprintf("tool_%d", i), fmt.Sprintf("outcome %d", i), time.Millisecond))
		m.Observe(observe.Event{Kind: observe.KindDecision, Decision: fmt.Sprint(i)})
		m.Observe(observe.Event{Kind: observe.KindSandbox, Action: fmt.Sprint(i)})
	}
	m.Observe(call(strings.Repeat("x", 100), "ok", 0))
	m.Observe(call("bad name{}", "ok", 0))
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Tools) != metrics.MaxTools+1 {
		t.Errorf("%d tool labels, want %d and other", len(snap.Tools), metrics.MaxTools)
	}
	if n := snap.Tools["other"].Calls; n != uint64(9*metrics.MaxTools+2) {
		t.Errorf("other: %d calls", n)
	}
	if len(snap.Decisions) != 1 {
		t.Errorf("decisions: %v", snap.Decisions)
	}
}

// TestLiveNeverNegative: stops whose starts were not seen do not make the
// gauge negative, and the next start counts from zero.
func TestLiveNeverNegative(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.Observe(observe.Event{Kind: observe.KindSandbox, Action: "stop"})
	m.Observe(observe.Event{Kind: observe.KindSandbox, Action: "expire"})
	m.Observe(observe.Event{Kind: observe.KindSandbox, Action: "start"})
	snap, _ := m.Snapshot()
	if snap.Sandboxes.Live != 1 {
		t.Errorf("live %d, want 1", snap.Sandboxes.Live)
	}
}

// TestPooled: pooled members are live and pooled until taken; a taken one
// stays live until it stops.
func TestPooled(t *testing.T) {
	m := metrics.New(metrics.Options{})
	sb := func(action string, pooled bool) {
		m.Observe(observe.Event{Kind: observe.KindSandbox, Action: action, Pooled: pooled})
	}
	check := func(live, pooled uint64) {
		t.Helper()
		snap, _ := m.Snapshot()
		if snap.Sandboxes.Live != live || snap.Sandboxes.Pooled != pooled {
			t.Errorf("live %d pooled %d, want %d %d", snap.Sandboxes.Live, snap.Sandboxes.Pooled, live, pooled)
		}
	}
	sb("start", true)
	sb("start", true)
	sb("start", true)
	check(3, 3)
	sb("take", true)
	check(3, 2)
	sb("stop", false) // the taken one, stopped as a context
	check(2, 2)
	sb("expire", true) // a member renewed out of the pool
	check(1, 1)
}
