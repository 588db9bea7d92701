// Package audit keeps vial's audit log: one JSON line per tool call, per
// policy decision and per network connection decision (egress), in a file per day (UTC) in a directory of its own,
// with secrets masked and old files removed after a retention period.
//
// Recording never blocks the caller for long: Record masks and cuts the
// event's text to fixed bounds and hands the record to a bounded queue; a
// single writer goroutine appends batches of whole lines to the day's
// file. When the queue is full (a slow disk) or a write fails (a full
// disk), records are dropped, counted (Stats) and reported in the log at
// most once a minute. Memory is bounded by the queue's length times the
// largest record.
//
// The file format is documented in docs/mcp.md ("Audit log"); Record is
// its schema.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/vial-run/vial/internal/mask"
	"github.com/vial-run/vial/observe"
)

// Version is the schema version every record carries ("v").
const Version = 1

// DefaultBuffer is the default queue length, in records.
const DefaultBuffer = 1024

// Bounds of a record's text fields, in bytes. An error text gets more
// room than a name; anything longer is cut (with a secret never shown in
// part; see mask.Masker.Cut).
const (
	maxField = 256
	maxError = 2048
	// maxBatch bounds one write: the lines of a batch go to the file in
	// one write call, so lines of several vial processes sharing the
	// directory never interleave.
	maxBatch = 256 << 10
)

// A sandbox decides how many egress decisions it causes (a loop of
// refused connections): egress records beyond egressBurst at once,
// egressRate a second on average, are dropped and counted, so a sandbox
// cannot fill the audit disk or crowd out the records of calls.
const (
	egressRate  = 100
	egressBurst = 1000
)

// Options configure a Log. Dir is required.
type Options struct {
	// Dir is the directory of the log files, created (mode 0700; missing
	// parents 0755) if missing. Files are named audit-YYYY-MM-DD.jsonl and created with
	// mode 0600.
	Dir string
	// RetentionDays removes a file once its day is more than this many
	// days before the current day (UTC): with 7, the current day's file
	// and the seven before it are kept. 0 keeps every file. Files are
	// pruned at Open and whenever a new day's file is opened.
	RetentionDays int
	// Secrets are values replaced by ******** in every text field.
	Secrets []string
	// Buffer is the queue length in records; 0 means DefaultBuffer.
	Buffer int
	// Log receives the log's own problems (dropped records, write
	// errors); nil discards.
	Log *slog.Logger
	// Now tells the current time, which picks the day's file; nil is
	// time.Now.
	Now func() time.Time

	// open opens a day's file; tests replace it to stand in for a slow or
	// failing disk.
	open func(root *os.Root, name string) (io.WriteCloser, error)
}

// Record is one line of the audit log. Fields that do not apply are left
// out.
type Record struct {
	V    int    `json:"v"`
	Time string `json:"time"` // RFC 3339, UTC, nanoseconds
	Kind string `json:"kind"` // call, decision or egress

	Session     string  `json:"session,omitempty"`
	Client      string  `json:"client,omitempty"`
	Agent       string  `json:"agent,omitempty"`
	Tool        string  `json:"tool,omitempty"`
	ArgsDigest  string  `json:"args_digest,omitempty"`
	Context     string  `json:"context,omitempty"`
	Language    string  `json:"language,omitempty"`
	Environment string  `json:"environment,omitempty"`
	Runtime     string  `json:"runtime,omitempty"`
	Image       string  `json:"image,omitempty"`
	Limits      *Limits `json:"limits,omitempty"`

	Outcome    string   `json:"outcome,omitempty"`
	Error      string   `json:"error,omitempty"`
	DurationMS *float64 `json:"duration_ms,omitempty"`
	Usage      *Usage   `json:"usage,omitempty"`

	Decision   string   `json:"decision,omitempty"`
	Rule       string   `json:"rule,omitempty"`
	AnsweredBy string   `json:"answered_by,omitempty"`
	WaitedMS   *float64 `json:"waited_ms,omitempty"`

	// Egress records: decision is "allowed" or "denied", reason why,
	// action the kind of connection (connect, http, tls, dns, fetch).
	Sandbox   string `json:"sandbox,omitempty"`
	Action    string `json:"action,omitempty"`
	Host      string `json:"host,omitempty"`
	Port      int    `json:"port,omitempty"`
	Reason    string `json:"reason,omitempty"`
	BytesUp   int64  `json:"bytes_up,omitempty"`
	BytesDown int64  `json:"bytes_down,omitempty"`
}

// Limits are the limits a call ran under; 0 means not known.
type Limits struct {
	TimeoutMS   float64 `json:"timeout_ms,omitempty"`
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
	DiskBytes   int64   `json:"disk_bytes,omitempty"`
}

// Usage is what a call used in its sandbox.
type Usage struct {
	CPUMS           float64 `json:"cpu_ms"`
	PeakMemoryBytes uint64  `json:"peak_memory_bytes"`
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	root    *os.Root
	dir     string
	keep    int
	mask    *mask.Masker
	log     *slog.Logger
	now     func() time.Time
	openDay func(root *os.Root, name string) (io.WriteCloser, error)

	mu     sync.RWMutex // guards closed against sends on q
	closed bool
	q      chan Record
	done   chan struct{}

	egress *rate.Limiter // of egress records

	written, dropped atomic.Uint64
	lastWarn         atomic.Int64 // unix nanoseconds of the last drop report
	unreported       atomic.Uint64

	// Owned by the writer goroutine.
	day string
	f   io.WriteCloser
}

// Open creates the directory if needed, prunes old files and starts the
// writer.
func Open(o Options) (*Log, error) {
	if o.Dir == "" {
		return nil, errors.New("opening the audit log: no directory")
	}
	if o.RetentionDays < 0 {
		return nil, fmt.Errorf("opening the audit log: negative retention %d", o.RetentionDays)
	}
	// Only the log's own directory is private: parents made here get the
	// usual 0755, so that making the log never locks others out of a
	// directory it shares (such as the state directory).
	if err := os.MkdirAll(filepath.Dir(o.Dir), 0o755); err != nil {
		return nil, fmt.Errorf("creating the audit directory: %w", err)
	}
	if err := os.Mkdir(o.Dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating the audit directory: %w", err)
	}
	root, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening the audit directory: %w", err)
	}
	l := &Log{
		root: root, dir: o.Dir, keep: o.RetentionDays, mask: mask.New(o.Secrets),
		log: o.Log, now: o.Now, openDay: o.open,
		done: make(chan struct{}), egress: rate.NewLimiter(egressRate, egressBurst),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.openDay == nil {
		l.openDay = openFile
	}
	n := o.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	l.q = make(chan Record, n)
	l.prune(l.now().UTC())
	go l.run()
	return l, nil
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// Subscribe makes l record the calls and decisions published on b.
func (l *Log) Subscribe(b *observe.Bus) (cancel func()) { return b.Subscribe(l.Record) }

// Stats returns the records written so far and those dropped (the queue
// was full or the write failed).
func (l *Log) Stats() (written, dropped uint64) { return l.written.Load(), l.dropped.Load() }

// Record queues a call, decision or egress event; other kinds are
// ignored. It never waits for the disk: a record that finds the queue
// full is dropped and counted, as is an egress record over its rate.
func (l *Log) Record(e observe.Event) {
	switch e.Kind {
	case observe.KindCall, observe.KindDecision:
	case observe.KindEgress:
		if !l.egress.Allow() {
			l.drop(1, fmt.Sprintf("sandboxes cause more than %d network decisions a second; the audit log keeps that many", egressRate), nil)
			return
		}
	default:
		return
	}
	r := l.record(e)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.q <- r:
	default:
		l.drop(1, "the audit log cannot keep up (is its disk slow?)", nil)
	}
}

// record turns an event into a Record, its text masked and bounded.
func (l *Log) record(e observe.Event) Record {
	t := func(s string) string { return l.text(s, maxField) }
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	r := Record{
		V: Version, Time: e.Time.UTC().Format(time.RFC3339Nano), Kind: string(e.Kind),
		Session: t(e.Session), Client: t(e.Client), Agent: t(e.Agent), Tool: t(e.Tool), ArgsDigest: t(e.ArgsDigest),
		Context: t(e.Context), Language: t(e.Language), Environment: t(e.Environment), Runtime: t(e.Runtime), Image: t(e.Image),
		Outcome: t(e.Outcome), Error: l.text(e.Error, maxError),
		Decision: t(e.Decision), Rule: t(e.Rule), AnsweredBy: t(e.AnsweredBy),
	}
	if e.Kind == observe.KindEgress {
		r.Sandbox, r.Action, r.Host, r.Port, r.Reason = t(e.Sandbox), t(e.Action), t(e.Host), e.Port, t(e.Reason)
		r.BytesUp, r.BytesDown = e.BytesUp, e.BytesDown
		if e.Duration > 0 {
			d := ms(e.Duration)
			r.DurationMS = &d
		}
	}
	if e.Kind == observe.KindCall {
		d := ms(e.Duration)
		r.DurationMS = &d
	}
	if e.Waited > 0 {
		w := ms(e.Waited)
		r.WaitedMS = &w
	}
	if u := e.Usage; u != nil {
		r.Usage = &Usage{CPUMS: ms(u.CPU), PeakMemoryBytes: u.PeakMemory}
	}
	if lim := e.Limits; lim != nil && *lim != (observe.Limits{}) {
		r.Limits = &Limits{TimeoutMS: ms(lim.Timeout), MemoryBytes: lim.MemoryBytes, CPUs: lim.CPUs, Pids: lim.Pids, DiskBytes: lim.DiskBytes}
	}
	return r
}

// text masks s and cuts it to n bytes, marking a cut with "…".
func (l *Log) text(s string, n int) string {
	if s == "" {
		return ""
	}
	out, cut := l.mask.Cut(s, n)
	if cut {
		out += "…"
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// drop counts n dropped records and reports them, at most once a minute.
func (l *Log) drop(n int, why string, err error) {
	l.dropped.Add(uint64(n))
	l.unreported.Add(uint64(n))
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if last != 0 && now-last < int64(time.Minute) {
		return
	}
	if !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	attrs := []any{"dropped", l.unreported.Swap(0), "dropped_total", l.dropped.Load(), "dir", l.dir}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	l.log.Warn("audit records dropped: "+why, attrs...)
}

// run is the writer: it takes records off the queue, encodes as many as
// are waiting (up to maxBatch bytes) and appends them in one write.
func (l *Log) run() {
	defer close(l.done)
	defer l.closeFile()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for r := range l.q {
		buf.Reset()
		n := 0
		add := func(r Record) {
			if err := enc.Encode(r); err != nil { // cannot fail for a Record
				l.drop(1, "encoding", err)
				return
			}
			n++
		}
		add(r)
	batch:
		for buf.Len() < maxBatch {
			select {
			case r, ok := <-l.q:
				if !ok {
					break batch
				}
				add(r)
			default:
				break batch
			}
		}
		if n > 0 {
			l.write(buf.Bytes(), n)
		}
	}
}

// write appends a batch of n lines to the current day's file.
func (l *Log) write(b []byte, n int) {
	now := l.now().UTC()
	day := now.Format(time.DateOnly)
	if l.f == nil || day != l.day {
		l.closeFile()
		f, err := l.openDay(l.root, fileName(day))
		if err != nil {
			l.drop(n, "opening the day's file", err)
			return
		}
		l.f, l.day = f, day
		l.prune(now)
	}
	if _, err := l.f.Write(b); err != nil {
		// The part of a batch a failed write may have left is not
		// counted as written: a reader sees at most a cut last line.
		l.drop(n, "writing (is the disk full?)", err)
		return
	}
	l.written.Add(uint64(n))
}

func (l *Log) closeFile() {
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			l.log.Warn("closing the audit file", "dir", l.dir, "error", err)
		}
		l.f = nil
	}
}

const (
	filePrefix = "audit-"
	fileSuffix = ".jsonl"
)

func fileName(day string) string { return filePrefix + day + fileSuffix }

// openFile opens (creating) a day's file for appending, mode 0600 whatever
// it had: the log names tools, clients and errors, which only the operator
// reads.
func openFile(root *os.Root, name string) (io.WriteCloser, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// prune removes the log's files older than the retention period. Other
// files in the directory are left alone.
func (l *Log) prune(now time.Time) {
	if l.keep == 0 {
		return
	}
	d, err := l.root.Open(".")
	if err != nil {
		l.log.Warn("pruning the audit log", "dir", l.dir, "error", err)
		return
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		l.log.Warn("pruning the audit log", "dir", l.dir, "error", err)
		return
	}
	today, _ := time.Parse(time.DateOnly, now.Format(time.DateOnly))
	oldest := today.AddDate(0, 0, -l.keep)
	for _, name := range names {
		day, ok := strings.CutPrefix(name, filePrefix)
		if !ok {
			continue
		}
		day, ok = strings.CutSuffix(day, fileSuffix)
		if !ok {
			continue
		}
		t, err := time.Parse(time.DateOnly, day)
		if err != nil || !t.Before(oldest) {
			continue
		}
		if err := l.root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("removing an old audit file", "file", name, "error", err)
		} else if err == nil {
			l.log.Info("removed an old audit file", "file", name, "retention_days", l.keep)
		}
	}
}

// Close stops taking records, writes those queued and closes the file,
// waiting at most until ctx is done. If the disk does not answer by then
// it returns an error; the writer finishes (or stays blocked) on its own.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.q)
	}
	l.mu.Unlock()
	select {
	case <-l.done:
		return l.root.Close()
	case <-ctx.Done():
		return fmt.Errorf("closing the audit log: %d records not yet written: %w", len(l.q), ctx.Err())
	}
}
