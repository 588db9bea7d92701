package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/mcp/downstream"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime/volume"
	"github.com/vial-run/vial/seccomp"
	"github.com/vial-run/vial/service"
)

func init() {
	register("doctor", "report what this host supports, with a fix for each missing piece", cmdDoctor)
}

func cmdDoctor(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial doctor")
	agent := fs.String("agent", "", "also check this agent's environments, warm pool and MCP servers with real sandboxes")
	configDir := fs.String("config-dir", "", "configuration directory (default $VIAL_CONFIG_DIR, else /etc/vial with --agent)")
	if code, ok := parseFlags(g, fs, args); !ok {
		return code
	}
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
		if b.Start != nil {
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
	dir := cmp.Or(*configDir, os.Getenv("VIAL_CONFIG_DIR"))
	if found > 0 && os.Geteuid() == 0 && (*agent != "" || dir != "") {
		problems += doctorAgent(ctx, g, fs, dir, *agent, check)
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

// doctorAgent checks what `vial serve --agent` would run, for real: a
// sandbox in each environment, the warm pool filling, and a connection to
// each downstream MCP server. It returns the number of problems.
func doctorAgent(ctx context.Context, g *globals, fs *flag.FlagSet, dir, agent string, check func(string, bool, string, string)) int {
	fmt.Fprintf(g.Stdout, "\nagent %q (%s):\n", agent, cmp.Or(dir, "/etc/vial"))
	cfg := serveConfig{Env: service.Environment{Runtime: "runc", Image: "host"}, MaxContexts: service.DefaultMaxSandboxes, Pool: service.PoolOptions{Size: 3}}
	quiet := *g
	quiet.Log = slog.New(slog.DiscardHandler)
	if err := applyServeConfig(&quiet, fs, dir, agent, &cfg); err != nil {
		check("configuration", false, err.Error(), "vial config validate --agent "+agent)
		return 1
	}
	cfg.Pool.Wait = 0
	problems := 0
	// openService runs the start-up check: its error is the agent's own
	// environment failing.
	svc, err := openService(ctx, &quiet, cfg, nil)
	if err != nil {
		check("environment", false, err.Error(), "")
		return 1
	}
	defer svc.Close(context.WithoutCancel(ctx))
	for _, h := range svc.Health(ctx) {
		name := "env " + cmp.Or(h.Environment, "(agent's own)")
		if h.OK {
			check(name, true, fmt.Sprintf("%s, image %s: a sandbox answered in %s", h.Runtime, h.Image, h.Took.Round(time.Millisecond)), "")
		} else {
			problems++
			check(name, false, fmt.Sprintf("%s, image %s: %v", h.Runtime, h.Image, h.Err), "vial rootfs build --env "+h.Environment)
		}
	}
	if cfg.Pool.Size > 0 {
		deadline := time.Now().Add(30 * time.Second)
		var stats map[string]int
		for time.Now().Before(deadline) {
			stats = svc.PoolStats()
			full := len(stats) > 0
			for k, n := range stats {
				if want := cfg.Pool.Size; n < want && !strings.HasSuffix(k, "/shared") || n < 1 {
					full = false
				}
			}
			if full {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(stats)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, stats[k]))
		}
		check("warm pool", len(parts) > 0, fmt.Sprintf("size %d: %s", cfg.Pool.Size, strings.Join(parts, ", ")), "")
	}
	if d := cfg.MCP.Downstream; d != nil {
		sess, err := svc.OpenSession(service.SessionInfo{ID: "doctor", Transport: "doctor"})
		if err == nil {
			m, err := downstream.NewManager(downstream.Options{Servers: d.Servers, Log: quiet.Log, ClientVersion: version,
				Starter: func(ctx context.Context, server string, argv, env []string) (io.WriteCloser, io.Reader, io.Closer, error) {
					p, err := sess.StartProgram(ctx, argv, env, d.Binds[server])
					if err != nil {
						return nil, nil, nil, err
					}
					go io.Copy(io.Discard, p.Stderr())
					return p.Stdin(), p.Stdout(), p, nil
				}})
			if err == nil {
				m.Tools(ctx)
				for _, st := range m.Status() {
					ok := st.State == "connected"
					if !ok {
						problems++
					}
					check("mcp "+st.Name, ok, fmt.Sprintf("%s: %d tools %s", st.State, st.Tools, st.LastError), "")
				}
				m.Close()
			}
		}
	}
	return problems
}
