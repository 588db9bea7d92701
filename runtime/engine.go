// Package runtime runs sandboxes: it turns a request into a hardened OCI
// bundle, runs it under a backend (runc, crun, runsc), reports the result
// and always cleans up — also after a crash, through Recover and GC.
package runtime

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/internal/lazyre"
	"github.com/vial-run/vial/internal/rmtree"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/oci"
	"github.com/vial-run/vial/runtime/volume"
)

// Limits are a sandbox's resource limits. A zero field takes the engine's
// default.
type Limits struct {
	MemoryBytes int64   // hard memory limit; swap is not allowed on top
	CPUs        float64 // CPU quota in cores
	Pids        int64   // processes + threads
	// TmpBytes is the size of the /tmp tmpfs (in the sandbox's memory, and
	// charged to its memory limit); /tmp also holds at most one file or
	// directory per 4 KiB of it (oci.TmpInodesFor).
	TmpBytes int64
	// DiskBytes is the size of the /workspace volume vial creates for a
	// sandbox (the most of the host's disk the sandbox can take; writes
	// past it fail with ENOSPC), and the largest file it may write
	// anywhere (RLIMIT_FSIZE, which also bounds files in a workspace the
	// caller named: that directory itself has no quota).
	DiskBytes int64
	// DiskInodes is how many files and directories the /workspace volume
	// holds; zero means one per 16 KiB of DiskBytes (volume.InodesFor).
	DiskInodes int64
}

// DefaultLimits apply where a request leaves a limit at zero.
var DefaultLimits = Limits{
	MemoryBytes: 512 << 20,
	CPUs:        1,
	Pids:        256,
	TmpBytes:    oci.DefaultTmpBytes,
	DiskBytes:   1 << 30,
}

// Request describes one sandbox.
type Request struct {
	Image *rootfs.Image
	Args  []string
	Env   []string
	Cwd   string // default /workspace
	// Binds are extra read-only bind mounts (e.g. the context drivers).
	Binds []rootfs.Bind
	// Network attaches the sandbox to a prepared network; nil means an
	// empty network namespace (loopback only).
	Network *Network
	Limits  Limits
	Timeout time.Duration // 0 means none
	// Workspace is a host directory bound read-write at /workspace. It is
	// not under a disk quota (only RLIMIT_FSIZE caps its files). Empty
	// means a fresh volume under the sandbox's state directory, limited to
	// Limits.DiskBytes and DiskInodes and discarded with the sandbox.
	Workspace string
	// User is the host uid and gid the sandbox runs as, leased by the
	// caller, e.g. for a workspace several sandboxes share (they must be
	// able to change each other's files there). Nil means a uid leased for
	// this sandbox alone, or 65534 when Workspace is set.
	User   *hostuid.Lease
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Result is how a sandboxed program ended. A failing program is a result,
// not an error.
type Result struct {
	ExitCode   int    // the program's exit status; 128+n when killed by signal n
	Signal     string // "SIGKILL" etc. when killed by a signal, else ""
	TimedOut   bool   // the timeout expired and vial killed the sandbox
	OOMKilled  bool   // the kernel killed it for exceeding its memory limit
	Wall       time.Duration
	CPU        time.Duration
	PeakMemory uint64 // bytes
}

// Engine runs sandboxes. It is safe for concurrent use.
type Engine struct {
	stateDir string
	// tag marks the sandboxes of this state directory in names shared with
	// other vial instances (cgroups, container ids): see newID.
	tag      string
	backends map[string]*Backend
	log      *slog.Logger
	// collectors are GC's collectors beyond sandboxes and workspaces.
	collectors []Collector
}

// Options configure an Engine.
type Options struct {
	StateDir string
	Backends []*Backend
	Log      *slog.Logger // nil discards
}

// New prepares the state directory and returns an engine. It does not
// recover orphans: call Recover for that (the CLI does, at start-up).
func New(o Options) (*Engine, error) {
	if !filepath.IsAbs(o.StateDir) {
		return nil, fmt.Errorf("state directory %q: %w: must be absolute", o.StateDir, ErrInvalid)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{stateDir: o.StateDir, backends: map[string]*Backend{}, log: o.Log}
	for _, b := range o.Backends {
		e.backends[b.Name] = b
	}
	for _, d := range []string{"sandboxes", "runtime"} {
		if err := os.MkdirAll(filepath.Join(o.StateDir, d), 0o711); err != nil {
			return nil, fmt.Errorf("creating state directory: %w", err)
		}
	}
	real, err := filepath.EvalSymlinks(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("resolving state directory: %w", err)
	}
	sum := sha256.Sum256([]byte(real))
	e.tag = hex.EncodeToString(sum[:3])
	return e, nil
}

// StateDir returns the engine's state directory.
func (e *Engine) StateDir() string { return e.stateDir }

// Backend returns the named backend, or an error saying how to install it.
func (e *Engine) Backend(name string) (*Backend, error) {
	b, ok := e.backends[name]
	if !ok {
		names := make([]string, 0, len(e.backends))
		for n := range e.backends {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("runtime %q: %w: known runtimes are %s", name, ErrNotFound, strings.Join(names, ", "))
	}
	if b.Path == "" {
		return nil, fmt.Errorf("runtime %s: %w: not installed; %s", name, ErrUnavailable, b.Install)
	}
	return b, nil
}

// Backends lists every configured backend, found or not.
func (e *Engine) Backends() []*Backend {
	out := make([]*Backend, 0, len(e.backends))
	for _, b := range e.backends {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *Backend) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (e *Engine) runtimeRoot(b *Backend) string {
	return filepath.Join(e.stateDir, "runtime", b.Name)
}

// sandboxMeta is written next to each bundle so that gc knows which
// runtime owns an orphaned sandbox.
type sandboxMeta struct {
	ID      string    `json:"id"`
	Runtime string    `json:"runtime"`
	Created time.Time `json:"created"`
	PID     int       `json:"pid"` // the vial process that owns it
}

// validID matches the identifiers vial generates; anything read back from
// disk is checked against it before it becomes a path component.
var validID = lazyre.New(`^[a-z0-9][a-z0-9-]{0,63}$`)

// newID names a new sandbox: "v", the state directory's tag, "-" and 40
// random bits. cgroups live in one host-wide tree (/vial) that several vial
// instances with different state directories share; the tag is how
// garbage collection tells its own leftovers from another instance's live
// sandboxes, which it must never touch.
func (e *Engine) newID() string {
	var b [5]byte
	rand.Read(b[:])
	return "v" + e.tag + "-" + hex.EncodeToString(b[:])
}

// Owns reports whether sandbox id was named by an engine on this state
// directory.
func (e *Engine) Owns(id string) bool { return strings.HasPrefix(id, "v"+e.tag+"-") }

// sandbox is the state shared by Run and Start while a sandbox exists.
type sandbox struct {
	id        string
	dir       string
	bundle    string
	workspace string
	logPath   string
	backend   *Backend
	root      string
	group     *cgroups.Group
	limits    Limits
	uid, gid  int           // the host user the sandbox runs as
	etc       []rootfs.Bind // its own /etc/passwd and /etc/group, if any
	lock      *os.File
	args      []string     // the backend's per-sandbox global arguments
	teardown  func() error // everything acquired, in reverse order
}

// prepare does all the I/O a sandbox needs before the runtime starts:
// validates the request, creates the sandbox directory (locked, so gc
// leaves it alone while we live), the workspace, the cgroup and the bundle.
func (e *Engine) prepare(runtimeName string, req *Request) (_ *sandbox, err error) {
	b, err := e.Backend(runtimeName)
	if err != nil {
		return nil, err
	}
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	if err := checkNetwork(req); err != nil {
		return nil, err
	}
	lim := req.Limits.WithDefaults()
	if lim.Pids < b.MinPids {
		// runsc's sentry counts its own threads against the pids limit, and
		// below its minimum a fork storm takes the whole sandbox down
		// instead of failing fork.
		lim.Pids = b.MinPids
	}
	var cu cleanup.Stack
	defer func() {
		if err != nil {
			cu.Clean()
		}
	}()
	if err := useImage(req, &cu); err != nil {
		return nil, err
	}
	s := &sandbox{id: e.newID(), backend: b, root: e.runtimeRoot(b), limits: lim, args: b.sandboxArgs(req)}
	s.dir = filepath.Join(e.stateDir, "sandboxes", s.id)
	if err := os.Mkdir(s.dir, 0o711); err != nil {
		return nil, fmt.Errorf("creating sandbox directory: %w", err)
	}
	// rmtree: the directory holds whatever the sandbox wrote (a workspace
	// it named aside), of any depth.
	cu.Add(func() error { return rmtree.RemoveAll(s.dir) })
	lock, err := createLock(s.dir, sandboxMeta{ID: s.id, Runtime: b.Name, Created: time.Now(), PID: os.Getpid()})
	if err != nil {
		return nil, err
	}
	s.lock = lock
	cu.Add(lock.Close)
	pg := startGroup(s.id, lim)
	defer func() {
		if err != nil {
			pg.abandon()
		}
	}()
	// The sandbox directory is the bundle: runtimes read only its
	// config.json, and one directory fewer is one mkdir fewer per start.
	s.bundle = s.dir
	if err := e.prepareUser(s, req, &cu); err != nil {
		return nil, err
	}
	if err := e.prepareWorkspace(s, req, &cu); err != nil {
		return nil, err
	}
	if s.etc, err = identityBinds(s, req.Image); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return nil, fmt.Errorf("creating runtime root: %w", err)
	}
	spec, err := e.spec(s, req)
	if err != nil {
		return nil, err
	}
	if err := s.writeSpec(spec); err != nil {
		return nil, err
	}
	s.group, err = pg.wait()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Removing the group overlaps removing the directory (destroy has
	// killed what was left in it first).
	cu.AddAsync(s.group.Delete)
	s.logPath = filepath.Join(s.dir, "runtime.log")
	s.teardown = cu.Release()
	return s, nil
}

// spec builds the bundle's config.json for s.
func (e *Engine) spec(s *sandbox, req *Request) (*specs.Spec, error) {
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/workspace"
	}
	opts := []oci.SpecOpt{
		oci.WithRoot(req.Image.Root),
		oci.WithArgs(req.Args...),
		oci.WithEnv(req.Image.Env...),
		oci.WithEnv(req.Env...),
		oci.WithCwd(cwd),
		oci.WithUser(uint32(s.uid), uint32(s.gid)),
		oci.WithTmpSize(s.limits.TmpBytes),
		oci.WithRlimit("RLIMIT_FSIZE", uint64(s.limits.DiskBytes), uint64(s.limits.DiskBytes)),
		oci.WithResources(cgroups.Resources(cgroups.Limits{MemoryBytes: s.limits.MemoryBytes, CPUs: s.limits.CPUs, Pids: s.limits.Pids})),
		oci.WithCgroupsPath(cgroups.LeafPath(s.id)),
		oci.WithAnnotation("dev.vial.sandbox", s.id),
	}
	for _, bnd := range req.Image.Binds {
		opts = append(opts, oci.WithReadOnlyBind(bnd.Source, bnd.Target))
	}
	for _, bnd := range append(slices.Clone(req.Binds), s.etc...) {
		opts = append(opts, oci.WithReadOnlyBind(bnd.Source, bnd.Target))
	}
	opts = append(opts, oci.WithWorkspace(s.workspace))
	opts = append(opts, networkOpts(req.Network)...)
	opts = append(opts, s.backend.SpecOpts...)
	return oci.New(opts...)
}

// WithDefaults fills the zero fields of l with DefaultLimits, giving the
// limits a sandbox actually gets (before a backend's minimums).
func (l Limits) WithDefaults() Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = DefaultLimits.MemoryBytes
	}
	if l.CPUs == 0 {
		l.CPUs = DefaultLimits.CPUs
	}
	if l.Pids == 0 {
		l.Pids = DefaultLimits.Pids
	}
	if l.TmpBytes == 0 {
		l.TmpBytes = DefaultLimits.TmpBytes
	}
	if l.DiskBytes == 0 {
		l.DiskBytes = DefaultLimits.DiskBytes
	}
	if l.DiskInodes == 0 {
		l.DiskInodes = volume.InodesFor(max(l.DiskBytes, volume.MinBytes))
	}
	return l
}

// validateRequest checks everything about a request that does not need
// the host, reporting every problem at once.
func validateRequest(req *Request) error {
	var errs []error
	if req.Image == nil || req.Image.Root == "" {
		errs = append(errs, errors.New("no image"))
	}
	if len(req.Args) == 0 || req.Args[0] == "" {
		errs = append(errs, errors.New("no command to run"))
	}
	l := req.Limits
	if l.MemoryBytes < 0 || (l.MemoryBytes > 0 && l.MemoryBytes < 8<<20) {
		errs = append(errs, fmt.Errorf("memory limit %d bytes: must be at least 8 MiB", l.MemoryBytes))
	}
	if l.CPUs < 0 || l.CPUs > 1024 {
		errs = append(errs, fmt.Errorf("cpu limit %g: must be between 0.01 and 1024 cores", l.CPUs))
	} else if l.CPUs > 0 && l.CPUs < 0.01 {
		errs = append(errs, fmt.Errorf("cpu limit %g: must be at least 0.01 cores", l.CPUs))
	}
	if l.Pids < 0 || (l.Pids > 0 && l.Pids < 4) {
		errs = append(errs, fmt.Errorf("pids limit %d: must be at least 4", l.Pids))
	}
	if l.TmpBytes < 0 || l.DiskBytes < 0 || l.DiskInodes < 0 {
		errs = append(errs, errors.New("tmp and disk limits must not be negative"))
	}
	if req.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if req.Workspace != "" && (!filepath.IsAbs(req.Workspace) || filepath.Clean(req.Workspace) != req.Workspace) {
		errs = append(errs, fmt.Errorf("workspace %q: must be an absolute, clean path", req.Workspace))
	}
	if req.Cwd != "" && !filepath.IsAbs(req.Cwd) {
		errs = append(errs, fmt.Errorf("working directory %q: must be absolute", req.Cwd))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// destroy tears a sandbox down: kill and delete the container (which may
// already be gone), run the backend's clean-up, remove the cgroup and the
// sandbox directory. It runs without the caller's cancellation and with
// its own deadline.
func (e *Engine) destroy(s *sandbox, containerMayExist bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	if containerMayExist {
		if err := e.forceDelete(ctx, s.backend, s.root, s.id); err != nil {
			errs = append(errs, err)
		}
	}
	if s.backend.Cleanup != nil {
		if err := s.backend.Cleanup(s.root); err != nil {
			errs = append(errs, err)
		}
	}
	if s.group != nil {
		// Anything still in the group (a runtime that lost track of a
		// process) is killed before the group is removed.
		s.group.Kill(5 * time.Second)
	}
	if err := s.teardown(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// forceDelete kills and deletes container id, tolerating its absence.
func (e *Engine) forceDelete(ctx context.Context, b *Backend, root, id string) error {
	killContainer(ctx, b, root, id)
	del := b.command(root, "delete", "--force", id)
	out, err := runWithContext(ctx, b, del)
	if err != nil && !notExist(out) {
		return commandError(b, "delete "+id, err, lastLine(out))
	}
	return nil
}

func notExist(out []byte) bool {
	s := strings.ToLower(string(out))
	return strings.Contains(s, "does not exist") || strings.Contains(s, "not found") ||
		strings.Contains(s, "no such file") || strings.Contains(s, "not exist")
}

// killTimeout bounds one `<runtime> kill`. Under a fork storm a runtime's
// kill can stall; the callers retry or fall back to killing the cgroup.
const killTimeout = 2 * time.Second

// killContainer sends SIGKILL to container id through the runtime, giving
// up after killTimeout (or when ctx ends). Errors are ignored: the
// container may already be gone, and callers check the outcome themselves.
func killContainer(ctx context.Context, b *Backend, root, id string) {
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	runWithContext(ctx, b, b.command(root, "kill", id, "KILL"))
}

// runWithContext runs cmd, an invocation of b's CLI, killing it if ctx
// ends, and returns its combined output. A CLI whose children keep its
// output open cannot hold the caller beyond a second after it exits or is
// killed.
func runWithContext(ctx context.Context, b *Backend, cmd *exec.Cmd) ([]byte, error) {
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = time.Second
	if err := b.start(cmd); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(buf.String()), err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return []byte(buf.String()), ctx.Err()
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// runtimeError reads the runtime's JSON log and returns its last error
// message, or "" when the runtime logged no error.
func runtimeError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			last = entry.Msg
		}
	}
	return last
}

// Bundle is a prepared sandbox that has not been started: its bundle
// directory, container id and runtime root. Benchmarks use it to run the
// raw runtime on exactly the bundle vial would run.
type Bundle struct {
	ID, Dir, RuntimeRoot string
	e                    *Engine
	s                    *sandbox
	ran                  bool // RunRaw's runtime exited by itself: it deleted the container
}

// PrepareBundle does everything Run does before starting the runtime and
// returns the result; Close tears it down like Run would.
func (e *Engine) PrepareBundle(runtimeName string, req Request) (*Bundle, error) {
	s, err := e.prepare(runtimeName, &req)
	if err != nil {
		return nil, err
	}
	return &Bundle{ID: s.id, Dir: s.bundle, RuntimeRoot: s.root, e: e, s: s}, nil
}

// Command returns the runtime invocation for args on this bundle's
// runtime root; start it with Start.
func (b *Bundle) Command(args ...string) *exec.Cmd { return b.s.runCommand(args...) }

// Start starts cmd, from Command, as the backend requires (crun's private
// mount namespace on a hybrid cgroup host).
func (b *Bundle) Start(cmd *exec.Cmd) error { return b.s.backend.start(cmd) }

// RunRaw runs the bundle with the runtime's own `run`, as a user of the
// raw runtime would, and times the runtime process alone: the baseline
// the benchmarks compare vial with. It returns the combined output.
func (b *Bundle) RunRaw() (time.Duration, []byte, error) {
	cmd := b.Command("run", "--bundle", b.Dir, b.ID)
	start := time.Now()
	out, err := b.s.backend.combinedOutput(cmd)
	d := time.Since(start)
	b.ran = err == nil
	return d, out, err
}

// Close deletes the container if it may still exist and removes
// everything.
func (b *Bundle) Close() error { return b.e.destroy(b.s, !b.ran) }
