package mcp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vial-run/vial/runtime"
)

// fakeEngine is an Engine whose "interpreter" understands a few commands,
// one per call:
//
//	echo TEXT        stdout TEXT
//	set K V / get K  per-context state (get returns the value as Value)
//	sleep MS         sleep (honouring ctx)
//	raise            a ZeroDivisionError with a traceback
//	exit N           exit status N
//	timeout          a timed-out result; "timeout-dead" also kills the context
//	oom              an OOM kill, context dead
//	flood            truncated stdout
//	badutf8          invalid UTF-8 on stdout
//	image            one PNG image
//	unavailable      an ErrUnavailable error mentioning host paths
//	boom             an unclassified error mentioning host paths
type fakeEngine struct {
	t    *testing.T
	base string

	mu       sync.Mutex
	next     int
	contexts map[string]*fakeContext
	max      int
	lastReq  runtime.ExecRequest
}

type fakeContext struct {
	info ContextInfo
	dir  string
	vars map[string]string
	dead bool
}

func newFakeEngine(t *testing.T) *fakeEngine {
	return &fakeEngine{t: t, base: t.TempDir(), contexts: map[string]*fakeContext{}, max: 8}
}

func (e *fakeEngine) newContextLocked(lang runtime.Language, name, env string, def bool) (*fakeContext, error) {
	if len(e.contexts) >= e.max {
		return nil, fmt.Errorf("at most %d contexts: %w", e.max, runtime.ErrExhausted)
	}
	e.next++
	id := fmt.Sprintf("ctx-%d", e.next)
	if def {
		id = "default-" + string(lang)
	}
	dir := filepath.Join(e.base, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &fakeContext{
		info: ContextInfo{ID: id, Name: name, Language: lang, Environment: env, Default: def, Created: time.Now()},
		dir:  dir,
		vars: map[string]string{},
	}
	e.contexts[id] = c
	return c, nil
}

func (e *fakeEngine) CreateContext(ctx context.Context, lang runtime.Language, name, env string) (ContextInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if env == "missing" {
		return ContextInfo{}, fmt.Errorf("environment %q in /etc/vial/environments: %w", env, runtime.ErrNotFound)
	}
	c, err := e.newContextLocked(lang, name, env, false)
	if err != nil {
		return ContextInfo{}, err
	}
	return c.info, nil
}

func (e *fakeEngine) ListContexts() []ContextInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ContextInfo
	for _, c := range e.contexts {
		out = append(out, c.info)
	}
	return out
}

func (e *fakeEngine) StopContext(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.contexts[id]; !ok {
		return fmt.Errorf("context %s: %w", id, runtime.ErrNotFound)
	}
	delete(e.contexts, id)
	return nil
}

func (e *fakeEngine) lookup(id string, lang runtime.Language) (*fakeContext, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id == "" {
		id = "default-" + string(lang)
		if c, ok := e.contexts[id]; ok && !c.dead {
			return c, nil
		}
		delete(e.contexts, id)
		return e.newContextLocked(lang, "", "", true)
	}
	c, ok := e.contexts[id]
	if !ok {
		return nil, fmt.Errorf("context %s: %w", id, runtime.ErrNotFound)
	}
	if c.dead {
		return nil, fmt.Errorf("context %s is dead: %w", id, runtime.ErrNotFound)
	}
	return c, nil
}

func (e *fakeEngine) RunCode(ctx context.Context, id string, lang runtime.Language, req runtime.ExecRequest) (runtime.ExecResult, error) {
	c, err := e.lookup(id, lang)
	if err != nil {
		return runtime.ExecResult{}, err
	}
	e.mu.Lock()
	e.lastReq = req
	c.info.LastUsed = time.Now()
	e.mu.Unlock()
	return e.interpret(ctx, c, req)
}

func (e *fakeEngine) ExecuteOnce(ctx context.Context, lang runtime.Language, req runtime.ExecRequest) (runtime.ExecResult, error) {
	e.mu.Lock()
	e.lastReq = req
	e.mu.Unlock()
	return e.interpret(ctx, &fakeContext{vars: map[string]string{}}, req)
}

func (e *fakeEngine) Workspace(ctx context.Context, id string) (string, error) {
	c, err := e.lookup(id, runtime.Python)
	if err != nil {
		return "", err
	}
	return c.dir, nil
}

func (e *fakeEngine) interpret(ctx context.Context, c *fakeContext, req runtime.ExecRequest) (runtime.ExecResult, error) {
	start := time.Now()
	cmd, arg, _ := strings.Cut(strings.TrimSpace(req.Code), " ")
	var r runtime.ExecResult
	switch cmd {
	case "echo":
		r.Stdout = arg + "\n"
	case "set":
		k, v, _ := strings.Cut(arg, " ")
		e.mu.Lock()
		c.vars[k] = v
		e.mu.Unlock()
	case "get":
		e.mu.Lock()
		v, ok := c.vars[arg]
		e.mu.Unlock()
		if !ok {
			r.Error = &runtime.ExecError{Name: "NameError", Message: fmt.Sprintf("name '%s' is not defined", arg), Traceback: "Traceback (most recent call last):\nNameError: name '" + arg + "' is not defined"}
			r.ExitStatus = 1
		} else {
			r.Value, r.HasValue = v, true
		}
	case "sleep":
		n, _ := strconv.Atoi(arg)
		select {
		case <-time.After(time.Duration(n) * time.Millisecond):
		case <-ctx.Done():
			return r, ctx.Err()
		}
		r.Stdout = "slept\n"
	case "raise":
		r.Error = &runtime.ExecError{Name: "ZeroDivisionError", Message: "division by zero", Traceback: "Traceback (most recent call last):\n  File \"<cell>\", line 1, in <module>\nZeroDivisionError: division by zero"}
		r.ExitStatus = 1
	case "exit":
		r.ExitStatus, _ = strconv.Atoi(arg)
	case "timeout", "timeout-dead":
		r.TimedOut = true
		r.Error = &runtime.ExecError{Name: "KeyboardInterrupt", Message: ""}
		if cmd == "timeout-dead" {
			r.Dead = true
			c.dead = true
		}
	case "oom":
		r.OOMKilled, r.Dead = true, true
		c.dead = true
	case "flood":
		r.Stdout = strings.Repeat("x", 1000)
		r.StdoutTruncated = true
	case "badutf8":
		r.Stdout = "a\xff\xfeb"
	case "image":
		r.Images = []runtime.Image{{MIMEType: "image/png", Data: []byte("\x89PNG\r\n\x1a\nfake")}}
	case "unavailable":
		return r, fmt.Errorf("starting runc in /var/lib/vial/sandboxes/x: exec: \"runc\": executable file not found in $PATH: %w", runtime.ErrUnavailable)
	case "boom":
		return r, fmt.Errorf("reading /var/lib/vial/secret/state.json: unexpected EOF")
	default:
		r.Stdout = "ran: " + req.Code + "\n"
	}
	r.Duration = time.Since(start)
	r.CPUTime = time.Millisecond
	r.PeakMemory = 12 << 20
	return r, nil
}
