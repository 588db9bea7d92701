package runtime

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/cgroups"
)

// stopGrace bounds how long the engine keeps asking the runtime to kill a
// container before it kills the runtime CLI itself.
const stopGrace = 5 * time.Second

// Run runs req to completion in a fresh sandbox under the named runtime
// and tears everything down before it returns. The program's own failure
// (non-zero exit, signal, timeout, OOM kill) is reported in Result; an
// error means the sandbox could not do its job. Cancelling ctx kills the
// sandbox and returns ctx's error.
func (e *Engine) Run(ctx context.Context, runtimeName string, req Request) (res Result, err error) {
	start := time.Now()
	s, err := e.prepare(runtimeName, &req)
	if err != nil {
		return Result{}, err
	}
	args := append(s.backend.logArgs(s.logPath), "run", "--bundle", s.bundle, s.id)
	cmd := s.runCommand(args...)
	cmd.Stdin = req.Stdin
	// Writers that are not *os.File make exec hand the runtime pipes: the
	// sandbox never writes straight into our stdout, and runsc (which
	// rewrites a regular file from offset 0) always gets a pipe.
	cmd.Stdout = writerOnly{orDiscard(req.Stdout)}
	cmd.Stderr = writerOnly{orDiscard(req.Stderr)}
	cmd.WaitDelay = stopGrace
	if err := s.backend.start(cmd); err != nil {
		e.destroy(s, false)
		return Result{}, commandError(s.backend, "run", err, "")
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var waitErr error
	stopped := false
	select {
	case waitErr = <-waited:
	case <-timeout:
		res.TimedOut = true
		stopped = true
		waitErr = e.stop(s, cmd, waited)
	case <-ctx.Done():
		stopped = true
		waitErr = e.stop(s, cmd, waited)
	}
	res.Wall = time.Since(start)
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		e.destroy(s, true)
		return res, commandError(s.backend, "run", waitErr, "")
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	if res.ExitCode > 128 && res.ExitCode <= 128+64 {
		res.Signal = unix.SignalName(unixSignal(res.ExitCode - 128))
	}
	if st, err := s.group.Usage(); err == nil {
		res.CPU, res.PeakMemory = st.CPU, st.PeakMemory
		res.OOMKilled = !res.TimedOut && res.ExitCode != 0 && cgroups.OOMKilled(st, s.limits.MemoryBytes)
	}
	rtErr := ""
	if res.ExitCode != 0 && !stopped {
		rtErr = runtimeError(s.logPath)
	}
	// A runtime that exited on its own has deleted its container; after a
	// stop or a runtime failure it may not have.
	if err := e.destroy(s, stopped || rtErr != ""); err != nil {
		e.log.Warn("tearing down sandbox", "id", s.id, "err", err)
	}
	if rtErr != "" && !res.OOMKilled {
		return res, commandError(s.backend, "run", waitErr, rtErr)
	}
	if ctx.Err() != nil && !res.TimedOut {
		return res, ctx.Err()
	}
	return res, nil
}

// stop kills a running container through the runtime until the runtime
// CLI that runs it exits; after stopGrace it kills the CLI as well.
func (e *Engine) stop(s *sandbox, cmd *exec.Cmd, waited <-chan error) error {
	deadline := time.After(stopGrace)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		killContainer(context.Background(), s.backend, s.root, s.id)
		select {
		case err := <-waited:
			return err
		case <-tick.C:
		case <-deadline:
			cmd.Process.Kill()
			return <-waited
		}
	}
}

func (b *Backend) logArgs(path string) []string {
	if b.LogArgs == nil {
		return nil
	}
	return b.LogArgs(path)
}

type writerOnly struct{ io.Writer }

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func unixSignal(n int) unix.Signal { return unix.Signal(n) }
