package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime/volume"
	"github.com/vial-run/vial/seccomp"
)

func init() {
	register("doctor", "report what this host supports, with a fix for each missing piece", cmdDoctor)
}

func cmdDoctor(ctx context.Context, g *globals, args []string) int {
	problems := 0
	check := func(name string, ok bool, detail, fix string) {
		mark := "ok  "
		if !ok {
			mark = "MISS"
			problems++
		}
		fmt.Fprintf(g.Stdout, "[%s] %-16s %s\n", mark, name, detail)
		if !ok && fix != "" {
			fmt.Fprintf(g.Stdout, "       fix: %s\n", fix)
		}
	}
	check("root", os.Geteuid() == 0, fmt.Sprintf("uid %d", os.Geteuid()), "run vial as root (it creates namespaces, cgroups and mounts)")
	found := 0
	for _, b := range backends() {
		v, err := b.Version(ctx)
		if err != nil {
			check(b.Name, false, "not installed", strings.TrimPrefix(b.Install, "install it with: "))
			continue
		}
		found++
		detail := b.Path + ": " + v
		if b.Wrap != nil {
			detail += " (started in a private mount namespace: hybrid cgroup host)"
		}
		check(b.Name, true, detail, "")
	}
	mode := cgroups.Mode()
	check("cgroups", mode != "unavailable", mode, "mount cgroup v2 at /sys/fs/cgroup (or the v1 memory, cpu, cpuacct and pids hierarchies)")
	for _, ctrl := range []string{"memory", "pids", "cpu"} {
		ok := controllerAvailable(ctrl)
		check("cgroup "+ctrl, ok, map[bool]string{true: "available", false: "missing"}[ok], "enable the "+ctrl+" controller (kernel boot option cgroup_enable="+ctrl+")")
	}
	_, serr := seccomp.Default()
	seccompOK := serr == nil && kernelHasSeccompFilter()
	check("seccomp", seccompOK, map[bool]string{true: "filter mode supported", false: "not supported"}[seccompOK], "use a kernel built with CONFIG_SECCOMP_FILTER")
	userns := readTrim("/proc/sys/user/max_user_namespaces")
	check("user namespaces", userns != "" && userns != "0", "max_user_namespaces="+userns+" (not required: each sandbox runs as a host uid of its own, without a user namespace)", "")
	if verr := volume.Check(); verr != nil {
		detail, fix, _ := strings.Cut(verr.Error(), " (")
		check("disk quotas", false, detail, strings.TrimSuffix(fix, ")"))
	} else {
		check("disk quotas", true, "workspace volumes: loop devices and mkfs.ext4", "")
	}
	img, err := rootfs.Host(g.StateDir)
	if err == nil {
		_, perr := os.Stat("/usr/bin/python3")
		check("host image", true, img.Root, "")
		check("python3", perr == nil, "/usr/bin/python3 for the host image", "apt-get install -y python3")
	} else {
		check("host image", false, err.Error(), "make --state-dir writable")
	}
	if found == 0 {
		fmt.Fprintln(g.Stdout, "\nno OCI runtime found: vial cannot run sandboxes until one is installed")
	}
	if problems > 0 {
		return 1
	}
	return 0
}

func controllerAvailable(name string) bool {
	if cgroups.Unified() {
		return strings.Contains(readTrim("/sys/fs/cgroup/cgroup.controllers"), name)
	}
	_, err := os.Stat("/sys/fs/cgroup/" + name)
	return err == nil
}

func kernelHasSeccompFilter() bool {
	// prctl(PR_GET_SECCOMP) answers on any kernel built with seccomp.
	_, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	return err == nil
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
