package downstream_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/mcp/downstream"
)

// mcpServersEnv names the directory that scripts/install-test-mcp-servers.sh
// installs the npm MCP servers into; unset, the tests look where the script
// installs by default.
const mcpServersEnv = "VIAL_TEST_MCP_SERVERS"

// npmServer returns the path of an installed npm MCP server's entry point
// (e.g. "server-everything"), or skips (fails under CI=true) with the
// command that installs it.
func npmServer(t *testing.T, pkg string) string {
	t.Helper()
	testutil.RequireBinary(t, "node")
	dir := os.Getenv(mcpServersEnv)
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "vial", "test-mcp-servers")
	}
	entry := filepath.Join(dir, "node_modules", "@modelcontextprotocol", pkg, "dist", "index.js")
	_, err := os.Stat(entry)
	testutil.Require(t, err == nil, fmt.Sprintf("npm's @modelcontextprotocol/%s is not in %s: run scripts/install-test-mcp-servers.sh (or set %s)", pkg, dir, mcpServersEnv))
	return entry
}

func npmStdio(name, entry string, args ...string) downstream.Server {
	return downstream.Server{
		Name: name, Transport: downstream.TransportStdio,
		Command: append([]string{"node", entry}, args...),
		Settings: downstream.Settings{
			ConnectionTimeout: 20 * time.Second, ToolTimeout: 20 * time.Second, MaxRetries: 1, CacheTools: true,
		},
	}
}

// everythingOver checks server-everything's tools through m: namespaced,
// described with the server's name, echo round-trips, and structured
// content with its output schema comes through.
func everythingOver(t *testing.T, m *downstream.Manager) {
	t.Helper()
	tools := m.Tools(t.Context())
	names := toolNames(tools)
	for _, want := range []string{"everything__echo", "everything__get-sum", "everything__get-structured-content"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not offered; got %v (status %+v)", want, names, m.Status())
		}
	}
	for _, tl := range tools {
		if !strings.HasPrefix(tl.Def.Name, "everything__") || !strings.Contains(tl.Def.Description, `MCP server "everything"`) {
			t.Errorf("tool %s: description %q", tl.Def.Name, tl.Def.Description)
		}
		if tl.Def.Name == "everything__echo" && !strings.Contains(string(tl.Def.RawInputSchema), `"message"`) {
			t.Errorf("echo's schema: %s", tl.Def.RawInputSchema)
		}
	}
	res, err := m.Call(t.Context(), "everything__echo", map[string]any{"message": "hello from vial"})
	if err != nil {
		t.Fatal(err)
	}
	if got := textOf(res); got != "Echo: hello from vial" || res.IsError {
		t.Errorf("echo: %q (isError %v)", got, res.IsError)
	}
	res, err = m.Call(t.Context(), "everything__get-structured-content", map[string]any{"location": "New York"})
	if err != nil {
		t.Fatal(err)
	}
	if sc, _ := json.Marshal(res.StructuredContent); res.IsError || !strings.Contains(string(sc), "temperature") {
		t.Errorf("structured content: %s (isError %v, text %q)", sc, res.IsError, textOf(res))
	}
	// A tool error of the server is a result, not an error.
	res, err = m.Call(t.Context(), "everything__get-sum", map[string]any{"a": "not a number"})
	if err == nil && !res.IsError {
		t.Errorf("get-sum with bad arguments: %q, want an error", textOf(res))
	}
	if st := m.Status()[0]; st.ServerName == "" || st.State != downstream.StateConnected {
		t.Errorf("status %+v", st)
	}
}

func TestEverythingStdio(t *testing.T) {
	entry := npmServer(t, "server-everything")
	t.Setenv("VIAL_TEST_SECRET_TOKEN", "do-not-pass-me")
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{npmStdio("everything", entry, "stdio")}})
	everythingOver(t, m)
	// Its get-env tool shows the environment vial gave it.
	if slices.Contains(toolNames(m.Tools(t.Context())), "everything__get-env") {
		res, err := m.Call(t.Context(), "everything__get-env", nil)
		if err != nil || strings.Contains(textOf(res), "do-not-pass-me") {
			t.Errorf("get-env: %v; vial's environment leaked: %v", err, strings.Contains(textOf(res), "do-not-pass-me"))
		}
	}
}

// startNode runs server-everything with a network transport on a free
// loopback port and returns its base URL once it accepts connections.
func startNode(t *testing.T, entry, mode string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("node", entry, mode)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("server-everything %s:\n%s", mode, out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("server-everything %s did not listen on %s: %v\n%s", mode, addr, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEverythingStreamableHTTP(t *testing.T) {
	entry := npmServer(t, "server-everything")
	base := startNode(t, entry, "streamableHttp")
	srv := downstream.Server{Name: "everything", Transport: downstream.TransportHTTP, URL: base + "/mcp",
		Settings: downstream.Settings{ConnectionTimeout: 10 * time.Second, ToolTimeout: 10 * time.Second, CacheTools: true}}
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	everythingOver(t, m)
}

func TestEverythingSSE(t *testing.T) {
	entry := npmServer(t, "server-everything")
	base := startNode(t, entry, "sse")
	srv := downstream.Server{Name: "everything", Transport: downstream.TransportSSE, URL: base + "/sse",
		Settings: downstream.Settings{ConnectionTimeout: 10 * time.Second, ToolTimeout: 10 * time.Second, CacheTools: true}}
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}})
	everythingOver(t, m)
}

// server-filesystem as a host process on a directory.
func TestFilesystemStdio(t *testing.T) {
	entry := npmServer(t, "server-filesystem")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from the workspace"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{npmStdio("filesystem", entry, dir)}})
	if names := toolNames(m.Tools(t.Context())); !slices.Contains(names, "filesystem__read_text_file") || !slices.Contains(names, "filesystem__list_directory") {
		t.Fatalf("tools: %v (status %+v)", names, m.Status())
	}
	res, err := m.Call(t.Context(), "filesystem__list_directory", map[string]any{"path": dir})
	if err != nil || !strings.Contains(textOf(res), "hello.txt") {
		t.Fatalf("list_directory: %v %q", err, textOf(res))
	}
	res, err = m.Call(t.Context(), "filesystem__read_text_file", map[string]any{"path": filepath.Join(dir, "hello.txt")})
	if err != nil || !strings.Contains(textOf(res), "hello from the workspace") {
		t.Fatalf("read_text_file: %v %q", err, textOf(res))
	}
	// Outside its directory the server itself refuses.
	res, err = m.Call(t.Context(), "filesystem__read_text_file", map[string]any{"path": "/etc/hostname"})
	if err == nil && !res.IsError {
		t.Errorf("read outside the directory: %q", textOf(res))
	}
}
