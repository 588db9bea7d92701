package downstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vial-run/vial/mcp/downstream"
)

// secretToken is the api_key_env value of the tests: it must reach the
// server as a bearer token and nothing else.
const secretToken = "vial-test-9f3b1c7e5a2d4086-secret"

// authServer is a streamable HTTP MCP server (mcp-go) that accepts only
// "Authorization: Bearer <secretToken>" and whose tools try to leak the
// token back: in a description, a result, structured content and a
// JSON-RPC error.
type authServer struct {
	*httptest.Server
	mcp       *mcpserver.MCPServer
	authOK    atomic.Int64 // requests with the right header
	authBad   atomic.Int64 // requests without it
	inits     atomic.Int64
	calls     atomic.Int64
	expireOne atomic.Bool // answer the next request of a session with 404
}

func newAuthServer(t *testing.T) *authServer {
	t.Helper()
	a := &authServer{}
	a.mcp = mcpserver.NewMCPServer("auth-test", "0.1", mcpserver.WithToolCapabilities(true))
	a.mcp.AddTool(mcpgo.NewTool("whoami", mcpgo.WithDescription("Tells who you are; your token is "+secretToken+".")),
		func(ctx context.Context, r mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			a.calls.Add(1)
			auth := r.Header.Get("Authorization")
			res := mcpgo.NewToolResultStructured(map[string]any{"authorization": auth, secretToken: "as a key"}, "you sent: "+auth)
			return res, nil
		})
	a.mcp.AddTool(mcpgo.NewTool("fail", mcpgo.WithDescription("Fails, quoting the token.")),
		func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return nil, fmt.Errorf("token %s is not welcome here", secretToken)
		})
	a.mcp.AddTool(mcpgo.NewTool("add_tool", mcpgo.WithDescription("Adds a tool."), mcpgo.WithString("name")),
		func(_ context.Context, r mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			a.mcp.AddTool(mcpgo.NewTool(r.GetString("name", "x")), func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
				return mcpgo.NewToolResultText("added"), nil
			})
			return mcpgo.NewToolResultText("ok"), nil
		})
	h := mcpserver.NewStreamableHTTPServer(a.mcp)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secretToken {
			a.authBad.Add(1)
			// A careless server quotes what it expected.
			http.Error(w, "want Bearer "+secretToken, http.StatusUnauthorized)
			return
		}
		a.authOK.Add(1)
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if strings.Contains(string(body), `"method":"initialize"`) {
			a.inits.Add(1)
		} else if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") != "" && strings.Contains(string(body), `"tools/call"`) && a.expireOne.CompareAndSwap(true, false) {
			http.Error(w, "Session terminated", http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func httpServer(name, url, token string) downstream.Server {
	return downstream.Server{
		Name: name, Transport: downstream.TransportHTTP, URL: url, BearerToken: token,
		Settings: downstream.Settings{ConnectionTimeout: 5 * time.Second, ToolTimeout: 5 * time.Second, MaxRetries: 1, CacheTools: true},
	}
}

// The bearer token reaches the server, and never comes back: not in tool
// definitions, results, errors, Status or the log, even from a server that
// tries to send it back.
func TestBearerTokenIsSentAndNeverShown(t *testing.T) {
	a := newAuthServer(t)
	changed := make(chan struct{}, 4)
	m, logs := newManager(t, downstream.Options{
		Servers:        []downstream.Server{httpServer("auth", a.URL+"/mcp", secretToken)},
		OnToolsChanged: func() { changed <- struct{}{} },
	})
	var seen []string
	show := func(what string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			b = []byte(fmt.Sprintf("%+v", v))
		}
		seen = append(seen, what+": "+string(b))
	}

	tools := m.Tools(t.Context())
	show("tools", tools)
	if len(tools) == 0 {
		t.Fatalf("no tools: %+v", m.Status())
	}
	res, err := m.Call(t.Context(), "auth__whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	show("result", res)
	if !strings.Contains(textOf(res), "you sent: Bearer [redacted]") {
		t.Errorf("whoami: %q", textOf(res))
	}
	if a.authBad.Load() != 0 || a.calls.Load() != 1 {
		t.Errorf("the server did not get the token: %d good, %d bad requests", a.authOK.Load(), a.authBad.Load())
	}
	_, err = m.Call(t.Context(), "auth__fail", nil)
	if err == nil {
		t.Fatal("fail did not fail")
	}
	seen = append(seen, "error: "+err.Error())
	if !strings.Contains(err.Error(), "token [redacted] is not welcome") {
		t.Errorf("fail: %v", err)
	}

	// Notifications on the standalone GET stream reach vial.
	if _, err := m.Call(t.Context(), "auth__add_tool", map[string]any{"name": "later"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Error("tools/list_changed over HTTP did not call OnToolsChanged")
	}

	// A wrong token: a clear error, with neither token in it.
	wrong, wlogs := newManager(t, downstream.Options{Servers: []downstream.Server{httpServer("auth", a.URL+"/mcp", "wrong-token-1234")}})
	werr := wrong.Start(t.Context())
	if werr != nil {
		t.Fatal("Start returned an error for a server without AutoStart")
	}
	wrong.Tools(t.Context())
	_, werr = wrong.Call(t.Context(), "auth__whoami", nil)
	st := wrong.Status()[0]
	if !strings.Contains(st.LastError, "refused vial's credentials (HTTP 401)") || !errors.Is(werr, errdefs.ErrNotFound) {
		t.Errorf("wrong token: status %+v, call %v", st, werr)
	}
	seen = append(seen, "wrong: "+st.LastError, "wrong log: "+wlogs.String())
	if strings.Contains(st.LastError, "wrong-token-1234") || strings.Contains(wlogs.String(), "wrong-token-1234") {
		t.Errorf("the wrong token is shown: %s\n%s", st.LastError, wlogs)
	}

	// Every request carried the token, the DELETE that ends the session too.
	m.Close()
	if n := a.authBad.Load(); n != 1 { // the wrong-token manager's one try
		t.Errorf("%d requests without the right token", n)
	}
	show("status", m.Status())
	seen = append(seen, "log: "+logs.String())
	for _, s := range seen {
		if strings.Contains(s, secretToken) {
			t.Errorf("the token appears in %s", s)
		}
	}
	if !strings.Contains(strings.Join(seen, "\n"), "[redacted]") {
		t.Error("nothing was redacted: the leak attempts did not run")
	}
}

// An HTTP session the server has ended (404) is renewed and the call sent
// again, once: the server refused it without running it.
func TestHTTPSessionRenewed(t *testing.T) {
	a := newAuthServer(t)
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{httpServer("auth", a.URL+"/mcp", secretToken)}})
	m.Tools(t.Context())
	a.expireOne.Store(true)
	if _, err := m.Call(t.Context(), "auth__whoami", nil); err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() != 1 || a.inits.Load() != 2 {
		t.Errorf("tool ran %d times over %d sessions, want once over 2", a.calls.Load(), a.inits.Load())
	}
	if st := m.Status()[0]; st.Restarts != 1 || st.Failures != 0 {
		t.Errorf("status %+v", st)
	}
}

// An HTTP answer over four times the budget is not read past the bound.
func TestHTTPMessageBound(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":"`))
		chunk := []byte(strings.Repeat("x", 64<<10))
		for i := 0; i < 1024; i++ { // 64 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
			sent.Add(int64(len(chunk)))
		}
		w.Write([]byte(`"}}}`))
	}))
	t.Cleanup(srv.Close)
	s := httpServer("big", srv.URL, "")
	s.AutoStart = true
	m, _ := newManager(t, downstream.Options{ResponseBudget: 64 << 10, Servers: []downstream.Server{s}})
	err := m.Start(t.Context())
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("%v; sent %d KiB", err, sent.Load()>>10)
	if n := sent.Load(); n > 32<<20 {
		t.Errorf("the server could send %d MiB before vial stopped reading", n>>20)
	}
}
