// Command mcpbench measures `vial serve` the way agents use it: over MCP
// stdio, driven by the official Go SDK's client, against the physical
// floors measured in the same run on the same machine.
//
//	go run ./test/mcpbench -vial bin/vial -runtimes runc,runsc
//
// For each runtime it starts the built binary on a temporary state
// directory and reports:
//
//   - warm run_code("1+1") round trips on a warm Python context, p50 and
//     p99, beside a bare host Python (/usr/bin/python3) driven over a pipe
//     with the same one-line-in, one-answer-out loop, interleaved call by
//     call so that load from other processes hits both alike;
//   - the server's and the driver's CPU per warm call: vial serve's own
//     threads (schedstat) and the context's sandbox cgroup, over the same
//     calls;
//   - create_context("python") cold (--pool-size 0, median), beside the
//     raw runtime's cold `<runtime> run` of python3 -c 'print(1)' on a
//     bundle vial's own engine prepared (the same code `vial bench`
//     times), interleaved;
//   - create_context("python") from the warm pool (a second vial serve,
//     --pool-size 3), p50, each call made once the pool has a warm
//     sandbox again, against the same raw cold run;
//   - calls per second with concurrent callers spread over 4 contexts;
//   - host memory per idle Python context (see measureIdleMemory).
//
// Each figure is printed with its target and whether it was met. It needs
// root and the runtimes; a runtime that is not installed is skipped with
// the reason. It changes nothing on the host outside its temporary state
// directory, which it removes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/crun"
	"github.com/vial-run/vial/runtime/runc"
	"github.com/vial-run/vial/runtime/runsc"
)

// Targets from issues 3 and 13.
const (
	targetWarmP50      = 2 * time.Millisecond
	targetCreateRatio  = 1.15
	targetPooledP50    = 5 * time.Millisecond
	targetIdleMemory   = 15 << 20
	targetMemoryOnlyOn = "runc"
)

// hostPython is the host interpreter used for the floors; the python3 first
// on PATH may be a slow pyenv shim.
const hostPython = "/usr/bin/python3"

type options struct {
	vial      string
	runtimes  []string
	image     string
	calls     int
	creates   int
	pooled    int
	poolSize  int
	idle      int
	cpsCalls  int
	cpsWorker int
	verbose   bool
	stateRoot string
}

func main() {
	var o options
	rts := flag.String("runtimes", "runc,runsc", "comma-separated runtimes to measure")
	flag.StringVar(&o.vial, "vial", "bin/vial", "the vial binary to measure")
	flag.StringVar(&o.image, "image", "host", "image of the contexts (vial serve --image)")
	flag.IntVar(&o.calls, "calls", 500, "warm run_code calls (and host REPL round trips) measured")
	flag.IntVar(&o.creates, "creates", 20, "cold create_context calls (and raw cold runs) measured")
	flag.IntVar(&o.pooled, "pooled", 20, "create_context calls from the warm pool measured")
	flag.IntVar(&o.poolSize, "pool-size", 3, "pool size of the vial serve that measures pooled create_context")
	flag.IntVar(&o.idle, "idle", 10, "idle contexts created for the memory figure")
	flag.IntVar(&o.cpsCalls, "cps-calls", 1000, "calls in the 4-context throughput run")
	flag.IntVar(&o.cpsWorker, "cps-callers", 8, "concurrent callers in the throughput run")
	flag.BoolVar(&o.verbose, "v", false, "copy vial serve's log to stderr")
	flag.StringVar(&o.stateRoot, "state-root", "/var/lib", "directory in which the temporary state directories are made (vial's default state directory is under /var/lib)")
	flag.Parse()
	o.runtimes = strings.Split(*rts, ",")

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "mcpbench: skipped: vial serve needs root (run as root to measure)")
		os.Exit(0)
	}
	abs, err := filepath.Abs(o.vial)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mcpbench: the vial binary: %v (build it with make build)\n", err)
		os.Exit(1)
	}
	o.vial = abs
	if _, err := os.Stat(hostPython); err != nil {
		fmt.Fprintf(os.Stderr, "mcpbench: %s is needed for the host floors: %v\n", hostPython, err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("vial over MCP stdio (official Go SDK client) — %s, load average %s\n", o.vial, loadavg())
	failed := false
	for _, rt := range o.runtimes {
		rt = strings.TrimSpace(rt)
		if rt == "" {
			continue
		}
		if _, err := exec.LookPath(rt); err != nil {
			fmt.Fprintf(os.Stderr, "mcpbench: skipping %s: not installed\n", rt)
			continue
		}
		r, err := benchRuntime(ctx, o, rt)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mcpbench: %s: %v\n", rt, err)
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r.print(os.Stdout)
	}
	if failed {
		os.Exit(1)
	}
}

// report holds one runtime's figures.
type report struct {
	runtime              string
	calls                int
	warm                 []time.Duration
	repl                 []time.Duration
	creates              []time.Duration
	pooled               []time.Duration
	serveCPU, driverCPU  time.Duration // per warm call
	serveSwitches        float64       // vial serve's context switches per warm call
	raw                  []time.Duration
	cps                  float64
	cpsCalls, cpsCallers int
	cpsElapsed           time.Duration
	mem                  memReport
	loadStart, loadEnd   string
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s (load average %s at start, %s at end)\n", r.runtime, r.loadStart, r.loadEnd)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "measure\tvial\tbaseline\tratio\ttarget\tmet\n")
	wp50, wp99 := percentile(r.warm, 50), percentile(r.warm, 99)
	hp50, hp99 := percentile(r.repl, 50), percentile(r.repl, 99)
	fmt.Fprintf(tw, "warm run_code(\"1+1\") p50\t%.3f ms\t%.3f ms host REPL\t%.1f×\t< %v\t%s\n",
		ms(wp50), ms(hp50), ratio(wp50, hp50), targetWarmP50, met(wp50 < targetWarmP50))
	fmt.Fprintf(tw, "warm run_code(\"1+1\") p99\t%.3f ms\t%.3f ms host REPL\t%.1f×\t\t\n",
		ms(wp99), ms(hp99), ratio(wp99, hp99))
	fmt.Fprintf(tw, "CPU per warm call: vial serve + driver\t%.3f ms + %.3f ms\t\t\t\t\n", ms(r.serveCPU), ms(r.driverCPU))
	fmt.Fprintf(tw, "vial serve context switches per warm call\t%.1f\t\t\t\t\n", r.serveSwitches)
	cm, rm := median(r.creates), median(r.raw)
	cr := ratio(cm, rm)
	fmt.Fprintf(tw, "create_context(python) cold, median\t%.1f ms\t%.1f ms raw %s run\t%.3f×\t≤ %.2f×\t%s\n",
		ms(cm), ms(rm), r.runtime, cr, targetCreateRatio, met(cr <= targetCreateRatio))
	if len(r.pooled) > 0 {
		pm := percentile(r.pooled, 50)
		fmt.Fprintf(tw, "create_context(python) pooled, p50\t%.2f ms\t%.1f ms raw %s run\t%.3f×\t< %v\t%s\n",
			ms(pm), ms(rm), r.runtime, ratio(pm, rm), targetPooledP50, met(pm < targetPooledP50))
	}
	fmt.Fprintf(tw, "calls/s, %d callers on 4 contexts\t%.0f/s\t%.0f/s one caller (1/p50)\t%.1f×\t\t\n",
		r.cpsCallers, r.cps, 1/wp50.Seconds(), r.cps*wp50.Seconds())
	mtarget, mmet := fmt.Sprintf("≤ %d MiB", targetIdleMemory>>20), met(r.mem.perContext <= targetIdleMemory)
	if r.runtime != targetMemoryOnlyOn {
		mtarget, mmet = "(runc only)", "-"
	}
	fmt.Fprintf(tw, "host memory per idle python context\t%.1f MiB\t\t\t%s\t%s\n", mib(r.mem.perContext), mtarget, mmet)
	tw.Flush()
	m := r.mem
	fmt.Fprintf(w, "  %d warm calls interleaved with %d host REPL round trips; cold create_context and raw cold runs: %d each, interleaved;\n",
		r.calls, r.calls, len(r.creates))
	fmt.Fprintf(w, "  pooled create_context: %d, each once the pool had a warm sandbox again (a vial serve of its own);\n", len(r.pooled))
	fmt.Fprintf(w, "  throughput: %d calls in %.2f s; memory of %d idle contexts: sandbox cgroups %.1f MiB (working set; rss %.1f MiB),\n",
		r.cpsCalls, r.cpsElapsed.Seconds(), m.n, mib(m.cgroupWS), mib(m.cgroupRSS))
	fmt.Fprintf(w, "  host-side processes outside the cgroups %.1f MiB PSS (%d processes), vial serve growth %.1f MiB PSS\n",
		mib(m.hostProcs), m.hostProcN, mib(m.serveGrowth))
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// benchRuntime runs every measurement on one runtime, with its own vial
// serve and state directory.
func benchRuntime(ctx context.Context, o options, rt string) (_ *report, err error) {
	r := &report{runtime: rt, loadStart: loadavg()}
	// Under /var/lib by default, beside vial's own default state
	// directory, so that its file system's costs are measured too.
	stateDir, err := os.MkdirTemp(o.stateRoot, "vial-mcpbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stateDir)
	// Sandboxes run as an unprivileged user that must traverse it (the
	// drivers are bound from it).
	if err := os.Chmod(stateDir, 0o711); err != nil {
		return nil, err
	}

	// The engine for the raw runtime's cold starts: vial's own bundle
	// preparation, in a separate state directory so that it never meets
	// vial serve's start-up recovery.
	rawDir := filepath.Join(stateDir, "raw")
	eng, err := runtime.New(runtime.Options{StateDir: rawDir, Backends: []*runtime.Backend{runc.New(), crun.New(), runsc.New()}})
	if err != nil {
		return nil, err
	}
	img, err := rawImage(rawDir, o.image)
	if err != nil {
		return nil, err
	}

	serveDir := filepath.Join(stateDir, "serve")
	s, err := startServe(ctx, o, rt, serveDir, "--pool-size", "0")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	if err := benchCreate(s, eng, rt, img, o.creates, r); err != nil {
		return nil, err
	}
	if r.mem, err = measureIdleMemory(s, o.idle); err != nil {
		return nil, err
	}
	if err := benchWarm(s, o.calls, r); err != nil {
		return nil, err
	}
	if err := benchThroughput(s, o.cpsCalls, o.cpsWorker, r); err != nil {
		return nil, err
	}
	if o.pooled > 0 {
		if err := benchPooled(ctx, o, rt, filepath.Join(stateDir, "pooled"), o.pooled, r); err != nil {
			return nil, err
		}
	}
	r.loadEnd = loadavg()
	return r, nil
}

// benchPooled times create_context against a vial serve with a warm pool.
// Before each call it waits until the pool holds a warm private sandbox
// again (the vial://metrics resource counts them), so that every figure is
// a take from the pool, not a cold start behind an empty one.
func benchPooled(ctx context.Context, o options, rt, stateDir string, n int, r *report) (err error) {
	s, err := startServe(ctx, o, rt, stateDir, "--pool-size", strconv.Itoa(o.poolSize))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// Full: Size private members and the one a new session adopts.
	full := o.poolSize + 1
	for i := 0; i <= n; i++ {
		if err := s.waitPooled(full, time.Minute); err != nil {
			return err
		}
		var times *[]time.Duration
		if i > 0 { // the first, unmeasured, warms the page cache
			times = &r.pooled
		}
		if err := createAndStop(s, times); err != nil {
			return err
		}
	}
	return nil
}

// waitPooled waits until the server's pool holds at least n warm
// sandboxes.
func (s *serve) waitPooled(n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		res, err := s.cs.ReadResource(s.ctx, &sdk.ReadResourceParams{URI: "vial://metrics"})
		if err != nil {
			return fmt.Errorf("reading vial://metrics: %w", err)
		}
		var snap struct {
			Sandboxes struct {
				Pooled int `json:"pooled"`
			} `json:"sandboxes"`
		}
		if len(res.Contents) == 0 || json.Unmarshal([]byte(res.Contents[0].Text), &snap) != nil {
			return fmt.Errorf("vial://metrics: unexpected contents")
		}
		if snap.Sandboxes.Pooled >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pool held %d warm sandboxes after %v, want %d", snap.Sandboxes.Pooled, limit, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rawImage(stateDir, name string) (*rootfs.Image, error) {
	switch {
	case name == "host":
		return rootfs.Host(stateDir)
	case filepath.IsAbs(name):
		return rootfs.Dir(name)
	}
	return nil, fmt.Errorf("image %q: mcpbench measures the host image or an absolute directory", name)
}

// serve is one running vial serve with a connected client.
type serve struct {
	ctx      context.Context
	cancel   context.CancelFunc
	cs       *sdk.ClientSession
	cmd      *exec.Cmd
	stateDir string
	stderr   *tail
}

func startServe(ctx context.Context, o options, rt, stateDir string, extra ...string) (*serve, error) {
	args := []string{"--state-dir", stateDir, "--log-level", "warn", "serve", "--runtime", rt, "--image", o.image,
		"--max-contexts", strconv.Itoa(max(o.idle, 4) + 4)}
	args = append(args, extra...)
	cmd := exec.Command(o.vial, args...)
	st := &tail{}
	cmd.Stderr = st
	if o.verbose {
		cmd.Stderr = io.MultiWriter(st, os.Stderr)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	client := sdk.NewClient(&sdk.Implementation{Name: "vial-mcpbench", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 30 * time.Second}, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connecting to vial serve: %w\n%s", err, st)
	}
	return &serve{ctx: ctx, cancel: cancel, cs: cs, cmd: cmd, stateDir: stateDir, stderr: st}, nil
}

// close disconnects, which makes vial serve tear down every sandbox and
// exit.
func (s *serve) close() error {
	defer s.cancel()
	err := s.cs.Close()
	if st := s.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("vial serve exited with %v\n%s", st, s.stderr)
	}
	if err != nil {
		return fmt.Errorf("closing the client: %w", err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.stateDir, "sandboxes")); len(left) > 0 {
		return fmt.Errorf("vial serve left %d sandboxes behind", len(left))
	}
	return nil
}

// call runs a tool and fails unless it succeeded.
func (s *serve) call(name string, args map[string]any) (map[string]any, error) {
	res, err := s.cs.CallTool(s.ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", name, err, s.stderr)
	}
	sc, _ := res.StructuredContent.(map[string]any)
	if res.IsError {
		var text []string
		for _, c := range res.Content {
			if t, ok := c.(*sdk.TextContent); ok {
				text = append(text, t.Text)
			}
		}
		return nil, fmt.Errorf("%s: tool error: %s", name, strings.Join(text, "\n"))
	}
	return sc, nil
}

func (s *serve) createContext() (string, error) {
	sc, err := s.call("create_context", map[string]any{"language": "python"})
	if err != nil {
		return "", err
	}
	id, _ := sc["context_id"].(string)
	if id == "" {
		return "", fmt.Errorf("create_context returned no context_id: %v", sc)
	}
	return id, nil
}

// onePlusOne runs 1+1 in context id and checks the answer, so that a
// broken call can never pass for a fast one.
func (s *serve) onePlusOne(id string) error {
	sc, err := s.call("run_code", map[string]any{"code": "1+1", "context_id": id})
	if err != nil {
		return err
	}
	if sc["value"] != "2" {
		return fmt.Errorf("run_code(1+1) answered %v", sc)
	}
	return nil
}

// benchCreate times create_context beside the raw runtime's cold start of
// python3 -c 'print(1)', interleaved. The raw run is timed around the
// runtime process only, on a bundle vial's engine prepared, as `vial
// bench` does; create_context is the whole MCP round trip: bundle, cgroup,
// `run --detach`, the driver's start and its ready message.
func benchCreate(s *serve, eng *runtime.Engine, rt string, img *rootfs.Image, n int, r *report) error {
	// One of each unmeasured, to warm the page cache and the host image.
	if err := createAndStop(s, nil); err != nil {
		return err
	}
	if _, err := rawColdRun(eng, rt, img); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := createAndStop(s, &r.creates); err != nil {
			return err
		}
		d, err := rawColdRun(eng, rt, img)
		if err != nil {
			return err
		}
		r.raw = append(r.raw, d)
	}
	return nil
}

func createAndStop(s *serve, times *[]time.Duration) error {
	start := time.Now()
	id, err := s.createContext()
	d := time.Since(start)
	if err != nil {
		return err
	}
	if times != nil {
		*times = append(*times, d)
	}
	_, err = s.call("stop_context", map[string]any{"context_id": id})
	return err
}

func rawColdRun(eng *runtime.Engine, rt string, img *rootfs.Image) (time.Duration, error) {
	b, err := eng.PrepareBundle(rt, runtime.Request{Image: img, Args: []string{"python3", "-c", "print(1)"}})
	if err != nil {
		return 0, err
	}
	defer b.Close()
	d, out, err := b.RunRaw()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		return 0, fmt.Errorf("raw %s run: %v: %s", rt, err, out)
	}
	return d, nil
}

// benchWarm times run_code("1+1") on one warm context, each call followed
// by one round trip to a bare host Python REPL loop.
func benchWarm(s *serve, n int, r *report) error {
	id, err := s.createContext()
	if err != nil {
		return err
	}
	repl, err := startREPL()
	if err != nil {
		return err
	}
	defer repl.close()
	for i := 0; i < 50; i++ { // warm both up, unmeasured
		if err := s.onePlusOne(id); err != nil {
			return err
		}
		if _, err := repl.roundTrip(); err != nil {
			return err
		}
	}
	r.calls = n
	sb, err := onlySandbox(s.stateDir)
	if err != nil {
		return err
	}
	var serveCPU, driverCPU time.Duration
	var switches int64
	for i := 0; i < n; i++ {
		c0 := threadsSwitches(s.cmd.Process.Pid)
		s0, d0 := threadsCPU(s.cmd.Process.Pid), groupCPU(sb)
		start := time.Now()
		if err := s.onePlusOne(id); err != nil {
			return err
		}
		r.warm = append(r.warm, time.Since(start))
		serveCPU += threadsCPU(s.cmd.Process.Pid) - s0
		driverCPU += groupCPU(sb) - d0
		switches += threadsSwitches(s.cmd.Process.Pid) - c0
		d, err := repl.roundTrip()
		if err != nil {
			return err
		}
		r.repl = append(r.repl, d)
	}
	r.serveCPU, r.driverCPU = serveCPU/time.Duration(n), driverCPU/time.Duration(n)
	r.serveSwitches = float64(switches) / float64(n)
	_, err = s.call("stop_context", map[string]any{"context_id": id})
	return err
}

// onlySandbox returns the id of the one sandbox under stateDir.
func onlySandbox(stateDir string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(stateDir, "sandboxes"))
	if err != nil {
		return "", err
	}
	if len(ents) != 1 {
		return "", fmt.Errorf("expected one sandbox, found %d", len(ents))
	}
	return ents[0].Name(), nil
}

// threadsCPU is the CPU time of every thread of process pid so far, from
// schedstat (nanoseconds; /proc/PID/stat counts in clock ticks).
func threadsCPU(pid int) time.Duration {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// threadsSwitches counts the context switches of every thread of process
// pid so far (voluntary and not): each goroutine hand-off that wakes a
// parked thread costs at least one.
func threadsSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total
}

// groupCPU is the CPU time of sandbox id's cgroup so far: every process in
// the sandbox (the driver, its init; under runsc the sentry).
func groupCPU(id string) time.Duration {
	g, err := cgroups.Load(id)
	if err != nil {
		return 0
	}
	u, err := g.Usage()
	if err != nil {
		return 0
	}
	return u.CPU
}

// replLoop is the physical floor: a host Python that reads one line of
// code from a pipe, evaluates it and writes the repr back — what a
// context's driver does, without sandbox, framing, JSON-RPC or MCP.
const replLoop = `import sys
r, w, g = sys.stdin.buffer, sys.stdout.buffer, {}
while True:
    line = r.readline()
    if not line:
        break
    w.write(repr(eval(line, g)).encode() + b"\n")
    w.flush()
`

type repl struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startREPL() (*repl, error) {
	cmd := exec.Command(hostPython, "-I", "-c", replLoop)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the host REPL: %w", err)
	}
	return &repl{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

func (p *repl) roundTrip() (time.Duration, error) {
	start := time.Now()
	if _, err := io.WriteString(p.in, "1+1\n"); err != nil {
		return 0, fmt.Errorf("host REPL: %w", err)
	}
	line, err := p.out.ReadString('\n')
	d := time.Since(start)
	if err != nil || line != "2\n" {
		return 0, fmt.Errorf("host REPL answered %q: %v", line, err)
	}
	return d, nil
}

func (p *repl) close() {
	p.in.Close()
	p.cmd.Wait()
}

// benchThroughput spreads n run_code calls from callers concurrent callers
// over 4 contexts (round robin) and reports calls per second.
func benchThroughput(s *serve, n, callers int, r *report) error {
	ids := make([]string, 4)
	for i := range ids {
		id, err := s.createContext()
		if err != nil {
			return err
		}
		ids[i] = id
		for j := 0; j < 10; j++ {
			if err := s.onePlusOne(id); err != nil {
				return err
			}
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, callers)
	start := time.Now()
	for w := 0; w < callers; w++ {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := s.onePlusOne(ids[(int(i)+w)%len(ids)]); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	r.cpsElapsed = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.cps = float64(n) / r.cpsElapsed.Seconds()
	r.cpsCalls, r.cpsCallers = n, callers
	for _, id := range ids {
		if _, err := s.call("stop_context", map[string]any{"context_id": id}); err != nil {
			return err
		}
	}
	return nil
}

type memReport struct {
	n           int
	perContext  float64 // bytes
	cgroupWS    float64
	cgroupRSS   float64
	hostProcs   float64
	hostProcN   int
	serveGrowth float64
}

// measureIdleMemory creates n Python contexts, runs one call in each so
// that every interpreter is fully up, lets them idle, and divides by n the
// host memory they added:
//
//   - each sandbox's cgroup (memory controller, the group vial creates for
//     it, which holds the container's leaf): its working set, usage minus
//     inactive file cache — the figure the kubelet and `docker stats` use,
//     since inactive page cache is reclaimable and mostly the host's own
//     files read through the host image. Under runsc the sentry and its
//     memory file are charged here;
//   - the PSS of every process that runs for these sandboxes outside their
//     cgroups (runsc's gofer, a runtime's monitor): processes whose command
//     line names vial serve's state directory, which did not exist before;
//     PSS rather than RSS so that pages shared between them (the runsc
//     binary) are counted once;
//   - the growth of vial serve's own PSS (pipes, goroutines, buffers).
//
// Contexts created before (the unmeasured warm-up) are stopped, so the
// before/after difference is these n contexts.
func measureIdleMemory(s *serve, n int) (memReport, error) {
	m := memReport{n: n}
	servePID := s.cmd.Process.Pid
	before := hostProcs(s.stateDir, servePID)
	pss0, err := pss(servePID)
	if err != nil {
		return m, err
	}
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		id, err := s.createContext()
		if err != nil {
			return m, err
		}
		ids = append(ids, id)
		if err := s.onePlusOne(id); err != nil {
			return m, err
		}
	}
	time.Sleep(2 * time.Second) // idle
	sandboxes, err := os.ReadDir(filepath.Join(s.stateDir, "sandboxes"))
	if err != nil {
		return m, err
	}
	if len(sandboxes) != n {
		return m, fmt.Errorf("expected %d sandboxes, found %d", n, len(sandboxes))
	}
	for _, sb := range sandboxes {
		ws, rss, err := cgroupMemory(sb.Name())
		if err != nil {
			return m, err
		}
		m.cgroupWS += float64(ws)
		m.cgroupRSS += float64(rss)
	}
	for pid := range hostProcs(s.stateDir, servePID) {
		if _, ok := before[pid]; ok || inSandboxCgroup(pid) {
			continue
		}
		if p, err := pss(pid); err == nil {
			m.hostProcs += float64(p)
			m.hostProcN++
		}
	}
	pss1, err := pss(servePID)
	if err != nil {
		return m, err
	}
	m.serveGrowth = float64(pss1) - float64(pss0)
	m.perContext = (m.cgroupWS + m.hostProcs + m.serveGrowth) / float64(n)
	for _, id := range ids {
		if _, err := s.call("stop_context", map[string]any{"context_id": id}); err != nil {
			return m, err
		}
	}
	return m, nil
}

// cgroupMemory reads the working set and the rss of sandbox id's group.
func cgroupMemory(id string) (ws, rss uint64, err error) {
	if cgroups.Unified() {
		dir := filepath.Join("/sys/fs/cgroup", cgroups.Parent, id)
		usage, err := readUint(filepath.Join(dir, "memory.current"))
		if err != nil {
			return 0, 0, err
		}
		st, err := readStat(filepath.Join(dir, "memory.stat"))
		if err != nil {
			return 0, 0, err
		}
		return usage - min(usage, st["inactive_file"]), st["anon"], nil
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", cgroups.Parent, id)
	usage, err := readUint(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, 0, err
	}
	st, err := readStat(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, 0, err
	}
	return usage - min(usage, st["total_inactive_file"]), st["total_rss"], nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func readStat(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			st[k] = n
		}
	}
	return st, nil
}

// hostProcs returns the processes (other than vial serve) whose command
// line mentions stateDir: the runtime processes serving its sandboxes.
func hostProcs(stateDir string, servePID int) map[int]struct{} {
	out := map[int]struct{}{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == servePID {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cl), stateDir) {
			out[pid] = struct{}{}
		}
	}
	return out
}

// inSandboxCgroup reports whether pid is in a sandbox's memory cgroup,
// whose usage is already counted.
func inSandboxCgroup(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mem := slices.Contains(strings.Split(parts[1], ","), "memory") || (parts[1] == "" && cgroups.Unified())
		if mem && strings.HasPrefix(parts[2], cgroups.Parent+"/") {
			return true
		}
	}
	return false
}

// pss returns the proportional set size of pid, in bytes.
func pss(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// tail keeps the last few KiB of vial serve's log for error messages.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-8<<10:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mib(b float64) float64 { return b / (1 << 20) }
