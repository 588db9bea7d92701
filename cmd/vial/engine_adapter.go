package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
)

func init() { newServeEngine = openServeEngine }

// serveAdapter is the mcp.Engine of `vial serve`: contexts from a
// runtime.ContextManager whose sandboxes the runtime.Engine starts, and
// one-shot sandboxes for execute_python.
type serveAdapter struct {
	eng       *runtime.Engine
	mgr       *runtime.ContextManager
	runtime   string
	img       *rootfs.Image
	limits    runtime.Limits
	driverDir string
	ctxOpts   runtime.ContextOptions
	log       *slog.Logger

	// oneShot bounds concurrent execute_python sandboxes (they use the
	// same resources as contexts but are not counted by the manager).
	oneShot chan struct{}

	mu       sync.Mutex
	defaults map[string]bool // IDs of contexts the manager made as defaults
	closed   bool
	inFlight sync.WaitGroup // one-shot runs
}

// openServeEngine opens the runtime engine on the state directory
// (recovering what a crashed vial left), checks the runtime and image, and
// installs the language drivers.
func openServeEngine(ctx context.Context, g *globals, cfg serveConfig) (serveEngine, error) {
	e, err := openEngine(ctx, g, true)
	if err != nil {
		return nil, err
	}
	if _, err := e.Backend(cfg.Runtime); err != nil {
		return nil, err
	}
	img, err := resolveImage(e.StateDir(), cfg.Image)
	if err != nil {
		return nil, err
	}
	driverDir := filepath.Join(e.StateDir(), "drivers")
	if err := runtime.WriteDrivers(driverDir); err != nil {
		return nil, fmt.Errorf("installing context drivers: %w", err)
	}
	a := &serveAdapter{
		eng:       e,
		runtime:   cfg.Runtime,
		img:       img,
		limits:    cfg.Limits,
		driverDir: driverDir,
		ctxOpts:   runtime.ContextOptions{Timeout: cfg.MCP.Limits.DefaultTimeout, Logger: g.Log},
		log:       g.Log,
		oneShot:   make(chan struct{}, max(cfg.MaxContexts, 1)),
		defaults:  map[string]bool{},
	}
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

// neverIfZero maps serve's "0 = never" onto the manager's "negative =
// disabled".
func neverIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// start is the manager's StartFunc: a sandbox running lang's driver, with
// the drivers bound read-only and a fresh workspace.
func (a *serveAdapter) start(ctx context.Context, lang runtime.Language, env string) (runtime.Transport, string, error) {
	if env != "" {
		// Named environments come with the configuration layer.
		return nil, "", fmt.Errorf("environment %q: %w (no environments are configured)", env, runtime.ErrNotFound)
	}
	argv, err := runtime.DriverCommand(lang, runtime.DriverDir)
	if err != nil {
		return nil, "", err
	}
	sb, err := a.eng.Start(ctx, a.runtime, runtime.Request{
		Image:  a.img,
		Args:   argv,
		Binds:  []rootfs.Bind{{Source: a.driverDir, Target: runtime.DriverDir}},
		Limits: a.limits,
	})
	if err != nil {
		return nil, "", err
	}
	return sb, sb.Workspace, nil
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
	c, err := a.mgr.Default(ctx, lang, "")
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
	return c.Exec(ctx, req)
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
	return c.Exec(ctx, req)
}

// Workspace implements mcp.Engine.
func (a *serveAdapter) Workspace(ctx context.Context, contextID string) (string, error) {
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
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.Join(fmt.Errorf("tearing down contexts: %w", ctx.Err()),
			errors.New("some sandboxes may remain; vial gc removes them"))
	}
}
