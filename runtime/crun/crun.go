// Package crun provides the crun backend. crun 1.8 refuses to run on a
// hybrid cgroup host (cgroup2 mounted at /sys/fs/cgroup/unified next to
// the v1 hierarchies); there vial starts it through a shim that gives it a
// private mount namespace with an empty tmpfs over the cgroup2 mount. The
// host's own mounts are never touched.
package crun

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/runtime"
)

// ShimArg is the first argument with which vial re-executes itself as the
// shim; the program's main must call ShimMain when it sees it.
const ShimArg = "__vial-crun-shim"

const unifiedMount = "/sys/fs/cgroup/unified"

// New returns the crun backend; Path is empty when crun is not installed.
func New() *runtime.Backend {
	path, _ := exec.LookPath("crun")
	b := &runtime.Backend{
		Name:    "crun",
		Path:    path,
		Install: "install it with: apt-get install -y crun",
		LogArgs: func(p string) []string { return []string{"--log=file:" + p, "--log-format=json"} },
	}
	if hybrid() {
		b.Wrap = wrap
	}
	return b
}

// hybrid reports whether cgroup2 is mounted at /sys/fs/cgroup/unified.
func hybrid() bool {
	var st unix.Statfs_t
	return unix.Statfs(unifiedMount, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// wrap turns `crun ARGS` into `/proc/self/exe ShimArg crun ARGS` started in
// a new mount namespace (Go makes it private before exec).
func wrap(cmd *exec.Cmd) {
	self, err := os.Executable()
	if err != nil {
		return
	}
	cmd.Args = append([]string{self, ShimArg, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
}

// ShimMain runs inside the private mount namespace: it hides the cgroup2
// mount under a tmpfs and executes crun (args[0]) with args[1:].
func ShimMain(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "crun shim: no command")
		return 2
	}
	if err := unix.Mount("tmpfs", unifiedMount, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k"); err != nil {
		fmt.Fprintf(os.Stderr, "crun shim: hiding %s: %v\n", unifiedMount, err)
		return 1
	}
	err := unix.Exec(args[0], append([]string{"crun"}, args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "crun shim: executing %s: %v\n", args[0], err)
	return 1
}
