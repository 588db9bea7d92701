// Package local runs context drivers as plain host processes: vial's
// local mode (sandbox.mode = "local"), with no isolation at all.
package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/proctree"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/oci"
)

// Local mode (sandbox.mode = "local") is the seed's development mode: code
// runs as an ordinary host process. It exists because the seed asks for it
// and because it helps when developing drivers and tools; it is never a
// default and never a model's choice:
//
//   - it is taken only from the operator's configuration files, and only
//     when the operator also passes --allow-unsandboxed; an environment a
//     model selects with create_context can never be a local one;
//   - a multi-line warning goes to stderr at start, and every result
//     carries a line saying the code ran without isolation;
//   - what can still be bounded is: the call timeout (the context
//     interrupts, then kills, as in a sandbox), a private workspace
//     directory per context (default contexts share one, as sandboxed ones
//     do), rlimits (file size; address space for python and bash), and, when
//     vial runs as root, the unprivileged sandbox user instead of root.
//
// There are no namespaces, no seccomp, no cgroup limits, no read-only root
// and no network isolation: the process sees the host's files and network
// as that user.

// Banner marks every result produced in local mode.
const Banner = "[vial: LOCAL MODE — this ran directly on the host with NO ISOLATION]"

// localInterpreters are looked up on a fixed PATH, not the operator's (a
// pyenv shim or a virtualenv would change what runs).
var localInterpreters = map[runtime.Language]string{
	runtime.Python:     "python3",
	runtime.JavaScript: "node",
	runtime.Bash:       "bash",
}

const localPath = "/usr/local/bin:/usr/bin:/bin"

// Transport is a context driver running as a host process: the
// runtime.Transport of local mode. The driver leads its own process group,
// and Close kills the group.
type Transport struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr *os.File
	done           chan struct{}
	once           sync.Once
	memLimit       int64
	cleanup        func() error // removes a workspace the transport owns; may be nil
}

// Start starts lang's driver (from driverDir) as a host process in
// workspace, with env and the limits that can apply to a host process.
func Start(lang runtime.Language, driverDir, workspace string, env []string, lim runtime.Limits, cleanup func() error) (*Transport, error) {
	argv, err := runtime.DriverCommand(lang, driverDir)
	if err != nil {
		return nil, err
	}
	interp, err := lookPathIn(localInterpreters[lang], localPath)
	if err != nil {
		return nil, fmt.Errorf("local mode: %s: %w: %w", localInterpreters[lang], err, runtime.ErrUnavailable)
	}
	cmd := exec.Command(interp, argv[1:]...)
	cmd.Dir = workspace
	cmd.Env = append([]string{"PATH=" + localPath, "HOME=" + workspace, "WORKSPACE=" + workspace, "LANG=C.UTF-8"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// Root on the host is the one thing local mode still refuses to
		// hand out: run as the sandbox's unprivileged user.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: oci.UID, Gid: oci.GID, Groups: []uint32{}}
		if err := os.Chown(workspace, oci.UID, oci.GID); err != nil {
			return nil, fmt.Errorf("preparing local workspace: %w", err)
		}
	}
	t := &Transport{cmd: cmd, done: make(chan struct{}), memLimit: lim.MemoryBytes, cleanup: cleanup}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	t.stdin, t.stdout, t.stderr = inW, outR, errR
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting local %s driver: %w", lang, err)
	}
	pid := cmd.Process.Pid
	// rlimits are set right after the start (Go cannot set them between
	// fork and exec); the driver's interpreter is still loading.
	set := func(res int, v int64) {
		if v > 0 {
			_ = unix.Prlimit(pid, res, &unix.Rlimit{Cur: uint64(v), Max: uint64(v)}, nil)
		}
	}
	set(unix.RLIMIT_FSIZE, lim.DiskBytes)
	if lang != runtime.JavaScript {
		// V8 reserves far more address space than it uses, so node gets
		// no address-space limit.
		set(unix.RLIMIT_AS, lim.MemoryBytes)
	}
	go func() {
		_ = cmd.Wait()
		close(t.done)
	}()
	return t, nil
}

func lookPathIn(name, path string) (string, error) {
	for _, dir := range strings.Split(path, ":") {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", path)
}

func (t *Transport) Stdin() io.WriteCloser { return t.stdin }
func (t *Transport) Stdout() io.Reader     { return t.stdout }
func (t *Transport) Stderr() io.Reader     { return t.stderr }
func (t *Transport) Done() <-chan struct{} { return t.done }

// Usage reports the CPU time of the driver's process tree (which tells a
// context whether something still spins after a timeout) and the memory
// limit: a host process has no cgroup to read the rest back from.
func (t *Transport) Usage() (runtime.Usage, error) {
	return runtime.Usage{MemoryLimit: t.memLimit, CPU: proctree.CPU(t.cmd.Process.Pid)}, nil
}

func (t *Transport) Signal(_ context.Context, sig syscall.Signal) error {
	return t.cmd.Process.Signal(sig)
}

// Close kills the driver's process group and removes the workspace the
// transport owns.
func (t *Transport) Close() error {
	var err error
	t.once.Do(func() {
		// The driver's whole tree: node's kernel runs in a session of its
		// own, which a group kill would miss.
		proctree.Kill(t.cmd.Process.Pid)
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		_ = t.stdin.Close()
		select {
		case <-t.done:
		case <-time.After(5 * time.Second):
			err = fmt.Errorf("local driver %d did not exit after SIGKILL", t.cmd.Process.Pid)
		}
		t.stdout.Close()
		t.stderr.Close()
		if t.cleanup != nil {
			if cerr := t.cleanup(); cerr != nil && err == nil {
				err = cerr
			}
		}
	})
	return err
}
