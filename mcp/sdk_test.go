package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	mcptransport "github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// serveOnPipes runs ServeStdio on pipes and returns the client's ends.
func serveOnPipes(t *testing.T, s *Server) (clientIn io.ReadCloser, clientOut io.WriteCloser) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- s.ServeStdio(t.Context(), inR, outW)
		outW.Close()
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeStdio: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("ServeStdio did not return after the client disconnected")
		}
	})
	return outR, inW
}

func sdkText(r *sdk.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// TestOfficialGoSDKClient drives the server with the official Go SDK
// client, which sends server/discover first: over the modern protocol
// (mcp-go answers discover), over the legacy handshake (the client asks
// for 2025-11-25), and against LegacyProtocol (discover gets -32601 and
// the client falls back).
func TestOfficialGoSDKClient(t *testing.T) {
	for _, tc := range []struct {
		name      string
		legacy    bool
		clientVer string
		wantProto string
	}{
		{name: "modern", wantProto: "2026-07-28"},
		{name: "client pins 2025-11-25", clientVer: "2025-11-25", wantProto: "2025-11-25"},
		{name: "server legacy mode", legacy: true, wantProto: "2025-11-25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newTestServer(t, Options{LegacyProtocol: tc.legacy, ProgressInterval: 50 * time.Millisecond})
			r, w := serveOnPipes(t, s)
			var progress atomic.Int32
			client := sdk.NewClient(&sdk.Implementation{Name: "go-sdk-test", Version: "1"}, &sdk.ClientOptions{
				ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) { progress.Add(1) },
			})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var copts *sdk.ClientSessionOptions
			if tc.clientVer != "" {
				copts = &sdk.ClientSessionOptions{ProtocolVersion: tc.clientVer}
			}
			cs, err := client.Connect(ctx, &sdk.IOTransport{Reader: r, Writer: w}, copts)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != tc.wantProto {
				t.Errorf("negotiated %s, want %s", got, tc.wantProto)
			}
			tools, err := cs.ListTools(ctx, nil)
			if err != nil || len(tools.Tools) != len(toolTable) {
				t.Fatalf("ListTools: %d tools, %v", len(tools.Tools), err)
			}
			p := &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"code": "set v 7"}}
			if _, err := cs.CallTool(ctx, p); err != nil {
				t.Fatal(err)
			}
			p = &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"code": "get v"}}
			res, err := cs.CallTool(ctx, p)
			if err != nil || res.IsError || !strings.Contains(sdkText(res), "--- value ---\n7") {
				t.Fatalf("state across calls: %v %q", err, sdkText(res))
			}
			p = &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"code": "sleep 300"}}
			p.SetProgressToken("p1")
			if _, err := cs.CallTool(ctx, p); err != nil {
				t.Fatal(err)
			}
			if progress.Load() == 0 {
				t.Errorf("no progress notifications reached the client")
			}
			res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "../../etc/shadow"}})
			if err != nil || !res.IsError {
				t.Errorf("path escape: %v %q", err, sdkText(res))
			}
			// Concurrent calls on several contexts.
			var ids []string
			for range 4 {
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "create_context", Arguments: map[string]any{"language": "python"}})
				if err != nil || res.IsError {
					t.Fatalf("create_context: %v %q", err, sdkText(res))
				}
				ids = append(ids, res.StructuredContent.(map[string]any)["context_id"].(string))
			}
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					id := ids[i%4]
					res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"code": fmt.Sprintf("echo %s-%d", id, i), "context_id": id}})
					if err != nil || !strings.Contains(sdkText(res), fmt.Sprintf("%s-%d", id, i)) {
						t.Errorf("concurrent call %d: %v %q", i, err, sdkText(res))
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestMCPGoClient(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	r, w := serveOnPipes(t, s)
	c := mcpclient.NewClient(mcptransport.NewIO(r, w, io.NopCloser(strings.NewReader(""))))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	init := mcpgo.InitializeRequest{}
	init.Params.ClientInfo = mcpgo.Implementation{Name: "mcp-go-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "run_shell"
	req.Params.Arguments = map[string]any{"command": "echo from-shell"}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError {
		t.Fatalf("CallTool: %v %v", err, res)
	}
	if txt := res.Content[0].(mcpgo.TextContent).Text; !strings.Contains(txt, "from-shell") {
		t.Errorf("run_shell: %q", txt)
	}
}

// bearer adds an Authorization header to every request.
type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

// serveHTTP serves s on a loopback listener with token and returns the
// endpoint.
func serveHTTP(t *testing.T, s *Server, token string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln, token) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/mcp"
}

func connectHTTP(t *testing.T, endpoint, token, name string) *sdk.ClientSession {
	t.Helper()
	client := sdk.NewClient(&sdk.Implementation{Name: name, Version: "1"}, nil)
	hc := &http.Client{Transport: bearer{token, http.DefaultTransport}}
	cctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cs, err := client.Connect(cctx, &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func TestStreamableHTTP(t *testing.T) {
	s, _, _ := newTestServer(t, Options{MaxMessageBytes: 1 << 20})
	endpoint := serveHTTP(t, s, "s3cret")
	cs := connectHTTP(t, endpoint, "s3cret", "http-test")
	cctx, ccancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer ccancel()
	res, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"code": "echo over-http"}})
	if err != nil || !strings.Contains(sdkText(res), "over-http") {
		t.Fatalf("CallTool over HTTP: %v %q", err, sdkText(res))
	}
	// Oversized bodies are refused, and the server keeps serving.
	resp, err := httpPost(endpoint, "s3cret", strings.Repeat("x", 2<<20))
	if err == nil && resp != 413 {
		t.Errorf("oversized body: status %d, want 413", resp)
	}
	if _, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "list_contexts"}); err != nil {
		t.Errorf("after oversized body: %v", err)
	}
}

// Without the token, or with a wrong one, nothing reaches MCP.
func TestHTTPNeedsToken(t *testing.T) {
	s, env, _ := newTestServer(t, Options{})
	endpoint := serveHTTP(t, s, "right-token")
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	for _, tok := range []string{"", "wrong-token", "right-token-but-longer", "RIGHT-TOKEN"} {
		if code, err := httpPost(endpoint, tok, init); err != nil || code != http.StatusUnauthorized {
			t.Errorf("token %q: status %d %v, want 401", tok, code, err)
		}
	}
	if code, err := httpPost(endpoint, "right-token", init); err != nil || code != http.StatusOK {
		t.Errorf("right token: status %d %v", code, err)
	}
	if env.p.Started.Load() != 0 {
		t.Error("an unauthenticated request started a sandbox")
	}
}

// Two HTTP clients each get their own session: neither sees, runs in,
// reads, writes or stops the other's contexts or files.
func TestHTTPSessionsIsolated(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	endpoint := serveHTTP(t, s, "tok")
	a := connectHTTP(t, endpoint, "tok", "client-a")
	b := connectHTTP(t, endpoint, "tok", "client-b")
	ctx := t.Context()
	call := func(cs *sdk.ClientSession, tool string, args map[string]any) *sdk.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		return res
	}
	created := call(a, "create_context", map[string]any{"language": "python", "name": "a-private"})
	id := created.StructuredContent.(map[string]any)["context_id"].(string)
	call(a, "run_code", map[string]any{"context_id": id, "code": "set secret 42"})
	call(a, "write_file", map[string]any{"path": "a.txt", "content": "for a only"})
	call(a, "write_file", map[string]any{"context_id": id, "path": "p.txt", "content": "private"})

	if txt := sdkText(call(b, "list_contexts", nil)); strings.Contains(txt, id) || !strings.Contains(txt, "no live contexts") {
		t.Errorf("b lists a's context: %q", txt)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"run_code", map[string]any{"context_id": id, "code": "get secret"}},
		{"read_file", map[string]any{"context_id": id, "path": "p.txt"}},
		{"write_file", map[string]any{"context_id": id, "path": "x.txt", "content": "b was here"}},
		{"list_directory", map[string]any{"context_id": id}},
		{"stop_context", map[string]any{"context_id": id}},
	} {
		res := call(b, tc.tool, tc.args)
		// The context's id is in the error, and may itself hold "42".
		if txt := strings.ReplaceAll(sdkText(res), id, "ID"); !res.IsError || strings.Contains(txt, "42") || strings.Contains(txt, "private") {
			t.Errorf("b %s on a's context: isError=%v %q", tc.tool, res.IsError, sdkText(res))
		}
	}
	if res := call(b, "read_file", map[string]any{"path": "a.txt"}); !res.IsError {
		t.Errorf("b read a's shared workspace: %q", sdkText(res))
	}
	if txt := sdkText(call(a, "run_code", map[string]any{"context_id": id, "code": "get secret"})); !strings.Contains(txt, "42") {
		t.Errorf("a lost its context: %q", txt)
	}
	if txt := sdkText(call(a, "list_contexts", nil)); !strings.Contains(txt, id) {
		t.Errorf("a does not list its context: %q", txt)
	}
}

// TestSchemas compiles every tool's input and output schema and checks
// that the handlers' results conform to the output schemas.
func TestSchemas(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	compile := func(name string, raw []byte) *jsonschema.Schema {
		t.Helper()
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("mem://"+name, doc); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile("mem://" + name)
		if err != nil {
			t.Fatalf("%s: schema does not compile: %v", name, err)
		}
		return sch
	}
	valid := map[string]map[string]any{
		"run_code":        {"code": "1+1", "language": "python", "context_id": "ctx-1", "timeout": 1.5},
		"run_shell":       {"command": "ls", "timeout": 2},
		"execute_python":  {"code": "print(1)"},
		"create_context":  {"language": "bash", "name": "x"},
		"list_contexts":   {},
		"stop_context":    {"context_id": "ctx-1"},
		"read_file":       {"path": "a", "encoding": "base64"},
		"write_file":      {"path": "a", "content": "", "encoding": "text"},
		"list_directory":  {},
		"search_files":    {"pattern": "*.py", "contains": "x", "max_results": 3},
		"delete_file":     {"path": "a", "recursive": true},
		"http_request":    {"method": "POST", "url": "https://example.test/x", "headers": map[string]any{"a": "b"}, "body": "{}"},
		"fetch_url":       {"url": "https://example.test/"},
		"install_package": {"name": "requests", "manager": "pip"},
	}
	invalid := map[string]map[string]any{
		"run_code":       {"code": 1},
		"run_shell":      {"command": "ls", "extra": true},
		"execute_python": {},
		"create_context": {"language": "cobol"},
		"read_file":      {"path": "a", "encoding": "utf16"},
	}
	outputs := map[string]*jsonschema.Schema{}
	for name, st := range s.MCPServer().ListTools() {
		in := compile(name+"-in", st.Tool.RawInputSchema)
		if err := in.Validate(valid[name]); err != nil {
			t.Errorf("%s: valid arguments rejected by its schema: %v", name, err)
		}
		if bad, ok := invalid[name]; ok && in.Validate(bad) == nil {
			t.Errorf("%s: invalid arguments %v accepted by its schema", name, bad)
		}
		if st.Tool.RawOutputSchema != nil {
			outputs[name] = compile(name+"-out", st.Tool.RawOutputSchema)
		}
	}
	check := func(tool string, args map[string]any) {
		t.Helper()
		r := callDirect(t, s, tool, args)
		if r.isError() {
			t.Fatalf("%s: %s", tool, r.text())
		}
		b, _ := json.Marshal(r.structured())
		doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
		if err := outputs[tool].Validate(doc); err != nil {
			t.Errorf("%s: structured content does not match the output schema: %v\n%s", tool, err, b)
		}
	}
	for _, code := range []string{"echo x", "raise", "get nothing", "set a b", "image 2"} {
		check("run_code", map[string]any{"code": code})
	}
	callDirect(t, s, "run_code", map[string]any{"code": "set k v"})
	check("run_code", map[string]any{"code": "get k"})
	check("run_shell", map[string]any{"command": "exit 2"})
	check("execute_python", map[string]any{"code": "echo 1"})
	check("create_context", map[string]any{"language": "javascript", "name": "n"})
	check("list_contexts", nil)
	callDirect(t, s, "write_file", map[string]any{"path": "d/f.txt", "content": "needle"})
	check("list_directory", nil)
	check("search_files", map[string]any{"pattern": "*", "contains": "needle"})
	check("search_files", map[string]any{"pattern": "nomatch"})
}

func httpPost(url, token, body string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
