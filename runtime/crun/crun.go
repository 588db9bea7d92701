// Package crun provides the crun backend. crun 1.8 refuses to run on a
// hybrid cgroup host (cgroup2 mounted at /sys/fs/cgroup/unified next to
// the v1 hierarchies, with a controller on it); there vial starts every
// crun command in a private mount namespace with an empty tmpfs over the
// cgroup2 mount, which crun then takes for a plain v1 host. The host's own
// mounts are never touched. On a v1-only or a v2 host crun is started as
// it is.
package crun

import (
	"fmt"
	"os/exec"
	goruntime "runtime"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/runtime"
)

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
		b.Start = startHidingUnified
	}
	return b
}

// hybrid reports whether cgroup2 is mounted at /sys/fs/cgroup/unified.
func hybrid() bool {
	var st unix.Statfs_t
	return unix.Statfs(unifiedMount, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// startHidingUnified starts cmd in a mount namespace of its own in which
// /sys/fs/cgroup/unified is an empty tmpfs.
//
// A process inherits the mount namespace of the thread that forks it, and
// a thread may unshare its mount namespace even in a multi-threaded
// process (it is setns(CLONE_NEWNS) that the kernel refuses there). So a
// new OS thread, locked to this goroutine and never unlocked, unshares,
// mounts the tmpfs and starts cmd; when the goroutine returns, Go ends the
// thread, and the namespace lives only as long as the processes started in
// it. Nothing is pinned and nothing outlives crun: there is nothing for gc
// to collect.
//
// It replaces re-executing the whole vial binary as a shim that did the
// same before exec'ing crun (7.5 ms per crun command on the 2-core
// development VM, against a few hundred microseconds here). Each command
// gets a fresh namespace, a copy of the host's mounts at that moment: a
// namespace kept for longer would miss mounts made later in private
// directories (the network namespaces egress pins), which crun must open.
func startHidingUnified(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread's mount namespace is not the
		// process's, so no other goroutine may ever run on it.
		goruntime.LockOSThread()
		if err := hideUnified(); err != nil {
			errc <- fmt.Errorf("starting crun in a private mount namespace: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// hideUnified gives the calling thread a mount namespace of its own with a
// tmpfs over the cgroup2 mount.
func hideUnified() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	// On a host whose mounts are shared (systemd's default) the copy's
	// mounts are peers of the host's: make them slaves first, so that the
	// tmpfs cannot propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", unifiedMount, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k"); err != nil {
		return fmt.Errorf("hiding %s: %w", unifiedMount, err)
	}
	return nil
}
