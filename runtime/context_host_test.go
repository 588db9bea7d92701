package runtime

import (
	"context"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/proctree"
)

// hostTransport runs a driver as a plain host process: no sandbox, for
// tests only. It mirrors what the engine does: the driver's stdio are
// pipes, it is the leader of its own process group, and Close kills the
// whole process tree.
type hostTransport struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader
	done   chan struct{}
	once   sync.Once
}

func startHost(t testing.TB, argv []string, env ...string) *hostTransport {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + cmd.Dir, "LANG=C.UTF-8"}, env...)
	h := &hostTransport{cmd: cmd, done: make(chan struct{})}
	// Our own pipes, not cmd's: Wait would close the read ends under the
	// context's reader.
	var files []*os.File
	pipe := func() (r, w *os.File) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, r, w)
		return r, w
	}
	inR, inW := pipe()
	outR, outW := pipe()
	errR, errW := pipe()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	h.stdin, h.stdout, h.stderr = inW, outR, errR
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	errW.Close()
	// The read ends stay open until the test binary exits: closing them
	// under a context's reader would look like a broken driver.
	_ = files
	go func() {
		_ = cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func (h *hostTransport) Stdin() io.WriteCloser { return h.stdin }
func (h *hostTransport) Stdout() io.Reader     { return h.stdout }
func (h *hostTransport) Stderr() io.Reader     { return h.stderr }
func (h *hostTransport) Done() <-chan struct{} { return h.done }

// Usage reports the CPU time of the driver's process tree, which is
// what a context samples after a timeout.
func (h *hostTransport) Usage() (Usage, error) {
	return Usage{CPU: proctree.CPU(h.cmd.Process.Pid)}, nil
}

func (h *hostTransport) Signal(_ context.Context, sig syscall.Signal) error {
	return h.cmd.Process.Signal(sig)
}

func (h *hostTransport) Close() error {
	h.once.Do(func() {
		// The whole tree: the driver and node's kernel each run in a
		// session of their own, which a group kill would miss.
		proctree.Kill(h.cmd.Process.Pid)
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		_ = h.stdin.Close()
	})
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
	}
	return nil
}

var interpreters = map[Language]string{
	Python:     "/usr/bin/python3",
	JavaScript: "node",
	Bash:       "bash",
}

// driverDir writes the drivers once per test binary.
var driverDir = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vial-drivers-")
	if err != nil {
		return "", err
	}
	return dir, WriteDrivers(dir)
})

// hostArgv is DriverCommand with the interpreter resolved on the host,
// run under the init, as in a sandbox.
func hostArgv(t testing.TB, lang Language) []string {
	t.Helper()
	dir, err := driverDir()
	if err != nil {
		t.Fatal(err)
	}
	argv, err := DriverCommand(lang, dir)
	if err != nil {
		t.Fatal(err)
	}
	interp, err := exec.LookPath(interpreters[lang])
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed: %v", interpreters[lang], err)
		}
		t.Skipf("%s not installed: %v", interpreters[lang], err)
	}
	argv[0] = interp
	return InitCommand(dir, argv)
}

// newHostContext starts lang's driver on the host and wraps it.
func newHostContext(t testing.TB, lang Language, opts ContextOptions) *Context {
	t.Helper()
	h := startHost(t, hostArgv(t, lang))
	opts.Language = lang
	opts.Workspace = h.cmd.Dir
	c, err := NewContext(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
