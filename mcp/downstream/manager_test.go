package downstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/mcp/downstream"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newManager returns a started-on-demand Manager logging at debug level
// into the returned buffer, closed when the test ends.
func newManager(t *testing.T, opts downstream.Options) (*downstream.Manager, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := downstream.NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("manager log:\n%s", logs)
		}
	})
	return m, logs
}

// textOf joins a result's text content.
func textOf(r *mcpgo.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(mcpgo.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func toolNames(ts []downstream.Tool) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Def.Name)
	}
	return out
}

func statusOf(m *downstream.Manager, name string) downstream.Status {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return downstream.Status{}
}

func TestToolsAreNamespacedAndFaithful(t *testing.T) {
	srv := helperServer("helper", "good")
	srv.Title = "Test helper"
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	tools := m.Tools(t.Context())
	byName := map[string]downstream.Tool{}
	for _, tl := range tools {
		byName[tl.Def.Name] = tl
	}
	for _, want := range []string{"helper__echo", "helper__sum", "helper__files_read", "helper__crash"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("tool %s not offered; got %v", want, toolNames(tools))
		}
	}

	echo := byName["helper__echo"]
	if string(echo.Def.RawInputSchema) != echoSchema {
		t.Errorf("input schema changed on the way:\n got %s\nwant %s", echo.Def.RawInputSchema, echoSchema)
	}
	if !strings.Contains(echo.Def.Description, `MCP server "helper" (Test helper)`) || !strings.Contains(echo.Def.Description, "Echoes its message.") {
		t.Errorf("description %q does not name the server and keep the server's text", echo.Def.Description)
	}
	if echo.Def.Annotations.ReadOnlyHint == nil || !*echo.Def.Annotations.ReadOnlyHint || echo.Def.Annotations.Title != "Echo" {
		t.Errorf("annotations lost: %+v", echo.Def.Annotations)
	}
	if echo.Server != "helper" || echo.Remote != "echo" {
		t.Errorf("echo routes to %s/%s", echo.Server, echo.Remote)
	}
	if got := string(byName["helper__sum"].Def.RawOutputSchema); got != sumOutputSchema {
		t.Errorf("output schema: got %s, want %s", got, sumOutputSchema)
	}
	// What vial offers must encode as a valid MCP tool.
	if _, err := json.Marshal(echo.Def); err != nil {
		t.Errorf("offered definition does not encode: %v", err)
	}

	res, err := m.Call(t.Context(), "helper__echo", map[string]any{"message": "hi"})
	if err != nil || textOf(res) != "echo: hi" || res.IsError {
		t.Fatalf("echo: %v %+v", err, res)
	}
	res, err = m.Call(t.Context(), "helper__sum", map[string]any{"a": 2, "b": 3})
	if err != nil {
		t.Fatal(err)
	}
	if sc, _ := json.Marshal(res.StructuredContent); string(sc) != `{"sum":5}` {
		t.Errorf("structuredContent: %s", sc)
	}

	// "files.read" is offered as "files_read", which the server's own
	// "files_read" already is: the exact name wins, the other is skipped
	// and said so.
	res, err = m.Call(t.Context(), "helper__files_read", nil)
	if err != nil || textOf(res) != "I am files_read" {
		t.Errorf("files_read: %v %q", err, textOf(res))
	}
	st := statusOf(m, "helper")
	if len(st.Skipped) != 1 || !strings.Contains(st.Skipped[0], `"files.read"`) {
		t.Errorf("skipped: %q", st.Skipped)
	}
	if st.State != downstream.StateConnected || st.ServerName != "helper" || st.ServerVersion != "1.2.3" || st.ProtocolVersion != downstream.ProtocolVersion {
		t.Errorf("status: %+v", st)
	}

	_, err = m.Call(t.Context(), "helper__nope", nil)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown tool: %v, want not found", err)
	}
	_, err = m.Call(t.Context(), "other__echo", nil)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown server: %v, want not found", err)
	}
}

// A tool the server renames is still called by its own name.
func TestRenamedToolRoutesToItsOwnName(t *testing.T) {
	srv := helperServer("helper", "good")
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	m.Tools(t.Context())
	if _, err := m.Call(t.Context(), "helper__add_tool", map[string]any{"name": "v2.run"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(toolNames(m.Tools(t.Context())), "helper__v2_run") {
		if time.Now().After(deadline) {
			t.Fatalf("helper__v2_run never offered: %v", toolNames(m.Tools(t.Context())))
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := m.Call(t.Context(), "helper__v2_run", nil)
	if err != nil || textOf(res) != "I was added" {
		t.Fatalf("v2.run: %v %+v", err, res)
	}
}

// Every way a server can fail to start gives an error that names it
// within its timeout, and the others keep working.
func TestStartFailuresAreContained(t *testing.T) {
	const timeout = 2 * time.Second
	bad := func(name string, srv downstream.Server) downstream.Server {
		srv.Name = name
		srv.AutoStart = true
		srv.Settings.ConnectionTimeout = timeout
		srv.Settings.MaxRetries = 2
		return srv
	}
	missing := bad("missing", downstream.Server{Transport: downstream.TransportStdio, Command: []string{"vial-no-such-command", "--stdio"}})
	exits := bad("exits", helperServer("", "exit"))
	hangs := bad("hangs", helperServer("", "hang"))
	garbage := bad("garbage", helperServer("", "garbage"))
	refused := bad("refused", downstream.Server{Transport: downstream.TransportHTTP, URL: "http://127.0.0.1:1/mcp"})
	good := helperServer("good", "good")
	good.AutoStart = true
	m, logs := newManager(t, downstream.Options{Servers: []downstream.Server{missing, exits, hangs, garbage, refused, good}})

	began := time.Now()
	err := m.Start(t.Context())
	took := time.Since(began)
	startLog := logs.String()
	if took > timeout+5*time.Second { // slack for a loaded machine
		t.Errorf("Start took %s with a connection timeout of %s", took, timeout)
	}
	want := map[string][]string{
		"missing": {`"vial-no-such-command" not found`},
		"exits":   {"exited with status 3", "cannot open the database"},
		"hangs":   {"did not answer initialize within 2s"},
		"garbage": {"did not answer initialize within 2s", "not JSON-RPC", "starting up, step 0"},
		"refused": {"cannot reach http://127.0.0.1:1/mcp", "connection refused"},
	}
	for name, parts := range want {
		var found error
		for _, e := range unjoin(err) {
			var de *downstream.Error
			if errors.As(e, &de) && de.Server == name {
				found = e
			}
		}
		if found == nil {
			t.Errorf("Start's error names no failure of %q: %v", name, err)
			continue
		}
		for _, p := range parts {
			if !strings.Contains(found.Error(), p) {
				t.Errorf("%s: error %q lacks %q", name, found, p)
			}
		}
		if !strings.Contains(found.Error(), `mcp server "`+name+`"`) {
			t.Errorf("error %q does not name the server", found)
		}
		if !errors.Is(found, errdefs.ErrUnavailable) {
			t.Errorf("%s: error %v is not of class unavailable", name, found)
		}
		st := statusOf(m, name)
		if st.State != downstream.StateFailed || st.LastError == "" || st.RetryAt.IsZero() && st.Failures == 0 {
			t.Errorf("%s: status %+v", name, st)
		}
	}
	if e := findErr(err, "hangs"); e != nil && !errors.Is(e, context.DeadlineExceeded) {
		t.Errorf("hangs: %v is not a deadline", e)
	}
	if st := statusOf(m, "good"); st.State != downstream.StateConnected {
		t.Errorf("good: %+v", st)
	}
	res, cerr := m.Call(t.Context(), "good__echo", map[string]any{"message": "still here"})
	if cerr != nil || textOf(res) != "echo: still here" {
		t.Errorf("the good server stopped working: %v", cerr)
	}
	names := toolNames(m.Tools(t.Context()))
	if !slices.Contains(names, "good__echo") || slices.ContainsFunc(names, func(n string) bool { return !strings.HasPrefix(n, "good__") }) {
		t.Errorf("tools: %v", names)
	}
	// The process that exits is tried again (max_retries); the missing
	// command is not, nor is the server that did not answer in time.
	for _, l := range strings.Split(startLog, "\n") {
		if strings.Contains(l, "trying again") && !strings.Contains(l, "server=exits") && !strings.Contains(l, "server=refused") {
			t.Errorf("retried what another try cannot fix: %s", l)
		}
	}
	if n := strings.Count(startLog, "trying again\" server=exits"); n < 1 || n > 2 {
		t.Errorf("the server that exited was tried again %d times, want max_retries = 2 (or fewer if the time ran out)", n)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func findErr(err error, server string) error {
	for _, e := range unjoin(err) {
		var de *downstream.Error
		if errors.As(e, &de) && de.Server == server {
			return e
		}
	}
	return nil
}

// A server that crashes during a call gives an error naming it, is
// restarted on the next use after a back-off that grows with each crash,
// and is healthy again after a successful call.
func TestCrashRestartsWithBackoff(t *testing.T) {
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{helperServer("helper", "good")}})
	m.Tools(t.Context())

	_, err := m.Call(t.Context(), "helper__crash", nil)
	var de *downstream.Error
	if !errors.As(err, &de) || de.Server != "helper" || !strings.Contains(err.Error(), "exited with status 7") || !strings.Contains(err.Error(), "crashing on purpose") {
		t.Fatalf("crash: %v", err)
	}
	st := statusOf(m, "helper")
	if st.State != downstream.StateFailed || st.Failures != 1 {
		t.Fatalf("after a crash: %+v", st)
	}
	// The first back-off is at most half a second: the next use waits for
	// it and restarts the server.
	began := time.Now()
	res, err := m.Call(t.Context(), "helper__echo", map[string]any{"message": "back"})
	if err != nil || textOf(res) != "echo: back" {
		t.Fatalf("after restart: %v", err)
	}
	if took := time.Since(began); took < 200*time.Millisecond {
		t.Errorf("restarted after %s: no back-off", took)
	}
	st = statusOf(m, "helper")
	if st.Restarts != 1 || st.Failures != 0 || st.State != downstream.StateConnected {
		t.Fatalf("after restart: %+v", st)
	}

	// Crash after crash, the back-off grows until a use no longer waits
	// for it but fails at once, saying when the next attempt is.
	var fastFail error
	for i := 0; i < 6 && fastFail == nil; i++ {
		began := time.Now()
		_, err := m.Call(t.Context(), "helper__crash", nil)
		if err != nil && strings.Contains(err.Error(), "next attempt in") {
			if took := time.Since(began); took > time.Second {
				t.Errorf("failing during back-off took %s", took)
			}
			fastFail = err
		}
	}
	if fastFail == nil {
		t.Fatalf("back-off never grew beyond a second: %+v", statusOf(m, "helper"))
	}
	st = statusOf(m, "helper")
	if st.Failures < 3 || st.RetryAt.IsZero() {
		t.Fatalf("during back-off: %+v", st)
	}
	if wait := time.Until(st.RetryAt); wait > 30*time.Second {
		t.Fatalf("back-off %s is over its bound", wait)
	}
	time.Sleep(time.Until(st.RetryAt))
	if _, err := m.Call(t.Context(), "helper__echo", map[string]any{"message": "again"}); err != nil {
		t.Fatalf("after back-off: %v", err)
	}
	if st := statusOf(m, "helper"); st.Failures != 0 || st.Restarts < 3 {
		t.Errorf("after recovery: %+v", st)
	}
}

// A call that never gets an answer ends at tool_timeout with an error
// naming the server; the server stays usable.
func TestToolTimeout(t *testing.T) {
	srv := helperServer("helper", "good")
	srv.Settings.ToolTimeout = 500 * time.Millisecond
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	m.Tools(t.Context())
	began := time.Now()
	_, err := m.Call(t.Context(), "helper__sleep", nil)
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `mcp server "helper"`) || !strings.Contains(err.Error(), "within 500ms") {
		t.Fatalf("sleep: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("timed out after %s, want about 500ms", took)
	}
	if _, err := m.Call(t.Context(), "helper__echo", map[string]any{"message": "x"}); err != nil {
		t.Errorf("after a timeout: %v", err)
	}
}

// A result over the budget is cut with a notice; a message over four times
// the budget ends the connection (the server is restarted on next use).
func TestResponseBudget(t *testing.T) {
	const budget = 64 << 10
	m, _ := newManager(t, downstream.Options{ResponseBudget: budget, Servers: []downstream.Server{helperServer("helper", "good")}})
	m.Tools(t.Context())

	res, err := m.Call(t.Context(), "helper__big", map[string]any{"n": 200 << 10})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	if len(b) > budget+1024 {
		t.Errorf("result of %d bytes over a budget of %d", len(b), budget)
	}
	if txt := textOf(res); !strings.Contains(txt, "cut to fit vial's response budget of 64.0 KiB") || !strings.Contains(txt, `"helper" returned 200.`) {
		t.Errorf("no notice of the cut: %q", txt[max(0, len(txt)-300):])
	}

	_, err = m.Call(t.Context(), "helper__big", map[string]any{"n": 1 << 20})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "over 256.0 KiB") {
		t.Fatalf("huge message: %v", err)
	}
	if _, err := m.Call(t.Context(), "helper__echo", map[string]any{"message": "x"}); err != nil {
		t.Errorf("after a huge message: %v", err)
	}
}

// Lines on stdout that are not JSON-RPC are dropped, not fatal.
func TestChattyServerWorks(t *testing.T) {
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{helperServer("chatty", "chatty")}})
	m.Tools(t.Context())
	if res, err := m.Call(t.Context(), "chatty__echo", map[string]any{"message": "x"}); err != nil || textOf(res) != "echo: x" {
		t.Fatalf("%v %+v", err, res)
	}
}

// A server's announced change refreshes its tools and calls
// OnToolsChanged.
func TestListChanged(t *testing.T) {
	changed := make(chan struct{}, 10)
	m, _ := newManager(t, downstream.Options{
		Servers:        []downstream.Server{helperServer("helper", "good")},
		OnToolsChanged: func() { changed <- struct{}{} },
	})
	if slices.Contains(toolNames(m.Tools(t.Context())), "helper__fresh") {
		t.Fatal("helper__fresh before it was added")
	}
	if _, err := m.Call(t.Context(), "helper__add_tool", map[string]any{"name": "fresh"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("OnToolsChanged not called")
	}
	if !slices.Contains(toolNames(m.Tools(t.Context())), "helper__fresh") {
		t.Errorf("helper__fresh not offered after the change")
	}
}

// With cache_tools on, Tools asks the server once per cache_ttl; off, every
// time.
func TestToolsCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache bool
		ttl   time.Duration
		want  string // the server's tools/list count after three Tools and one wait
	}{
		{"cached", true, time.Hour, "1"},
		{"expired", true, time.Second, "2"},
		{"off", false, 0, "4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := helperServer("helper", "good")
			srv.Settings.CacheTools, srv.Settings.CacheTTL = tc.cache, tc.ttl
			m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
			m.Tools(t.Context())
			m.Tools(t.Context())
			time.Sleep(1200 * time.Millisecond)
			m.Tools(t.Context())
			m.Tools(t.Context())
			res, err := m.Call(t.Context(), "helper__lists", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := textOf(res); got != tc.want {
				t.Errorf("tools/list sent %s times, want %s", got, tc.want)
			}
		})
	}
}

// Only AutoStart servers start in Start; the others on first use.
func TestAutoStart(t *testing.T) {
	auto := helperServer("auto", "good")
	auto.AutoStart = true
	lazy := helperServer("lazy", "good")
	off := helperServer("off", "good")
	off.Disabled = true
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{auto, lazy, off}})
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(m, "auto"); st.State != downstream.StateConnected || st.Tools == 0 {
		t.Errorf("auto: %+v", st)
	}
	if st := statusOf(m, "lazy"); st.State != downstream.StateIdle {
		t.Errorf("lazy before use: %+v", st)
	}
	names := toolNames(m.Tools(t.Context()))
	if !slices.Contains(names, "lazy__echo") || slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "off__") }) {
		t.Errorf("tools: %v", names)
	}
	if st := statusOf(m, "off"); st.State != downstream.StateDisabled {
		t.Errorf("off: %+v", st)
	}
}

// A host stdio server sees only the variables of vial's environment it
// needs, not the secrets vial holds.
func TestHostEnvironmentIsFiltered(t *testing.T) {
	t.Setenv("VIAL_TEST_SECRET_TOKEN", "do-not-pass-me")
	srv := helperServer("helper", "good")
	srv.Env = append(srv.Env, "GIVEN=yes")
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	m.Tools(t.Context())
	res, err := m.Call(t.Context(), "helper__env", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := textOf(res)
	if strings.Contains(env, "do-not-pass-me") {
		t.Errorf("vial's environment leaked to the server")
	}
	if !strings.Contains(env, "GIVEN=yes") || !strings.Contains(env, "PATH=") {
		t.Errorf("environment lacks Env or PATH:\n%s", env)
	}
}

// A sandboxed server without a Starter fails; it is never run on the host.
func TestSandboxedNeedsStarter(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	srv := downstream.Server{Name: "boxed", Transport: downstream.TransportStdio, Sandboxed: true,
		Command: []string{"sh", "-c", "touch " + marker}, AutoStart: true}
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	err := m.Start(t.Context())
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "boxed") {
		t.Errorf("Start: %v", err)
	}
	if _, serr := os.Stat(marker); serr == nil {
		t.Errorf("the sandboxed server ran on the host")
	}
}

// A sandboxed server runs through the Starter, with its pipes as the
// transport. (Here the Starter starts a host process; see
// TestSandboxedFilesystemUnderRunc for a real sandbox.)
func TestSandboxedUsesStarter(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := helperServer("boxed", "good")
	srv.Sandboxed = true
	m, _ := newManager(t, downstream.Options{
		Servers: []downstream.Server{srv},
		Starter: func(ctx context.Context, server string, argv, env []string) (io.WriteCloser, io.Reader, io.Closer, error) {
			mu.Lock()
			got = append(append([]string{server}, argv...), env...)
			mu.Unlock()
			return downstream.StartHost(ctx, server, argv, env)
		},
	})
	m.Tools(t.Context())
	res, err := m.Call(t.Context(), "boxed__echo", map[string]any{"message": "in the box"})
	if err != nil || textOf(res) != "echo: in the box" {
		t.Fatalf("%v %+v", err, res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 || got[0] != "boxed" || got[1] != os.Args[0] || got[len(got)-1] != helperEnv+"=good" {
		t.Errorf("starter got %q", got)
	}
}

// Close stops every server process.
func TestCloseStopsServers(t *testing.T) {
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{helperServer("helper", "good")}})
	m.Tools(t.Context())
	res, err := m.Call(t.Context(), "helper__pid", nil)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(textOf(res))
	if pid <= 0 {
		t.Fatalf("pid %q", textOf(res))
	}
	m.Close()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("server process %d still runs after Close", pid)
	}
	if st := statusOf(m, "helper"); st.State != downstream.StateClosed {
		t.Errorf("after Close: %+v", st)
	}
	if _, err := m.Call(t.Context(), "helper__echo", map[string]any{"message": "x"}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("call after Close: %v", err)
	}
}

func TestNewManagerRefusesBadServers(t *testing.T) {
	_, err := downstream.NewManager(downstream.Options{Servers: []downstream.Server{
		{Name: "a__b", Transport: downstream.TransportStdio, Command: []string{"x"}},
		{Name: "ok", Transport: downstream.TransportHTTP, URL: "ftp://x"},
		{Name: "ok2", Transport: downstream.TransportStdio},
		{Name: "dup", Transport: downstream.TransportStdio, Command: []string{"x"}},
		{Name: "dup", Transport: downstream.TransportStdio, Command: []string{"x"}},
		{Name: "tok", Transport: downstream.TransportHTTP, URL: "http://x", BearerToken: "s3cr3t\nX-Evil: 1"},
	}})
	for _, want := range []string{`"a__b"`, "not http or https", "needs a command", "configured twice", "control characters"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error shows the token: %v", err)
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("class: %v", err)
	}
}

// A server with more tools than vial takes gets the first 1000 offered,
// descriptions bounded, and the rest named as skipped.
func TestToolListBounds(t *testing.T) {
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{helperServer("many", "many")}})
	tools := m.Tools(t.Context())
	if len(tools) != 1000 {
		t.Errorf("%d tools offered, want 1000", len(tools))
	}
	for _, tl := range tools {
		if len(tl.Def.Description) > 9<<10 {
			t.Errorf("%s: description of %d bytes", tl.Def.Name, len(tl.Def.Description))
		}
	}
	st := statusOf(m, "many")
	if len(st.Skipped) == 0 || !strings.Contains(strings.Join(st.Skipped, ";"), "more than") {
		t.Errorf("skipped: %q", st.Skipped)
	}
}

// An answer to tools/call that is not a CallToolResult is an error naming
// the server; tool definitions that are not usable are skipped.
func TestMalformedAnswers(t *testing.T) {
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{helperServer("raw", "raw")}})
	tools := m.Tools(t.Context())
	if names := toolNames(tools); !slices.Equal(names, []string{"raw__bad", "raw__schemaless"}) {
		t.Errorf("tools: %v", names)
	}
	for _, tl := range tools {
		if tl.Def.Name == "raw__schemaless" && string(tl.Def.RawInputSchema) != `{"type":"object"}` {
			t.Errorf("a tool without inputSchema gets %s", tl.Def.RawInputSchema)
		}
	}
	if st := statusOf(m, "raw"); len(st.Skipped) != 1 || !strings.Contains(st.Skipped[0], "inputSchema is not a JSON object") {
		t.Errorf("skipped: %q", st.Skipped)
	}
	_, err := m.Call(t.Context(), "raw__bad", nil)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `mcp server "raw"`) || !strings.Contains(err.Error(), "not a CallToolResult") {
		t.Errorf("call: %v", err)
	}
}
