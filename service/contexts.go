package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/runtime"
)

// Defaults for the context lifetimes (seed 002: a sixty-minute lifetime).
const (
	DefaultMaxSandboxes = 16
	DefaultIdleTimeout  = 15 * time.Minute
	DefaultMaxLifetime  = 60 * time.Minute
)

// maxTombs bounds the memory of why recently removed contexts went away.
const maxTombs = 1024

// entry is one live context and what the service knows of it.
type entry struct {
	c         *runtime.Context
	sb        Sandbox
	owner     string // the session that made it
	name      string
	env       Environment
	isDefault bool
	since     time.Time // handed to its owner; its lifetime counts from here
	pooled    bool      // it came warm from the pool
}

// registry holds every context of the service: it creates them through
// the provider under the admission bound, finds them for their owner
// only, keeps one default context per language and environment per
// session, expires idle and old ones (a janitor goroutine), and closes
// them. Safe for concurrent use.
type registry struct {
	svc *Service

	mu       sync.Mutex
	byID     map[string]*entry
	defaults map[defaultKey]string          // → context ID
	starting map[defaultKey]*pendingDefault // default contexts being created
	// replaced remembers why a session's default context went away, until
	// its replacement is handed out with a notice.
	replaced  map[defaultKey]string
	names     map[ownerName]bool // names in use, per session
	tombs     map[string]tomb    // recently removed ID → why
	tombOrder []string
	closed    bool

	stop    chan struct{}
	stopped chan struct{}
}

type defaultKey struct {
	owner string
	lang  Language
	env   string
}

type ownerName struct{ owner, name string }

type pendingDefault struct {
	done chan struct{}
	e    *entry
	err  error
}

type tomb struct{ owner, why string }

func newRegistry(svc *Service) *registry {
	r := &registry{
		svc:      svc,
		byID:     map[string]*entry{},
		defaults: map[defaultKey]string{},
		starting: map[defaultKey]*pendingDefault{},
		replaced: map[defaultKey]string{},
		names:    map[ownerName]bool{},
		tombs:    map[string]tomb{},
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	go r.janitor()
	return r
}

// create starts a new context for owner in env — a warm one from the pool
// when ws is nil (a private workspace) and one is there, else cold.
func (r *registry) create(ctx context.Context, owner string, lang Language, name string, env Environment, ws Workspace, isDefault bool) (*entry, error) {
	return r.register(owner, name, isDefault, func() (*entry, error) {
		if ws == nil {
			m, err := r.svc.pool.take(ctx, poolKey{env.Name, lang, false}, env)
			if err != nil {
				return nil, err
			}
			if m != nil {
				return r.fromMember(owner, name, env, m, isDefault), nil
			}
		}
		return r.start(ctx, owner, lang, name, env, ws, isDefault)
	})
}

// fromMember makes a warm pool member owner's context.
func (r *registry) fromMember(owner, name string, env Environment, m *member, isDefault bool) *entry {
	r.svc.log.Info("context created", "context", m.c.ID(), "session", owner, "language", string(m.c.Language()), "environment", env.Name, "name", name, "pooled", true)
	return &entry{c: m.c, sb: m.sb, owner: owner, name: name, env: env, isDefault: isDefault, since: time.Now(), pooled: true}
}

// register adds the context that start makes under owner's name.
func (r *registry) register(owner, name string, isDefault bool, start func() (*entry, error)) (*entry, error) {
	if err := r.reserveName(owner, name, isDefault); err != nil {
		return nil, err
	}
	e, err := start()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if !isDefault && name != "" {
			delete(r.names, ownerName{owner, name})
		}
		return nil, err
	}
	if r.closed {
		go e.c.Close()
		return nil, errorf(errdefs.ErrUnavailable, "vial is shutting down")
	}
	r.byID[e.c.ID()] = e
	return e, nil
}

// reserveName takes name among owner's contexts ("" and defaults need
// none).
func (r *registry) reserveName(owner, name string, isDefault bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errorf(errdefs.ErrUnavailable, "vial is shutting down")
	}
	if name == "" || isDefault {
		return nil
	}
	if r.names[ownerName{owner, name}] {
		for _, e := range r.byID {
			if e.owner == owner && e.name == name && !e.isDefault {
				return errorf(errdefs.ErrAlreadyExists, "a context named %q exists (%s); choose another name or stop it first", name, e.c.ID())
			}
		}
		return errorf(errdefs.ErrAlreadyExists, "a context named %q is being created", name)
	}
	r.names[ownerName{owner, name}] = true
	return nil
}

// start takes an admission slot, starts the sandbox and waits for its
// driver. The slot is released when the sandbox is closed, whatever
// closes it (a stop, an expiry, a death).
func (r *registry) start(ctx context.Context, owner string, lang Language, name string, env Environment, ws Workspace, isDefault bool) (*entry, error) {
	svc := r.svc
	release, err := svc.adm.acquire(ctx, "a new context")
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	sb, err := svc.provider.Start(ctx, StartRequest{Language: lang, Env: env, Workspace: ws, DriverEnv: svc.driverEnv()})
	if err != nil {
		release()
		return nil, startError(lang, env, err)
	}
	co := svc.opts.Context
	co.ID = runtime.NewContextID()
	co.Name = name
	co.Language = lang
	co.Environment = env.Name
	co.Logger = svc.log
	c, err := runtime.NewContext(ctx, &admitted{Sandbox: sb, release: release}, co)
	if err != nil {
		return nil, startError(lang, env, err)
	}
	svc.log.Info("context created", "context", c.ID(), "session", owner, "language", string(lang), "environment", env.Name, "name", name, "took", time.Since(t0).Round(time.Microsecond))
	svc.publish(observe.Event{Kind: observe.KindSandbox, Action: "start", Session: owner, Context: c.ID(),
		Language: string(lang), Environment: env.Name, Runtime: env.Runtime, Image: env.Image, Duration: time.Since(t0)})
	return &entry{c: c, sb: sb, owner: owner, name: name, env: env, isDefault: isDefault, since: time.Now()}, nil
}

// startError classifies a failure to start a sandbox: errors of a class
// keep it; anything else means the host could not do it.
func startError(lang Language, env Environment, err error) error {
	if errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsResourceExhausted(err) ||
		errdefs.IsUnavailable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if _, ok := PublicMessage(err); ok {
			return err
		}
		return fmt.Errorf("starting %s sandbox: %w", lang, err)
	}
	return fmt.Errorf("starting %s sandbox: %w: %w", lang, err, errdefs.ErrUnavailable)
}

// admitted releases an admission slot once, when its sandbox is closed.
type admitted struct {
	Sandbox
	release func()
	once    sync.Once
}

func (a *admitted) Close() error {
	err := a.Sandbox.Close()
	a.once.Do(a.release)
	return err
}

// PeakMemory passes on the sandbox's cheap high-water-mark read (see
// runtime.Context), which embedding the interface would hide.
func (a *admitted) PeakMemory() (uint64, error) {
	if pr, ok := a.Sandbox.(interface{ PeakMemory() (uint64, error) }); ok {
		return pr.PeakMemory()
	}
	u, err := a.Sandbox.Usage()
	return u.PeakMemory, err
}

// get returns owner's context id. Another session's context is reported
// exactly like one that does not exist: a session learns nothing of
// others. A dead context is returned as is (its Exec reports the death).
func (r *registry) get(owner, id string) (*entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok && e.owner == owner {
		return e, nil
	}
	if t, ok := r.tombs[id]; ok && t.owner == owner {
		return nil, errorf(errdefs.ErrNotFound, "context %s %s", id, t.why)
	}
	if !runtime.ValidContextID(id) {
		return nil, errorf(errdefs.ErrNotFound, "no context %q", human.Trunc(id, 64))
	}
	return nil, errorf(errdefs.ErrNotFound, "no context %s (list_contexts shows yours)", id)
}

// defaultContext returns owner's default context for lang in env,
// creating it on first use or when the previous one died or expired.
// Concurrent callers share one creation. notice is set when the context is
// a replacement: the caller must tell the model its state was reset.
func (r *registry) defaultContext(ctx context.Context, owner string, lang Language, env Environment, ws workspaceOwner) (e *entry, notice string, err error) {
	key := defaultKey{owner, lang, env.Name}
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, "", errorf(errdefs.ErrUnavailable, "vial is shutting down")
		}
		if id, ok := r.defaults[key]; ok {
			if e, ok := r.byID[id]; ok {
				if dead, why := e.c.Dead(); !dead {
					r.mu.Unlock()
					return e, "", nil
				} else {
					r.replaced[key] = "died (" + why + ")"
				}
			}
			delete(r.defaults, key)
		}
		if p, ok := r.starting[key]; ok {
			r.mu.Unlock()
			select {
			case <-p.done:
				if p.err != nil {
					return nil, "", p.err
				}
				continue // look again: it may have died already
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
		}
		p := &pendingDefault{done: make(chan struct{})}
		r.starting[key] = p
		r.mu.Unlock()

		name := "default-" + string(lang)
		if env.Name != "" {
			name += "-" + env.Name
		}
		e, err = r.register(owner, name, true, func() (*entry, error) {
			// A session without a workspace yet takes a warm shared
			// member and its workspace becomes the session's.
			if !ws.hasWorkspace() {
				m, err := r.svc.pool.take(ctx, poolKey{env.Name, lang, true}, env)
				if err != nil {
					return nil, err
				}
				if m != nil {
					if ws.adopt(m.ws) {
						return r.fromMember(owner, name, env, m, true), nil
					}
					r.svc.pool.discard(m, "its session already had a workspace")
				}
			}
			w, err := ws.workspace(ctx)
			if err != nil {
				return nil, err
			}
			return r.start(ctx, owner, lang, name, env, w, true)
		})
		r.mu.Lock()
		delete(r.starting, key)
		if err == nil {
			r.defaults[key] = e.c.ID()
			if why, ok := r.replaced[key]; ok {
				delete(r.replaced, key)
				notice = fmt.Sprintf("This is a new default %s context: the previous one %s, so its variables, imports and running state are gone (files in /workspace are kept).", lang, why)
			}
		}
		p.e, p.err = e, err
		close(p.done)
		r.mu.Unlock()
		return e, notice, err
	}
}

// list returns a snapshot of owner's contexts ("" for every session's),
// oldest first.
func (r *registry) list(owner string) []ContextInfo {
	r.mu.Lock()
	es := make([]*entry, 0, len(r.byID))
	for _, e := range r.byID {
		if owner == "" || e.owner == owner {
			es = append(es, e)
		}
	}
	r.mu.Unlock()
	infos := make([]ContextInfo, 0, len(es))
	for _, e := range es {
		infos = append(infos, e.info())
	}
	slices.SortFunc(infos, func(a, b ContextInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return infos
}

// workspaceOwner is what a default context needs of its session: its
// shared workspace, made or adopted.
type workspaceOwner interface {
	workspace(ctx context.Context) (Workspace, error)
	hasWorkspace() bool
	adopt(Workspace) bool
}

func (e *entry) info() ContextInfo {
	ri := e.c.Info()
	return ContextInfo{
		ID:          ri.ID,
		Name:        e.name,
		Language:    ri.Language,
		Environment: e.env.Name,
		Default:     e.isDefault,
		Dead:        ri.Dead,
		Busy:        ri.Busy,
		Created:     e.since,
		LastUsed:    ri.LastUsed,
		Session:     e.owner,
	}
}

// stopContext closes owner's context id and forgets it ("" owner: any
// session's, for operators). Calls in progress end with Dead set.
func (r *registry) stopContext(owner, id string) error {
	r.mu.Lock()
	e, ok := r.byID[id]
	if !ok || (owner != "" && e.owner != owner) {
		r.mu.Unlock()
		_, err := r.get(owner, id)
		return err
	}
	r.removeLocked(e, "was stopped")
	r.mu.Unlock()
	return r.closeEntry(e, "stop", "stopped")
}

// closeEntry closes a removed context's sandbox and reports it.
func (r *registry) closeEntry(e *entry, action, why string) error {
	err := e.c.Close()
	r.svc.log.Info("context removed", "context", e.c.ID(), "session", e.owner, "reason", why)
	r.svc.publish(observe.Event{Kind: observe.KindSandbox, Action: action, Reason: why, Session: e.owner, Context: e.c.ID(),
		Language: string(e.c.Language()), Environment: e.env.Name})
	if err != nil {
		return fmt.Errorf("stopping context %s: %w", e.c.ID(), err)
	}
	return nil
}

// removeLocked forgets e, remembering why for its owner.
func (r *registry) removeLocked(e *entry, why string) {
	id := e.c.ID()
	delete(r.byID, id)
	if e.name != "" && !e.isDefault {
		delete(r.names, ownerName{e.owner, e.name})
	}
	for k, v := range r.defaults {
		if v == id {
			delete(r.defaults, k)
			if why != "was stopped" {
				r.replaced[k] = why
			}
		}
	}
	r.tombs[id] = tomb{e.owner, why}
	r.tombOrder = append(r.tombOrder, id)
	if len(r.tombOrder) > maxTombs {
		delete(r.tombs, r.tombOrder[0])
		r.tombOrder = r.tombOrder[1:]
	}
}

// closeOwner stops every context of owner, in parallel, and forgets the
// session's default bookkeeping.
func (r *registry) closeOwner(owner string) error {
	r.mu.Lock()
	var es []*entry
	for _, e := range r.byID {
		if e.owner == owner {
			es = append(es, e)
			r.removeLocked(e, "was stopped: its session ended")
		}
	}
	for k := range r.replaced {
		if k.owner == owner {
			delete(r.replaced, k)
		}
	}
	r.mu.Unlock()
	return r.closeAllOf(es, "session ended")
}

// closeAll stops the janitor and every context; the registry refuses new
// ones afterwards.
func (r *registry) closeAll() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	es := make([]*entry, 0, len(r.byID))
	for id, e := range r.byID {
		es = append(es, e)
		delete(r.byID, id)
	}
	r.mu.Unlock()
	close(r.stop)
	<-r.stopped
	return r.closeAllOf(es, "vial is shutting down")
}

func (r *registry) closeAllOf(es []*entry, why string) error {
	errs := make([]error, len(es))
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Go(func() { errs[i] = r.closeEntry(e, "stop", why) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *registry) janitor() {
	defer close(r.stopped)
	o := r.svc.opts
	shortest := 10 * time.Minute
	for _, d := range []time.Duration{o.IdleTimeout, o.MaxLifetime} {
		if d > 0 && d < shortest {
			shortest = d
		}
	}
	interval := o.JanitorInterval
	if interval <= 0 {
		interval = min(max(shortest/10, time.Second), time.Minute)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-tick.C:
			r.expire(now)
		}
	}
}

// expire closes contexts past their idle timeout or lifetime, and forgets
// dead ones that have been dead for an idle timeout (their death was
// reported to whoever used them).
func (r *registry) expire(now time.Time) {
	o := r.svc.opts
	type victim struct {
		e   *entry
		why string
	}
	var due []victim
	r.mu.Lock()
	for _, e := range r.byID {
		info := e.c.Info()
		var why string
		switch {
		case o.MaxLifetime > 0 && now.Sub(e.since) >= o.MaxLifetime:
			// Even a busy context: the lifetime is a hard limit.
			why = fmt.Sprintf("expired: it reached the maximum lifetime of %v", o.MaxLifetime)
		case o.IdleTimeout > 0 && !info.Busy && now.Sub(info.LastUsed) >= o.IdleTimeout:
			if info.Dead {
				why = "died and was removed"
			} else {
				why = fmt.Sprintf("expired: it was idle for %v", o.IdleTimeout)
			}
		default:
			continue
		}
		r.removeLocked(e, why)
		due = append(due, victim{e, why})
	}
	r.mu.Unlock()
	for _, v := range due {
		if err := r.closeEntry(v.e, "expire", v.why); err != nil {
			r.svc.log.Warn("closing expired context", "context", v.e.c.ID(), "err", err)
		}
	}
}
