package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/service"
	"github.com/vial-run/vial/service/servicetest"
)

// logBuffer collects the server's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rawSession drives ServeStdio with hand-written JSON-RPC lines.
type rawSession struct {
	t      *testing.T
	in     *io.PipeWriter
	msgs   chan map[string]any
	done   chan error
	nextID int
	log    *logBuffer

	mu      sync.Mutex
	pending []map[string]any // read but not yet claimed
}

// testEnv is what newTestServer built besides the server.
type testEnv struct {
	svc *service.Service
	p   *servicetest.Provider
}

// workspace returns the host directory of the stdio session's shared
// workspace, creating it.
func (e *testEnv) workspace(t *testing.T, s *Server) string {
	t.Helper()
	if ws := e.p.Workspaces(); len(ws) > 0 {
		return ws[0]
	}
	callDirect(t, s, "list_directory", nil)
	ws := e.p.Workspaces()
	if len(ws) == 0 {
		t.Fatal("no shared workspace was made")
	}
	return ws[0]
}

// newTestServer builds a server on a real service whose sandboxes are
// servicetest fakes. so, if given, configures the service.
func newTestServer(t *testing.T, opts Options, so ...service.Options) (*Server, *testEnv, *logBuffer) {
	t.Helper()
	env := &testEnv{p: servicetest.New(t)}
	lb := &logBuffer{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var sopts service.Options
	if len(so) > 0 {
		sopts = so[0]
	}
	sopts.Provider = env.p
	sopts.Log = log
	if sopts.Default.Runtime == "" {
		sopts.Default = service.Environment{Runtime: "runc", Image: "host"}
	}
	svc, err := service.New(sopts)
	if err != nil {
		t.Fatal(err)
	}
	env.svc = svc
	t.Cleanup(func() {
		if err := svc.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if opts.Service == nil {
		opts.Service = svc
	}
	opts.Log = log
	if opts.Version == "" {
		opts.Version = "test"
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return s, env, lb
}

// startRaw serves s on pipes and returns a session; it fails the test if
// ServeStdio does not return after stdin is closed.
func startRaw(t *testing.T, s *Server, lb *logBuffer) *rawSession {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	rs := &rawSession{t: t, in: inW, msgs: make(chan map[string]any, 1024), done: make(chan error, 1), log: lb}
	go func() {
		rs.done <- s.ServeStdio(t.Context(), inR, outW)
		outW.Close()
	}()
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("server wrote a non-JSON line: %q", human.Trunc(sc.Text(), 200))
				continue
			}
			rs.msgs <- m
		}
		close(rs.msgs)
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case err := <-rs.done:
			if err != nil {
				t.Errorf("ServeStdio returned %v after stdin EOF", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("ServeStdio did not return after stdin EOF")
		}
	})
	return rs
}

func (rs *rawSession) sendLine(line string) {
	rs.t.Helper()
	if _, err := io.WriteString(rs.in, line+"\n"); err != nil {
		rs.t.Fatalf("writing to server: %v", err)
	}
}

// request sends a request and returns its id.
func (rs *rawSession) request(method string, params any) int {
	rs.t.Helper()
	rs.nextID++
	id := rs.nextID
	m := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		m["params"] = params
	}
	b, _ := json.Marshal(m)
	rs.sendLine(string(b))
	return id
}

// await returns the first message matching pred, within a deadline.
func (rs *rawSession) await(what string, pred func(map[string]any) bool) map[string]any {
	rs.t.Helper()
	rs.mu.Lock()
	for i, m := range rs.pending {
		if pred(m) {
			rs.pending = append(rs.pending[:i], rs.pending[i+1:]...)
			rs.mu.Unlock()
			return m
		}
	}
	rs.mu.Unlock()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-rs.msgs:
			if !ok {
				rs.t.Fatalf("server closed its output while waiting for %s", what)
			}
			if pred(m) {
				return m
			}
			rs.mu.Lock()
			rs.pending = append(rs.pending, m)
			rs.mu.Unlock()
		case <-deadline:
			rs.t.Fatalf("no %s within 30s", what)
		}
	}
}

func (rs *rawSession) response(id any) map[string]any {
	rs.t.Helper()
	want := fmt.Sprint(id)
	return rs.await("response to id "+want, func(m map[string]any) bool {
		_, isReq := m["method"]
		return !isReq && fmt.Sprint(m["id"]) == want
	})
}

func (rs *rawSession) call(method string, params any) map[string]any {
	rs.t.Helper()
	return rs.response(rs.request(method, params))
}

// initialize performs the legacy handshake.
func (rs *rawSession) initialize() {
	rs.t.Helper()
	resp := rs.call("initialize", map[string]any{
		"protocolVersion": "2025-11-25",
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "raw", "version": "1"},
	})
	if resp["error"] != nil {
		rs.t.Fatalf("initialize: %v", resp["error"])
	}
	rs.sendLine(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}

// tool calls a tool and returns its result object.
func (rs *rawSession) tool(name string, args map[string]any) toolResult {
	rs.t.Helper()
	resp := rs.call("tools/call", map[string]any{"name": name, "arguments": args})
	if e := resp["error"]; e != nil {
		rs.t.Fatalf("tools/call %s: JSON-RPC error %v", name, e)
	}
	return toolResult(resp["result"].(map[string]any))
}

type toolResult map[string]any

func (r toolResult) isError() bool { b, _ := r["isError"].(bool); return b }

func (r toolResult) text() string {
	var parts []string
	for _, c := range r["content"].([]any) {
		m := c.(map[string]any)
		if m["type"] == "text" {
			parts = append(parts, m["text"].(string))
		}
	}
	return strings.Join(parts, "\n")
}

func (r toolResult) structured() map[string]any {
	m, _ := r["structuredContent"].(map[string]any)
	return m
}

func errorCode(resp map[string]any) int {
	e, ok := resp["error"].(map[string]any)
	if !ok {
		return 0
	}
	f, _ := e["code"].(float64)
	return int(f)
}
