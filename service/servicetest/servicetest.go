// Package servicetest is a fake sandbox provider for tests of the layers
// above the sandbox (the service, the MCP and HTTP front ends). Its
// "sandboxes" are goroutines that speak vial's driver wire protocol (see
// runtime/drivers/README.md) over in-memory pipes, so a real
// runtime.Context drives them exactly as it drives a real driver. Their
// "interpreter" understands one command per call:
//
//	echo TEXT       stdout TEXT
//	set K V         remember V under K (per sandbox)
//	get K           the value of K as the call's value (NameError if unset)
//	sleep MS        sleep; an interrupt ends it with KeyboardInterrupt
//	hang            ignore interrupts (the context kills it after its grace)
//	raise           a ZeroDivisionError with a traceback
//	exit N          exit status N
//	oom             an OOM kill: the sandbox dies with OOMKills set
//	die             the sandbox's process exits
//	flood N         N bytes of 'x' on stdout
//	stdout N CH     N copies of the character CH on stdout
//	image N         N PNG images of 1 KiB
//	badutf8         invalid UTF-8 on stdout
//	env             the sandbox's environment (KEY=VALUE lines) on stdout
//	whoami          the environment name and limits on stdout
//
// Anything else is echoed on stdout. It is not a sandbox and proves
// nothing about isolation: real sandboxes are tested on real runtimes.
package servicetest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/service"
)

// Provider is a fake service.Provider. Its exported fields may be set
// before use; the counters are safe to read concurrently.
type Provider struct {
	t    testing.TB
	base string

	// Fail, when set, makes Start fail with it.
	Fail error
	// StartDelay delays every Start (honouring ctx).
	StartDelay time.Duration

	Started atomic.Int64 // sandboxes started
	Closed  atomic.Int64 // sandboxes closed

	mu         sync.Mutex
	requests   []service.StartRequest
	live       map[*Sandbox]bool
	workspaces []string
}

// Workspaces returns the directories of the workspaces made so far
// (NewWorkspace), oldest first.
func (p *Provider) Workspaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.workspaces...)
}

// New returns a provider whose workspaces live under a temporary
// directory of t.
func New(t testing.TB) *Provider {
	return &Provider{t: t, base: t.TempDir(), live: map[*Sandbox]bool{}}
}

// Requests returns the start requests seen so far.
func (p *Provider) Requests() []service.StartRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]service.StartRequest(nil), p.requests...)
}

// Sandboxes returns the sandboxes started and not yet closed.
func (p *Provider) Sandboxes() []*Sandbox {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Sandbox, 0, len(p.live))
	for sb := range p.live {
		out = append(out, sb)
	}
	return out
}

// Live returns the number of sandboxes started and not yet closed.
func (p *Provider) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

// Workspace is a fake workspace: a temporary directory.
type Workspace struct {
	Dir string
}

func (w *Workspace) Files() service.Files { return service.HostFiles{Dir: w.Dir} }
func (w *Workspace) Close() error         { return os.RemoveAll(w.Dir) }

// NewWorkspace implements service.Provider.
func (p *Provider) NewWorkspace(ctx context.Context, env service.Environment) (service.Workspace, error) {
	dir, err := os.MkdirTemp(p.base, "ws-")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.workspaces = append(p.workspaces, dir)
	p.mu.Unlock()
	return &Workspace{Dir: dir}, nil
}

// Notice implements service.Provider.
func (p *Provider) Notice() string { return "" }

// Close implements service.Provider.
func (p *Provider) Close() error { return nil }

// Start implements service.Provider.
func (p *Provider) Start(ctx context.Context, r service.StartRequest) (service.Sandbox, error) {
	p.mu.Lock()
	p.requests = append(p.requests, r)
	p.mu.Unlock()
	if p.StartDelay > 0 {
		select {
		case <-time.After(p.StartDelay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if p.Fail != nil {
		return nil, p.Fail
	}
	var dir string
	owned := false
	switch w := r.Workspace.(type) {
	case nil:
		d, err := os.MkdirTemp(p.base, "private-")
		if err != nil {
			return nil, err
		}
		dir, owned = d, true
	case *Workspace:
		dir = w.Dir
	default:
		return nil, fmt.Errorf("servicetest: foreign workspace %T", r.Workspace)
	}
	sb := newSandbox(r, dir, owned)
	sb.p = p
	p.Started.Add(1)
	p.mu.Lock()
	p.live[sb] = true
	p.mu.Unlock()
	return sb, nil
}

// Sandbox is a fake sandbox running the fake driver.
type Sandbox struct {
	p      *Provider
	req    service.StartRequest
	dir    string
	owned  bool
	inR    *io.PipeReader
	inW    *io.PipeWriter
	outR   *io.PipeReader
	outW   *io.PipeWriter
	errR   *io.PipeReader
	errW   *io.PipeWriter
	intr   chan struct{}
	done   chan struct{}
	once   sync.Once
	oom    atomic.Bool
	hung   atomic.Bool
	closed sync.Once
	vars   map[string]string
}

func newSandbox(r service.StartRequest, dir string, owned bool) *Sandbox {
	s := &Sandbox{req: r, dir: dir, owned: owned, intr: make(chan struct{}, 1), done: make(chan struct{}), vars: map[string]string{}}
	s.inR, s.inW = io.Pipe()
	s.outR, s.outW = io.Pipe()
	s.errR, s.errW = io.Pipe()
	go s.run()
	return s
}

func (s *Sandbox) Stdin() io.WriteCloser { return s.inW }
func (s *Sandbox) Stdout() io.Reader     { return s.outR }
func (s *Sandbox) Stderr() io.Reader     { return s.errR }
func (s *Sandbox) Done() <-chan struct{} { return s.done }
func (s *Sandbox) Files() service.Files  { return service.HostFiles{Dir: s.dir} }

// Signal delivers SIGINT as an interrupt of the running command.
func (s *Sandbox) Signal(_ context.Context, sig syscall.Signal) error {
	if sig == syscall.SIGINT {
		select {
		case s.intr <- struct{}{}:
		default:
		}
	}
	return nil
}

// Usage reports a fixed peak and the OOM kill of "oom".
func (s *Sandbox) Usage() (runtime.Usage, error) {
	u := runtime.Usage{PeakMemory: 1 << 20, MemoryLimit: s.req.Env.Limits.MemoryBytes}
	if s.oom.Load() {
		u.OOMKills = 1
	}
	return u, nil
}

// Close ends the driver and removes a private workspace.
func (s *Sandbox) Close() error {
	s.closed.Do(func() {
		s.exit()
		s.inW.CloseWithError(io.ErrClosedPipe)
		s.outR.Close()
		s.errR.Close()
		if s.owned {
			os.RemoveAll(s.dir)
		}
		if s.p != nil {
			s.p.Closed.Add(1)
			s.p.mu.Lock()
			delete(s.p.live, s)
			s.p.mu.Unlock()
		}
	})
	return nil
}

// Kill ends the sandbox's driver from outside, as an OOM kill or a crash
// would.
func (s *Sandbox) Kill() { s.exit() }

// Hang makes the driver stop answering while its process lives on, as a
// driver stuck in a system call or a frozen sandbox would.
func (s *Sandbox) Hang() { s.hung.Store(true) }

// exit ends the driver's process: its output ends and Done closes.
func (s *Sandbox) exit() {
	s.once.Do(func() {
		s.outW.Close()
		s.errW.Close()
		s.inR.CloseWithError(io.EOF)
		close(s.done)
	})
}

type field struct {
	name string
	data []byte
}

func (s *Sandbox) send(kind string, id uint64, fields ...field) error {
	var b strings.Builder
	fmt.Fprintf(&b, "vial1 %s %d\n", kind, id)
	for _, f := range fields {
		fmt.Fprintf(&b, "%s %d\n", f.name, len(f.data))
		b.Write(f.data)
		b.WriteByte('\n')
	}
	b.WriteString("end\n")
	_, err := io.WriteString(s.outW, b.String())
	return err
}

// run is the fake driver.
func (s *Sandbox) run() {
	defer s.exit()
	if s.send("ready", 0, field{"version", []byte("fake 1.0")}) != nil {
		return
	}
	br := bufio.NewReader(s.inR)
	for {
		kind, id, code, err := readMsg(br)
		if err != nil {
			return
		}
		if s.hung.Load() {
			// Takes requests in, answers nothing.
			continue
		}
		if kind == "ping" {
			if s.send("pong", id) != nil {
				return
			}
			continue
		}
		// An interrupt that arrived between calls is stale.
		select {
		case <-s.intr:
		default:
		}
		fields, alive := s.eval(code)
		if !alive {
			return
		}
		if s.send("result", id, fields...) != nil {
			return
		}
	}
}

// readMsg reads one exec or ping message and returns its kind, id and
// code.
func readMsg(br *bufio.Reader) (string, uint64, string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", 0, "", err
	}
	hdr := strings.Fields(line)
	if len(hdr) != 3 || hdr[0] != "vial1" || (hdr[1] != "exec" && hdr[1] != "ping") {
		return "", 0, "", fmt.Errorf("bad header %q", line)
	}
	id, err := strconv.ParseUint(hdr[2], 10, 64)
	if err != nil {
		return "", 0, "", err
	}
	var code string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", 0, "", err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "end" {
			return hdr[1], id, code, nil
		}
		name, size, _ := strings.Cut(line, " ")
		n, err := strconv.Atoi(size)
		if err != nil || n < 0 {
			return "", 0, "", fmt.Errorf("bad field %q", line)
		}
		data := make([]byte, n+1)
		if _, err := io.ReadFull(br, data); err != nil {
			return "", 0, "", err
		}
		if name == "code" {
			code = string(data[:n])
		}
	}
}

// eval runs one command; alive is false when the "process" died.
func (s *Sandbox) eval(code string) (fields []field, alive bool) {
	cmd, arg, _ := strings.Cut(strings.TrimSpace(code), " ")
	out := func(v string) []field { return []field{{"stdout", []byte(v)}} }
	switch cmd {
	case "echo":
		return out(arg), true
	case "set":
		k, v, _ := strings.Cut(arg, " ")
		s.vars[k] = v
		return nil, true
	case "get":
		v, ok := s.vars[arg]
		if !ok {
			return []field{{"error_name", []byte("NameError")}, {"error_message", []byte("name '" + arg + "' is not defined")},
				{"traceback", []byte("Traceback (most recent call last):\nNameError: name '" + arg + "' is not defined")}}, true
		}
		return []field{{"value", []byte(v)}}, true
	case "badutf8":
		return out("a\xff\xfeb"), true
	case "sleep":
		ms, _ := strconv.Atoi(arg)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return nil, true
		case <-s.intr:
			return []field{{"error_name", []byte("KeyboardInterrupt")}, {"error_message", nil}, {"traceback", []byte("Traceback (most recent call last):\nKeyboardInterrupt")}}, true
		}
	case "hang":
		<-s.done
		return nil, false
	case "raise":
		return []field{{"error_name", []byte("ZeroDivisionError")}, {"error_message", []byte("division by zero")},
			{"traceback", []byte("Traceback (most recent call last):\n  File \"<cell>\", line 1\nZeroDivisionError: division by zero")}}, true
	case "exit":
		return []field{{"exit_status", []byte(arg)}}, true
	case "oom":
		s.oom.Store(true)
		return nil, false
	case "die":
		return nil, false
	case "flood":
		n, _ := strconv.Atoi(arg)
		return out(strings.Repeat("x", n)), true
	case "stdout":
		ns, ch, _ := strings.Cut(arg, " ")
		n, _ := strconv.Atoi(ns)
		if ch == "NUL" {
			ch = "\x00"
		}
		return out(strings.Repeat(ch, n)), true
	case "image":
		n, _ := strconv.Atoi(arg)
		png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 1016)...)
		for range n {
			fields = append(fields, field{"image_png", png})
		}
		return fields, true
	case "env":
		return out(strings.Join(s.req.Env.Env, "\n")), true
	case "whoami":
		l := s.req.Env.Limits
		return out(fmt.Sprintf("env=%s runtime=%s image=%s memory=%d cpus=%g pids=%d", s.req.Env.Name, s.req.Env.Runtime, s.req.Env.Image, l.MemoryBytes, l.CPUs, l.Pids)), true
	}
	return out(code), true
}
