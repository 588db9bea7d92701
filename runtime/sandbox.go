package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/cgroups"
)

// Sandbox is a long-lived sandbox whose init process talks to vial over
// pipes (contexts run their language drivers this way). No runtime CLI
// process stays behind while it runs: the runtime starts it detached.
// Its methods are safe for concurrent use.
type Sandbox struct {
	ID string
	// Workspace is the host directory bound at /workspace.
	Workspace string

	e      *Engine
	s      *sandbox
	stdin  *os.File
	stdout *os.File
	stderr *os.File
	done   chan struct{}
	once   sync.Once
	err    error
	peak   *cgroups.PeakReader
}

// Start starts req in a new sandbox and returns at once; the program's
// stdin, stdout and stderr are pipes held by the returned Sandbox.
// req.Stdin/Stdout/Stderr and req.Timeout are ignored. Close must be
// called to release it.
func (e *Engine) Start(ctx context.Context, runtimeName string, req Request) (_ *Sandbox, err error) {
	s, err := e.prepare(runtimeName, &req)
	if err != nil {
		return nil, err
	}
	var pipes []*os.File
	defer func() {
		if err != nil {
			for _, p := range pipes {
				p.Close()
			}
			e.destroy(s, true)
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			pipes = append(pipes, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	pidFile := filepath.Join(s.dir, "init.pid")
	args := append(s.backend.logArgs(s.logPath), "run", "--detach", "--pid-file", pidFile, "--bundle", s.bundle, s.id)
	cmd := s.runCommand(args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	done := make(chan error, 1)
	if err := s.backend.start(cmd); err != nil {
		return nil, commandError(s.backend, "run", err, "")
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, commandError(s.backend, "run", err, runtimeError(s.logPath))
	}
	// The sandbox holds its ends now; ours would keep EOF from arriving.
	inR.Close()
	outW.Close()
	errW.Close()
	sb := &Sandbox{ID: s.id, Workspace: s.workspace, e: e, s: s, stdin: inW, stdout: outR, stderr: errR, done: make(chan struct{}),
		peak: cgroups.NewPeakReader(s.id)}
	pid, err := readPID(pidFile)
	if err != nil {
		return nil, err
	}
	go sb.watch(pid)
	return sb, nil
}

func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading sandbox pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("sandbox pid file holds %q", data)
	}
	return pid, nil
}

// watch closes done when process pid exits, using a pidfd so that a
// recycled pid cannot be mistaken for the sandbox.
func (sb *Sandbox) watch(pid int) {
	defer close(sb.done)
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // already gone
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil || !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// Stdin is the init process's standard input.
func (sb *Sandbox) Stdin() io.WriteCloser { return sb.stdin }

// Stdout is the init process's standard output.
func (sb *Sandbox) Stdout() io.Reader { return sb.stdout }

// Stderr is the init process's standard error.
func (sb *Sandbox) Stderr() io.Reader { return sb.stderr }

// Done is closed when the init process has exited.
func (sb *Sandbox) Done() <-chan struct{} { return sb.done }

// Signal delivers sig to the init process through the runtime.
func (sb *Sandbox) Signal(ctx context.Context, sig syscall.Signal) error {
	cmd := sb.s.backend.command(sb.s.root, "kill", sb.ID, strconv.Itoa(int(sig)))
	out, err := runWithContext(ctx, sb.s.backend, cmd)
	if err != nil {
		return commandError(sb.s.backend, "kill", err, lastLine(out))
	}
	return nil
}

// Usage reads the sandbox's resource use from its cgroup.
func (sb *Sandbox) Usage() (Usage, error) {
	st, err := sb.s.group.Stats()
	if err != nil {
		return Usage{}, err
	}
	u := Usage{PeakMemory: st.PeakMemory, Memory: st.Memory, CPU: st.CPU, OOMKills: st.OOMKills, MemoryLimit: sb.s.limits.MemoryBytes}
	// The container is not deleted until Close, so its leaf cgroup's exact
	// OOM count is still there to read.
	if n, err := cgroups.LeafOOMKills(sb.ID); err == nil && n > u.OOMKills {
		u.OOMKills = n
	}
	if u.OOMKills == 0 && sb.exited() && cgroups.OOMKilled(st, sb.s.limits.MemoryBytes) {
		u.OOMKills = 1
	}
	return u, nil
}

func (sb *Sandbox) exited() bool {
	select {
	case <-sb.done:
		return true
	default:
		return false
	}
}

// Limits returns the limits the sandbox runs under.
func (sb *Sandbox) Limits() Limits { return sb.s.limits }

// Close kills the sandbox and removes everything it held. It is safe to
// call more than once.
func (sb *Sandbox) Close() error {
	sb.once.Do(func() {
		sb.peak.Close()
		sb.stdin.Close()
		sb.err = sb.e.destroy(sb.s, true)
		sb.stdout.Close()
		sb.stderr.Close()
		select {
		case <-sb.done:
		case <-time.After(time.Second):
		}
	})
	return sb.err
}
