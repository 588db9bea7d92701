package downstream_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/mcp/downstream"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/runc"
)

// TestSandboxedFilesystemUnderRunc runs npm's server-filesystem as a
// sandboxed server in a real runc sandbox, started through the runtime's
// public API (Engine.Start) as the service layer will: the sandbox's stdio
// is the MCP transport. The server is allowed the whole of "/" so that
// only the sandbox stands between it and the host: it reads the
// workspace, and a host file outside the sandbox does not exist for it.
func TestSandboxedFilesystemUnderRunc(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc")
	entry := npmServer(t, "server-filesystem")
	modules := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(entry)))) // .../node_modules

	stateDir := t.TempDir()
	e, err := runtime.New(runtime.Options{StateDir: stateDir, Backends: []*runtime.Backend{runc.New()}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := rootfs.Host(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	workspace := t.TempDir()
	if err := os.WriteFile(filepath.Join(workspace, "hello.txt"), []byte("hello from the sandbox's workspace"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(t.TempDir(), "host-secret.txt")
	if err := os.WriteFile(hostFile, []byte("a host file"), 0o644); err != nil {
		t.Fatal(err)
	}

	var sandboxes []*runtime.Sandbox
	starter := func(ctx context.Context, server string, argv, env []string) (io.WriteCloser, io.Reader, io.Closer, error) {
		sb, err := e.Start(ctx, "runc", runtime.Request{
			Image:     img,
			Args:      argv,
			Env:       env,
			Workspace: workspace,
			Binds:     []rootfs.Bind{{Source: modules, Target: "/opt/mcp/node_modules"}},
		})
		if err != nil {
			return nil, nil, nil, err
		}
		sandboxes = append(sandboxes, sb)
		// The Starter drains stderr: a full pipe would stop the server.
		go io.Copy(io.Discard, sb.Stderr())
		return sb.Stdin(), sb.Stdout(), sb, nil
	}
	srv := downstream.Server{
		Name: "filesystem", Transport: downstream.TransportStdio, Sandboxed: true,
		Command:  []string{"node", "/opt/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "/"},
		Settings: downstream.Settings{ConnectionTimeout: 30e9, ToolTimeout: 30e9, CacheTools: true},
	}
	m, _ := newManager(t, downstream.Options{Servers: []downstream.Server{srv}, Starter: starter})

	if _, err := m.Call(t.Context(), "filesystem__list_directory", map[string]any{"path": "/workspace"}); err == nil {
		t.Fatal("called before listing: want not found")
	}
	m.Tools(t.Context())
	res, err := m.Call(t.Context(), "filesystem__list_directory", map[string]any{"path": "/workspace"})
	if err != nil || !strings.Contains(textOf(res), "hello.txt") {
		t.Fatalf("list /workspace: %v %q (status %+v)", err, textOf(res), m.Status())
	}
	res, err = m.Call(t.Context(), "filesystem__read_text_file", map[string]any{"path": "/workspace/hello.txt"})
	if err != nil || textOf(res) != "hello from the sandbox's workspace" {
		t.Fatalf("read: %v %q", err, textOf(res))
	}
	res, err = m.Call(t.Context(), "filesystem__read_text_file", map[string]any{"path": hostFile})
	t.Logf("host file: %q", textOf(res))
	if err != nil || !res.IsError || strings.Contains(textOf(res), "a host file") {
		t.Errorf("read of a host file outside the sandbox: %v %q", err, textOf(res))
	}
	if len(sandboxes) != 1 {
		t.Errorf("%d sandboxes started, want 1", len(sandboxes))
	}
	m.Close()
	for _, sb := range sandboxes {
		select {
		case <-sb.Done():
		default:
			t.Errorf("sandbox %s still runs after Close", sb.ID)
		}
	}
}
