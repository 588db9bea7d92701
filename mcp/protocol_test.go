package mcp

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/human"
)

// The stdio tests are not parallel: mcp-go keeps one global stdio session.

func TestMalformedJSONKeepsServing(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	rs := startRaw(t, s, lb)
	for _, line := range []string{`{"jsonrpc":"2.0","id":1,"method":`, `not json at all`, `[1,2`, `{"id":7}}`} {
		rs.sendLine(line)
		resp := rs.await("parse error", func(m map[string]any) bool { return errorCode(m) == -32700 })
		if resp["id"] != nil {
			t.Errorf("parse error for %q has id %v, want null", line, resp["id"])
		}
	}
	rs.initialize()
	if r := rs.tool("run_code", map[string]any{"code": "echo still here"}); !strings.Contains(r.text(), "still here") {
		t.Errorf("server did not keep serving after malformed input: %q", r.text())
	}
}

func TestUnknownMethodIsMethodNotFound(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	rs := startRaw(t, s, lb)
	// Before and after initialize: a client that probes first must get an
	// answer, never silence.
	for _, method := range []string{"vial/nonexistent", "resources/frobnicate"} {
		resp := rs.call(method, map[string]any{})
		if code := errorCode(resp); code != -32601 {
			t.Errorf("%s: error code %d, want -32601 (%v)", method, code, resp)
		}
	}
	rs.initialize()
	if code := errorCode(rs.call("tools/frobnicate", nil)); code != -32601 {
		t.Errorf("tools/frobnicate after initialize: code %d, want -32601", code)
	}
}

// TestServerDiscover checks that server/discover, which the official Go
// SDK (v1.8.0) and mcp-go (v1.2.1) clients send first, is always answered:
// by default with a discover result (mcp-go implements protocol 2026-07-28),
// with -32601 in legacy mode so clients fall back to initialize.
func TestServerDiscover(t *testing.T) {
	discover := map[string]any{"_meta": map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw", "version": "1"},
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	}}
	t.Run("default", func(t *testing.T) {
		s, _, lb := newTestServer(t, Options{})
		rs := startRaw(t, s, lb)
		resp := rs.call("server/discover", discover)
		res, ok := resp["result"].(map[string]any)
		if !ok {
			t.Fatalf("server/discover: no result: %v", resp)
		}
		if v := fmt.Sprint(res["supportedVersions"]); !strings.Contains(v, "2025-11-25") {
			t.Errorf("supportedVersions = %v, want it to include 2025-11-25", v)
		}
		// A bare discover without _meta must be answered too.
		if resp := rs.call("server/discover", nil); resp["result"] == nil && resp["error"] == nil {
			t.Errorf("bare server/discover: empty answer %v", resp)
		}
	})
	t.Run("legacy", func(t *testing.T) {
		s, _, lb := newTestServer(t, Options{LegacyProtocol: true})
		rs := startRaw(t, s, lb)
		resp := rs.call("server/discover", discover)
		if code := errorCode(resp); code != -32601 {
			t.Fatalf("server/discover in legacy mode: code %d, want -32601 (%v)", code, resp)
		}
		rs.initialize()
		if r := rs.tool("list_contexts", nil); r.isError() {
			t.Errorf("list_contexts after fallback: %s", r.text())
		}
	})
}

func TestWrongArgumentTypes(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	rs := startRaw(t, s, lb)
	rs.initialize()
	for _, tc := range []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"code number", "run_code", map[string]any{"code": 42}, `invalid argument "code": expected a string, got a JSON number`},
		{"timeout string", "run_code", map[string]any{"code": "1", "timeout": "soon"}, `invalid argument "timeout": expected a number, got a JSON string`},
		{"unknown argument", "run_code", map[string]any{"code": "1", "lang": "python"}, `unknown argument "lang"; this tool takes: code, language, context_id, timeout`},
		{"missing code", "run_code", map[string]any{}, `missing argument "code"`},
		{"bad language", "run_code", map[string]any{"code": "1", "language": "cobol"}, `unsupported language "cobol"`},
		{"negative timeout", "run_code", map[string]any{"code": "1", "timeout": -1}, "invalid timeout -1"},
		{"bad context id", "run_code", map[string]any{"code": "1", "context_id": "../../x"}, `invalid context_id "../../x"`},
		{"recursive not bool", "delete_file", map[string]any{"path": "x", "recursive": "yes"}, `invalid argument "recursive": expected a boolean`},
		{"missing language", "create_context", map[string]any{}, `missing argument "language"`},
		{"bad encoding", "read_file", map[string]any{"path": "x", "encoding": "utf16"}, `invalid encoding "utf16"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rs.tool(tc.tool, tc.args)
			if !r.isError() || !strings.Contains(r.text(), tc.want) {
				t.Errorf("got isError=%v %q, want an error containing %q", r.isError(), r.text(), tc.want)
			}
		})
	}
	// Arguments that are not an object at all.
	resp := rs.call("tools/call", map[string]any{"name": "run_code", "arguments": []int{1}})
	if resp["error"] == nil {
		if r := toolResult(resp["result"].(map[string]any)); !r.isError() {
			t.Errorf("array arguments accepted: %v", resp)
		}
	}
	if code := errorCode(rs.call("tools/call", map[string]any{"name": "no_such_tool", "arguments": map[string]any{}})); code != -32602 {
		t.Errorf("unknown tool: code %d, want -32602", code)
	}
}

func TestHugeCodeAndMessages(t *testing.T) {
	s, _, lb := newTestServer(t, Options{MaxMessageBytes: 12 << 20})
	rs := startRaw(t, s, lb)
	rs.initialize()
	big := strings.Repeat("x", 10<<20)
	r := rs.tool("run_code", map[string]any{"code": big})
	if !r.isError() || !strings.Contains(r.text(), "10.0 MiB, above the 1.0 MiB limit") {
		t.Errorf("10 MB code: %q", human.Trunc(r.text(), 300))
	}
	// A message above the framing limit is answered and skipped.
	rs.request("tools/call", map[string]any{"name": "run_code", "arguments": map[string]any{"code": strings.Repeat("y", 13<<20)}})
	resp := rs.await("oversized message error", func(m map[string]any) bool { return errorCode(m) == -32600 })
	if !strings.Contains(fmt.Sprint(resp["error"]), "limit was skipped") {
		t.Errorf("oversized message: %v", resp)
	}
	if r := rs.tool("run_code", map[string]any{"code": "echo alive"}); !strings.Contains(r.text(), "alive") {
		t.Errorf("server stopped serving after huge messages: %q", r.text())
	}
	if strings.Contains(lb.String(), "xxxxxxxx") {
		t.Errorf("code contents leaked into the log")
	}
}

func TestConcurrentCallsDoNotBlock(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	rs := startRaw(t, s, lb)
	rs.initialize()
	// A long call must not hold up short ones.
	slow := rs.request("tools/call", map[string]any{"name": "run_code", "arguments": map[string]any{"code": "sleep 3000", "language": "javascript"}})
	start := time.Now()
	var ids []int
	// At most the context's queue bound (16) at once on one context.
	for i := range 12 {
		ids = append(ids, rs.request("tools/call", map[string]any{"name": "run_code", "arguments": map[string]any{"code": fmt.Sprintf("echo n%d", i)}}))
	}
	for i, id := range ids {
		r := toolResult(rs.response(id)["result"].(map[string]any))
		if !strings.Contains(r.text(), fmt.Sprintf("n%d\n", i)) && !strings.HasSuffix(r.text(), fmt.Sprintf("n%d", i)) {
			t.Errorf("call %d: %q", i, r.text())
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("short calls took %v behind a 3 s call", d)
	}
	if r := toolResult(rs.response(slow)["result"].(map[string]any)); !strings.HasPrefix(r.text(), "status: ok") {
		t.Errorf("slow call: %q", r.text())
	}
}

func TestProgressNotifications(t *testing.T) {
	s, _, lb := newTestServer(t, Options{ProgressInterval: 50 * time.Millisecond})
	rs := startRaw(t, s, lb)
	rs.initialize()
	id := rs.request("tools/call", map[string]any{
		"name":      "run_code",
		"arguments": map[string]any{"code": "sleep 400"},
		"_meta":     map[string]any{"progressToken": "tok-1"},
	})
	n := rs.await("progress notification", func(m map[string]any) bool { return m["method"] == "notifications/progress" })
	p := n["params"].(map[string]any)
	if p["progressToken"] != "tok-1" || !strings.Contains(fmt.Sprint(p["message"]), "running for") {
		t.Errorf("progress params = %v", p)
	}
	if r := toolResult(rs.response(id)["result"].(map[string]any)); r.isError() {
		t.Errorf("call failed: %s", r.text())
	}
	// Without a token there are no notifications.
	id = rs.request("tools/call", map[string]any{"name": "run_code", "arguments": map[string]any{"code": "sleep 200"}})
	rs.response(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, m := range rs.pending {
		if m["method"] == "notifications/progress" && m["params"].(map[string]any)["progressToken"] != "tok-1" {
			t.Errorf("unexpected progress without a token: %v", m)
		}
	}
}

func TestInvalidUTF8Sanitised(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	rs := startRaw(t, s, lb)
	rs.initialize()
	r := rs.tool("run_code", map[string]any{"code": "badutf8"})
	if !strings.Contains(r.text(), "a\uFFFD") || r.structured()["stdout"] != "a\uFFFD\uFFFDb" && r.structured()["stdout"] != "a\uFFFDb" {
		t.Errorf("invalid UTF-8 not replaced: text %q, stdout %q", r.text(), r.structured()["stdout"])
	}
}

func TestStdioSingleInstance(t *testing.T) {
	s, _, lb := newTestServer(t, Options{})
	startRaw(t, s, lb)
	time.Sleep(50 * time.Millisecond)
	if err := s.ServeStdio(t.Context(), strings.NewReader(""), &strings.Builder{}); err == nil {
		t.Errorf("second concurrent ServeStdio succeeded")
	}
}

func TestContextCancelEndsServeStdio(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	r, w := io.Pipe()
	defer w.Close()
	done := make(chan error, 1)
	go func() { done <- s.ServeStdio(ctx, r, &syncBuilder{}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeStdio after cancel: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ServeStdio did not return after its context was cancelled")
	}
}

type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
