package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/service"
	"github.com/vial-run/vial/service/servicetest"
)

func newService(t *testing.T, o service.Options) (*service.Service, *servicetest.Provider) {
	t.Helper()
	p := servicetest.New(t)
	if o.Provider == nil {
		o.Provider = p
	}
	if o.Default.Runtime == "" {
		o.Default = service.Environment{Runtime: "runc", Image: "host", Limits: service.SandboxLimits{MemoryBytes: 256 << 20}}
	}
	svc, err := service.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if n := p.Live(); n != 0 {
			t.Errorf("%d fake sandboxes left after Close", n)
		}
	})
	return svc, p
}

func open(t *testing.T, svc *service.Service, id string) *service.Session {
	t.Helper()
	s, err := svc.OpenSession(service.SessionInfo{ID: id, Transport: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, s *service.Session, r service.RunRequest) service.RunResult {
	t.Helper()
	res, err := s.RunCode(t.Context(), r)
	if err != nil {
		t.Fatalf("RunCode(%+v): %v", r, err)
	}
	return res
}

// The time limit of a call is decided in one place: the lowest of what the
// call asks, its environment's ceiling and the service's; the result says
// which applied.
func TestEffectiveTimeout(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, service.Options{
		Limits: service.Limits{DefaultTimeout: 30 * time.Second, MaxTimeout: 5 * time.Minute},
		Environments: map[string]service.Environment{
			"quick": {Name: "quick", Runtime: "runc", Image: "host", Timeout: time.Second},
		},
	})
	s := open(t, svc, "a")
	ctxQuick, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Environment: "quick"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		contextID string
		ask       time.Duration
		want      time.Duration
		clamped   bool
	}{
		{"env ceiling lowers a larger request", ctxQuick.ID, 10 * time.Second, time.Second, true},
		{"env ceiling lowers the default", ctxQuick.ID, 0, time.Second, false},
		{"a smaller request is kept", ctxQuick.ID, 500 * time.Millisecond, 500 * time.Millisecond, false},
		{"default context takes the default", "", 0, 30 * time.Second, false},
		{"service ceiling lowers a request", "", time.Hour, 5 * time.Minute, true},
		{"request under the service ceiling", "", 10 * time.Second, 10 * time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, s, service.RunRequest{ContextID: tt.contextID, Code: "echo hi", Timeout: tt.ask})
			if res.Timeout != tt.want || res.Clamped != tt.clamped {
				t.Errorf("timeout %v clamped %v, want %v %v", res.Timeout, res.Clamped, tt.want, tt.clamped)
			}
		})
	}
	// The limit that applied is the one enforced: a 1 s environment stops
	// a 10 s call after about 1 s.
	start := time.Now()
	res := run(t, s, service.RunRequest{ContextID: ctxQuick.ID, Code: "sleep 10000", Timeout: 10 * time.Second})
	if !res.TimedOut || res.Timeout != time.Second || time.Since(start) > 5*time.Second {
		t.Errorf("timed out %v after %v with limit %v", res.TimedOut, time.Since(start), res.Timeout)
	}
	if _, err := s.RunCode(t.Context(), service.RunRequest{Code: "echo", Timeout: -time.Second}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("negative timeout: %v", err)
	}
}

// One bound covers every sandbox: contexts, default ones included, and
// one-shot runs.
func TestAdmissionBoundShared(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{MaxSandboxes: 2})
	a := open(t, svc, "a")
	b := open(t, svc, "b")
	run(t, a, service.RunRequest{Code: "echo default"}) // a's default python
	named, err := b.CreateContext(t.Context(), service.CreateRequest{Language: service.Bash})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.RunOnce(t.Context(), service.RunRequest{Code: "echo once"})
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("one-shot run beyond the bound: %v", err)
	}
	if _, err := a.CreateContext(t.Context(), service.CreateRequest{Language: service.Python}); !errdefs.IsResourceExhausted(err) {
		t.Fatalf("context beyond the bound: %v", err)
	}
	if _, err := b.RunCode(t.Context(), service.RunRequest{Language: service.JavaScript, Code: "echo"}); !errdefs.IsResourceExhausted(err) {
		t.Fatalf("default context beyond the bound: %v", err)
	}
	if err := b.StopContext(t.Context(), named.ID); err != nil {
		t.Fatal(err)
	}
	res, err := a.RunOnce(t.Context(), service.RunRequest{Code: "echo once"})
	if err != nil || res.Stdout != "once" {
		t.Fatalf("one-shot run after a stop: %+v %v", res, err)
	}
	if p.Live() != 1 {
		t.Errorf("%d sandboxes live, want 1 (the default context)", p.Live())
	}
}

// With a wait, a request beyond the bound queues and is served when a slot
// frees; past the wait it is refused with a clear error.
func TestAdmissionWaits(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, service.Options{MaxSandboxes: 1, AdmissionWait: 2 * time.Second})
	a := open(t, svc, "a")
	c, err := a.CreateContext(t.Context(), service.CreateRequest{Language: service.Python})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		a.StopContext(context.Background(), c.ID)
	}()
	start := time.Now()
	res, err := a.RunOnce(t.Context(), service.RunRequest{Code: "echo served"})
	if err != nil || res.Stdout != "served" {
		t.Fatalf("queued run: %+v %v", res, err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("served after %v: it did not wait for the slot", waited)
	}
	if _, err := a.CreateContext(t.Context(), service.CreateRequest{Language: service.Python}); err != nil {
		t.Fatal(err)
	}
	svc2, _ := newService(t, service.Options{MaxSandboxes: 1, AdmissionWait: 100 * time.Millisecond})
	b := open(t, svc2, "b")
	if _, err := b.CreateContext(t.Context(), service.CreateRequest{Language: service.Python}); err != nil {
		t.Fatal(err)
	}
	_, err = b.RunOnce(t.Context(), service.RunRequest{Code: "echo"})
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "within 100ms") {
		t.Errorf("after the wait: %v", err)
	}
}

// A session sees, runs in, reads, writes and stops only its own contexts
// and workspace; another's context looks exactly like one that does not
// exist.
func TestSessionsCannotSeeEachOther(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, service.Options{})
	a := open(t, svc, "a")
	b := open(t, svc, "b")
	ac, err := a.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, a, service.RunRequest{ContextID: ac.ID, Code: "set secret 42"})
	run(t, a, service.RunRequest{Code: "set k v"}) // a's default context
	if _, err := a.WriteFile(t.Context(), service.WriteRequest{Path: "notes.txt", Data: []byte("a's file")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteFile(t.Context(), service.WriteRequest{ContextID: ac.ID, Path: "private.txt", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	if got := b.ListContexts(); len(got) != 0 {
		t.Errorf("b lists %d contexts: %+v", len(got), got)
	}
	if got := a.ListContexts(); len(got) != 2 {
		t.Errorf("a lists %d contexts, want 2", len(got))
	}
	missing := "ctx-0000000000000000"
	_, errOther := b.RunCode(t.Context(), service.RunRequest{ContextID: ac.ID, Code: "get secret"})
	_, errNone := b.RunCode(t.Context(), service.RunRequest{ContextID: missing, Code: "get secret"})
	if !errdefs.IsNotFound(errOther) || strings.ReplaceAll(errOther.Error(), ac.ID, missing) != errNone.Error() {
		t.Errorf("running in another session's context: %v (an unknown one: %v)", errOther, errNone)
	}
	if _, err := b.ReadFile(t.Context(), service.ReadRequest{ContextID: ac.ID, Path: "private.txt"}); !errdefs.IsNotFound(err) {
		t.Errorf("reading another session's context: %v", err)
	}
	if _, err := b.WriteFile(t.Context(), service.WriteRequest{ContextID: ac.ID, Path: "x", Data: nil}); !errdefs.IsNotFound(err) {
		t.Errorf("writing another session's context: %v", err)
	}
	if err := b.StopContext(t.Context(), ac.ID); !errdefs.IsNotFound(err) {
		t.Errorf("stopping another session's context: %v", err)
	}
	// b's default workspace is its own: a's file is not there.
	if _, err := b.ReadFile(t.Context(), service.ReadRequest{Path: "notes.txt"}); !errdefs.IsNotFound(err) {
		t.Errorf("b read a's shared workspace: %v", err)
	}
	l, err := b.ListDirectory(t.Context(), "", "")
	if err != nil || len(l.Entries) != 0 {
		t.Errorf("b's workspace lists %+v, %v", l.Entries, err)
	}
	// b's default context is not a's.
	if res := run(t, b, service.RunRequest{Code: "get k"}); res.Error == nil || res.Error.Name != "NameError" {
		t.Errorf("b's default context sees a's state: %q", res.Value)
	}
	// a still has everything.
	if res := run(t, a, service.RunRequest{ContextID: ac.ID, Code: "get secret"}); res.Value != "42" {
		t.Errorf("a lost its state: %q", res.Value)
	}
}

// Concurrent first calls share one default context per language per
// session; each session has its own.
func TestOneDefaultPerLanguagePerSession(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{})
	p.StartDelay = 50 * time.Millisecond
	sessions := []*service.Session{open(t, svc, "a"), open(t, svc, "b")}
	var wg sync.WaitGroup
	for _, s := range sessions {
		for _, lang := range []service.Language{service.Python, service.Bash} {
			for range 8 {
				wg.Go(func() {
					if _, err := s.RunCode(context.Background(), service.RunRequest{Language: lang, Code: "echo"}); err != nil {
						t.Error(err)
					}
				})
			}
		}
	}
	wg.Wait()
	for _, s := range sessions {
		defaults := map[service.Language]int{}
		for _, c := range s.ListContexts() {
			if c.Default {
				defaults[c.Language]++
			}
		}
		if defaults[service.Python] != 1 || defaults[service.Bash] != 1 || len(defaults) != 2 {
			t.Errorf("session %s defaults: %v", s.ID(), defaults)
		}
	}
	if n := p.Started.Load(); n != 4 {
		t.Errorf("%d sandboxes started, want 4", n)
	}
}

// When a default context dies, the next call gets a new one and is told
// its state is gone.
func TestDefaultReplacedWithNotice(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, service.Options{})
	s := open(t, svc, "a")
	run(t, s, service.RunRequest{Code: "set x 1"})
	res := run(t, s, service.RunRequest{Code: "oom"})
	if !res.OOMKilled || !res.Dead {
		t.Fatalf("oom: %+v", res)
	}
	res = run(t, s, service.RunRequest{Code: "get x"})
	if res.Error == nil || len(res.Notices) != 1 || !strings.Contains(res.Notices[0], "new default python context") ||
		!strings.Contains(res.Notices[0], "out of memory") {
		t.Errorf("after the death: value %q notices %q", res.Value, res.Notices)
	}
	res = run(t, s, service.RunRequest{Code: "echo"})
	if len(res.Notices) != 0 {
		t.Errorf("the notice was repeated: %q", res.Notices)
	}
}

// A session that ends releases its sandboxes and workspace.
func TestSessionCloseReleases(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{MaxSandboxes: 3})
	a := open(t, svc, "a")
	run(t, a, service.RunRequest{Code: "echo"})
	if _, err := a.CreateContext(t.Context(), service.CreateRequest{Language: service.Bash}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteFile(t.Context(), service.WriteRequest{Path: "f", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ws := p.Requests()[0].Workspace.(*servicetest.Workspace).Dir
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Live() != 0 {
		t.Errorf("%d sandboxes live after the session closed", p.Live())
	}
	if _, err := os.Stat(ws); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the session's workspace is still there: %v", err)
	}
	if svc.Session("a") != nil {
		t.Error("the closed session is still open")
	}
	if _, err := a.RunCode(t.Context(), service.RunRequest{Code: "echo"}); !errdefs.IsUnavailable(err) {
		t.Errorf("a closed session ran code: %v", err)
	}
	// Its slots are free: three new sandboxes fit.
	b := open(t, svc, "b")
	for range 3 {
		if _, err := b.CreateContext(t.Context(), service.CreateRequest{Language: service.Python}); err != nil {
			t.Fatal(err)
		}
	}
}

// The default contexts of a session share its workspace with the file
// calls; a created context has a private one.
func TestWorkspaces(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{})
	s := open(t, svc, "a")
	if _, err := s.WriteFile(t.Context(), service.WriteRequest{Path: "data/in.csv", Data: []byte("1,2\n")}); err != nil {
		t.Fatal(err)
	}
	run(t, s, service.RunRequest{Code: "echo"})
	run(t, s, service.RunRequest{Language: service.Bash, Code: "echo"})
	c, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python})
	if err != nil {
		t.Fatal(err)
	}
	reqs := p.Requests()
	if len(reqs) != 3 || reqs[0].Workspace == nil || reqs[0].Workspace != reqs[1].Workspace || reqs[2].Workspace != nil {
		t.Fatalf("workspaces of the starts: %+v", reqs)
	}
	fc, err := s.ReadFile(t.Context(), service.ReadRequest{Path: "/workspace/data/in.csv"})
	if err != nil || string(fc.Data) != "1,2\n" || fc.Path != "/workspace/data/in.csv" {
		t.Errorf("read back %q %v", fc.Data, err)
	}
	if _, err := s.ReadFile(t.Context(), service.ReadRequest{ContextID: c.ID, Path: "data/in.csv"}); !errdefs.IsNotFound(err) {
		t.Errorf("a private workspace sees the shared one: %v", err)
	}
	for _, bad := range []string{"../../etc/shadow", "/etc/passwd", "a\x00b"} {
		if _, err := s.ReadFile(t.Context(), service.ReadRequest{Path: bad}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("read %q: %v", bad, err)
		} else if msg, ok := service.PublicMessage(err); !ok || strings.Contains(msg, p.Requests()[0].Workspace.(*servicetest.Workspace).Dir) {
			t.Errorf("read %q: message %q", bad, msg)
		}
	}
}

// Large files are read in pages; no read returns more than MaxReadBytes.
func TestReadPages(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, service.Options{Limits: service.Limits{MaxReadBytes: 1000}})
	s := open(t, svc, "a")
	data := []byte(strings.Repeat("0123456789", 250))
	if _, err := s.WriteFile(t.Context(), service.WriteRequest{Path: "big", Data: data}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for off := int64(0); off < int64(len(data)); {
		fc, err := s.ReadFile(t.Context(), service.ReadRequest{Path: "big", Offset: off, Length: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if len(fc.Data) > 1000 || fc.Size != int64(len(data)) || fc.Offset != off {
			t.Fatalf("page at %d: %d bytes, size %d", off, len(fc.Data), fc.Size)
		}
		got = append(got, fc.Data...)
		off += int64(len(fc.Data))
	}
	if string(got) != string(data) {
		t.Error("pages do not add up to the file")
	}
	if _, err := s.ReadFile(t.Context(), service.ReadRequest{Path: "big", Offset: 99999}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("offset past the end: %v", err)
	}
}

// A search over a tree deeper than the bound stops and says so, quickly,
// without descending.
func TestSearchBounded(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{Limits: service.Limits{MaxSearchDepth: 16, MaxSearchVisits: 500}})
	s := open(t, svc, "a")
	if _, err := s.WriteFile(t.Context(), service.WriteRequest{Path: "top.txt", Data: []byte("needle")}); err != nil {
		t.Fatal(err)
	}
	dir := p.Requests()
	_ = dir
	ws := workspaceDir(t, s, p)
	deep := ws
	for range 2000 {
		deep = filepath.Join(deep, "d")
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := s.SearchFiles(t.Context(), service.SearchRequest{Pattern: "*.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 1 || res.DeepDirs == 0 || !strings.Contains(res.Stopped, "deeper than 16") || time.Since(start) > 5*time.Second {
		t.Errorf("search: %d matches, %d deep dirs, stopped %q, took %v", len(res.Matches), res.DeepDirs, res.Stopped, time.Since(start))
	}
	// A wide directory stops at the visit bound.
	wide := filepath.Join(ws, "wide")
	os.Mkdir(wide, 0o755)
	for i := range 1000 {
		os.WriteFile(filepath.Join(wide, fmt.Sprintf("f%d", i)), nil, 0o644)
	}
	res, err = s.SearchFiles(t.Context(), service.SearchRequest{Pattern: "zzz", Path: "wide"})
	if err != nil || !res.Truncated || !strings.Contains(res.Stopped, "visited 500") {
		t.Errorf("wide search: %+v %v", res.Stopped, err)
	}
}

// workspaceDir returns the host directory of s's shared workspace.
func workspaceDir(t *testing.T, s *service.Session, p *servicetest.Provider) string {
	t.Helper()
	run(t, s, service.RunRequest{Code: "echo"})
	for _, r := range p.Requests() {
		if w, ok := r.Workspace.(*servicetest.Workspace); ok {
			return w.Dir
		}
	}
	t.Fatal("no shared workspace")
	return ""
}

// Every call becomes one event, with its outcome; code never appears.
func TestEvents(t *testing.T) {
	t.Parallel()
	var bus observe.Bus
	var mu sync.Mutex
	var calls, sandboxes []observe.Event
	bus.Subscribe(func(e observe.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case observe.KindCall:
			calls = append(calls, e)
		case observe.KindSandbox:
			sandboxes = append(sandboxes, e)
		}
	})
	svc, _ := newService(t, service.Options{Events: &bus})
	s := open(t, svc, "a")
	s.SetClient("test-client/1.0")
	run(t, s, service.RunRequest{Code: "echo secret-code"})
	run(t, s, service.RunRequest{Code: "raise"})
	s.ReadFile(t.Context(), service.ReadRequest{Path: "../x"})
	s.ListContexts()
	s.Refused("run_code", map[string]any{"timeout": "soon"}, time.Millisecond, errors.New("invalid argument \"timeout\""))
	if _, err := s.RunOnce(t.Context(), service.RunRequest{Code: "echo once"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []struct{ tool, outcome string }{
		{"run_code", "ok"}, {"run_code", "program_error"}, {"read_file", "tool_error"},
		{"list_contexts", "ok"}, {"run_code", "tool_error"}, {"execute_python", "ok"},
	}
	if len(calls) != len(want) {
		t.Fatalf("%d call events: %+v", len(calls), calls)
	}
	for i, e := range calls {
		if e.Tool != want[i].tool || e.Outcome != want[i].outcome || e.Session != "a" || e.Client != "test-client/1.0" || len(e.ArgsDigest) != 64 {
			t.Errorf("event %d: %+v", i, e)
		}
		if strings.Contains(fmt.Sprintf("%+v", e), "secret-code") {
			t.Errorf("event %d carries the code", i)
		}
	}
	// Runs say where they ran: context, runtime, image, the limits.
	wantLimits := observe.Limits{Timeout: service.DefaultLimits.DefaultTimeout, MemoryBytes: 256 << 20, CPUs: 1, Pids: 256}
	for _, i := range []int{0, 5} {
		e := calls[i]
		if e.Context == "" || e.Usage == nil || e.Runtime != "runc" || e.Image != "host" || e.Limits == nil ||
			e.Limits.Timeout != wantLimits.Timeout || e.Limits.MemoryBytes != wantLimits.MemoryBytes || e.Limits.CPUs != 1 || e.Limits.Pids != 256 {
			t.Errorf("run event %d lacks context, usage, runtime, image or limits: %+v %+v", i, e, e.Limits)
		}
	}
	if e := calls[4]; e.Error != "invalid argument \"timeout\"" || e.Duration < time.Millisecond {
		t.Errorf("refused call: %+v", e)
	}
	// The default context started once; the one-shot run started and
	// stopped its own sandbox.
	var actions []string
	for _, e := range sandboxes {
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, ",") != "start,start,stop" || sandboxes[1].Context != calls[5].Context {
		t.Errorf("sandbox events %v: %+v", actions, sandboxes)
	}
}

// Model arguments that select an environment can only pick the operator's,
// never a refused one.
func TestEnvironments(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{Environments: map[string]service.Environment{
		"data":  {Name: "data", Runtime: "runsc", Image: "python", Limits: service.SandboxLimits{MemoryBytes: 128 << 20}},
		"local": {Name: "local", Refused: "it runs code without isolation"},
	}})
	s := open(t, svc, "a")
	c, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Environment: "data"})
	if err != nil || c.Environment != "data" {
		t.Fatalf("%+v %v", c, err)
	}
	if res := run(t, s, service.RunRequest{ContextID: c.ID, Code: "whoami"}); !strings.Contains(res.Stdout, "env=data runtime=runsc image=python memory=134217728") {
		t.Errorf("the context runs %q", res.Stdout)
	}
	if _, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Environment: "local"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "valid: data") {
		t.Errorf("refused environment: %v", err)
	}
	if _, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Environment: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("unknown environment: %v", err)
	}
	if n := len(p.Requests()); n != 1 {
		t.Errorf("%d starts for one valid environment", n)
	}
}
