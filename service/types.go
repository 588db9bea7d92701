package service

import (
	"errors"
	"fmt"
	"time"

	"github.com/vial-run/vial/runtime"
)

// Language is a context's interpreter.
type Language = runtime.Language

// The languages a context can run.
const (
	Python     = runtime.Python
	JavaScript = runtime.JavaScript
	Bash       = runtime.Bash
)

// ParseLanguage maps a language name or alias (py, js, node, sh, shell) to
// a Language.
func ParseLanguage(s string) (Language, error) { return runtime.ParseLanguage(s) }

// ExecResult, ExecError and Image describe what one call produced.
type (
	ExecResult = runtime.ExecResult
	ExecError  = runtime.ExecError
	Image      = runtime.Image
)

// SandboxLimits are one sandbox's resource limits.
type SandboxLimits = runtime.Limits

// Environment is one execution environment: the agent's own, or a named
// template create_context may select. The caller (cmd/vial) has already
// tightened a named environment to the agent's ceilings; the service
// applies it as given.
type Environment struct {
	Name    string // "" for the agent's own
	Runtime string // "runc", "crun", "runsc"
	Image   string // image name: host, a stored name, a directory
	Limits  SandboxLimits
	// Timeout is the ceiling of one call in this environment; 0 means the
	// service's MaxTimeout.
	Timeout time.Duration
	Env     []string // KEY=VALUE for every sandboxed process
	// Network opens the network of the environment's sandboxes; nil
	// keeps it closed (an empty namespace, only lo).
	Network *NetworkPolicy
	// Refused, if set, says why a model may not select this environment
	// (e.g. it runs code without isolation, which only the operator may
	// choose).
	Refused string
	// Packages are Debian packages the environment's template says its
	// image provides ([sandbox.docker] packages, mapped by
	// rootfs.DebianPackages). A named environment whose image lacks one
	// is not started: the model gets an error naming BuildCommand, the
	// command the operator runs to build them in.
	Packages     []string
	BuildCommand string
}

// Limits bound what one call may ask for. Zero fields take DefaultLimits.
type Limits struct {
	// DefaultTimeout applies when a call gives no time limit.
	DefaultTimeout time.Duration
	// MaxTimeout is the ceiling of any call's time limit.
	MaxTimeout time.Duration
	// MaxCodeBytes is the largest code or command accepted.
	MaxCodeBytes int
	// MaxFileBytes caps a write, and the largest file search looks inside.
	MaxFileBytes int64
	// MaxReadBytes caps one read of a file: larger files are read in pages.
	MaxReadBytes int64
	// MaxSearchResults caps search matches; MaxListEntries directory
	// entries.
	MaxSearchResults int
	MaxListEntries   int
	// Search bounds: directory depth, entries visited, bytes read for
	// content matching, and time. A search that reaches one stops and says
	// so.
	MaxSearchDepth  int
	MaxSearchVisits int
	MaxSearchBytes  int64
	MaxSearchTime   time.Duration
}

// DefaultLimits are used for the zero fields of Options.Limits.
var DefaultLimits = Limits{
	DefaultTimeout:   30 * time.Second,
	MaxTimeout:       5 * time.Minute,
	MaxCodeBytes:     1 << 20,
	MaxFileBytes:     10 << 20,
	MaxReadBytes:     1 << 20,
	MaxSearchResults: 200,
	MaxListEntries:   1000,
	MaxSearchDepth:   64,
	MaxSearchVisits:  100_000,
	MaxSearchBytes:   256 << 20,
	MaxSearchTime:    5 * time.Second,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set64 := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	if l.DefaultTimeout == 0 {
		l.DefaultTimeout = d.DefaultTimeout
	}
	if l.MaxTimeout == 0 {
		l.MaxTimeout = max(d.MaxTimeout, l.DefaultTimeout)
	}
	if l.MaxSearchTime == 0 {
		l.MaxSearchTime = d.MaxSearchTime
	}
	set(&l.MaxCodeBytes, d.MaxCodeBytes)
	set64(&l.MaxFileBytes, d.MaxFileBytes)
	set64(&l.MaxReadBytes, d.MaxReadBytes)
	set(&l.MaxSearchResults, d.MaxSearchResults)
	set(&l.MaxListEntries, d.MaxListEntries)
	set(&l.MaxSearchDepth, d.MaxSearchDepth)
	set(&l.MaxSearchVisits, d.MaxSearchVisits)
	set64(&l.MaxSearchBytes, d.MaxSearchBytes)
	return l
}

func (l Limits) validate() error {
	var errs []error
	if l.MaxCodeBytes < 0 || l.MaxFileBytes < 0 || l.MaxReadBytes < 0 || l.MaxSearchResults < 0 || l.MaxListEntries < 0 ||
		l.MaxSearchDepth < 0 || l.MaxSearchVisits < 0 || l.MaxSearchBytes < 0 {
		errs = append(errs, errors.New("negative limit"))
	}
	if l.DefaultTimeout < 0 || l.MaxTimeout < 0 || l.MaxSearchTime < 0 {
		errs = append(errs, errors.New("negative timeout"))
	}
	if l.DefaultTimeout > l.MaxTimeout {
		errs = append(errs, fmt.Errorf("default timeout %v is above the maximum timeout %v", l.DefaultTimeout, l.MaxTimeout))
	}
	return errors.Join(errs...)
}

// ContextInfo describes one live context. It carries no host detail
// (paths, runtime ids): it is shown to the model.
type ContextInfo struct {
	ID          string
	Name        string // label given at creation; may be ""
	Language    Language
	Environment string // "" = the agent's own
	// Default marks a session's per-language context, used when a call
	// names no context.
	Default bool
	// Dead marks a context that can no longer run code (OOM kill, crash);
	// it stays listed until it expires or is stopped.
	Dead     bool
	Busy     bool // a call is running or waiting
	Created  time.Time
	LastUsed time.Time
	// Session is the owning session's ID; shown to operators only.
	Session string
}

// RunRequest is one call of code in a context (run_code, run_shell) or in
// a one-shot sandbox (execute_python).
type RunRequest struct {
	// Tool is the tool the call came through, for policy, events and
	// audit: "run_code", "run_shell", "execute_python".
	Tool string
	// ContextID names the context; "" means the session's default
	// context of Language.
	ContextID string
	// Language of the code; "" means the context's language, or python.
	Language Language
	Code     string
	// Timeout is the time limit the call asks for; 0 means the default.
	// It can only lower the ceiling, never raise it.
	Timeout time.Duration
	// OnStart, if set, is called with the time limit that applies just
	// before the code is sent to the sandbox (progress reporting uses it).
	OnStart func(limit time.Duration)
}

// RunResult is what a call produced, and the limit that applied.
type RunResult struct {
	ExecResult
	Language  Language
	ContextID string // the context that ran it; "" for a one-shot run
	// Timeout is the time limit that applied to the call.
	Timeout time.Duration
	// Clamped reports that the call asked for more time than its ceiling
	// allows and got the ceiling.
	Clamped bool
	// Notices are things the caller must be told beside the result: a
	// default context that was replaced (its state is gone), local mode.
	Notices []string
}

// Error is a failure whose message was written for the caller: it names no
// host path and no runtime internals, so front ends show it as is. Its
// class (an errdefs class) decides the front end's answer.
type Error struct {
	msg   string
	class error
	cause error // logged only
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the class and the cause.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.class}
	}
	return []error{e.class, e.cause}
}

// Cause is the underlying error, for the operator's log; nil if none.
func (e *Error) Cause() error { return e.cause }

// errorf makes an *Error of class. Only values the caller gave or may see
// (workspace paths, context ids, limits) may be formatted in.
func errorf(class error, format string, args ...any) error {
	return &Error{msg: fmt.Sprintf(format, args...), class: class}
}

// wrapf is errorf with a cause kept for the log.
func wrapf(class, cause error, format string, args ...any) error {
	return &Error{msg: fmt.Sprintf(format, args...), class: class, cause: cause}
}

// PublicMessage returns the caller-facing message of err when it carries
// one (an *Error in its chain).
func PublicMessage(err error) (string, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.msg, true
	}
	return "", false
}
