// Package runsc provides the gVisor backend. Its differences from runc
// are all data here: the spec's seccomp profile is applied only with
// --oci-seccomp; --network=none gives an empty network stack and
// --network=sandbox joins a prepared one, per sandbox; the pids
// limit must leave room for the sentry's own threads; and runsc leaves a
// null-netns mount in its root that must be unmounted.
package runsc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vial-run/vial/runtime"
)

// Version is the gVisor release vial is tested with. Later builds may need
// sidecar binaries that cannot be fetched everywhere; a dynamic (cgo)
// build dies with "fork/exec /proc/self/exe: no such file or directory".
const Version = "v0.0.0-20260905035102-160fafc42237"

// New returns the runsc backend; Path is empty when runsc is not installed.
func New() *runtime.Backend {
	path, _ := exec.LookPath("runsc")
	return &runtime.Backend{
		Name:    "runsc",
		Path:    path,
		Install: "build it with: CGO_ENABLED=0 GOBIN=/usr/local/bin go install gvisor.dev/gvisor/runsc@" + Version,
		// --oci-seccomp: without it runsc silently ignores the spec's
		// profile (gVisor's own syscall filter protects the host, but the
		// sandboxed program would see the full syscall surface).
		GlobalArgs: []string{"--oci-seccomp"},
		// The network mode is per sandbox: --network=none gives one with
		// only loopback; a sandbox joining a prepared namespace (vial's
		// egress) needs --network=sandbox, which keeps gVisor's own
		// network stack and takes over the namespace's interfaces.
		SandboxArgs: networkArgs,
		LogArgs:     func(p string) []string { return []string{"--log", p, "--log-format", "json"} },
		// Below ~1024 a fork storm exhausts the sentry's own threads and
		// the whole sandbox dies instead of fork failing.
		MinPids:       1024,
		Cleanup:       cleanup,
		AdjustSeccomp: allowClone3,
	}
}

func networkArgs(p runtime.SandboxParams) []string {
	if p.Network {
		return []string{"--network=sandbox"}
	}
	return []string{"--network=none"}
}

// cleanup unmounts the null network namespace runsc leaves in its root.
func cleanup(root string) error {
	p := filepath.Join(root, "null-netns")
	if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	os.Remove(p)
	return nil
}

// allowClone3 lets clone3 through the seccomp profile under gVisor.
// Docker's profile answers clone3 with ENOSYS so that glibc falls back to
// clone (whose flags the profile can inspect). gVisor applies the profile
// but not its errnoRet, so clone3 fails with EPERM, glibc does not fall
// back, and no program can start a thread. Under gVisor clone3 reaches
// the sentry's kernel, not the host's, and the sentry refuses namespace
// flags to a process without capabilities, so allowing it is safe.
func allowClone3(p *specs.LinuxSeccomp) {
	for i, r := range p.Syscalls {
		if slices.Equal(r.Names, []string{"clone3"}) && r.Action == specs.ActErrno {
			p.Syscalls[i].Action = specs.ActAllow
			p.Syscalls[i].ErrnoRet = nil
		}
	}
}
