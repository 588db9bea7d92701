package downstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/internal/human"
)

// hostEnv are the variables of vial's own environment a host stdio server
// inherits. Deny by default: vial's environment holds other servers' API
// keys and the agents' secrets, which a downstream server has no business
// reading; a server that needs more gets it through Server.Env.
var hostEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

// StartHost is the Starter for servers that are not sandboxed: it runs argv
// as a host process in a process group of its own, with stdin and stdout
// as pipes, stderr kept (its last 2 KiB) for error messages, and an
// environment of env plus the few variables of vial's own listed in
// hostEnv (PATH, HOME, USER, LANG, ...). The process is not tied to ctx.
// Its closer closes stdin, gives the group closeProcessWithin to exit after
// SIGTERM, then kills it; the closer also reports how the process ended
// (Exited). MCP's stdio servers exit when stdin closes, which is also what
// ends them if vial itself is killed.
func StartHost(ctx context.Context, server string, argv, env []string) (io.WriteCloser, io.Reader, io.Closer, error) {
	if len(argv) == 0 {
		return nil, nil, nil, errorWithClass(errdefs.ErrInvalidArgument, "no command")
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, errorWithClass(errdefs.ErrNotFound, "command %q not found", argv[0])
		}
		return nil, nil, nil, errorWithClass(errdefs.ErrUnavailable, "command %q: %v", argv[0], err)
	}
	var files []*os.File
	fail := func(err error) (io.WriteCloser, io.Reader, io.Closer, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, nil, err
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return fail(err)
	}
	outR, outW, err := pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := pipe()
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = append(pickEnv(os.Environ(), hostEnv), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// Its own process group, so that the closer reaches the children a
	// launcher such as npx leaves behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail(errorWithClass(errdefs.ErrUnavailable, "starting %q: %v", argv[0], err))
	}
	// The child holds its ends now; ours would keep EOF from arriving.
	inR.Close()
	outW.Close()
	errW.Close()
	p := &hostProc{cmd: cmd, stdin: inW, stdout: outR, stderr: errR, done: make(chan struct{}), tail: &tailBuffer{max: stderrTailBytes}}
	go func() {
		io.Copy(p.tail, errR)
		errR.Close()
	}()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return inW, outR, p, nil
}

// pickEnv returns the entries of environ whose names are in keep.
func pickEnv(environ, keep []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		for _, want := range keep {
			if k == want {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}

// hostProc is a host stdio server started by StartHost.
type hostProc struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	stderr *os.File
	tail   *tailBuffer
	done   chan struct{}

	mu      sync.Mutex
	waitErr error
	once    sync.Once
}

// Close ends the process group: stdin first (a stdio server's cue to
// exit), then SIGTERM, then SIGKILL.
func (p *hostProc) Close() error {
	p.once.Do(func() {
		p.stdin.Close()
		pgid := -p.cmd.Process.Pid
		select {
		case <-p.done:
		case <-time.After(100 * time.Millisecond):
			syscall.Kill(pgid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(closeProcessWithin):
			}
		}
		// Whatever the leader left in its group goes too.
		syscall.Kill(pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(closeProcessWithin):
		}
		p.stdout.Close()
	})
	return nil
}

// Exited reports whether the process has ended, and how, with the last
// line it wrote to stderr.
func (p *hostProc) Exited() (bool, string) {
	select {
	case <-p.done:
	case <-time.After(200 * time.Millisecond):
		// stdout reached EOF a moment before the exit is reaped.
		select {
		case <-p.done:
		default:
			return false, ""
		}
	}
	p.mu.Lock()
	err := p.waitErr
	p.mu.Unlock()
	how := "exited with status 0"
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = "killed by " + ws.Signal().String()
		} else {
			how = fmt.Sprintf("exited with status %d", ee.ExitCode())
		}
	}
	if line := p.tail.lastLine(); line != "" {
		how += fmt.Sprintf(" (stderr: %s)", line)
	}
	return true, how
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.buf), "\r\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return bound(l, 200)
		}
	}
	return ""
}

// exitReporter is implemented by a Starter's closer that knows how its
// process ended (StartHost's does).
type exitReporter interface {
	Exited() (bool, string)
}

// framer reads a stdio server's stdout and passes on to mcp-go only what
// is one JSON object per line, each at most max bytes. Blank lines are
// skipped; any other line is garbage, counted and dropped (a server that
// logs to stdout by mistake still works). A line over max ends the
// connection: buffering it would let a server make vial allocate without
// bound, and skipping it would leave a request waiting for an answer that
// was thrown away. mcp-go always sees a clean EOF; why the stream ended is
// kept here.
type framer struct {
	src io.Reader
	dst *io.PipeWriter
	max int

	mu        sync.Mutex
	garbage   int
	firstJunk string
	end       error // nil: EOF
	done      chan struct{}
}

func newFramer(src io.Reader, max int) (*framer, io.Reader) {
	pr, pw := io.Pipe()
	f := &framer{src: src, dst: pw, max: max, done: make(chan struct{})}
	go f.run()
	return f, pr
}

func (f *framer) run() {
	defer close(f.done)
	br := bufio.NewReaderSize(f.src, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > f.max+1 {
			f.finish(errorWithClass(errdefs.ErrResourceExhausted, "it sent a message over %s", human.Bytes(uint64(f.max))))
			return
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			f.frame(line)
		}
		line = line[:0]
		if err != nil {
			if errors.Is(err, io.EOF) {
				f.finish(nil)
			} else {
				f.finish(fmt.Errorf("reading its output: %w", err))
			}
			return
		}
	}
}

func (f *framer) frame(line []byte) {
	msg := bytes.TrimSpace(line)
	if len(msg) == 0 {
		return
	}
	if msg[0] != '{' || !json.Valid(msg) {
		f.mu.Lock()
		f.garbage++
		if f.firstJunk == "" {
			f.firstJunk = bound(string(msg), maxGarbageSample)
		}
		f.mu.Unlock()
		return
	}
	msg = append(msg, '\n')
	if _, err := f.dst.Write(msg); err != nil {
		// mcp-go closed its end: the connection is being torn down.
		return
	}
}

func (f *framer) finish(err error) {
	f.mu.Lock()
	f.end = err
	f.mu.Unlock()
	f.dst.Close()
}

// stats returns the garbage count, its first line, and why the stream
// ended (nil for EOF or still open).
func (f *framer) stats() (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.garbage, f.firstJunk, f.end
}

// errNotReading is returned when a server has not read max bytes of input.
var errNotReading = errorWithClass(errdefs.ErrResourceExhausted, "it is not reading its input")

// queueWriter hands what mcp-go writes to a server's stdin over to a
// goroutine, so that a server that stops reading cannot block a request
// (and with it the lock mcp-go holds while writing) past its deadline.
// At most max bytes wait; beyond that Write fails.
type queueWriter struct {
	dst io.WriteCloser
	max int

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	pending int
	closed  bool
	err     error
}

func newQueueWriter(dst io.WriteCloser, max int) *queueWriter {
	q := &queueWriter{dst: dst, max: max}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

func (q *queueWriter) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return 0, io.ErrClosedPipe
	case q.err != nil:
		return 0, q.err
	case q.pending+len(p) > q.max:
		return 0, errNotReading
	}
	q.queue = append(q.queue, bytes.Clone(p))
	q.pending += len(p)
	q.cond.Signal()
	return len(p), nil
}

// Close lets what is queued drain, then closes the server's stdin.
func (q *queueWriter) Close() error {
	q.mu.Lock()
	q.closed = true
	q.cond.Signal()
	q.mu.Unlock()
	return nil
}

func (q *queueWriter) run() {
	for {
		q.mu.Lock()
		for len(q.queue) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.queue) == 0 {
			q.mu.Unlock()
			q.dst.Close()
			return
		}
		b := q.queue[0]
		q.queue = q.queue[1:]
		q.mu.Unlock()
		_, err := q.dst.Write(b)
		q.mu.Lock()
		q.pending -= len(b)
		if err != nil && q.err == nil {
			q.err = fmt.Errorf("writing to it: %w", err)
			q.queue = nil
			q.pending = 0
		}
		q.mu.Unlock()
	}
}
