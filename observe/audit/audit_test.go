package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vial-run/vial/observe"
)

const secret = "sk-audit-secret-0123456789"

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func clock(t time.Time) func() time.Time {
	var mu sync.Mutex
	return func() time.Time { mu.Lock(); defer mu.Unlock(); return t }
}

func closeLog(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestOneLinePerCall: a known sequence of events gives one line per call
// and per decision, in order, every field as documented, a secret masked,
// in a 0600 file in a 0700 directory.
func TestOneLinePerCall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(Options{Dir: dir, RetentionDays: 7, Secrets: []string{secret}, Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	var bus observe.Bus
	l.Subscribe(&bus)
	ms := time.Millisecond
	bus.Publish(observe.Event{Time: t0, Kind: observe.KindSandbox, Action: "start"}) // not audited
	bus.Publish(observe.Event{Time: t0, Kind: observe.KindCall, Session: "stdio", Client: "claude/1.0", Tool: "run_code",
		ArgsDigest: "abc123", Context: "ctx-1", Language: "python", Environment: "dev", Runtime: "runsc", Image: "python",
		Outcome: "ok", Duration: 12500 * time.Microsecond,
		Usage:  &observe.Usage{CPU: 3 * ms, PeakMemory: 8 << 20},
		Limits: &observe.Limits{Timeout: 30 * time.Second, MemoryBytes: 256 << 20, CPUs: 1, Pids: 256, DiskBytes: 1 << 30}})
	bus.Publish(observe.Event{Time: t0.Add(ms), Kind: observe.KindCall, Session: "stdio", Tool: "read_file", Outcome: "tool_error",
		Error: "cannot read /etc/" + secret + ": refused", Duration: ms})
	bus.Publish(observe.Event{Time: t0.Add(2 * ms), Kind: observe.KindDecision, Session: "stdio", Tool: "run_shell",
		Decision: "approved", Rule: "require_confirmation", AnsweredBy: "elicitation", Waited: 1500 * ms})
	bus.Publish(observe.Event{Time: t0.Add(3 * ms), Kind: observe.KindEgress, Sandbox: "sb-1", Action: "connect", Host: "denied.test", Port: 443,
		Decision: "denied", Reason: "not in allowed_hosts"})
	bus.Publish(observe.Event{Time: t0.Add(4 * ms), Kind: observe.KindEgress, Sandbox: "sb-1", Action: "http", Host: "allowed.test", Port: 80,
		Decision: "allowed", Reason: "allowed_hosts \"allowed.test\"", BytesUp: 80, BytesDown: 1200, Duration: 2 * ms})
	closeLog(t, l)

	path := filepath.Join(dir, "audit-2026-03-10.jsonl")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Errorf("the secret is in the audit log:\n%s", raw)
	}
	want := []map[string]any{
		{"v": 1.0, "time": "2026-03-10T12:00:00Z", "kind": "call", "session": "stdio", "client": "claude/1.0", "tool": "run_code",
			"args_digest": "abc123", "context": "ctx-1", "language": "python", "environment": "dev", "runtime": "runsc", "image": "python",
			"outcome": "ok", "duration_ms": 12.5,
			"usage":  map[string]any{"cpu_ms": 3.0, "peak_memory_bytes": float64(8 << 20)},
			"limits": map[string]any{"timeout_ms": 30000.0, "memory_bytes": float64(256 << 20), "cpus": 1.0, "pids": 256.0, "disk_bytes": float64(1 << 30)}},
		{"v": 1.0, "time": "2026-03-10T12:00:00.001Z", "kind": "call", "session": "stdio", "tool": "read_file", "outcome": "tool_error",
			"error": "cannot read /etc/********: refused", "duration_ms": 1.0},
		{"v": 1.0, "time": "2026-03-10T12:00:00.002Z", "kind": "decision", "session": "stdio", "tool": "run_shell",
			"decision": "approved", "rule": "require_confirmation", "answered_by": "elicitation", "waited_ms": 1500.0},
		{"v": 1.0, "time": "2026-03-10T12:00:00.003Z", "kind": "egress", "sandbox": "sb-1", "action": "connect", "host": "denied.test", "port": 443.0,
			"decision": "denied", "reason": "not in allowed_hosts"},
		{"v": 1.0, "time": "2026-03-10T12:00:00.004Z", "kind": "egress", "sandbox": "sb-1", "action": "http", "host": "allowed.test", "port": 80.0,
			"decision": "allowed", "reason": "allowed_hosts \"allowed.test\"", "bytes_up": 80.0, "bytes_down": 1200.0, "duration_ms": 2.0},
	}
	if diff := cmp.Diff(want, readLines(t, path)); diff != "" {
		t.Errorf("audit lines (-want +got):\n%s", diff)
	}
	if w, d := l.Stats(); w != 5 || d != 0 {
		t.Errorf("stats: %d written, %d dropped", w, d)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
}

// TestEgressRecordsBounded: a sandbox refused in a loop cannot fill the
// audit disk: egress records over the rate are dropped and counted, and
// a call's record still gets through.
func TestEgressRecordsBounded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(Options{Dir: dir, Now: clock(t0), Buffer: 100000})
	if err != nil {
		t.Fatal(err)
	}
	n := 20 * egressBurst
	for range n {
		l.Record(observe.Event{Time: t0, Kind: observe.KindEgress, Sandbox: "sb", Host: "denied.test", Port: 443, Decision: "denied"})
	}
	l.Record(observe.Event{Time: t0, Kind: observe.KindCall, Tool: "run_code", Outcome: "ok"})
	closeLog(t, l)
	lines := readLines(t, filepath.Join(dir, "audit-2026-03-10.jsonl"))
	if len(lines) > egressBurst+egressRate+1 {
		t.Errorf("%d lines for %d egress events, want at most about %d", len(lines), n, egressBurst)
	}
	if last := lines[len(lines)-1]; last["kind"] != "call" {
		t.Errorf("the call's record is missing: last line %v", last)
	}
	if w, d := l.Stats(); int(w+d) != n+1 || d == 0 {
		t.Errorf("stats: %d written, %d dropped, of %d", w, d, n+1)
	}
}

// TestRecordBounded: a huge field (a client's name, an error) is cut to a
// fixed size, and a secret that straddles the cut is not shown in part.
func TestRecordBounded(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, Secrets: []string{secret}, Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", maxError-5) + secret + strings.Repeat("y", 1<<20)
	l.Record(observe.Event{Time: t0, Kind: observe.KindCall, Tool: "run_code", Client: huge, Error: huge, Context: huge})
	closeLog(t, l)
	raw, err := os.ReadFile(filepath.Join(dir, "audit-2026-03-10.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > maxError+3*maxField+1024 {
		t.Errorf("a record of %d bytes", len(raw))
	}
	if bytes.Contains(raw, []byte(secret[:5])) {
		t.Errorf("part of the secret is in the record")
	}
	lines := readLines(t, filepath.Join(dir, "audit-2026-03-10.jsonl"))
	if e := lines[0]["error"].(string); !strings.HasSuffix(e, "********…") {
		t.Errorf("error field ends %q", e[len(e)-20:])
	}
}

// TestRotationAndRetention: each day has its file; files older than the
// retention are removed at open and when a new day's file is opened;
// other files are left alone; 0 keeps everything.
func TestRotationAndRetention(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"audit-2026-02-01.jsonl", "audit-2026-03-02.jsonl", "audit-2026-03-03.jsonl", "audit-2026-03-09.jsonl", "notes.txt", "audit-junk.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := t0
	var mu sync.Mutex
	l, err := Open(Options{Dir: dir, RetentionDays: 7, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	if err != nil {
		t.Fatal(err)
	}
	ls := func() []string {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	// 2026-03-10 - 7 days = 2026-03-03: that day is kept, older ones go.
	if diff := cmp.Diff([]string{"audit-2026-03-03.jsonl", "audit-2026-03-09.jsonl", "audit-junk.jsonl", "notes.txt"}, ls()); diff != "" {
		t.Errorf("after open (-want +got):\n%s", diff)
	}
	settle := func() {
		// Wait for the writer to catch up.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if w, _ := l.Stats(); w > 0 && len(l.q) == 0 {
				return
			}
		}
	}
	l.Record(observe.Event{Kind: observe.KindCall, Tool: "a"})
	settle()
	mu.Lock()
	now = t0.AddDate(0, 0, 1)
	mu.Unlock()
	before, _ := l.Stats()
	l.Record(observe.Event{Kind: observe.KindCall, Tool: "b"})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if w, _ := l.Stats(); w > before {
			break
		}
	}
	closeLog(t, l)
	if diff := cmp.Diff([]string{"audit-2026-03-09.jsonl", "audit-2026-03-10.jsonl", "audit-2026-03-11.jsonl", "audit-junk.jsonl", "notes.txt"}, ls()); diff != "" {
		t.Errorf("after a day (-want +got):\n%s", diff)
	}
	for day, tool := range map[string]string{"2026-03-10": "a", "2026-03-11": "b"} {
		lines := readLines(t, filepath.Join(dir, "audit-"+day+".jsonl"))
		if len(lines) != 1 || lines[0]["tool"] != tool {
			t.Errorf("%s: %v", day, lines)
		}
	}

	// Retention 0 keeps everything.
	l, err = Open(Options{Dir: dir, Now: clock(t0.AddDate(1, 0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	if len(ls()) != 5 {
		t.Errorf("retention 0 removed files: %v", ls())
	}
}

// stuckDisk stands in for a disk that does not answer: every write waits
// until release is closed.
type stuckDisk struct {
	release chan struct{}
	writes  chan struct{}
}

func (s *stuckDisk) Write(p []byte) (int, error) {
	select {
	case s.writes <- struct{}{}:
	default:
	}
	<-s.release
	return len(p), nil
}
func (s *stuckDisk) Close() error { return nil }

// TestSlowDiskNeverBlocks: with the writer stuck on the disk, recording
// goes on at full speed; what does not fit the queue is dropped and
// counted, the queue never holds more than its bound, and one warning is
// logged, not one per record.
func TestSlowDiskNeverBlocks(t *testing.T) {
	disk := &stuckDisk{release: make(chan struct{}), writes: make(chan struct{}, 1)}
	var logBuf syncBuffer
	const buffer = 16
	l, err := Open(Options{Dir: t.TempDir(), Buffer: buffer, Now: clock(t0), Log: slog.New(slog.NewTextHandler(&logBuf, nil)),
		open: func(*os.Root, string) (io.WriteCloser, error) { return disk, nil }})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(observe.Event{Kind: observe.KindCall, Tool: "first"})
	<-disk.writes // the writer is now stuck in the first write
	const n = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			l.Record(observe.Event{Kind: observe.KindCall, Tool: "run_code", Client: strings.Repeat("c", 4096)})
			if len(l.q) > buffer {
				t.Errorf("queue holds %d records, above its bound %d", len(l.q), buffer)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Record blocked on a stuck disk")
	}
	if _, d := l.Stats(); d != n-buffer {
		t.Errorf("dropped %d, want %d", d, n-buffer)
	}
	if c := strings.Count(logBuf.String(), "audit records dropped"); c != 1 {
		t.Errorf("%d drop warnings, want 1 (at most one a minute):\n%s", c, logBuf.String())
	}
	// Close gives up when the disk does not answer, and does not hang.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close on a stuck disk: %v", err)
	}
	l.Record(observe.Event{Kind: observe.KindCall, Tool: "after close"}) // ignored, no panic
	close(disk.release)
	closeLog(t, l)
	if w, _ := l.Stats(); w != 1+buffer {
		t.Errorf("written %d, want %d", w, 1+buffer)
	}
}

// TestFullDisk: writes that fail (ENOSPC, from /dev/full) drop their
// records and count them; nothing is counted as written.
func TestFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	var logBuf syncBuffer
	l, err := Open(Options{Dir: t.TempDir(), Now: clock(t0), Log: slog.New(slog.NewTextHandler(&logBuf, nil)),
		open: func(*os.Root, string) (io.WriteCloser, error) { return os.OpenFile("/dev/full", os.O_WRONLY, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		l.Record(observe.Event{Kind: observe.KindCall, Tool: "run_code"})
	}
	closeLog(t, l)
	if w, d := l.Stats(); w != 0 || d != 100 {
		t.Errorf("written %d, dropped %d; want 0, 100", w, d)
	}
	if !strings.Contains(logBuf.String(), "no space left on device") {
		t.Errorf("the log does not say why:\n%s", logBuf.String())
	}
}

// TestFIFOIsNotAFile: a day's file that is a FIFO — an open that blocks
// until someone reads, like a disk that does not answer — holds up
// neither Record nor, beyond its deadline, Close; and once it opens it is
// refused, not written to.
func TestFIFOIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "audit-2026-03-10.jsonl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	l, err := Open(Options{Dir: dir, Buffer: 4, Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		l.Record(observe.Event{Kind: observe.KindCall, Tool: "run_code"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); err == nil {
		t.Error("Close returned nil with the writer stuck opening a FIFO")
	}
	// Unblock the writer's open by opening the read side.
	r, err := os.OpenFile(fifo, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	<-l.done
	if w, d := l.Stats(); w != 0 || d != 100 {
		t.Errorf("written %d, dropped %d; want 0, 100", w, d)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestParentsNotPrivate: only the log's own directory is private; parents
// it had to make keep the usual mode, so the log never locks others out
// of a directory it shares.
func TestParentsNotPrivate(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "state", "audit")
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	for p, want := range map[string]os.FileMode{filepath.Join(base, "state"): 0o755, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// The umask may take bits away, but the parent must stay
		// traversable by others.
		if got := fi.Mode().Perm(); got&^want != 0 || (p == dir && got != want) || (p != dir && got&0o001 == 0) {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
}

// TestAuditTail: the last n records across day files, oldest first; a line
// still being written is left out; reading costs what n asks for.
func TestAuditTail(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, lines ...string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var big []string
	for i := range 5000 {
		big = append(big, `{"n":`+strings.Repeat(" ", 50)+itoa(i)+"}\n")
	}
	write("audit-2026-03-08.jsonl", big...)
	write("audit-2026-03-09.jsonl", "{\"n\":\"a\"}\n", "{\"n\":\"b\"}\n")
	write("audit-2026-03-10.jsonl", "{\"n\":\"c\"}\n", "{\"n\":\"partial")
	write("notes.txt", "not a record\n")
	l, err := Open(Options{Dir: dir, Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(t, l)
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, "{\"n\":\"c\"}\n"},
		{3, "{\"n\":\"a\"}\n{\"n\":\"b\"}\n{\"n\":\"c\"}\n"},
		{4, big[4999] + "{\"n\":\"a\"}\n{\"n\":\"b\"}\n{\"n\":\"c\"}\n"},
	} {
		b, err := l.AuditTail(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("AuditTail(%d) = %q, want %q", tc.n, b, tc.want)
		}
	}
	b, err := l.AuditTail(3003)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) != 3003 || lines[0] != big[2000] {
		t.Errorf("AuditTail(3003): %d lines, first %q", len(lines), lines[0])
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
