package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/internal/errclass"
	"github.com/vial-run/vial/runtime"
)

// Exit codes of `vial run` besides the program's own, as timeout(1) and
// Docker use them.
const (
	exitTimedOut = errclass.ExitTimeout // timeout(1)
	exitFailed   = errclass.ExitFailed  // vial itself could not run the sandbox (docker run)
	exitOOM      = 137                  // 128+SIGKILL, as Docker reports an OOM kill
)

func init() {
	register("run", "run a command in a fresh sandbox: vial run [flags] -- CMD ARGS...", cmdRun)
}

// sizeFlag parses sizes such as 256m, 1g, 512MiB, 1048576.
type sizeFlag struct{ bytes int64 }

func (s *sizeFlag) String() string { return strconv.FormatInt(s.bytes, 10) }
func (s *sizeFlag) Set(v string) error {
	n, err := config.ParseSize(v)
	if err != nil {
		return err
	}
	s.bytes = n
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdRun(ctx context.Context, g *globals, args []string) int {
	// First uses that preparing the sandbox would otherwise wait for.
	runtime.PrewarmSpecs()
	fs := newFlagSet(g, "vial run")
	rt := fs.String("runtime", "runc", "OCI runtime: runc, crun or runsc")
	image := fs.String("image", "host", "image: host, an absolute directory, or a stored image name")
	var mem, tmp, disk sizeFlag
	fs.Var(&mem, "memory", "memory limit, e.g. 256m (default 512m)")
	fs.Var(&tmp, "tmp", "size of the /tmp tmpfs (default 64m)")
	fs.Var(&disk, "disk", "size of the /workspace volume, and largest file (default 1g)")
	cpus := fs.Float64("cpus", 0, "CPU quota in cores, e.g. 0.5 (default 1)")
	pids := fs.Int64("pids", 0, "maximum processes and threads (default 256)")
	timeout := fs.Duration("timeout", 0, "kill the sandbox after this long, e.g. 30s (default: none)")
	workspace := fs.String("workspace", "", "host directory bound read-write at /workspace (default: a fresh, temporary one)")
	cwd := fs.String("cwd", "/workspace", "working directory inside the sandbox")
	var env listFlag
	fs.Var(&env, "env", "KEY=VALUE for the sandboxed program (repeatable)")
	agent := fs.String("agent", "", "take runtime, image, limits, env and work dir from this agent's configuration")
	configDir := fs.String("config-dir", envOr("VIAL_CONFIG_DIR", "/etc/vial"), "configuration directory (with --agent)")
	var sets listFlag
	fs.Var(&sets, "set", "configuration override key=value, e.g. sandbox.timeout_seconds=10 (with --agent; repeatable)")
	// A bad flag gets its one-line error and a pointer to -h, not the
	// whole flag list.
	fs.Usage = func() { fmt.Fprintln(g.Stderr, "usage: vial run [flags] -- CMD ARGS... (vial run -h lists the flags)") }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(g.Stdout)
			fs.PrintDefaults()
			return 0
		}
		return exitUsage
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(g.Stderr, "vial run: no command given (vial run [flags] -- CMD ARGS...)")
		return exitUsage
	}
	ws := *workspace
	if ws != "" {
		if !filepath.IsAbs(ws) {
			abs, err := filepath.Abs(ws)
			if err != nil {
				fmt.Fprintf(g.Stderr, "vial run: workspace %q: %v\n", ws, err)
				return exitUsage
			}
			ws = abs
		}
		ws = filepath.Clean(ws)
	}
	req := runtime.Request{
		Args:      cmdArgs,
		Env:       env,
		Cwd:       *cwd,
		Limits:    runtime.Limits{MemoryBytes: mem.bytes, CPUs: *cpus, Pids: *pids, TmpBytes: tmp.bytes, DiskBytes: disk.bytes},
		Timeout:   *timeout,
		Workspace: ws,
		Stdin:     os.Stdin,
		Stdout:    g.Stdout,
		Stderr:    g.Stderr,
	}
	if *agent != "" || len(sets) > 0 {
		if err := applyAgent(g, fs, *configDir, *agent, sets, rt, image, &req); err != nil {
			return fail(g, err)
		}
	}
	e, recovered, err := openEngineRecovering(ctx, g)
	if err != nil {
		return fail(g, err)
	}
	defer recovered()
	if _, err := e.Backend(*rt); err != nil {
		return fail(g, err)
	}
	e.Prewarm(*rt)
	img, err := resolveImage(e.StateDir(), *image)
	if err != nil {
		return fail(g, err)
	}
	req.Image = img
	if req.Workspace != "" {
		// Said every time: the disk limit silently not applying is how a
		// host's disk fills up.
		fmt.Fprintf(g.Stderr, "vial: note: --workspace %s is not under a disk quota (the sandbox can fill the file system it is on; only files are capped, at %s each)\n",
			req.Workspace, humanBytes(diskOrDefault(req.Limits.DiskBytes)))
	}
	res, err := e.Run(ctx, *rt, req)
	if err != nil {
		return fail(g, err)
	}
	g.Log.Info("sandbox finished", "exit", res.ExitCode, "signal", res.Signal, "timed_out", res.TimedOut,
		"oom_killed", res.OOMKilled, "wall", res.Wall.Round(time.Millisecond), "cpu", res.CPU.Round(time.Millisecond), "peak_memory", res.PeakMemory)
	switch {
	case res.TimedOut:
		fmt.Fprintf(g.Stderr, "vial: timed out after %s; sandbox killed\n", req.Timeout)
		return exitTimedOut
	case res.OOMKilled:
		fmt.Fprintf(g.Stderr, "vial: out of memory (limit %s); sandbox killed\n", humanBytes(memOrDefault(req.Limits.MemoryBytes)))
		return exitOOM
	}
	return res.ExitCode
}

func diskOrDefault(b int64) int64 {
	if b == 0 {
		return runtime.DefaultLimits.DiskBytes
	}
	return b
}

func memOrDefault(b int64) int64 {
	if b == 0 {
		return runtime.DefaultLimits.MemoryBytes
	}
	return b
}

// fail prints err as one line and returns the exit code for vial's own
// failures.
// fail reports err on one line and returns the exit status its class
// gets (errclass: 125 for vial's own failures, 130 when interrupted).
func fail(g *globals, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(g.Stderr, "vial: %s\n", msg)
	return errclass.Of(err).ExitCode()
}

func humanBytes(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%dMiB", b>>20)
	}
	return fmt.Sprintf("%dB", b)
}

// applyAgent fills req (and the runtime and image names) from an agent's
// resolved configuration. Flags given explicitly on the command line win:
// the operator typing them is trusted, unlike a model's tool arguments.
func applyAgent(g *globals, fs *flag.FlagSet, configDir, agent string, sets []string, rt, image *string, req *runtime.Request) error {
	res, err := loadResolved(configDir, agent, sets)
	if err != nil {
		return err
	}
	if err := applyLogging(g, res.Logging, res.SecretValues()); err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(g.Stderr, "vial: warning: %s\n", w)
	}
	if res.Mode == config.ModeLocal {
		// Deny: vial run has no unsandboxed path at all (vial serve has one,
		// behind --allow-unsandboxed); a one-off command on the host needs
		// no vial.
		return localRefusal(agent, res, "vial run has no unsandboxed mode: run the command directly, or sandbox it with --set sandbox.mode=docker")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["runtime"] && res.Runtime != "" {
		*rt = res.Runtime
	}
	if !set["image"] && res.Image != "" {
		*image = res.Image
	}
	limitsFromConfig(res, set, &req.Limits)
	if !set["timeout"] {
		req.Timeout = res.Timeout()
	}
	if !set["cwd"] && res.Shell.WorkDir != "" {
		req.Cwd = res.Shell.WorkDir
	}
	env := make([]string, 0, len(res.Shell.Env)+len(req.Env))
	for k, v := range res.Shell.Env {
		env = append(env, k+"="+v)
	}
	req.Env = append(env, req.Env...) // --env entries come later and win
	return nil
}

// limitsFromConfig sets l from a resolved configuration, except the limits
// whose flag the operator typed (set holds the flag names given).
func limitsFromConfig(res *config.Resolved, set map[string]bool, l *runtime.Limits) {
	if !set["memory"] {
		l.MemoryBytes = res.MemoryBytes
	}
	if !set["cpus"] {
		l.CPUs = res.CPUs
	}
	if !set["pids"] {
		l.Pids = res.PidsLimit
	}
	if !set["tmp"] {
		l.TmpBytes = res.TmpBytes
	}
	if !set["disk"] {
		l.DiskBytes = res.DiskBytes
	}
}
