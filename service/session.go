package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/runtime"
)

// Session is one client's view of the service: its own default contexts
// (one per language), the contexts it created, and its shared workspace.
// It lists, runs in, reads, writes and stops only its own. Safe for
// concurrent use.
type Session struct {
	svc       *Service
	id        string
	transport string
	opened    time.Time

	mu     sync.Mutex
	client string
	ws     Workspace // the shared workspace; nil until first needed
	closed bool
}

// ID returns the session's ID.
func (s *Session) ID() string { return s.id }

// SetClient records the client's name and version once it has announced
// them (after the MCP handshake).
func (s *Session) SetClient(client string) {
	s.mu.Lock()
	s.client = client
	s.mu.Unlock()
}

func (s *Session) clientName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// workspace returns the session's shared workspace, creating it on first
// use. The default contexts bind it, and file calls without a context
// reach it without starting a sandbox.
func (s *Session) workspace(ctx context.Context) (Workspace, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errorf(errdefs.ErrUnavailable, "the session has ended")
	}
	if s.ws == nil {
		ws, err := s.svc.provider.NewWorkspace(ctx, s.svc.opts.Default)
		if err != nil {
			return nil, fmt.Errorf("creating the session's workspace: %w", err)
		}
		s.ws = ws
	}
	return s.ws, nil
}

func (s *Session) hasWorkspace() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ws != nil
}

// adopt makes ws the session's shared workspace if it has none yet.
func (s *Session) adopt(ws Workspace) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ws != nil {
		return false
	}
	s.ws = ws
	return true
}

// Close stops the session's contexts and removes its workspace. It is
// safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ws := s.ws
	s.mu.Unlock()
	err := s.svc.reg.closeOwner(s.id)
	s.svc.approvals.Forget(s.id)
	if ws != nil {
		err = errors.Join(err, ws.Close())
	}
	s.svc.mu.Lock()
	delete(s.svc.sessions, s.id)
	s.svc.mu.Unlock()
	s.svc.log.Info("session closed", "session", s.id)
	return err
}

// op is one operation being served, for its event.
type op struct {
	s     *Session
	start time.Time
	ev    observe.Event
}

func (s *Session) begin(tool string, args map[string]any) *op {
	return &op{s: s, start: time.Now(), ev: observe.Event{
		Kind: observe.KindCall, Session: s.id, Client: s.clientName(), Tool: tool, ArgsDigest: digest(tool, args),
	}}
}

// env records the environment a call runs in: its name, runtime, image
// and sandbox limits (defaults filled in), for audit.
func (o *op) env(e Environment) {
	l := e.Limits.WithDefaults()
	o.ev.Environment, o.ev.Runtime, o.ev.Image = e.Name, e.Runtime, e.Image
	o.ev.Limits = &observe.Limits{MemoryBytes: l.MemoryBytes, CPUs: l.CPUs, Pids: l.Pids, DiskBytes: l.DiskBytes}
}

// Refused reports a call that the front end refused before it reached the
// core (arguments that do not decode, a missing argument), so that every
// tool call has its event — for the log, the metrics and the audit —
// whether or not the core served it. args are the arguments as the client
// sent them (for the digest only); took is how long the front end spent on
// it.
func (s *Session) Refused(tool string, args map[string]any, took time.Duration, err error) {
	o := s.begin(tool, args)
	o.start = time.Now().Add(-took)
	if err != nil {
		o.ev.Error = err.Error()
	}
	o.end("tool_error", nil)
}

// end publishes the call's event; outcome "" derives it from err.
func (o *op) end(result string, err error) {
	o.ev.Duration = time.Since(o.start)
	o.ev.Outcome = result
	if err != nil {
		o.ev.Outcome = outcome(err)
		o.ev.Error = err.Error()
	} else if result == "" {
		o.ev.Outcome = "ok"
	}
	o.s.svc.publish(o.ev)
}

func (s *Session) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errorf(errdefs.ErrUnavailable, "the session has ended")
	}
	return nil
}

// CreateRequest describes a context to create.
type CreateRequest struct {
	Language    Language
	Name        string // optional label, unique among the session's contexts
	Environment string // "" for the agent's own
}

// CreateContext starts a new context with a private workspace.
func (s *Session) CreateContext(ctx context.Context, r CreateRequest) (info ContextInfo, err error) {
	o := s.begin("create_context", map[string]any{"language": string(r.Language), "name": r.Name, "environment": r.Environment})
	o.ev.Language, o.ev.Environment = string(r.Language), r.Environment
	defer func() { o.ev.Context = info.ID; o.end("", err) }()
	if err := s.checkOpen(); err != nil {
		return ContextInfo{}, err
	}
	if _, err := ParseLanguage(string(r.Language)); err != nil || r.Language == "" {
		return ContextInfo{}, errorf(errdefs.ErrInvalidArgument, "invalid language %q: use python, javascript or bash", human.Trunc(string(r.Language), 32))
	}
	if len(r.Name) > 128 || strings.ContainsFunc(r.Name, isControl) {
		return ContextInfo{}, errorf(errdefs.ErrInvalidArgument, "invalid name: use at most 128 printable characters")
	}
	if len(r.Environment) > 128 || strings.ContainsFunc(r.Environment, isControl) {
		return ContextInfo{}, errorf(errdefs.ErrInvalidArgument, "invalid environment name")
	}
	env, err := s.svc.environment(r.Environment)
	if err != nil {
		return ContextInfo{}, err
	}
	o.env(env)
	if _, err := s.authorize(ctx, policy.Call{Tool: "create_context", Args: map[string]any{"language": string(r.Language), "name": r.Name, "environment": r.Environment},
		Environment: env.Name, Language: string(r.Language)},
		Summary{Tool: "create_context", Action: fmt.Sprintf("start a %s context", r.Language), Environment: envName(env), Limits: limitsText(env, s.svc.limits.MaxTimeout)}); err != nil {
		return ContextInfo{}, err
	}
	e, err := s.svc.reg.create(ctx, s.id, r.Language, r.Name, env, nil, false)
	if err != nil {
		return ContextInfo{}, err
	}
	return e.info(), nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ListContexts lists the session's live contexts, oldest first.
func (s *Session) ListContexts() []ContextInfo {
	o := s.begin("list_contexts", nil)
	defer o.end("ok", nil)
	return s.svc.reg.list(s.id)
}

// StopContext stops one of the session's contexts and deletes its sandbox,
// state and private workspace.
func (s *Session) StopContext(ctx context.Context, id string) (err error) {
	o := s.begin("stop_context", map[string]any{"context_id": id})
	o.ev.Context = id
	defer func() { o.end("", err) }()
	if id == "" {
		return errorf(errdefs.ErrInvalidArgument, "missing argument \"context_id\"")
	}
	if _, err := s.svc.reg.get(s.id, id); err != nil {
		return err
	}
	if _, err := s.authorize(ctx, policy.Call{Tool: "stop_context", Args: map[string]any{"context_id": id}},
		Summary{Tool: "stop_context", Action: "stop context " + id + " and delete its state and files"}); err != nil {
		return err
	}
	return s.svc.reg.stopContext(s.id, id)
}

// hardDeadlineSlack is how long past its time limit a call may take
// before the service gives up on the sandbox: the context interrupts,
// waits its grace period and kills on its own, so reaching this means the
// sandbox is stuck.
const hardDeadlineSlack = time.Minute

// RunCode runs code in one of the session's contexts, or in its default
// context of the language (started on first use). A failing program is a
// result; an error means the call could not be made.
func (s *Session) RunCode(ctx context.Context, r RunRequest) (res RunResult, err error) {
	if r.Tool == "" {
		r.Tool = "run_code"
	}
	o := s.begin(r.Tool, map[string]any{"code": r.Code, "language": string(r.Language), "context_id": r.ContextID, "timeout": r.Timeout.Seconds()})
	defer func() { s.endRun(o, res, err) }()
	if err := s.checkOpen(); err != nil {
		return RunResult{}, err
	}
	if err := s.svc.checkCode(r); err != nil {
		return RunResult{}, err
	}
	var (
		e       *entry
		notice  string
		notices []string
	)
	if r.ContextID != "" {
		e, err = s.svc.reg.get(s.id, r.ContextID)
		if err != nil {
			return RunResult{}, err
		}
		if r.Language != "" && r.Language != e.c.Language() {
			if r.Tool == "run_shell" {
				return RunResult{}, errorf(errdefs.ErrInvalidArgument, "context %s runs %s; run_shell needs a bash context: omit context_id for the default shell or create one with create_context(language=\"bash\")", r.ContextID, e.c.Language())
			}
			return RunResult{}, errorf(errdefs.ErrInvalidArgument, "context %s runs %s, not %s: omit language or use a %s context", r.ContextID, e.c.Language(), r.Language, r.Language)
		}
		if notices, err = s.authorizeRun(ctx, r, e.c.Language(), e.env, "context "+r.ContextID); err != nil {
			return RunResult{}, err
		}
	} else {
		lang := r.Language
		if lang == "" {
			lang = Python
		}
		// Decided before the default context starts: a call that is
		// denied or waits for a person holds no sandbox.
		if notices, err = s.authorizeRun(ctx, r, lang, s.svc.opts.Default, "the default "+string(lang)+" context"); err != nil {
			return RunResult{}, err
		}
		e, notice, err = s.svc.reg.defaultContext(ctx, s.id, lang, s.svc.opts.Default, s)
		if err != nil {
			return RunResult{}, err
		}
	}
	o.env(e.env)
	o.ev.Context, o.ev.Language = e.c.ID(), string(e.c.Language())
	res, err = s.svc.exec(ctx, e.c, e.env, r)
	res.ContextID = e.c.ID()
	res.Notices = append(res.Notices, notices...)
	if notice != "" {
		res.Notices = append([]string{notice}, res.Notices...)
	}
	return res, err
}

// authorizeRun decides a run of code in lang under env, where says in
// which context (for the person asked).
func (s *Session) authorizeRun(ctx context.Context, r RunRequest, lang Language, env Environment, where string) ([]string, error) {
	timeout, _, err := s.svc.callTimeout(env, r.Timeout)
	if err != nil {
		return nil, err
	}
	call := policy.Call{
		Tool:        r.Tool,
		Args:        map[string]any{"code": r.Code, "language": string(lang), "context_id": r.ContextID, "timeout": r.Timeout.Seconds()},
		Environment: env.Name,
		Language:    string(lang),
	}
	what := string(lang) + " code"
	if r.Tool == "run_shell" {
		call.Command, what = r.Code, "a shell command"
	} else {
		call.Code = r.Code
	}
	sum := Summary{
		Tool:        r.Tool,
		Action:      fmt.Sprintf("run %s in %s", what, where),
		Detail:      detail(r.Code),
		Environment: envName(env),
		Limits:      limitsText(env, timeout),
	}
	if env.Network != nil {
		sum.Hosts = env.Network.Allowed
	}
	return s.authorize(ctx, call, sum)
}

// envName names an environment for people.
func envName(env Environment) string {
	if env.Name == "" {
		return "the agent's default (" + env.Runtime + ", image " + env.Image + ")"
	}
	return env.Name + " (" + env.Runtime + ", image " + env.Image + ")"
}

// RunOnce runs code in a fresh sandbox of the agent's environment, removed
// afterwards (execute_python): nothing persists.
func (s *Session) RunOnce(ctx context.Context, r RunRequest) (res RunResult, err error) {
	if r.Tool == "" {
		r.Tool = "execute_python"
	}
	if r.Language == "" {
		r.Language = Python
	}
	o := s.begin(r.Tool, map[string]any{"code": r.Code, "language": string(r.Language), "timeout": r.Timeout.Seconds()})
	o.ev.Language = string(r.Language)
	defer func() { s.endRun(o, res, err) }()
	if err := s.checkOpen(); err != nil {
		return RunResult{}, err
	}
	if err := s.svc.checkCode(r); err != nil {
		return RunResult{}, err
	}
	svc := s.svc
	notices, err := s.authorizeRun(ctx, r, r.Language, svc.opts.Default, "a fresh one-shot sandbox")
	if err != nil {
		return RunResult{}, err
	}
	var key string
	if svc.cache != nil {
		timeout, clamped, err := svc.callTimeout(svc.opts.Default, r.Timeout)
		if err != nil {
			return RunResult{}, err
		}
		key = svc.cacheKey(r, svc.opts.Default, timeout)
		if res, at, ok := svc.cache.get(key); ok {
			res.Clamped = clamped
			res.Notices = append([]string{cachedNotice(at)}, notices...)
			o.ev.Outcome = "cached"
			return res, nil
		}
	}
	svc.mu.Lock()
	if svc.closed {
		svc.mu.Unlock()
		return RunResult{}, errorf(errdefs.ErrUnavailable, "vial is shutting down")
	}
	svc.oneShots.Add(1)
	svc.mu.Unlock()
	defer svc.oneShots.Done()
	env := svc.opts.Default
	c, err := svc.oneShot(ctx, r.Language, env)
	if err != nil {
		return RunResult{}, err
	}
	o.env(env)
	o.ev.Context = c.ID()
	sbEvent := observe.Event{Kind: observe.KindSandbox, Session: s.id, Context: c.ID(), Language: string(r.Language),
		Environment: env.Name, Runtime: env.Runtime, Image: env.Image}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			svc.log.Warn("closing one-shot sandbox", "error", cerr)
		}
		stop := sbEvent
		stop.Action, stop.Reason = "stop", "the one-shot run ended"
		svc.publish(stop)
	}()
	res, err = svc.exec(ctx, c, env, r)
	if err == nil && key != "" {
		svc.cache.put(key, res)
	}
	res.Notices = append(res.Notices, notices...)
	return res, err
}

// checkCode validates the code of a run request.
func (s *Service) checkCode(r RunRequest) error {
	what := "code"
	if r.Tool == "run_shell" {
		what = "command"
	}
	if strings.TrimSpace(r.Code) == "" {
		return errorf(errdefs.ErrInvalidArgument, "missing argument %q: it must not be empty", what)
	}
	if len(r.Code) > s.limits.MaxCodeBytes {
		return errorf(errdefs.ErrInvalidArgument, "%s is %s, above the %s limit; split it up or write it to a file with write_file and run the file",
			what, human.Bytes(uint64(len(r.Code))), human.Bytes(uint64(s.limits.MaxCodeBytes)))
	}
	if !utf8.ValidString(r.Code) {
		return errorf(errdefs.ErrInvalidArgument, "%s is not valid UTF-8", what)
	}
	return nil
}

// exec runs one call in c under env's time limit, bounded by a hard
// deadline in case the sandbox stops answering.
func (s *Service) exec(ctx context.Context, c *runtime.Context, env Environment, r RunRequest) (RunResult, error) {
	timeout, clamped, err := s.callTimeout(env, r.Timeout)
	if err != nil {
		return RunResult{}, err
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout+hardDeadlineSlack)
	defer cancel()
	if r.OnStart != nil {
		r.OnStart(timeout)
	}
	res, err := c.Exec(runCtx, runtime.ExecRequest{Code: r.Code, Timeout: timeout})
	out := RunResult{ExecResult: res, Language: c.Language(), Timeout: timeout, Clamped: clamped}
	if n := s.provider.Notice(); n != "" {
		out.Notices = append(out.Notices, n)
	}
	if err != nil {
		if errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return out, wrapf(errdefs.ErrUnavailable, err, "the sandbox did not answer within %s; the context may be stuck: stop it and create a new one", human.Duration(timeout+hardDeadlineSlack))
		}
		if errdefs.IsResourceExhausted(err) {
			// Too many calls queued on the context: the runtime's words,
			// meant for the caller.
			return out, wrapf(errdefs.ErrResourceExhausted, err, "%s", strings.TrimSuffix(err.Error(), ": "+errdefs.ErrResourceExhausted.Error()))
		}
		return out, err
	}
	return out, nil
}

// endRun fills a run's event from its result and publishes it.
func (s *Session) endRun(o *op, res RunResult, err error) {
	if res.ContextID != "" {
		o.ev.Context = res.ContextID
	}
	if res.Language != "" {
		o.ev.Language = string(res.Language)
	}
	if err != nil {
		o.end("", err)
		return
	}
	o.ev.Usage = &observe.Usage{CPU: res.CPUTime, PeakMemory: res.PeakMemory}
	if o.ev.Limits == nil {
		o.ev.Limits = &observe.Limits{}
	}
	o.ev.Limits.Timeout = res.Timeout
	result := runOutcome(res.ExecResult)
	if o.ev.Outcome == "cached" {
		result = "cached"
	}
	o.end(result, nil)
}

// runOutcome is the one-word outcome of a program's run.
func runOutcome(r ExecResult) string {
	switch {
	case r.OOMKilled:
		return "oom_killed"
	case r.TimedOut:
		return "timed_out"
	case r.Dead:
		return "dead"
	case r.Error != nil || r.ExitStatus != 0:
		return "program_error"
	}
	return "ok"
}

// oneShot returns a fresh sandbox running lang's driver for one call: a
// warm one from the pool, or one started now.
func (s *Service) oneShot(ctx context.Context, lang Language, env Environment) (*runtime.Context, error) {
	m, err := s.pool.take(ctx, poolKey{env.Name, lang, false}, env)
	if err != nil {
		return nil, err
	}
	if m != nil {
		return m.c, nil
	}
	release, err := s.adm.acquire(ctx, "a one-shot run")
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	sb, err := s.provider.Start(ctx, StartRequest{Language: lang, Env: env, DriverEnv: s.driverEnv()})
	if err != nil {
		release()
		return nil, startError(lang, env, err)
	}
	co := s.opts.Context
	co.ID = runtime.NewContextID()
	co.Language = lang
	co.Logger = s.log
	c, err := runtime.NewContext(ctx, &admitted{Sandbox: sb, release: release}, co)
	if err != nil {
		return nil, startError(lang, env, err)
	}
	// A pooled sandbox was counted when the pool started it.
	s.publish(observe.Event{Kind: observe.KindSandbox, Action: "start", Context: c.ID(), Language: string(lang),
		Environment: env.Name, Runtime: env.Runtime, Image: env.Image, Duration: time.Since(t0)})
	return c, nil
}

// driverEnv is what every context's sandbox gets besides its environment:
// the driver's caps, and where installed packages are found.
func (s *Service) driverEnv() []string {
	return append(runtime.DriverEnv(s.opts.Context), packageEnv...)
}
