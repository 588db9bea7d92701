package service

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/egress"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/local"
)

// hostWorkspaceDir is a workspace directory of a runtime.WorkspaceSet;
// user, if set, is the host uid every sandbox on it runs as (a volume
// workspace's, see runtime.NewWorkspace).
type hostWorkspaceDir struct {
	set  *runtime.WorkspaceSet
	dir  string
	user *hostuid.Lease
}

func (w *hostWorkspaceDir) Files() Files { return HostFiles{Dir: w.dir} }
func (w *hostWorkspaceDir) Close() error { return w.set.Remove(w.dir) }

// workspaceDir returns the host directory of a workspace this package
// made; a foreign Workspace cannot be bound.
func workspaceDir(ws Workspace) (string, error) {
	w, err := asHostWorkspace(ws)
	if w == nil {
		return "", err
	}
	return w.dir, nil
}

func asHostWorkspace(ws Workspace) (*hostWorkspaceDir, error) {
	if ws == nil {
		return nil, nil
	}
	w, ok := ws.(*hostWorkspaceDir)
	if !ok {
		return nil, fmt.Errorf("workspace %T is not on this host: %w", ws, errdefs.ErrInvalidArgument)
	}
	return w, nil
}

// workspace returns the directory of a shared workspace and the uid its
// sandboxes run as; none ("", nil) gives the sandbox a volume of its own.
func (p *EngineProvider) workspace(ws Workspace) (string, *hostuid.Lease, error) {
	w, err := asHostWorkspace(ws)
	if w == nil {
		return "", nil, err
	}
	return w.dir, w.user, nil
}

// EngineProvider starts sandboxes on the runtime engine: each context's
// driver runs as the init of a hardened OCI sandbox under the
// environment's runtime, image and limits, with the drivers bound
// read-only.
type EngineProvider struct {
	// Events receives the egress decisions of networked sandboxes; Log
	// their log lines. Set them before the first Start.
	Events *observe.Bus
	Log    *slog.Logger

	eng       *runtime.Engine
	resolve   func(name string) (*rootfs.Image, error)
	driverDir string
	ws        *runtime.WorkspaceSet

	mu        sync.Mutex
	images    map[string]*rootfs.Image
	pkgChecks map[string]error // environment, image → checkPackages' answer
}

// NewEngineProvider installs the context drivers under the engine's state
// directory and opens a workspace set. resolve turns an image name of the
// configuration into an image.
func NewEngineProvider(eng *runtime.Engine, resolve func(name string) (*rootfs.Image, error)) (*EngineProvider, error) {
	driverDir := filepath.Join(eng.StateDir(), "drivers")
	if err := runtime.WriteDrivers(driverDir); err != nil {
		return nil, fmt.Errorf("installing context drivers: %w", err)
	}
	ws, err := eng.OpenWorkspaces()
	if err != nil {
		return nil, err
	}
	return &EngineProvider{eng: eng, resolve: resolve, driverDir: driverDir, ws: ws, images: map[string]*rootfs.Image{}, pkgChecks: map[string]error{}}, nil
}

// Image resolves an image name once and remembers it.
func (p *EngineProvider) Image(name string) (*rootfs.Image, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if img, ok := p.images[name]; ok {
		return img, nil
	}
	img, err := p.resolve(name)
	if err != nil {
		return nil, err
	}
	p.images[name] = img
	return img, nil
}

// ImageDigest implements ImageDigester.
func (p *EngineProvider) ImageDigest(name string) string {
	img, err := p.Image(name)
	if err != nil || img.Digest == "" {
		return name
	}
	return img.Digest
}

// checkPackages refuses to start a named environment whose image lacks
// packages its template declares: the model chose the environment for
// them, and a sandbox without them would fail later and less clearly. The
// agent's own environment is the operator's choice and is said at start-up
// instead (vial serve's and config validate's warnings). An image whose
// package database cannot be read is refused too: that it provides the
// packages cannot be shown.
func (p *EngineProvider) checkPackages(env Environment, img *rootfs.Image) error {
	if env.Name == "" || len(env.Packages) == 0 {
		return nil
	}
	key := env.Name + "\x00" + img.Digest + "\x00" + img.Root + "\x00" + strings.Join(env.Packages, ",")
	p.mu.Lock()
	err, done := p.pkgChecks[key]
	p.mu.Unlock()
	if done {
		return err
	}
	missing, err := img.MissingPackages(env.Packages)
	switch {
	case err != nil:
		err = fmt.Errorf("environment %q declares packages (%s), and image %q cannot show it has them: %v; the operator builds an image with them: %s: %w",
			env.Name, strings.Join(env.Packages, ", "), env.Image, err, env.BuildCommand, errdefs.ErrFailedPrecondition)
	case len(missing) > 0:
		err = fmt.Errorf("environment %q declares packages its image %q lacks (%s); the operator builds them in with: %s (and restarts vial serve): %w",
			env.Name, env.Image, strings.Join(missing, ", "), env.BuildCommand, errdefs.ErrFailedPrecondition)
	}
	p.mu.Lock()
	p.pkgChecks[key] = err
	p.mu.Unlock()
	return err
}

// Check verifies that env's runtime is installed and its image resolves:
// the start-up check.
func (p *EngineProvider) Check(env Environment) error {
	if _, err := p.eng.Backend(env.Runtime); err != nil {
		return err
	}
	_, err := p.Image(env.Image)
	return err
}

// Start implements Provider.
func (p *EngineProvider) Start(ctx context.Context, r StartRequest) (Sandbox, error) {
	ws, user, err := p.workspace(r.Workspace)
	if err != nil {
		return nil, err
	}
	argv, err := runtime.SandboxCommand(r.Language, runtime.DriverDir)
	if err != nil {
		return nil, err
	}
	img, err := p.Image(r.Env.Image)
	if err != nil {
		if r.Env.Name != "" {
			// The image of a named environment may not be built yet: say
			// so to the model, which can pick another environment or pass
			// on the store's hint (the command that gets the image) to its
			// user. Host paths in the text are scrubbed by the front end.
			return nil, fmt.Errorf("environment %q: image %q is not available on this host (%v): %w", r.Env.Name, r.Env.Image, err, errdefs.ErrNotFound)
		}
		return nil, err
	}
	if err := p.checkPackages(r.Env, img); err != nil {
		return nil, err
	}
	req := runtime.Request{
		Image:     img,
		Args:      argv,
		Env:       sandboxEnv(r.Env.Env, r.DriverEnv),
		Binds:     []rootfs.Bind{{Source: p.driverDir, Target: runtime.DriverDir}},
		Limits:    r.Env.Limits,
		Workspace: ws,
		User:      user,
	}
	return p.start(ctx, r.Env, req)
}

// start starts req under env's runtime, with env's network if it has one.
func (p *EngineProvider) start(ctx context.Context, env Environment, req runtime.Request) (Sandbox, error) {
	var net *egress.Network
	var id atomic.Pointer[string] // the sandbox's, for its network's events
	if env.Network != nil {
		var err error
		sandbox := func() string {
			if p := id.Load(); p != nil {
				return *p
			}
			return ""
		}
		if net, req.Network, err = p.openNetwork(ctx, env.Network, sandbox); err != nil {
			return nil, err
		}
	}
	sb, err := p.eng.Start(ctx, env.Runtime, req)
	if err != nil {
		if net != nil {
			net.Close()
		}
		return nil, err
	}
	id.Store(&sb.ID)
	if net != nil {
		return networked{engineSandbox{sb}, net}, nil
	}
	return engineSandbox{sb}, nil
}

// StartProgram implements ProgramStarter: the program runs as the init of
// a hardened sandbox of r.Environment (its image, runtime and limits), with no
// network, its binds read-only, and r.Workspace at /workspace.
func (p *EngineProvider) StartProgram(ctx context.Context, r ProgramRequest) (Sandbox, error) {
	ws, user, err := p.workspace(r.Workspace)
	if err != nil {
		return nil, err
	}
	if len(r.Argv) == 0 {
		return nil, fmt.Errorf("no program: %w", errdefs.ErrInvalidArgument)
	}
	img, err := p.Image(r.Environment.Image)
	if err != nil {
		return nil, err
	}
	var binds []rootfs.Bind
	for _, b := range r.Binds {
		if !filepath.IsAbs(b) || filepath.Clean(b) != b {
			return nil, fmt.Errorf("bind %q: must be an absolute, clean path: %w", b, errdefs.ErrInvalidArgument)
		}
		binds = append(binds, rootfs.Bind{Source: b, Target: b})
	}
	return p.start(ctx, r.Environment, runtime.Request{
		Image:     img,
		Args:      r.Argv,
		Env:       append(append([]string{}, r.Environment.Env...), r.Env...),
		Binds:     binds,
		Limits:    r.Environment.Limits,
		Workspace: ws,
		User:      user,
	})
}

// engineSandbox is a runtime sandbox with its workspace on this host.
type engineSandbox struct{ *runtime.Sandbox }

func (s engineSandbox) Files() Files { return HostFiles{Dir: s.Workspace} }

// NewWorkspace implements Provider: a volume of env's disk limit (bytes
// and inodes), with a host uid of its own that every sandbox on it runs
// as, so a session's default contexts can change each other's files and
// share per-user kernel limits with no other sandbox.
func (p *EngineProvider) NewWorkspace(ctx context.Context, env Environment) (Workspace, error) {
	ws, err := p.ws.NewVolume(env.Limits)
	if err != nil {
		return nil, err
	}
	return &hostWorkspaceDir{set: p.ws, dir: ws.Path(), user: ws.User()}, nil
}

// Notice implements Provider: sandboxed results need none.
func (p *EngineProvider) Notice() string { return "" }

// Close implements Provider: it removes the workspace set.
func (p *EngineProvider) Close() error { return p.ws.Close() }

// LocalProvider runs context drivers as host processes with no isolation
// (local mode). Only the operator chooses it; every result says so.
type LocalProvider struct {
	driverDir string
	ws        *runtime.WorkspaceSet
}

// NewLocalProvider installs the drivers under stateDir and takes its
// workspaces from ws.
func NewLocalProvider(stateDir string, ws *runtime.WorkspaceSet) (*LocalProvider, error) {
	driverDir := filepath.Join(stateDir, "drivers")
	if err := runtime.WriteDrivers(driverDir); err != nil {
		return nil, fmt.Errorf("installing context drivers: %w", err)
	}
	return &LocalProvider{driverDir: driverDir, ws: ws}, nil
}

// Start implements Provider.
func (p *LocalProvider) Start(ctx context.Context, r StartRequest) (Sandbox, error) {
	dir, err := workspaceDir(r.Workspace)
	if err != nil {
		return nil, err
	}
	var cleanup func() error
	if dir == "" {
		if dir, err = p.ws.New(""); err != nil {
			return nil, err
		}
		cleanup = func() error { return p.ws.Remove(dir) }
	}
	t, err := local.Start(r.Language, p.driverDir, dir, sandboxEnv(r.Env.Env, r.DriverEnv), r.Env.Limits.WithDefaults(), cleanup)
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	return localSandbox{t, dir}, nil
}

type localSandbox struct {
	*local.Transport
	dir string
}

func (s localSandbox) Files() Files { return HostFiles{Dir: s.dir} }

// NewWorkspace implements Provider: a plain host directory, not under a
// disk quota (local mode runs code on the host, as the operator chose).
func (p *LocalProvider) NewWorkspace(ctx context.Context, env Environment) (Workspace, error) {
	dir, err := p.ws.New("")
	if err != nil {
		return nil, err
	}
	return &hostWorkspaceDir{set: p.ws, dir: dir}, nil
}

// Notice implements Provider.
func (p *LocalProvider) Notice() string { return local.Banner }

// Close implements Provider.
func (p *LocalProvider) Close() error { return p.ws.Close() }
