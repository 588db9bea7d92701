package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vial-run/vial/internal/rmtree"
	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/oci"
)

func init() { newServeEngine = openServeEngine }

// serveAdapter is the mcp.Engine of `vial serve`: contexts from a
// runtime.ContextManager whose sandboxes the runtime.Engine starts, and
// one-shot sandboxes for execute_python.
//
// Workspaces. The default contexts (one per language, used when a tool call
// names no context) share one workspace directory, so a file written by
// write_file or by run_code is visible to run_shell and the other way
// round. A context made with create_context, and each one-shot run, gets a
// private workspace of its own.
type serveAdapter struct {
	eng       *runtime.Engine
	mgr       *runtime.ContextManager
	def       environment            // the agent's own environment
	envs      map[string]environment // named environments; nil: none configured
	driverDir string
	ctxOpts   runtime.ContextOptions
	log       *slog.Logger
	local     bool // no isolation: contexts are host processes (local.go)

	// wsDir holds this process's workspaces: a lock file held for our
	// lifetime, the shared workspace of the default contexts, and local
	// mode's private ones. It is removed at Close, and at the next start
	// of any vial serve if we died first.
	wsDir    string
	shared   string
	sharedWS *runtime.Workspace // the shared workspace's volume and uid; nil in local mode
	wsLock   *os.File

	// oneShot bounds concurrent execute_python sandboxes (they use the
	// same resources as contexts but are not counted by the manager).
	oneShot chan struct{}

	mu       sync.Mutex
	images   map[string]*rootfs.Image // resolved images by name
	defaults map[string]bool          // IDs of contexts the manager made as defaults
	closed   bool
	inFlight sync.WaitGroup // one-shot runs
}

// openServeEngine opens the runtime engine on the state directory
// (recovering what a crashed vial left), checks the runtime and image, and
// installs the language drivers.
func openServeEngine(ctx context.Context, g *globals, cfg serveConfig) (_ serveEngine, err error) {
	e, err := openEngine(ctx, g, true)
	if err != nil {
		return nil, err
	}
	a := &serveAdapter{
		eng: e,
		def: environment{
			Runtime: cfg.Runtime,
			Image:   cfg.Image,
			Limits:  cfg.Limits,
			Env:     cfg.Env,
		},
		envs:     cfg.Environments,
		ctxOpts:  runtime.ContextOptions{Timeout: cfg.MCP.Limits.DefaultTimeout, Logger: g.Log},
		log:      g.Log,
		local:    cfg.Local,
		oneShot:  make(chan struct{}, max(cfg.MaxContexts, 1)),
		images:   map[string]*rootfs.Image{},
		defaults: map[string]bool{},
	}
	if !a.local {
		if _, err := e.Backend(cfg.Runtime); err != nil {
			return nil, err
		}
		if _, err := a.image(cfg.Image); err != nil {
			return nil, err
		}
	}
	a.driverDir = filepath.Join(e.StateDir(), "drivers")
	if err := runtime.WriteDrivers(a.driverDir); err != nil {
		return nil, fmt.Errorf("installing context drivers: %w", err)
	}
	if err := a.openWorkspaces(e.StateDir()); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.closeWorkspaces()
		}
	}()
	mgr, err := runtime.NewContextManager(runtime.ManagerOptions{
		Start:       a.start,
		MaxContexts: cfg.MaxContexts,
		IdleTimeout: neverIfZero(cfg.IdleTimeout),
		MaxLifetime: neverIfZero(cfg.MaxLifetime),
		Context:     a.ctxOpts,
		Logger:      g.Log,
	})
	if err != nil {
		return nil, err
	}
	a.mgr = mgr
	return a, nil
}

// openWorkspaces removes the workspace directories of vial processes that
// died without removing them (their lock is free), then creates and locks
// this process's, with the default contexts' shared workspace in it.
func (a *serveAdapter) openWorkspaces(stateDir string) error {
	root := filepath.Join(stateDir, "workspaces")
	if err := os.MkdirAll(root, 0o711); err != nil {
		return fmt.Errorf("creating workspaces directory: %w", err)
	}
	if n, err := collectWorkspaces(root); err != nil {
		a.log.Warn("removing orphaned workspaces", "error", err)
	} else if n > 0 {
		a.log.Info("removed orphaned workspaces", "count", n)
	}
	dir, err := os.MkdirTemp(root, "serve-")
	if err == nil {
		// Traversable, not listable: the sandbox user reaches its own
		// workspace (local mode runs as that user on the host).
		err = os.Chmod(dir, 0o711)
	}
	if err != nil {
		return fmt.Errorf("creating workspaces: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(dir)
		return fmt.Errorf("locking workspaces: %w", err)
	}
	a.wsDir, a.wsLock = dir, lock
	if !a.local {
		a.sharedWS, err = a.openSharedWorkspace(filepath.Join(dir, "shared"))
		if err != nil {
			a.closeWorkspaces()
			return err
		}
		a.shared = a.sharedWS.Path()
		return nil
	}
	shared, err := a.newWorkspace("shared")
	if err != nil {
		a.closeWorkspaces()
		return err
	}
	a.shared = shared
	return nil
}

// newWorkspace creates a workspace directory owned by the sandbox user, as
// the engine does for the workspaces it creates itself.
func (a *serveAdapter) newWorkspace(name string) (string, error) {
	var ws string
	var err error
	if name != "" {
		ws = filepath.Join(a.wsDir, name)
		err = os.Mkdir(ws, 0o700)
	} else {
		ws, err = os.MkdirTemp(a.wsDir, "ctx-")
	}
	if err != nil {
		return "", fmt.Errorf("creating workspace: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(ws, oci.UID, oci.GID); err != nil {
			rmtree.RemoveAll(ws)
			return "", fmt.Errorf("preparing workspace: %w", err)
		}
	}
	return ws, nil
}

func (a *serveAdapter) closeWorkspaces() error {
	if a.wsDir == "" {
		return nil
	}
	var err error
	if a.sharedWS != nil {
		err = a.sharedWS.Close()
	}
	err = errors.Join(err, removeWorkspaces(a.wsDir))
	a.wsLock.Close()
	if err != nil {
		return fmt.Errorf("removing workspaces: %w", err)
	}
	return nil
}

// image resolves an image name once.
func (a *serveAdapter) image(name string) (*rootfs.Image, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if img, ok := a.images[name]; ok {
		return img, nil
	}
	img, err := resolveImage(a.eng.StateDir(), name)
	if err != nil {
		return nil, err
	}
	a.images[name] = img
	return img, nil
}

// neverIfZero maps serve's "0 = never" onto the manager's "negative =
// disabled".
func neverIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// defaultCtxKey marks the context.Context of a default context's creation,
// so start gives it the shared workspace.
type defaultCtxKey struct{}

// environment returns the named environment ("" = the agent's own). The
// name comes from a model's create_context argument: only environments of
// the operator's configuration can be selected, already tightened to the
// agent's ceilings, and never a local (unsandboxed) one.
func (a *serveAdapter) environment(name string) (environment, error) {
	if name == "" {
		return a.def, nil
	}
	if a.envs == nil {
		return environment{}, fmt.Errorf("environment %q: %w: no environments are configured (the operator starts vial serve with --agent or --config-dir to offer config/environments/*.toml)", name, runtime.ErrNotFound)
	}
	e, ok := a.envs[name]
	if !ok {
		return environment{}, fmt.Errorf("unknown environment %q (valid: %s): %w", name, environmentNames(a.envs), runtime.ErrNotFound)
	}
	if e.Refused != "" {
		return environment{}, fmt.Errorf("environment %q cannot be selected: %s (valid: %s): %w", name, e.Refused, environmentNames(a.envs), runtime.ErrInvalid)
	}
	return e, nil
}

// start is the manager's StartFunc: a sandbox running lang's driver in the
// named environment, with the drivers bound read-only and a fresh
// workspace, or the shared one for a default context.
func (a *serveAdapter) start(ctx context.Context, lang runtime.Language, envName string) (runtime.Transport, string, error) {
	env, err := a.environment(envName)
	if err != nil {
		return nil, "", err
	}
	ws := ""
	var user *hostuid.Lease
	if isDefault, _ := ctx.Value(defaultCtxKey{}).(bool); isDefault {
		ws = a.shared
		if a.sharedWS != nil {
			user = a.sharedWS.User()
		}
	}
	if a.local {
		return a.startLocal(lang, env, ws)
	}
	argv, err := runtime.SandboxCommand(lang, runtime.DriverDir)
	if err != nil {
		return nil, "", err
	}
	img, err := a.image(env.Image)
	if err != nil {
		if envName != "" {
			// The image of a named environment may not be built yet: say
			// so to the model, which can pick another environment or pass
			// on the store's hint (the command that gets the image) to
			// its user. Host paths in the text are scrubbed by the server.
			return nil, "", fmt.Errorf("environment %q: image %q is not available on this host (%v): %w", envName, env.Image, err, runtime.ErrNotFound)
		}
		return nil, "", err
	}
	sb, err := a.eng.Start(ctx, env.Runtime, runtime.Request{
		Image:     img,
		Args:      argv,
		Env:       env.Env,
		Binds:     []rootfs.Bind{{Source: a.driverDir, Target: runtime.DriverDir}},
		Limits:    env.Limits,
		Workspace: ws,
		User:      user,
	})
	if err != nil {
		return nil, "", err
	}
	return sb, sb.Workspace, nil
}

// startLocal starts lang's driver as a host process (local mode).
func (a *serveAdapter) startLocal(lang runtime.Language, env environment, ws string) (runtime.Transport, string, error) {
	var cleanup func() error
	if ws == "" {
		var err error
		if ws, err = a.newWorkspace(""); err != nil {
			return nil, "", err
		}
		cleanup = func() error { return rmtree.RemoveAll(ws) }
	}
	t, err := startLocal(lang, a.driverDir, ws, env.Env, env.Limits.WithDefaults(), cleanup)
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, "", err
	}
	return t, ws, nil
}

func (a *serveAdapter) info(ri runtime.ContextInfo) mcp.ContextInfo {
	a.mu.Lock()
	def := a.defaults[ri.ID]
	a.mu.Unlock()
	return mcp.ContextInfo{
		ID:          ri.ID,
		Name:        ri.Name,
		Language:    ri.Language,
		Environment: ri.Environment,
		Default:     def,
		Dead:        ri.Dead,
		Created:     ri.Created,
		LastUsed:    ri.LastUsed,
	}
}

// CreateContext implements mcp.Engine.
func (a *serveAdapter) CreateContext(ctx context.Context, lang runtime.Language, name, environment string) (mcp.ContextInfo, error) {
	c, err := a.mgr.Create(ctx, runtime.CreateOptions{Language: lang, Name: name, Environment: environment})
	if err != nil {
		return mcp.ContextInfo{}, err
	}
	return a.info(c.Info()), nil
}

// ListContexts implements mcp.Engine.
func (a *serveAdapter) ListContexts() []mcp.ContextInfo {
	list := a.mgr.List()
	out := make([]mcp.ContextInfo, 0, len(list))
	for _, ri := range list {
		out = append(out, a.info(ri))
	}
	return out
}

// StopContext implements mcp.Engine.
func (a *serveAdapter) StopContext(ctx context.Context, id string) error {
	return a.mgr.Stop(id)
}

// context finds contextID, or the default context of lang.
func (a *serveAdapter) context(ctx context.Context, contextID string, lang runtime.Language) (*runtime.Context, error) {
	if contextID != "" {
		return a.mgr.Get(contextID)
	}
	c, err := a.mgr.Default(context.WithValue(ctx, defaultCtxKey{}, true), lang, "")
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.defaults[c.ID()] = true
	a.mu.Unlock()
	return c, nil
}

// RunCode implements mcp.Engine.
func (a *serveAdapter) RunCode(ctx context.Context, contextID string, lang runtime.Language, req runtime.ExecRequest) (runtime.ExecResult, error) {
	c, err := a.context(ctx, contextID, lang)
	if err != nil {
		return runtime.ExecResult{}, err
	}
	if lang != "" && c.Language() != lang {
		return runtime.ExecResult{}, fmt.Errorf("context %s runs %s, not %s: %w", c.ID(), c.Language(), lang, runtime.ErrInvalid)
	}
	if name := c.Info().Environment; name != "" {
		// The server clamps to the agent's ceiling; an environment may
		// have a lower one.
		if e, ok := a.envs[name]; ok && e.Timeout > 0 && (req.Timeout == 0 || req.Timeout > e.Timeout) {
			req.Timeout = e.Timeout
		}
	}
	return a.mark(c.Exec(ctx, req))
}

// mark adds local mode's banner to every result.
func (a *serveAdapter) mark(res runtime.ExecResult, err error) (runtime.ExecResult, error) {
	if a.local && err == nil {
		res.Stderr = localBanner + res.Stderr
	}
	return res, err
}

// ExecuteOnce implements mcp.Engine: a context in a fresh sandbox, closed
// (and its workspace removed) after the one call.
func (a *serveAdapter) ExecuteOnce(ctx context.Context, lang runtime.Language, req runtime.ExecRequest) (runtime.ExecResult, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return runtime.ExecResult{}, fmt.Errorf("vial is shutting down: %w", runtime.ErrUnavailable)
	}
	a.inFlight.Add(1)
	a.mu.Unlock()
	defer a.inFlight.Done()
	select {
	case a.oneShot <- struct{}{}:
		defer func() { <-a.oneShot }()
	default:
		return runtime.ExecResult{}, fmt.Errorf("%d one-shot runs are in progress: %w", cap(a.oneShot), runtime.ErrExhausted)
	}
	t, ws, err := a.start(ctx, lang, "")
	if err != nil {
		return runtime.ExecResult{}, err
	}
	opts := a.ctxOpts
	opts.ID = runtime.NewContextID()
	opts.Language = lang
	opts.Workspace = ws
	c, err := runtime.NewContext(ctx, t, opts)
	if err != nil {
		t.Close()
		return runtime.ExecResult{}, err
	}
	defer func() {
		if err := c.Close(); err != nil {
			a.log.Warn("closing one-shot sandbox", "error", err)
		}
	}()
	return a.mark(c.Exec(ctx, req))
}

// Workspace implements mcp.Engine. The default contexts' workspace needs no
// sandbox: it exists from start-up, so file tools do not start one.
func (a *serveAdapter) Workspace(ctx context.Context, contextID string) (string, error) {
	if contextID == "" {
		return a.shared, nil
	}
	c, err := a.context(ctx, contextID, runtime.Python)
	if err != nil {
		return "", err
	}
	if dead, why := c.Dead(); dead {
		return "", fmt.Errorf("context %s is dead (%s): %w", c.ID(), why, runtime.ErrNotFound)
	}
	if c.Workspace() == "" {
		return "", fmt.Errorf("context %s has no workspace: %w", c.ID(), runtime.ErrUnavailable)
	}
	return c.Workspace(), nil
}

// Close stops every context and waits for one-shot runs, within ctx.
func (a *serveAdapter) Close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		err := a.mgr.CloseAll()
		a.inFlight.Wait()
		done <- errors.Join(err, a.closeWorkspaces())
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.Join(fmt.Errorf("tearing down contexts: %w", ctx.Err()),
			errors.New("some sandboxes may remain; vial gc removes them"))
	}
}
