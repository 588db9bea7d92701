package downstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// Manager holds the connections to the configured downstream servers and
// offers their tools. It is safe for concurrent use. A failing server
// affects only its own tools: every method keeps working for the others.
type Manager struct {
	opts    Options
	log     *slog.Logger
	budget  int
	servers map[string]*server
	names   []string // sorted

	life   context.Context
	stop   context.CancelFunc
	closed atomic.Bool

	changed chan struct{} // coalesces OnToolsChanged
	wg      sync.WaitGroup
}

// Tool is one downstream tool as vial offers it.
type Tool struct {
	// Server is the server's name; Remote the tool's name on the server.
	Server, Remote string
	// Def is the definition to offer: Name is "<Server>__<Remote>" (with
	// any character of Remote outside [A-Za-z0-9_-] made "_"), Description
	// starts by naming the server, the input and output schemas are the
	// server's own, byte for byte (RawInputSchema, RawOutputSchema), and
	// Annotations are the server's hints, which are untrusted: a server may
	// call any tool read-only.
	Def mcpgo.Tool
}

// Status is one server's state, for `vial doctor` and the log.
type Status struct {
	Name      string
	Title     string
	Transport Transport
	Sandboxed bool
	AutoStart bool
	State     State
	Since     time.Time // when State was entered
	// LastError is the most recent failure (kept after a recovery, with
	// its time), "" if none.
	LastError   string
	LastErrorAt time.Time
	// Restarts counts connects after the first (after a crash, a failed
	// connect or an ended session).
	Restarts int
	// Failures counts consecutive failures; RetryAt, if not zero, is when
	// the server may be tried again.
	Failures int
	RetryAt  time.Time
	// Tools is how many tools the server offers through vial; Skipped
	// says which it listed but vial does not offer, and why.
	Tools   int
	Skipped []string
	// From the server's initialize answer.
	ServerName, ServerVersion, ProtocolVersion string
}

// NewManager checks opts and returns a Manager; nothing is started yet
// (see Start). Every invalid server is reported, joined, with
// errdefs.ErrInvalidArgument; names must be unique.
func NewManager(opts Options) (*Manager, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ClientVersion == "" {
		opts.ClientVersion = "dev"
	}
	budget := opts.ResponseBudget
	if budget == 0 {
		budget = DefaultResponseBudget
	}
	var errs []error
	if budget < minResponseBudget {
		errs = append(errs, fmt.Errorf("response budget %d is below %d bytes: %w", budget, minResponseBudget, errdefs.ErrInvalidArgument))
	}
	life, stop := context.WithCancel(context.Background())
	m := &Manager{opts: opts, log: log, budget: budget, servers: map[string]*server{}, life: life, stop: stop, changed: make(chan struct{}, 1)}
	for _, cfg := range opts.Servers {
		if err := cfg.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := m.servers[cfg.Name]; dup {
			errs = append(errs, fmt.Errorf("mcp server %q is configured twice: %w", cfg.Name, errdefs.ErrInvalidArgument))
			continue
		}
		cfg.Settings = cfg.Settings.withDefaults()
		cfg.Command = slices.Clone(cfg.Command)
		cfg.Env = slices.Clone(cfg.Env)
		red := newRedactor(urlSecrets(cfg.URL, cfg.BearerToken)...)
		s := &server{
			m: m, cfg: cfg, red: red,
			log:    slog.New(&redactHandler{next: log.Handler(), red: red, max: slog.LevelError + 4}).With("server", cfg.Name),
			libLog: slog.New(&redactHandler{next: log.Handler(), red: red, max: slog.LevelDebug}).With("server", cfg.Name, "from", "mcp-go"),
			state:  StateIdle, since: time.Now(), tools: map[string]remoteTool{},
		}
		if cfg.Disabled {
			s.state = StateDisabled
		}
		if cfg.cleartextToken() {
			s.log.Warn("the bearer token is sent unencrypted (http:// to a host that is not this one); use https", "url", safeURL(cfg.URL))
		}
		m.servers[cfg.Name] = s
		m.names = append(m.names, cfg.Name)
	}
	if err := errors.Join(errs...); err != nil {
		stop()
		return nil, err
	}
	slices.Sort(m.names)
	if opts.OnToolsChanged != nil {
		m.wg.Add(1)
		go m.notifier()
	}
	return m, nil
}

func (m *Manager) isClosed() bool { return m.closed.Load() }

// toolsChanged asks for OnToolsChanged to be called; calls coalesce.
func (m *Manager) toolsChanged() {
	if m.opts.OnToolsChanged == nil || m.isClosed() {
		return
	}
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *Manager) notifier() {
	defer m.wg.Done()
	for {
		select {
		case <-m.life.Done():
			return
		case <-m.changed:
			m.opts.OnToolsChanged()
		}
	}
}

// each runs f for every enabled server (all when all is set) concurrently
// and waits.
func (m *Manager) each(all bool, f func(*server)) {
	var wg sync.WaitGroup
	for _, name := range m.names {
		s := m.servers[name]
		if s.cfg.Disabled || !all && !s.cfg.AutoStart {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(s)
		}()
	}
	wg.Wait()
}

// Start connects the enabled servers with AutoStart and lists their tools,
// all at once, each within its ConnectionTimeout (ctx only bounds the
// wait). The error joins every server's failure, for the log; the Manager
// works regardless, and a failed server is tried again on its next use.
func (m *Manager) Start(ctx context.Context) error {
	var mu sync.Mutex
	var errs []error
	m.each(false, func(s *server) {
		if err := s.refresh(ctx, 0); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// Tools returns the tools of every enabled server, sorted by name,
// connecting the servers not connected yet (this is the first use of a
// server without AutoStart) and listing those whose list is not cached
// (see Settings.CacheTools). All servers are asked at once; a server that
// cannot be reached contributes the tools of its last listing, if any, and
// its error is in Status and the log. ctx bounds the wait.
func (m *Manager) Tools(ctx context.Context) []Tool {
	var mu sync.Mutex
	var out []Tool
	m.each(true, func(s *server) {
		ts := s.toolList(ctx)
		mu.Lock()
		for _, t := range ts {
			out = append(out, Tool{Server: s.cfg.Name, Remote: t.remote, Def: t.def})
		}
		mu.Unlock()
	})
	slices.SortFunc(out, func(a, b Tool) int { return strings.Compare(a.Def.Name, b.Def.Name) })
	return out
}

// Call calls the tool vial offers as name (from Tools) with args (the
// client's arguments, passed on as they are; nil sends none) and returns
// the server's result: content, structuredContent and isError, cut to the
// response budget with a notice, and with the server's bearer token
// replaced wherever it appears. A tool that failed on the server is a
// result with IsError set, not an error.
//
// The server is connected first if it is not (within ConnectionTimeout,
// retrying transient failures); the call itself is bounded by ToolTimeout
// and sent once. An error names the server, is an *Error (see its classes)
// unless the tool is unknown (errdefs.ErrNotFound), and is fit to show the
// model as an isError result.
func (m *Manager) Call(ctx context.Context, name string, args any) (*mcpgo.CallToolResult, error) {
	srv, _, _ := SplitName(name)
	s := m.servers[srv]
	if s == nil {
		return nil, fmt.Errorf("no downstream MCP tool %q: no server %q is configured: %w", bound(name, 160), bound(srv, 80), errdefs.ErrNotFound)
	}
	s.mu.Lock()
	t, ok := s.tools[name]
	listed := s.listed
	s.mu.Unlock()
	if !ok {
		why := "it is not among the tools it offers"
		if !listed {
			why = "its tools have not been listed yet"
		}
		return nil, fmt.Errorf("mcp server %q has no tool %q: %s: %w", s.cfg.Name, bound(name, 160), why, errdefs.ErrNotFound)
	}
	return s.call(ctx, t, args)
}

// Status returns every configured server's state, sorted by name.
func (m *Manager) Status() []Status {
	out := make([]Status, 0, len(m.names))
	for _, name := range m.names {
		out = append(out, m.servers[name].status())
	}
	return out
}

// Close disconnects every server and stops their processes (in parallel,
// each within a few seconds); later calls fail with errdefs.ErrUnavailable.
// It is safe to call more than once.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.stop()
	var wg sync.WaitGroup
	for _, name := range m.names {
		s := m.servers[name]
		s.mu.Lock()
		c, d := s.cur, s.dialing
		s.cur = nil
		if s.state != StateDisabled {
			s.setState(StateClosed)
		}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c != nil {
				c.close()
			}
			if d != nil {
				// A connect under way ends soon (its context is
				// cancelled) and closes what it started.
				<-d.done
			}
		}()
	}
	wg.Wait()
	m.wg.Wait()
	return nil
}
