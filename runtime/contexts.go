package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// StartFunc starts a sandbox running lang's driver (see DriverCommand) for
// the named environment ("" is the default one). It returns the transport
// to the driver and the host directory mounted at /workspace. The engine
// provides it; tests use host processes.
type StartFunc func(ctx context.Context, lang Language, env string) (Transport, string, error)

// Defaults for ManagerOptions.
const (
	DefaultMaxContexts = 16
	DefaultIdleTimeout = 15 * time.Minute
	DefaultMaxLifetime = 60 * time.Minute // seed 002
)

// ManagerOptions configure a ContextManager. Zero values take the
// defaults; a negative IdleTimeout or MaxLifetime disables that limit.
type ManagerOptions struct {
	Start       StartFunc // required
	MaxContexts int       // live contexts at once, default contexts included
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// Context holds the per-context settings (timeouts, caps); its ID,
	// Name, Language, Environment and Workspace are filled in per context.
	Context ContextOptions
	Logger  *slog.Logger
	// JanitorInterval is how often expiry is checked; default a tenth of
	// the shorter limit, between 1 s and 1 min.
	JanitorInterval time.Duration
}

// CreateOptions describe a context to create.
type CreateOptions struct {
	Language    Language
	Name        string // optional; unique among live contexts
	Environment string // "" for the default environment
}

// ContextManager owns the contexts of one vial process: it creates them
// through StartFunc, finds them by ID, keeps one default context per
// language and environment, enforces the maximum count, the idle timeout
// and the maximum lifetime (a janitor goroutine), and closes them all at
// shutdown. Safe for concurrent use.
type ContextManager struct {
	opts ManagerOptions
	log  *slog.Logger

	mu        sync.Mutex
	contexts  map[string]*Context
	defaults  map[defaultKey]string          // → context ID
	starting  map[defaultKey]*pendingDefault // default contexts being created
	reserved  int                            // slots held by creations in progress
	tombs     map[string]string              // recently removed ID → why
	tombOrder []string
	closed    bool

	stop    chan struct{}
	stopped chan struct{}
}

type defaultKey struct {
	lang Language
	env  string
}

type pendingDefault struct {
	done chan struct{}
	c    *Context
	err  error
}

const maxTombs = 1024

// NewContextManager returns a manager and starts its janitor. Call
// CloseAll to stop both.
func NewContextManager(opts ManagerOptions) (*ContextManager, error) {
	if opts.Start == nil {
		return nil, fmt.Errorf("context manager needs a start function: %w", ErrInvalid)
	}
	if opts.MaxContexts <= 0 {
		opts.MaxContexts = DefaultMaxContexts
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxLifetime == 0 {
		opts.MaxLifetime = DefaultMaxLifetime
	}
	if opts.JanitorInterval <= 0 {
		shortest := time.Minute * 10
		for _, d := range []time.Duration{opts.IdleTimeout, opts.MaxLifetime} {
			if d > 0 && d < shortest {
				shortest = d
			}
		}
		opts.JanitorInterval = min(max(shortest/10, time.Second), time.Minute)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	opts.Context.Logger = log
	m := &ContextManager{
		opts:     opts,
		log:      log,
		contexts: map[string]*Context{},
		defaults: map[defaultKey]string{},
		starting: map[defaultKey]*pendingDefault{},
		tombs:    map[string]string{},
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	go m.janitor()
	return m, nil
}

// Create starts a new context. It fails with ErrExhausted when the maximum
// number of contexts is live, ErrInvalid for a bad language or a name in
// use, and ErrUnavailable when the sandbox or its driver cannot start.
func (m *ContextManager) Create(ctx context.Context, o CreateOptions) (*Context, error) {
	return m.create(ctx, o, false)
}

func (m *ContextManager) create(ctx context.Context, o CreateOptions, isDefault bool) (*Context, error) {
	if _, ok := driverFiles[o.Language]; !ok {
		return nil, fmt.Errorf("language %q (want python, javascript or bash): %w", o.Language, ErrInvalid)
	}
	uniqueName := o.Name
	if isDefault {
		uniqueName = "" // the default's name is descriptive only
	}
	if err := m.reserve(uniqueName); err != nil {
		return nil, err
	}
	c, err := m.start(ctx, o)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserved--
	if err != nil {
		return nil, err
	}
	if m.closed {
		go c.Close()
		return nil, fmt.Errorf("context manager is shut down: %w", ErrUnavailable)
	}
	m.contexts[c.ID()] = c
	return c, nil
}

// reserve takes a slot for a context being created.
func (m *ContextManager) reserve(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("context manager is shut down: %w", ErrUnavailable)
	}
	if name != "" {
		for _, c := range m.contexts {
			if c.opts.Name == name {
				if dead, _ := c.Dead(); !dead {
					return fmt.Errorf("a context named %q exists (%s): %w", name, c.ID(), ErrInvalid)
				}
			}
		}
	}
	if n := m.liveLocked() + m.reserved; n >= m.opts.MaxContexts {
		return fmt.Errorf("all %d contexts are in use (the maximum is %d); stop one with stop_context or wait for an idle one to expire: %w",
			n, m.opts.MaxContexts, ErrExhausted)
	}
	m.reserved++
	return nil
}

func (m *ContextManager) liveLocked() int {
	n := 0
	for _, c := range m.contexts {
		if dead, _ := c.Dead(); !dead {
			n++
		}
	}
	return n
}

func (m *ContextManager) start(ctx context.Context, o CreateOptions) (*Context, error) {
	t, ws, err := m.opts.Start(ctx, o.Language, o.Environment)
	if err != nil {
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExhausted) || errors.Is(err, ErrUnavailable) {
			return nil, fmt.Errorf("starting %s sandbox: %w", o.Language, err)
		}
		return nil, fmt.Errorf("starting %s sandbox: %w: %w", o.Language, err, ErrUnavailable)
	}
	co := m.opts.Context
	co.ID = NewContextID()
	co.Name = o.Name
	co.Language = o.Language
	co.Environment = o.Environment
	co.Workspace = ws
	c, err := NewContext(ctx, t, co)
	if err != nil {
		return nil, err
	}
	m.log.Info("context created", "context", c.ID(), "language", string(o.Language), "environment", o.Environment, "name", o.Name)
	return c, nil
}

// Get returns the context with the given ID. An unknown, expired or
// stopped ID is an ErrNotFound error saying which; a dead context is
// returned as is (its Exec reports the death).
func (m *ContextManager) Get(id string) (*Context, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.contexts[id]; ok {
		return c, nil
	}
	if why, ok := m.tombs[id]; ok {
		return nil, fmt.Errorf("context %s %s: %w", id, why, ErrNotFound)
	}
	if !ValidContextID(id) {
		return nil, fmt.Errorf("no context %q: %w", truncForError(id), ErrNotFound)
	}
	return nil, fmt.Errorf("no context %s: %w", id, ErrNotFound)
}

// Default returns the default context for lang in environment env,
// creating it on first use or when the previous one died or expired.
// Concurrent callers share one creation.
func (m *ContextManager) Default(ctx context.Context, lang Language, env string) (*Context, error) {
	key := defaultKey{lang, env}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, fmt.Errorf("context manager is shut down: %w", ErrUnavailable)
		}
		if id, ok := m.defaults[key]; ok {
			if c, ok := m.contexts[id]; ok {
				if dead, _ := c.Dead(); !dead {
					m.mu.Unlock()
					return c, nil
				}
			}
			delete(m.defaults, key)
		}
		if p, ok := m.starting[key]; ok {
			m.mu.Unlock()
			select {
			case <-p.done:
				if p.err != nil {
					return nil, p.err
				}
				continue // look again: it may have died already
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		p := &pendingDefault{done: make(chan struct{})}
		m.starting[key] = p
		m.mu.Unlock()

		name := "default-" + string(lang)
		if env != "" {
			name += "-" + env
		}
		c, err := m.create(ctx, CreateOptions{Language: lang, Name: name, Environment: env}, true)
		m.mu.Lock()
		delete(m.starting, key)
		if err == nil {
			m.defaults[key] = c.ID()
		}
		p.c, p.err = c, err
		close(p.done)
		m.mu.Unlock()
		return c, err
	}
}

// List returns a snapshot of all contexts, oldest first.
func (m *ContextManager) List() []ContextInfo {
	m.mu.Lock()
	cs := make([]*Context, 0, len(m.contexts))
	for _, c := range m.contexts {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	infos := make([]ContextInfo, 0, len(cs))
	for _, c := range cs {
		infos = append(infos, c.Info())
	}
	slices.SortFunc(infos, func(a, b ContextInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return infos
}

// Stop closes the context and forgets it. Calls in progress end with
// Dead set. An unknown ID is an ErrNotFound error.
func (m *ContextManager) Stop(id string) error {
	c, err := m.remove(id, "was stopped")
	if err != nil {
		return err
	}
	m.log.Info("context stopped", "context", id)
	if err := c.Close(); err != nil {
		return fmt.Errorf("stopping context %s: %w", id, err)
	}
	return nil
}

func (m *ContextManager) remove(id, why string) (*Context, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.contexts[id]
	if !ok {
		if w, ok := m.tombs[id]; ok {
			return nil, fmt.Errorf("context %s %s: %w", id, w, ErrNotFound)
		}
		return nil, fmt.Errorf("no context %s: %w", truncForError(id), ErrNotFound)
	}
	delete(m.contexts, id)
	for k, v := range m.defaults {
		if v == id {
			delete(m.defaults, k)
		}
	}
	m.tombs[id] = why
	m.tombOrder = append(m.tombOrder, id)
	if len(m.tombOrder) > maxTombs {
		delete(m.tombs, m.tombOrder[0])
		m.tombOrder = m.tombOrder[1:]
	}
	return c, nil
}

// CloseAll stops the janitor and closes every context, in parallel. The
// manager refuses new contexts afterwards. It returns the joined errors of
// the closes.
func (m *ContextManager) CloseAll() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	cs := make([]*Context, 0, len(m.contexts))
	for id, c := range m.contexts {
		cs = append(cs, c)
		delete(m.contexts, id)
	}
	m.mu.Unlock()
	close(m.stop)
	<-m.stopped
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			if err := c.Close(); err != nil {
				errs[i] = fmt.Errorf("closing context %s: %w", c.ID(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *ContextManager) janitor() {
	defer close(m.stopped)
	tick := time.NewTicker(m.opts.JanitorInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-tick.C:
			m.expire(now)
		}
	}
}

// expire closes contexts past their idle timeout or lifetime, and forgets
// dead ones that have been dead for an idle timeout (their death was
// reported to whoever used them).
func (m *ContextManager) expire(now time.Time) {
	type victim struct {
		c   *Context
		id  string
		why string
	}
	var due []victim
	m.mu.Lock()
	for id, c := range m.contexts {
		info := c.Info()
		var why string
		switch {
		case m.opts.MaxLifetime > 0 && now.Sub(info.Created) >= m.opts.MaxLifetime:
			// Even a busy context: the lifetime is a hard limit.
			why = fmt.Sprintf("expired: it reached the maximum lifetime of %v", m.opts.MaxLifetime)
		case m.opts.IdleTimeout > 0 && !info.Busy && now.Sub(info.LastUsed) >= m.opts.IdleTimeout:
			if info.Dead {
				why = "died and was removed"
			} else {
				why = fmt.Sprintf("expired: it was idle for %v", m.opts.IdleTimeout)
			}
		default:
			continue
		}
		due = append(due, victim{c, id, why})
	}
	m.mu.Unlock()
	var victims []victim
	for _, v := range due {
		if _, err := m.remove(v.id, v.why); err == nil {
			victims = append(victims, v)
		}
	}
	for _, v := range victims {
		m.log.Info("context removed", "context", v.c.ID(), "reason", v.why)
		if err := v.c.Close(); err != nil {
			m.log.Warn("closing expired context", "context", v.c.ID(), "err", err)
		}
	}
}
