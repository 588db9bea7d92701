package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// startEverythingHTTP runs server-everything over streamable HTTP on a
// free loopback port and returns its endpoint.
func startEverythingHTTP(t *testing.T, mods string) string {
	t.Helper()
	port := freePort(t)
	_, p, _ := net.SplitHostPort(port)
	cmd := exec.Command("node", filepath.Join(mods, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+p)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	waitListen(t, port)
	return "http://" + port + "/mcp"
}

func waitListen(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startSecretServer runs an MCP server (mcp-go) over streamable HTTP that
// answers only requests bearing the secret, and whose tool tries to leak
// it back.
func startSecretServer(t *testing.T, secret string) (endpoint string, seen *lockedBuffer) {
	t.Helper()
	seen = &lockedBuffer{}
	s := mcpserver.NewMCPServer("secret-checker", "1")
	s.AddTool(mcpgo.NewTool("check", mcpgo.WithDescription("says whether vial sent the key")), func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText("authorized; the key was " + secret), nil
	})
	h := mcpserver.NewStreamableHTTPServer(s)
	addr := freePort(t)
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			fmt.Fprintf(seen, "refused %q\n", r.Header.Get("Authorization"))
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(seen, "authorized")
		h.ServeHTTP(w, r)
	})}
	go srv.ListenAndServe()
	t.Cleanup(func() { srv.Close() })
	waitListen(t, addr)
	return "http://" + addr + "/mcp", seen
}

// TestDownstreamServers: servers this project did not write, configured in
// mcp.toml, offered through vial as SERVER__TOOL and called through it:
// server-everything over stdio and over streamable HTTP,
// server-filesystem in a sandbox that sees the session's /workspace and no
// host file, an HTTP server that gets the api_key_env secret (which never
// shows), and three broken servers that fail alone.
func TestDownstreamServers(t *testing.T) {
	mods := nodeModules(t)
	entry := filepath.Join(mods, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	fsEntry := filepath.Join(mods, "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
	httpEverything := startEverythingHTTP(t, mods)
	const secret = "vialt-secret-key-0123456789"
	secretURL, seen := startSecretServer(t, secret)
	hostFile := filepath.Join(t.TempDir(), "host-only.txt")
	os.WriteFile(hostFile, []byte("host file contents"), 0o644)
	cfg := writeTree(t, map[string]string{
		"config/execution.toml": "[sandbox]\nruntime = \"runc\"\n",
		"config/mcp.toml": fmt.Sprintf(`[settings]
connection_timeout = 20
tool_timeout = 20
max_retries = 0

[servers.everything]
url = "stdio://node %s stdio"
auto_start = true

[servers.remote]
url = "%s"

[servers.fs]
url = "stdio://node %s /workspace"
sandboxed = true
binds = ["%s"]

[servers.keyed]
url = "%s"
api_key_env = "VIALT_SECRET"

[servers.missing]
url = "stdio://vialt-no-such-command --flag"
[servers.exits]
url = "stdio:///bin/false"
[servers.hangs]
url = "stdio:///bin/sleep 1000"
`, entry, httpEverything, fsEntry, mods, secretURL),
		"agents/d/agent.toml": "[metadata]\nagent_id = \"d\"\n[mcp.settings]\nconnection_timeout = 5\n",
	})
	os.Setenv("VIALT_SECRET", secret)
	defer os.Unsetenv("VIALT_SECRET")
	s := startAgent(t, newStateDir(t), cfg, "d", "runc", "--log-level", "info")
	start := time.Now()
	tools := s.toolNames()
	t.Logf("tools/list took %v", time.Since(start))
	for _, want := range []string{"everything__echo", "remote__echo", "fs__list_directory", "fs__read_text_file", "keyed__check", "run_code", "write_file"} {
		if !contains(tools, want) {
			t.Errorf("tools/list lacks %s: %v", want, tools)
		}
	}
	for _, bad := range []string{"missing__", "exits__", "hangs__"} {
		for _, tool := range tools {
			if strings.HasPrefix(tool, bad) {
				t.Errorf("a broken server offers %s", tool)
			}
		}
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("tools/list waited %v on broken servers", took)
	}
	for _, srv := range []string{"everything", "remote"} {
		r := s.mustOK(srv+"__echo", map[string]any{"message": "hello through vial"})
		if !strings.Contains(r.text, "hello through vial") {
			t.Errorf("%s__echo: %q", srv, r.text)
		}
	}
	// The sandboxed filesystem server sees the session's /workspace.
	s.mustOK("run_code", map[string]any{"code": "open('/workspace/shared.txt', 'w').write('written by write_file')"})
	if r := s.mustOK("fs__list_directory", map[string]any{"path": "/workspace"}); !strings.Contains(r.text, "shared.txt") {
		t.Errorf("fs__list_directory: %q", r.text)
	}
	if r := s.mustOK("fs__read_text_file", map[string]any{"path": "/workspace/shared.txt"}); !strings.Contains(r.text, "written by write_file") {
		t.Errorf("fs__read_text_file: %q", r.text)
	}
	if r := s.call("fs__read_text_file", map[string]any{"path": hostFile}); !r.isError || strings.Contains(r.text, "host file contents") {
		t.Errorf("the sandboxed server read a host file: %q", r.text)
	}
	// The key reaches the server and never comes back.
	r := s.mustOK("keyed__check", nil)
	if !strings.Contains(r.text, "authorized") || strings.Contains(r.text, secret) {
		t.Errorf("keyed__check: %q", r.text)
	}
	if !strings.Contains(seen.String(), "authorized") || strings.Contains(seen.String(), "refused") {
		t.Errorf("the HTTP server saw: %s", seen.String())
	}
	// vial's own tools answer while broken servers are configured.
	if r := s.mustOK("run_code", map[string]any{"code": "print('own tools work')"}); !strings.Contains(r.text, "own tools work") {
		t.Errorf("run_code: %q", r.text)
	}
	if err := s.cs.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	log := s.stderr.String()
	if strings.Contains(log, secret) {
		t.Errorf("the secret appears in vial's log")
	}
	for _, name := range []string{"missing", "exits", "hangs"} {
		if !strings.Contains(log, "server="+name) {
			t.Errorf("the log does not name the broken server %s", name)
		}
	}
}

// TestDownstreamApproval: require_confirmation = ["everything__*"] asks a
// person before the call reaches the server.
func TestDownstreamApproval(t *testing.T) {
	mods := nodeModules(t)
	entry := filepath.Join(mods, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	cfg := writeTree(t, map[string]string{
		"config/execution.toml": "[sandbox]\nruntime = \"runc\"\n",
		"config/mcp.toml":       fmt.Sprintf("[servers.everything]\nurl = \"stdio://node %s stdio\"\n", entry),
		"agents/d/agent.toml":   "[metadata]\nagent_id = \"d\"\n[hitl]\nrequire_confirmation = [\"everything__*\"]\n",
	})
	requireE2E(t)
	var asked []string
	answer := "decline"
	client := sdk.NewClient(&sdk.Implementation{Name: "approver", Version: "1"}, &sdk.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			asked = append(asked, req.Params.Message)
			if answer == "accept" {
				return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}, nil
			}
			return &sdk.ElicitResult{Action: answer}, nil
		},
	})
	cmd := exec.Command(vialBin, "serve", "--state-dir", newStateDir(t), "--config-dir", cfg, "--agent", "d")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	cs, err := client.Connect(t.Context(), &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "m1"}})
	if err != nil || !res.IsError || len(asked) != 1 || !strings.Contains(asked[0], `everything__echo`) || !strings.Contains(asked[0], "m1") {
		t.Fatalf("declined: %v %q, asked %q", err, sdkText(res), asked)
	}
	answer = "accept"
	res, err = cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "m2"}})
	if err != nil || res.IsError || !strings.Contains(sdkText(res), "m2") || len(asked) != 2 {
		t.Fatalf("approved: %v %q", err, sdkText(res))
	}
}

func sdkText(r *sdk.CallToolResult) string {
	if r == nil {
		return ""
	}
	var parts []string
	for _, c := range r.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, "\n")
}
