// Package metrics turns vial's events (package observe) into counters,
// gauges and histograms, kept in a private Prometheus registry: served as
// Prometheus text by Handler and summarised as JSON by Snapshot (the MCP
// resource).
//
// # Executions (seed 000's ExecutionMonitor)
//
// An execution is one call of a code-running tool — run_code, run_shell or
// execute_python — that the application core served, whatever its outcome.
// It is successful when the program ran and ended normally (outcome "ok":
// exit status 0, no exception, no timeout); every other outcome is a
// failed execution: a program that raised or exited non-zero
// (program_error), timed out, was killed for memory, whose context died,
// and a call that was refused or could not run (tool_error,
// internal_error, canceled). This is the seed's rule, where success means
// the program's status was 0 and any exception is a failure; the counts by
// tool and outcome (vial_tool_calls_total) tell a failing program from a
// failing vial. Total execution time is the sum of those calls' durations
// as the core measured them (a first call's sandbox start included).
//
// # Labels
//
// Labels take values from fixed vocabularies only: outcomes, decisions and
// actions outside the known words count as "other", and at most
// MaxTools distinct tool names are kept (the rest are "other"). Sessions,
// clients, contexts, hosts and arguments are never labels: they would let
// a client grow the registry without bound, and the metrics are readable
// by every client of the server.
package metrics

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/vial-run/vial/observe"
)

// ExecTools are the tools whose calls are executions.
var ExecTools = []string{"run_code", "run_shell", "execute_python"}

// MaxTools bounds the distinct tool label values.
const MaxTools = 64

// Outcomes are the outcome label values; any other outcome counts as
// "other".
var Outcomes = []string{"ok", "program_error", "timed_out", "oom_killed", "dead", "denied", "tool_error", "internal_error", "canceled", "cached"}

// Decisions are the policy decision label values; any other counts as
// "other". A denial is a decision that kept a call from running: deny,
// declined (a person said no) and timeout (nobody answered in time).
var Decisions = []string{"allow", "deny", "ask", "approved", "declined", "timeout"}

var denials = []string{"deny", "declined", "timeout"}

// durationBuckets span a warm call (under a millisecond) to the longest
// time limit (minutes).
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// startBuckets span a pooled start (milliseconds) to a slow cold one.
var startBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Options configure Metrics. The zero value is ready.
type Options struct {
	// Version, if set, is reported as vial_build_info{version}.
	Version string
	// Process adds the Go runtime and process collectors (go_*, process_*).
	Process bool
	// Audit, if set, reports the audit log's records written and dropped.
	Audit func() (written, dropped uint64)
}

// Metrics holds vial's metrics. Observe is its event handler; it is safe
// for concurrent use and quick (atomic counters and one map lookup per
// label set), as the Bus requires.
type Metrics struct {
	reg   *prometheus.Registry
	since time.Time
	audit bool

	execs, execsOK, execsFailed prometheus.Counter
	execSeconds                 prometheus.Counter
	calls                       *prometheus.CounterVec
	callSeconds                 *prometheus.HistogramVec
	live, pooled                prometheus.Gauge
	started                     prometheus.Counter
	ended                       *prometheus.CounterVec
	startSeconds                prometheus.Histogram
	oomKills, timeouts          prometheus.Counter
	decisions                   *prometheus.CounterVec
	denials                     prometheus.Counter
	egress                      *prometheus.CounterVec
	egressBytes                 *prometheus.CounterVec

	mu      sync.Mutex
	tools   map[string]bool
	nlive   int64 // mirrors live, kept here so it never goes below zero
	npooled int64 // mirrors pooled, likewise
}

// New returns Metrics with its own registry (never the global one: a
// library or test in the same process cannot add to vial's output).
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), since: time.Now(), tools: map[string]bool{}}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	m.execs = counter("vial_executions_total", "Calls of run_code, run_shell and execute_python served, whatever their outcome.")
	m.execsOK = counter("vial_executions_successful_total", "Executions whose program ran and ended normally (outcome ok).")
	m.execsFailed = counter("vial_executions_failed_total", "Executions with any other outcome: the program failed, timed out, was OOM-killed or died, or the call was refused or could not run.")
	m.execSeconds = counter("vial_execution_seconds_total", "Total duration of executions, in seconds.")
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vial_tool_calls_total", Help: "Tool calls served, by tool and outcome."}, []string{"tool", "outcome"})
	f(m.calls)
	m.callSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vial_tool_call_duration_seconds", Help: "Duration of tool calls, by tool and outcome.", Buckets: durationBuckets}, []string{"tool", "outcome"})
	f(m.callSeconds)
	m.live = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vial_sandboxes_live", Help: "Sandboxes started and not yet stopped or expired."})
	f(m.live)
	m.pooled = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vial_sandboxes_pooled", Help: "Warm sandboxes waiting in the pool (counted in vial_sandboxes_live too)."})
	f(m.pooled)
	m.started = counter("vial_sandboxes_started_total", "Sandboxes started.")
	m.ended = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vial_sandboxes_ended_total", Help: "Sandboxes ended, by how: stopped (a stop, a session's end, shutdown) or expired (idle timeout, lifetime)."}, []string{"how"})
	f(m.ended)
	m.startSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vial_sandbox_start_duration_seconds", Help: "Time to start a sandbox and its interpreter.", Buckets: startBuckets})
	f(m.startSeconds)
	m.oomKills = counter("vial_oom_kills_total", "Calls whose program was killed for exceeding the memory limit.")
	m.timeouts = counter("vial_timeouts_total", "Calls whose program reached its time limit.")
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vial_policy_decisions_total", Help: "Policy decisions about calls, by decision."}, []string{"decision"})
	f(m.decisions)
	m.denials = counter("vial_policy_denials_total", "Calls kept from running by policy: denied, declined by a person, or not approved in time.")
	m.egress = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vial_egress_connections_total", Help: "Network connections of sandboxes, by decision (allowed or denied)."}, []string{"decision"})
	f(m.egress)
	m.egressBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vial_egress_bytes_total", Help: "Bytes through allowed connections, by direction (up: from the sandbox)."}, []string{"direction"})
	f(m.egressBytes)
	// Both egress decisions and directions exist from the start, so a
	// scrape shows zeros rather than nothing.
	for _, d := range []string{"allowed", "denied"} {
		m.egress.WithLabelValues(d)
	}
	for _, d := range []string{"up", "down"} {
		m.egressBytes.WithLabelValues(d)
	}
	for _, d := range []string{"stopped", "expired"} {
		m.ended.WithLabelValues(d)
	}
	if o.Audit != nil {
		m.audit = true
		audit := o.Audit
		f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vial_audit_records_written_total", Help: "Audit records written to the audit log."},
			func() float64 { w, _ := audit(); return float64(w) }))
		f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vial_audit_records_dropped_total", Help: "Audit records dropped because the audit log could not keep up or could not write (a slow or full disk)."},
			func() float64 { _, d := audit(); return float64(d) }))
	}
	if o.Version != "" {
		bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vial_build_info", Help: "vial's version.", ConstLabels: prometheus.Labels{"version": o.Version}})
		bi.Set(1)
		f(bi)
	}
	if o.Process {
		f(collectors.NewGoCollector())
		f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Subscribe makes m observe every event published on b.
func (m *Metrics) Subscribe(b *observe.Bus) (cancel func()) { return b.Subscribe(m.Observe) }

// Observe accounts for one event.
func (m *Metrics) Observe(e observe.Event) {
	switch e.Kind {
	case observe.KindCall:
		m.call(e)
	case observe.KindSandbox:
		m.sandbox(e)
	case observe.KindDecision:
		d := known(e.Decision, Decisions)
		m.decisions.WithLabelValues(d).Inc()
		if slices.Contains(denials, d) {
			m.denials.Inc()
		}
	case observe.KindEgress:
		// Deny by default: only a decision that says allow counts as allowed.
		d := "denied"
		if e.Decision == "allow" || e.Decision == "allowed" {
			d = "allowed"
		}
		m.egress.WithLabelValues(d).Inc()
		if e.BytesUp > 0 {
			m.egressBytes.WithLabelValues("up").Add(float64(e.BytesUp))
		}
		if e.BytesDown > 0 {
			m.egressBytes.WithLabelValues("down").Add(float64(e.BytesDown))
		}
	}
}

func (m *Metrics) call(e observe.Event) {
	outcome := known(e.Outcome, Outcomes)
	tool := m.toolLabel(e.Tool)
	secs := e.Duration.Seconds()
	m.calls.WithLabelValues(tool, outcome).Inc()
	m.callSeconds.WithLabelValues(tool, outcome).Observe(secs)
	switch outcome {
	case "oom_killed":
		m.oomKills.Inc()
	case "timed_out":
		m.timeouts.Inc()
	}
	if slices.Contains(ExecTools, e.Tool) {
		m.execs.Inc()
		m.execSeconds.Add(secs)
		if outcome == "ok" {
			m.execsOK.Inc()
		} else {
			m.execsFailed.Inc()
		}
	}
}

// sandbox accounts for a sandbox event. A pooled sandbox (Pooled) is
// live from its start; "take" hands it from the pool to a caller, so it
// leaves the pooled gauge but stays live until its stop or expiry.
func (m *Metrics) sandbox(e observe.Event) {
	var live, pooled int64
	switch e.Action {
	case "start":
		m.started.Inc()
		m.startSeconds.Observe(e.Duration.Seconds())
		live = 1
		if e.Pooled {
			pooled = 1
		}
	case "take":
		pooled = -1
	case "stop", "expire":
		how := "stopped"
		if e.Action == "expire" {
			how = "expired"
		}
		m.ended.WithLabelValues(how).Inc()
		live = -1
		if e.Pooled {
			pooled = -1
		}
	default:
		return
	}
	m.move(live, pooled)
}

// move moves the live and pooled gauges, never below zero: a stop whose
// start was not seen (published before m subscribed) must not make them
// negative.
func (m *Metrics) move(live, pooled int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nlive = max(m.nlive+live, 0)
	m.npooled = max(m.npooled+pooled, 0)
	m.live.Set(float64(m.nlive))
	m.pooled.Set(float64(m.npooled))
}

// toolLabel bounds the tool label: a plain name, at most MaxTools of them.
func (m *Metrics) toolLabel(t string) string {
	if t == "" || len(t) > 64 || !plain(t) {
		return "other"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.tools[t] {
		if len(m.tools) >= MaxTools {
			return "other"
		}
		m.tools[t] = true
	}
	return t
}

func plain(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == ':' || r == '/') {
			return false
		}
	}
	return true
}

func known(v string, vocabulary []string) string {
	if slices.Contains(vocabulary, v) {
		return v
	}
	return "other"
}

// Registry returns the registry, e.g. to register another collector.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus text format. It does no
// authentication: the caller wraps it.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails leaves its metrics out; the rest is served.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// Metrics renders the metrics in Prometheus text format, as Handler serves
// them; it satisfies the operator API's MetricsSource.
func (m *Metrics) Metrics() ([]byte, error) {
	fams, err := m.reg.Gather()
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if eerr := enc.Encode(f); eerr != nil {
			return nil, eerr
		}
	}
	// A collector that failed leaves its metrics out, as in Handler.
	if err != nil && b.Len() == 0 {
		return nil, err
	}
	return b.Bytes(), nil
}

// Snapshot is the JSON summary of the metrics (the MCP resource). Its
// first five fields are seed 000's ExecutionMonitor figures, under the
// seed's names.
type Snapshot struct {
	TotalExecutions      uint64 `json:"total_executions"`
	SuccessfulExecutions uint64 `json:"successful_executions"`
	FailedExecutions     uint64 `json:"failed_executions"`
	// TotalExecutionTime is in seconds.
	TotalExecutionTime float64 `json:"total_execution_time"`
	// SuccessRate is successful / total, null before the first execution.
	SuccessRate *float64 `json:"success_rate"`

	// Tools are the calls of each tool called at least once.
	Tools     map[string]ToolStats `json:"tools"`
	Sandboxes SandboxStats         `json:"sandboxes"`
	OOMKills  uint64               `json:"oom_kills"`
	Timeouts  uint64               `json:"timeouts"`
	// Decisions counts policy decisions by decision; Denials those that
	// kept a call from running.
	Decisions map[string]uint64 `json:"decisions"`
	Denials   uint64            `json:"denials"`
	Egress    EgressStats       `json:"egress"`
	// Audit is set when an audit log is kept.
	Audit *AuditStats `json:"audit,omitempty"`
	// Since is when counting started (vial serve's start).
	Since time.Time `json:"since"`
}

// ToolStats are one tool's calls.
type ToolStats struct {
	Calls    uint64            `json:"calls"`
	Seconds  float64           `json:"seconds"`
	Outcomes map[string]uint64 `json:"outcomes"`
}

// SandboxStats count sandboxes.
type SandboxStats struct {
	// Live counts sandboxes started and not yet stopped or expired, pooled
	// ones included; Pooled those waiting in the pool.
	Live    uint64 `json:"live"`
	Pooled  uint64 `json:"pooled"`
	Started uint64 `json:"started"`
	Stopped uint64 `json:"stopped"`
	Expired uint64 `json:"expired"`
}

// EgressStats count network connection decisions.
type EgressStats struct {
	Allowed   uint64 `json:"allowed"`
	Denied    uint64 `json:"denied"`
	BytesUp   uint64 `json:"bytes_up"`
	BytesDown uint64 `json:"bytes_down"`
}

// AuditStats count audit records.
type AuditStats struct {
	Written uint64 `json:"written"`
	Dropped uint64 `json:"dropped"`
}

// Snapshot reads the registry — the same figures Handler serves — into a
// Snapshot.
func (m *Metrics) Snapshot() (Snapshot, error) {
	fams, err := m.reg.Gather()
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Tools: map[string]ToolStats{}, Decisions: map[string]uint64{}, Since: m.since.UTC()}
	if m.audit {
		s.Audit = &AuditStats{}
	}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			v := value(mt)
			n := uint64(v)
			l := labels(mt)
			switch f.GetName() {
			case "vial_executions_total":
				s.TotalExecutions = n
			case "vial_executions_successful_total":
				s.SuccessfulExecutions = n
			case "vial_executions_failed_total":
				s.FailedExecutions = n
			case "vial_execution_seconds_total":
				s.TotalExecutionTime = v
			case "vial_tool_calls_total":
				t := s.Tools[l["tool"]]
				if t.Outcomes == nil {
					t.Outcomes = map[string]uint64{}
				}
				t.Calls += n
				t.Outcomes[l["outcome"]] += n
				s.Tools[l["tool"]] = t
			case "vial_tool_call_duration_seconds":
				t := s.Tools[l["tool"]]
				t.Seconds += mt.GetHistogram().GetSampleSum()
				s.Tools[l["tool"]] = t
			case "vial_sandboxes_live":
				s.Sandboxes.Live = n
			case "vial_sandboxes_pooled":
				s.Sandboxes.Pooled = n
			case "vial_sandboxes_started_total":
				s.Sandboxes.Started = n
			case "vial_sandboxes_ended_total":
				if l["how"] == "expired" {
					s.Sandboxes.Expired = n
				} else {
					s.Sandboxes.Stopped = n
				}
			case "vial_oom_kills_total":
				s.OOMKills = n
			case "vial_timeouts_total":
				s.Timeouts = n
			case "vial_policy_decisions_total":
				s.Decisions[l["decision"]] = n
			case "vial_policy_denials_total":
				s.Denials = n
			case "vial_egress_connections_total":
				if l["decision"] == "allowed" {
					s.Egress.Allowed = n
				} else {
					s.Egress.Denied = n
				}
			case "vial_egress_bytes_total":
				if l["direction"] == "up" {
					s.Egress.BytesUp = n
				} else {
					s.Egress.BytesDown = n
				}
			case "vial_audit_records_written_total":
				s.Audit.Written = n
			case "vial_audit_records_dropped_total":
				s.Audit.Dropped = n
			}
		}
	}
	if s.TotalExecutions > 0 {
		r := float64(s.SuccessfulExecutions) / float64(s.TotalExecutions)
		s.SuccessRate = &r
	}
	return s, nil
}

// JSON is Snapshot, indented, for the MCP resource.
func (m *Metrics) JSON() ([]byte, error) {
	s, err := m.Snapshot()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}
