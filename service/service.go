package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/egress"
	"github.com/vial-run/vial/internal/errclass"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/runtime"
)

// Options configure a Service. Provider is required; every other zero
// field has a documented default.
type Options struct {
	Provider Provider
	// Default is the agent's own environment: default contexts, one-shot
	// runs and create_context without an environment use it.
	Default Environment
	// Environments are the named environments create_context may select;
	// nil when the configuration offers none.
	Environments map[string]Environment
	// Limits bound each call; zero fields take DefaultLimits.
	Limits Limits
	// MaxSandboxes bounds the sandboxes alive at once: every context
	// (default ones included) and every one-shot run holds one slot.
	// Default DefaultMaxSandboxes.
	MaxSandboxes int
	// AdmissionWait is how long a request for a sandbox waits for a free
	// slot before it is refused; 0 refuses at once. MaxWaiting bounds the
	// requests waiting (default 64).
	AdmissionWait time.Duration
	MaxWaiting    int
	// IdleTimeout stops a context unused for this long; MaxLifetime one
	// this long after it started. 0 takes the defaults, negative disables.
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// JanitorInterval is how often expiry is checked (default a tenth of
	// the shorter limit, between 1 s and 1 min).
	JanitorInterval time.Duration
	// Context holds per-context settings (interrupt grace, output cap, start
	// timeout); its identity fields are set per context.
	Context runtime.ContextOptions
	// Pool keeps sandboxes warm; its zero value keeps none.
	Pool PoolOptions
	// Cache caches execute_python results; its zero value caches none.
	Cache CacheOptions
	// HTTP is the network policy of http_request and fetch_url, which
	// vial runs itself; nil refuses them.
	HTTP *NetworkPolicy
	// HTTPRootCAs are the roots http_request trusts; nil means the host's.
	HTTPRootCAs *x509.CertPool
	// Policy decides every call (see authorize); nil means no policy is
	// configured and every offered tool runs without asking.
	Policy *policy.Rules
	// ApprovalTimeout bounds how long a person may take to approve a call
	// (hitl.timeout_seconds); 0 means DefaultApprovalTimeout.
	ApprovalTimeout time.Duration
	// Agent names the agent whose configuration applies, for records.
	Agent string
	// OperatorApprovals lets a call that needs approval, from a client
	// that cannot ask a person, wait for the operator's answer
	// (PendingApprovals, AnswerApproval: the page and the API) instead of
	// being denied at once.
	OperatorApprovals bool
	// Events receives every call and sandbox event; nil drops them.
	Events *observe.Bus
	// Log receives operational records; nil discards.
	Log *slog.Logger
}

// Service is the application core. It is safe for concurrent use.
type Service struct {
	opts     Options
	provider Provider
	limits   Limits
	log      *slog.Logger
	events   *observe.Bus
	adm      *admission
	reg      *registry
	pool     *pool
	cache    *resultCache

	client     *egress.Client
	clientErr  error
	clientOnce sync.Once

	approvals       *policy.Approvals
	approvalTimeout time.Duration
	queue           *approvalQueue

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
	oneShots sync.WaitGroup
}

// New validates o and returns a running Service; Close stops it.
func New(o Options) (*Service, error) {
	var errs []error
	if o.Provider == nil {
		errs = append(errs, errors.New("no sandbox provider"))
	}
	lim := o.Limits.withDefaults()
	if err := lim.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.MaxSandboxes < 0 || o.MaxWaiting < 0 || o.AdmissionWait < 0 {
		errs = append(errs, errors.New("negative sandbox bound"))
	}
	for name, e := range o.Environments {
		if name == "" || name != e.Name {
			errs = append(errs, fmt.Errorf("environment %q is filed under %q", e.Name, name))
		}
		if e.Network != nil {
			if err := e.Network.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
			}
		}
	}
	for _, n := range []*NetworkPolicy{o.Default.Network, o.HTTP} {
		if n != nil {
			if err := n.Validate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the service: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if o.MaxSandboxes == 0 {
		o.MaxSandboxes = DefaultMaxSandboxes
	}
	if o.MaxWaiting == 0 {
		o.MaxWaiting = 64
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxLifetime == 0 {
		o.MaxLifetime = DefaultMaxLifetime
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Policy != nil {
		if err := o.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("configuring the policy: %w: %w", errdefs.ErrInvalidArgument, err)
		}
	}
	if o.ApprovalTimeout <= 0 {
		o.ApprovalTimeout = DefaultApprovalTimeout
	}
	s := &Service{
		opts:            o,
		provider:        o.Provider,
		limits:          lim,
		log:             log,
		events:          o.Events,
		adm:             newAdmission(o.MaxSandboxes, o.AdmissionWait, o.MaxWaiting),
		sessions:        map[string]*Session{},
		approvals:       policy.NewApprovals(policy.ApprovalOptions{}),
		queue:           &approvalQueue{},
		approvalTimeout: o.ApprovalTimeout,
	}
	s.reg = newRegistry(s)
	s.pool = newPool(s, o.Pool)
	s.cache = newResultCache(o.Cache)
	if s.pool != nil {
		s.adm.evict = s.pool.evict
		s.pool.use(o.Default)
	}
	return s, nil
}

// Limits returns the call limits in force (defaults filled in).
func (s *Service) Limits() Limits { return s.limits }

// ApprovalTimeout is how long a person may take to approve a call.
func (s *Service) ApprovalTimeout() time.Duration { return s.approvalTimeout }

// Policy returns the rules in force; nil when none is configured.
func (s *Service) Policy() *policy.Rules { return s.opts.Policy }

// MaxSandboxes returns the admission bound.
func (s *Service) MaxSandboxes() int { return s.opts.MaxSandboxes }

// EnvironmentNames lists the environments a model may select, sorted.
func (s *Service) EnvironmentNames() []string {
	var names []string
	for _, n := range slices.Sorted(maps.Keys(s.opts.Environments)) {
		if s.opts.Environments[n].Refused == "" {
			names = append(names, n)
		}
	}
	return names
}

// environment returns the named environment ("" = the agent's own). The
// name comes from a model's argument: only the operator's environments can
// be selected, and never one that is refused.
func (s *Service) environment(name string) (Environment, error) {
	if name == "" {
		return s.opts.Default, nil
	}
	if s.opts.Environments == nil {
		return Environment{}, errorf(errdefs.ErrNotFound, "environment %q: no environments are configured (the operator starts vial serve with --agent or --config-dir to offer config/environments/*.toml)", human.Trunc(name, 64))
	}
	e, ok := s.opts.Environments[name]
	if !ok {
		return Environment{}, errorf(errdefs.ErrNotFound, "unknown environment %q (valid: %s)", human.Trunc(name, 64), s.validEnvironments())
	}
	if e.Refused != "" {
		return Environment{}, errorf(errdefs.ErrInvalidArgument, "environment %q cannot be selected: %s (valid: %s)", name, e.Refused, s.validEnvironments())
	}
	return e, nil
}

func (s *Service) validEnvironments() string {
	if names := s.EnvironmentNames(); len(names) > 0 {
		return strings.Join(names, ", ")
	}
	return "none"
}

// callTimeout decides a call's time limit — the one place it is decided.
// The ceiling is the lower of the service's MaxTimeout and the
// environment's; a call may ask for less, never more (a model's argument
// only tightens). With no request the default applies, itself under the
// ceiling.
func (s *Service) callTimeout(env Environment, requested time.Duration) (applied time.Duration, clamped bool, err error) {
	if requested < 0 {
		return 0, false, errorf(errdefs.ErrInvalidArgument, "timeout must be positive")
	}
	ceiling := s.limits.MaxTimeout
	if env.Timeout > 0 && env.Timeout < ceiling {
		ceiling = env.Timeout
	}
	switch {
	case requested == 0:
		return min(s.limits.DefaultTimeout, ceiling), false, nil
	case requested > ceiling:
		return ceiling, true, nil
	}
	return requested, false, nil
}

// SessionInfo identifies a session.
type SessionInfo struct {
	// ID is unique among open sessions; "" picks a random one.
	ID string
	// Client is the client's name and version as it announced them, for
	// events and audit ("" until known; see Session.SetClient).
	Client string
	// Transport is how the client is connected ("stdio", "http").
	Transport string
}

// OpenSession opens a session. Its contexts and workspace are its own.
func (s *Service) OpenSession(info SessionInfo) (*Session, error) {
	if info.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		info.ID = "s-" + hex.EncodeToString(b[:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errorf(errdefs.ErrUnavailable, "vial is shutting down")
	}
	if _, dup := s.sessions[info.ID]; dup {
		return nil, fmt.Errorf("session %s is already open: %w", info.ID, errdefs.ErrAlreadyExists)
	}
	sess := &Session{svc: s, id: info.ID, transport: info.Transport, client: info.Client, opened: time.Now()}
	s.sessions[info.ID] = sess
	s.log.Info("session opened", "session", info.ID, "transport", info.Transport)
	return sess, nil
}

// Session returns the open session id, or nil.
func (s *Service) Session(id string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// Contexts lists every session's contexts: the operator's view.
func (s *Service) Contexts() []ContextInfo { return s.reg.list("") }

// StopContext stops any session's context: the operator's action.
func (s *Service) StopContext(id string) error { return s.reg.stopContext("", id) }

// Close closes every session (stopping their contexts and removing their
// workspaces), waits for one-shot runs, and releases the provider, within
// ctx. The service refuses new work afterwards.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	sessions := slices.Collect(maps.Values(s.sessions))
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, sess := range sessions {
			wg.Go(func() {
				if err := sess.Close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		s.pool.close()
		errs = append(errs, s.reg.closeAll())
		s.oneShots.Wait()
		errs = append(errs, s.provider.Close())
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.Join(fmt.Errorf("tearing down sandboxes: %w", ctx.Err()),
			errors.New("some sandboxes may remain; vial gc removes them"))
	}
}

// publish stamps and sends an event.
func (s *Service) publish(e observe.Event) { s.events.Publish(e) }

// outcome is the one-word outcome of an operation that failed with err.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	switch c := errclass.Of(err); {
	case c == errclass.Canceled:
		return "canceled"
	case c.AboutRequest():
		return "tool_error"
	}
	return "internal_error"
}

// digest is the sha256 of a call's canonical arguments (JSON with sorted
// keys): what events and audit carry instead of the arguments, which may
// hold code, file contents or secrets.
func digest(tool string, args map[string]any) string {
	b, _ := json.Marshal(args)
	h := sha256.New()
	h.Write([]byte(tool))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
