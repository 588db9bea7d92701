package runtime

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

// Defaults for ContextOptions.
const (
	DefaultExecTimeout  = 30 * time.Second
	DefaultGrace        = 2 * time.Second
	DefaultOutputCap    = 1 << 20
	DefaultStartTimeout = 30 * time.Second
	// DefaultImageBytes bounds the images of one call together: a dozen
	// ordinary figures (tens to hundreds of KiB each) fit, and an answer
	// stays a few MiB even after the base64 an MCP client receives.
	DefaultImageBytes = 4 << 20
	// DefaultMaxQueued bounds the calls waiting for a busy context. A
	// model calls one at a time and a client runs a few tool calls at
	// once; sixteen waiting calls at the default timeout are eight minutes
	// of backlog, longer than any client waits for an answer, and each
	// holds a goroutine and its code until its turn.
	DefaultMaxQueued = 16
	// maxImages bounds the figures one call may return.
	maxImages = 16
	// maxErrorText bounds an error's message and its traceback, each, in
	// bytes; the drivers cut them to this too (keeping the traceback's
	// end, where the error is). A 34 MB exception message once made a
	// Python answer too large to read and cost the context.
	maxErrorText = 64 << 10
	// stderrTail is how much of a driver's own stderr is kept for errors.
	stderrTail = 4 << 10
	// stderrLogged is how much of a driver's own stderr is logged (at
	// debug level) per context; the rest is only counted.
	stderrLogged = 64 << 10
)

// DefaultMaxMessage returns the bound on one answer from a driver that
// NewContext sets when ContextOptions.MaxMessage is 0: room for stdout,
// stderr and a value at the larger of outputCap and the drivers' own
// default cap (a driver not told otherwise caps at DefaultOutputCap), an
// error's message and traceback, the images at the larger of imageBytes
// and DefaultImageBytes, and 1 MiB for the other fields and the framing.
// At the defaults that is about 8 MiB.
func DefaultMaxMessage(outputCap, imageBytes int) int {
	return 3*max(outputCap, DefaultOutputCap) + 2*maxErrorText + max(imageBytes, DefaultImageBytes) + 1<<20
}

// ContextOptions describe one context. Zero values take the defaults above.
type ContextOptions struct {
	ID          string   // "" means a fresh random ID (see NewContextID)
	Name        string   // optional, for people
	Language    Language // required
	Environment string   // the environment the sandbox was built from
	Workspace   string   // host directory mounted at /workspace
	// Timeout applies to a call whose ExecRequest.Timeout is 0. A negative
	// value means no timeout.
	Timeout time.Duration
	// Grace is how long the driver has to answer an interrupt before the
	// context is killed.
	Grace time.Duration
	// OutputCap bounds stdout and stderr of one call each, in bytes. The
	// driver caps them too; this is the limit vial trusts.
	OutputCap int
	// StartTimeout bounds the wait for the driver's ready message.
	StartTimeout time.Duration
	// ImageBytes bounds the images of one call together, in bytes (at
	// most 16 images in any case); images past it are dropped and counted
	// in ExecResult.ImagesOmitted. 0 means DefaultImageBytes.
	ImageBytes int
	// MaxMessage bounds one answer read from the driver, in bytes, every
	// byte of its framing counted; a larger one ends the context. It is
	// the most a context's answer can cost vial's memory: the reader holds
	// one answer at a time, and turning it into an ExecResult copies it
	// once, so a context costs at most about twice this plus 128 KiB of
	// buffers whatever its sandbox writes (bytes written outside a call
	// are drained, at most 4 KiB, and then end the context). 0 means
	// DefaultMaxMessage(OutputCap, ImageBytes).
	MaxMessage int
	// MaxQueued bounds the calls waiting for their turn while the context
	// runs another; one more fails at once with an ErrExhausted-class
	// (errdefs.ErrResourceExhausted) error. 0 means DefaultMaxQueued; a
	// negative value means none may wait.
	MaxQueued int
	Logger    *slog.Logger // nil: slog.Default()
}

// ContextInfo is a snapshot of a context for listings.
type ContextInfo struct {
	ID          string
	Name        string
	Language    Language
	Environment string
	Version     string // the interpreter's version, as its driver reported it
	Created     time.Time
	LastUsed    time.Time
	Busy        bool // a call is running or queued
	Dead        bool
}

// Context is a stateful interpreter session in a sandbox, reached through
// a Transport to the driver running there. Its methods are safe for
// concurrent use; calls to Exec run one at a time, in arrival order as far
// as the Go scheduler allows.
type Context struct {
	opts    ContextOptions
	t       Transport
	log     *slog.Logger
	created time.Time
	version string

	turn  chan struct{} // a token: holding it means running a call
	write sync.Mutex    // serialises writes to the driver's stdin
	msgs  chan *wireMsg // messages from the driver; closed at EOF or error
	rerr  error         // why msgs was closed; read after it is closed
	quit  chan struct{} // closed with the transport: stops readLoop

	stderrMu sync.Mutex
	stderr   []byte // the tail of the driver's own stderr

	mu       sync.Mutex
	lastUsed time.Time
	waiting  int  // calls running or queued
	queued   int  // calls waiting for their turn
	awaiting bool // a message from the driver is expected (ready, or a call's answer)
	dead     string
	closed   bool
	nextID   uint64
}

// NewContextID returns a random context ID: "ctx-" and 16 hex digits, safe
// as a path component and in URLs.
func NewContextID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "ctx-" + hex.EncodeToString(b[:])
}

// ValidContextID reports whether id has the form NewContextID produces (or
// a shape at least as safe: lower-case letters, digits and '-', at most 64).
func ValidContextID(id string) bool {
	if id == "" || len(id) > 64 || id[0] == '-' {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// NewContext wraps a transport whose driver has just been started and
// waits for the driver to say it is ready. On error the transport is
// closed. The Context owns t from then on: Close closes it.
func NewContext(ctx context.Context, t Transport, opts ContextOptions) (*Context, error) {
	if opts.ID == "" {
		opts.ID = NewContextID()
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultExecTimeout
	}
	if opts.OutputCap <= 0 {
		opts.OutputCap = DefaultOutputCap
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.ImageBytes <= 0 {
		opts.ImageBytes = DefaultImageBytes
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage(opts.OutputCap, opts.ImageBytes)
	}
	if opts.MaxQueued == 0 {
		opts.MaxQueued = DefaultMaxQueued
	}
	opts.MaxQueued = max(opts.MaxQueued, 0)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now()
	c := &Context{
		opts:     opts,
		t:        t,
		log:      log.With("context", opts.ID, "language", string(opts.Language)),
		created:  now,
		lastUsed: now,
		turn:     make(chan struct{}, 1),
		msgs:     make(chan *wireMsg, 1),
		quit:     make(chan struct{}),
		awaiting: true, // the ready message
	}
	go c.readLoop()
	go c.drainStderr()

	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	fail := func(format string, args ...any) (*Context, error) {
		c.closeTransport()
		msg := fmt.Sprintf(format, args...)
		if tail := c.stderrTail(); tail != "" {
			msg += ": " + tail
		}
		return nil, fmt.Errorf("starting %s context: %s: %w", opts.Language, msg, ErrUnavailable)
	}
	select {
	case m, ok := <-c.msgs:
		if !ok {
			// Give the stderr drain a moment to catch the driver's last words.
			select {
			case <-t.Done():
			case <-time.After(100 * time.Millisecond):
			}
			time.Sleep(20 * time.Millisecond)
			return fail("driver exited before it was ready (%v)", c.rerr)
		}
		if m.Kind != kindReady {
			return fail("driver sent %q before ready", m.Kind)
		}
		c.version = m.str("version")
	case <-timer.C:
		return fail("driver not ready after %v", opts.StartTimeout)
	case <-ctx.Done():
		c.closeTransport()
		return nil, fmt.Errorf("starting %s context: %w", opts.Language, ctx.Err())
	}
	return c, nil
}

// ID returns the context's ID.
func (c *Context) ID() string { return c.opts.ID }

// Language returns the context's language.
func (c *Context) Language() Language { return c.opts.Language }

// Workspace returns the host directory mounted at /workspace in the
// context's sandbox ("" if the transport has none).
func (c *Context) Workspace() string { return c.opts.Workspace }

// Info returns a snapshot of the context's state.
func (c *Context) Info() ContextInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ContextInfo{
		ID:          c.opts.ID,
		Name:        c.opts.Name,
		Language:    c.opts.Language,
		Environment: c.opts.Environment,
		Version:     c.version,
		Created:     c.created,
		LastUsed:    c.lastUsed,
		Busy:        c.waiting > 0,
		Dead:        c.dead != "",
	}
}

// Dead reports whether the context can no longer run code, and why. A
// sandbox that ended while the context was idle (killed from outside, an
// OOM kill, a crash) is noticed here, not only at the next call: the pool
// asks before it hands a warm sandbox out. While a call runs, the call
// notices its end and says why.
func (c *Context) Dead() (bool, string) {
	if dead, why := c.deadReason(); dead {
		return true, why
	}
	select {
	case c.turn <- struct{}{}:
	default:
		return false, "" // a call is running
	}
	defer func() { <-c.turn }()
	c.noticeEnd()
	return c.deadReason()
}

// noticeEnd, called with the turn held, marks the context dead if its
// sandbox ended between calls (an OOM kill of a background process takes
// the sandbox with it, a crash, a kill from outside), saying why. It
// reads the sandbox's usage before markDead tears the sandbox down.
func (c *Context) noticeEnd() {
	select {
	case <-c.t.Done():
	default:
		return
	}
	why := "its process exited"
	if u, err := c.t.Usage(); err == nil && u.OOMKills > 0 {
		why = "it was killed for running out of memory"
	}
	c.markDead(why)
}

// begin starts a request, called with the turn held: it numbers it and,
// unless the context is dead, marks its answer as awaited (before the
// request is written: the answer cannot come first). use records the
// context as used (a call does; a health check does not).
func (c *Context) begin(use bool) (uint64, error) {
	c.mu.Lock()
	alive := c.dead == ""
	c.nextID++
	id := c.nextID
	if use {
		c.lastUsed = time.Now()
	}
	if alive {
		c.awaiting = true
	}
	c.mu.Unlock()
	if alive {
		c.noticeEnd()
	}
	if dead, why := c.deadReason(); dead {
		return 0, fmt.Errorf("context %s is dead: %s: %w", c.opts.ID, why, ErrNotFound)
	}
	return id, nil
}

// deadReason is Dead without looking at the sandbox.
func (c *Context) deadReason() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead != "", c.dead
}

// Close kills the driver and releases the sandbox. Calls in progress end
// with Dead set. It is safe to call more than once.
func (c *Context) Close() error {
	c.mu.Lock()
	if c.dead == "" {
		c.dead = "it was stopped"
	}
	c.mu.Unlock()
	return c.closeTransport()
}

func (c *Context) closeTransport() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	return c.t.Close()
}

func (c *Context) markDead(reason string) {
	c.mu.Lock()
	if c.dead == "" {
		c.dead = reason
	}
	c.mu.Unlock()
	if err := c.closeTransport(); err != nil {
		c.log.Warn("closing dead context", "err", err)
	}
}

// readLoop reads the driver's messages for as long as the transport is
// open. Only one message is read per call (and the ready message at
// start), with the context's MaxMessage as its bound. Bytes that arrive
// while nothing is awaited are drained, up to wireMaxStray in the
// context's life, and then end the context: a driver writes nothing
// between calls, and reading on would let a process in the sandbox make
// vial read (and, before these bounds, buffer) without end.
func (c *Context) readLoop() {
	r := bufio.NewReaderSize(c.t.Stdout(), 64<<10)
	defer close(c.msgs)
	limit := wireMaxReady
	stray := 0
	for {
		_, err := r.Peek(1)
		if err == nil && !c.isAwaiting() {
			n, _ := r.Discard(r.Buffered())
			stray += n
			if stray > wireMaxStray {
				c.log.Warn("driver output outside a call", "bytes", stray)
				c.markDead(fmt.Sprintf("its sandbox wrote %d bytes to vial outside a call; the context was stopped", stray))
				c.rerr = io.EOF
				return
			}
			continue
		}
		var m *wireMsg
		if err == nil {
			m, err = readWireMsg(r, limit)
		}
		if err != nil {
			select {
			case <-c.quit:
				err = io.EOF // closed by us
			default:
			}
			if err != io.EOF {
				c.log.Warn("reading from driver", "err", err)
			}
			c.rerr = err
			return
		}
		limit = c.opts.MaxMessage
		c.mu.Lock()
		c.awaiting = false
		c.mu.Unlock()
		select {
		case c.msgs <- m:
		case <-c.quit:
			c.rerr = io.EOF
			return
		}
	}
}

func (c *Context) isAwaiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.awaiting
}

// drainStderr reads the driver's own stderr to its end, keeping the last
// stderrTail bytes for error messages and logging the first stderrLogged
// at debug level: whatever the sandbox writes there, vial's memory and
// log stay bounded.
func (c *Context) drainStderr() {
	buf := make([]byte, 4096)
	rd := c.t.Stderr()
	if rd == nil {
		return
	}
	logged := 0
	debug := c.log.Enabled(context.Background(), slog.LevelDebug)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			c.stderrMu.Lock()
			c.stderr = append(c.stderr, buf[:n]...)
			if len(c.stderr) > stderrTail {
				c.stderr = append(c.stderr[:0], c.stderr[len(c.stderr)-stderrTail:]...)
			}
			c.stderrMu.Unlock()
			if debug && logged < stderrLogged {
				logged += n
				c.log.Debug("driver stderr", "text", strings.TrimSpace(string(buf[:n])))
				if logged >= stderrLogged {
					c.log.Debug("driver stderr: the rest is not logged", "logged", logged)
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *Context) stderrTail() string {
	c.stderrMu.Lock()
	defer c.stderrMu.Unlock()
	s := strings.TrimSpace(strings.ToValidUTF8(string(c.stderr), "\uFFFD"))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 && len(s)-i < 200 {
		// The last line usually says it all ("python3: not found").
		return s[i+1:]
	}
	if len(s) > 500 {
		s = "..." + s[len(s)-500:]
	}
	return s
}

// Exec runs one call. Calls on one context run one at a time; a caller
// waits for its turn until ctx is done. A failing program is described in
// the result; the error is non-nil only when the call could not be made:
// the context is dead (ErrNotFound class), ctx ended (ctx.Err()), or the
// request is invalid (ErrInvalid).
//
// At the call's timeout the driver is sent SIGINT and has the context's
// grace period to answer (TimedOut set); if it does not, the context is
// killed (TimedOut and Dead set). If ctx ends while the code runs, the
// code is interrupted the same way in the background and Exec returns at
// once; the next call waits until that has settled.
func (c *Context) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	if !utf8.ValidString(req.Code) {
		return ExecResult{}, fmt.Errorf("code is not valid UTF-8: %w", ErrInvalid)
	}
	c.mu.Lock()
	c.waiting++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.waiting--
		c.lastUsed = time.Now()
		c.mu.Unlock()
	}()
	if err := c.takeTurn(ctx); err != nil {
		return ExecResult{}, err
	}
	release := true
	defer func() {
		if release {
			<-c.turn
		}
	}()
	id, err := c.begin(true)
	if err != nil {
		return ExecResult{}, err
	}

	timeout := req.Timeout
	if timeout == 0 {
		timeout = c.opts.Timeout
	}
	start := time.Now()
	msg := wireMsg{Kind: kindExec, ID: id, Fields: []wireField{{"code", []byte(req.Code)}}}
	written := c.send(msg.encode())

	w := &waiter{c: c, id: id, start: start}
	if timeout > 0 {
		w.deadline = time.NewTimer(timeout)
		defer w.deadline.Stop()
	}
	res, done := w.wait(ctx.Done(), written)
	if done {
		return res, nil
	}
	// ctx ended mid-call: interrupt in the background, keeping the turn
	// until the driver has answered or been killed.
	release = false
	go func() {
		defer func() { <-c.turn }()
		if !w.interrupted {
			w.interrupt()
		}
		w.wait(nil, nil)
	}()
	return ExecResult{}, ctx.Err()
}

// takeTurn waits, without spinning, until the call may run or ctx ends.
// A call that would wait behind MaxQueued others fails at once.
func (c *Context) takeTurn(ctx context.Context) error {
	select {
	case c.turn <- struct{}{}:
		return nil
	default:
	}
	c.mu.Lock()
	if n := c.queued; n >= c.opts.MaxQueued {
		c.mu.Unlock()
		return fmt.Errorf("context %s is busy with a call and %d more are queued on it, the most it takes: wait for them to finish, or use another context: %w", c.opts.ID, n, errExhausted)
	}
	c.queued++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.queued--
		c.mu.Unlock()
	}()
	select {
	case c.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errExhausted is of both classes of "resource exhausted" (ErrExhausted
// and errdefs.ErrResourceExhausted) until ErrExhausted becomes an alias.
var errExhausted error = exhaustedError{}

type exhaustedError struct{}

func (exhaustedError) Error() string      { return "resource exhausted" }
func (exhaustedError) ResourceExhausted() {}
func (exhaustedError) Is(target error) bool {
	return target == ErrExhausted || target == errdefs.ErrResourceExhausted
}

// waiter is the state of one call waiting for its answer.
type waiter struct {
	c           *Context
	id          uint64
	start       time.Time
	deadline    *time.Timer
	grace       <-chan time.Time
	interrupted bool
}

func (w *waiter) interrupt() {
	w.interrupted = true
	if err := w.c.t.Signal(context.Background(), syscall.SIGINT); err != nil {
		w.c.log.Warn("interrupting driver", "err", err)
	}
	w.grace = time.After(w.c.opts.Grace)
}

// wait waits for the call's answer. It returns done=false only when cancel
// is closed first.
func (w *waiter) wait(cancel <-chan struct{}, written <-chan error) (ExecResult, bool) {
	c := w.c
	var deadline <-chan time.Time
	if w.deadline != nil && !w.interrupted {
		deadline = w.deadline.C
	}
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return w.died(c.rerr), true
			}
			if m.Kind != kindResult || m.ID != w.id {
				c.log.Warn("unexpected message from driver", "kind", m.Kind, "id", m.ID, "want", w.id)
				res := w.deadResult(false)
				c.markDead("its driver broke the protocol")
				return res, true
			}
			return w.result(m), true
		case err := <-written:
			written = nil
			if err != nil {
				// The driver is gone or going; its reader will tell.
				c.log.Debug("writing to driver", "err", err)
			}
		case <-deadline:
			deadline = nil
			w.interrupt()
		case <-w.grace:
			res := w.deadResult(true)
			c.markDead(fmt.Sprintf("it did not answer an interrupt within %v and was killed", c.opts.Grace))
			return res, true
		case <-c.t.Done():
			// The driver exited. Let the reader deliver what it had.
			select {
			case m, ok := <-c.msgs:
				if ok && m.Kind == kindResult && m.ID == w.id {
					res := w.result(m)
					res.Dead = true
					c.markDead("its process exited")
					return res, true
				}
				return w.died(c.rerr), true
			case <-time.After(time.Second):
				return w.died(nil), true
			}
		case <-cancel:
			return ExecResult{}, false
		}
	}
}

func (w *waiter) died(err error) ExecResult {
	reason := "its process exited"
	if err != nil && err != io.EOF {
		reason = fmt.Sprintf("its driver's answer broke vial's wire protocol (%v); the context was stopped", err)
	} else if u, uerr := w.c.t.Usage(); uerr == nil && u.OOMKills > 0 {
		reason = "it was killed for running out of memory"
	}
	res := w.deadResult(false)
	w.c.markDead(reason)
	return res
}

// deadResult describes a call whose context died under it. It reads the
// sandbox's usage, so it must run before markDead tears the sandbox down.
func (w *waiter) deadResult(killed bool) ExecResult {
	res := ExecResult{
		Dead:       true,
		TimedOut:   w.interrupted,
		Duration:   time.Since(w.start),
		ExitStatus: 1,
	}
	if u, err := w.c.t.Usage(); err == nil {
		res.PeakMemory = u.PeakMemory
		res.OOMKilled = u.OOMKills > 0
	}
	if killed || res.OOMKilled {
		res.ExitStatus = 128 + int(syscall.SIGKILL)
	}
	return res
}

func (w *waiter) result(m *wireMsg) ExecResult {
	c := w.c
	capN := c.opts.OutputCap
	res := ExecResult{
		Duration:   time.Since(w.start),
		TimedOut:   w.interrupted,
		ExitStatus: int(m.int("exit_status")),
		CPUTime:    time.Duration(m.int("cpu_ns")),
		PeakMemory: uint64(max(m.int("peak_rss"), 0)),
	}
	var tr bool
	res.Stdout, tr = capText(m.str("stdout"), capN)
	res.StdoutTruncated = tr || m.flag("stdout_truncated")
	res.Stderr, tr = capText(m.str("stderr"), capN)
	res.StderrTruncated = tr || m.flag("stderr_truncated")
	if v, ok := m.get("value"); ok {
		res.HasValue = true
		res.Value, _ = capText(string(v), capN)
	}
	if name, ok := m.get("error_name"); ok {
		e := &ExecError{Name: string(name)}
		e.Name, _ = capText(e.Name, 256)
		e.Message, _ = capText(m.str("error_message"), maxErrorText)
		e.Traceback = capTail(m.str("traceback"), maxErrorText)
		res.Error = e
		if res.ExitStatus == 0 && c.opts.Language != Bash {
			res.ExitStatus = 1
		}
	}
	budget := c.opts.ImageBytes
	for _, f := range m.Fields {
		if f.Name != "image_png" {
			continue
		}
		if len(res.Images) == maxImages || len(f.Data) > budget {
			res.ImagesOmitted++
			continue
		}
		budget -= len(f.Data)
		res.Images = append(res.Images, Image{MIMEType: "image/png", Data: f.Data})
	}
	res.ImagesOmitted += int(min(max(m.int("images_omitted"), 0), 1<<20))
	// The cgroup's figure covers every process in the sandbox.
	if p := c.peakMemory(); p > 0 {
		res.PeakMemory = p
	}
	if m.flag("exited") {
		res.Dead = true
		c.markDead("its session ended")
	}
	if w.interrupted && !res.Dead {
		// The interrupt ended the call's code, but not necessarily what
		// it started: a thread or a background process may spin on.
		if busy, share := c.spinning(); busy {
			res.Dead, res.Busy = true, true
			c.markDead(fmt.Sprintf("after its call timed out, something the call started kept running (%.0f%% of a CPU: a thread or a background process), so the context was stopped", share*100))
		}
	}
	return res
}

// Sampling of the sandbox's CPU after a timed-out call, in windows of
// spinWindow: the sandbox is idle as soon as two windows in a row show
// less than spinQuiet of one CPU each; otherwise, after spinRounds
// windows, busy if it used spinBusy of a CPU or more on average.
// Measured on the 2-core development VM: an idle sandbox used 0-3% of a
// CPU in a window (gVisor's sentry included), a spinning thread 85-99% on
// a quiet host and 13-64% under a load of 12; a short burst (a garbage
// collection, a process exiting) does not make a sandbox busy, nor a
// moment's starvation on a loaded host a spinning one idle.
const (
	spinWindow = 200 * time.Millisecond
	spinRounds = 5
	spinQuiet  = 0.02
	spinBusy   = 0.06
)

// spinning reports whether the sandbox kept using CPU after a call
// ended, and the share of one CPU it used. It costs 2*spinWindow to
// spinRounds*spinWindow, so it runs only after timeouts. A transport
// whose Usage fails or reports no CPU at all cannot tell, and the sandbox
// is taken for idle.
func (c *Context) spinning() (bool, float64) {
	u0, err := c.t.Usage()
	if err != nil || u0.CPU == 0 {
		c.log.Warn("cannot tell whether the sandbox is still busy after a timeout", "err", err)
		return false, 0
	}
	start, first := time.Now(), u0.CPU
	t0 := start
	quiet := 0
	for range spinRounds {
		select {
		case <-time.After(spinWindow):
		case <-c.t.Done():
			return false, 0
		}
		u1, err := c.t.Usage()
		if err != nil {
			c.log.Warn("cannot tell whether the sandbox is still busy after a timeout", "err", err)
			return false, 0
		}
		t1 := time.Now()
		share := float64(u1.CPU-u0.CPU) / float64(t1.Sub(t0))
		c.log.Debug("sandbox CPU after a timeout", "share", share)
		if share >= spinQuiet {
			quiet = 0
		} else if quiet++; quiet == 2 {
			return false, share
		}
		u0, t0 = u1, t1
	}
	share := float64(u0.CPU-first) / float64(t0.Sub(start))
	return share >= spinBusy, share
}

// peakReader is implemented by transports that can read the sandbox's
// memory high-water mark alone (Sandbox does). Usage reads every counter
// of the sandbox's cgroup, which costs about a third of a warm call; the
// peak is the only one a successful call reports.
type peakReader interface {
	PeakMemory() (uint64, error)
}

// peakMemory returns the sandbox's memory high-water mark, or 0 if it
// cannot be read.
func (c *Context) peakMemory() uint64 {
	if pr, ok := c.t.(peakReader); ok {
		if p, err := pr.PeakMemory(); err == nil {
			return p
		}
	}
	if u, err := c.t.Usage(); err == nil {
		return u.PeakMemory
	}
	return 0
}

// capTail cuts s to at most n bytes (and a note), keeping its start and,
// mostly, its end: a traceback's last lines name the error.
func capTail(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	head, _ := capText(s, n/4)
	tail := s[len(s)-(n-n/4):]
	for i := 0; i < utf8.UTFMax && i < len(tail) && !utf8.RuneStart(tail[0]); i++ {
		tail = tail[1:]
	}
	return head + fmt.Sprintf("\n[... %d bytes cut ...]\n", len(s)-len(head)-len(tail)) + strings.ToValidUTF8(tail, "\uFFFD")
}

// capText cuts s to at most n bytes on a rune boundary and replaces
// invalid UTF-8 with U+FFFD.
func capText(s string, n int) (string, bool) {
	cut := false
	if len(s) > n {
		i := n
		for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
			i--
		}
		s, cut = s[:i], true
	}
	return strings.ToValidUTF8(s, "\uFFFD"), cut
}
