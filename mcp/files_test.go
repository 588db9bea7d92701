package mcp

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vial-run/vial/service"
)

func TestFileRoundTrip(t *testing.T) {
	s, env, _ := newTestServer(t, Options{})
	ws := env.workspace(t, s)
	if r := callDirect(t, s, "write_file", map[string]any{"path": "sub/dir/a.txt", "content": "héllo\nworld\n"}); r.isError() || !strings.Contains(r.text(), "/workspace/sub/dir/a.txt") {
		t.Fatalf("write_file: %q", r.text())
	}
	if b, err := os.ReadFile(filepath.Join(ws, "sub/dir/a.txt")); err != nil || string(b) != "héllo\nworld\n" {
		t.Fatalf("file on disk = %q, %v", b, err)
	}
	for _, p := range []string{"sub/dir/a.txt", "/workspace/sub/dir/a.txt", "./sub/../sub/dir/a.txt"} {
		if r := callDirect(t, s, "read_file", map[string]any{"path": p}); r.isError() || r.text() != "héllo\nworld\n" {
			t.Errorf("read_file(%q) = %q", p, r.text())
		}
	}
	// Overwrite truncates.
	callDirect(t, s, "write_file", map[string]any{"path": "sub/dir/a.txt", "content": "x"})
	if r := callDirect(t, s, "read_file", map[string]any{"path": "sub/dir/a.txt"}); r.text() != "x" {
		t.Errorf("after overwrite: %q", r.text())
	}
	// Binary data goes through base64.
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	callDirect(t, s, "write_file", map[string]any{"path": "b.bin", "content": base64.StdEncoding.EncodeToString(bin), "encoding": "base64"})
	if r := callDirect(t, s, "read_file", map[string]any{"path": "b.bin"}); !r.isError() || !strings.Contains(r.text(), `encoding="base64"`) {
		t.Errorf("binary read as text: %q", r.text())
	}
	if r := callDirect(t, s, "read_file", map[string]any{"path": "b.bin", "encoding": "base64"}); r.text() != base64.StdEncoding.EncodeToString(bin) {
		t.Errorf("base64 read = %q", r.text())
	}
	// Listing.
	r := callDirect(t, s, "list_directory", nil)
	if r.isError() || !strings.Contains(r.text(), "sub/") || !strings.Contains(r.text(), "b.bin  (5 bytes)") {
		t.Errorf("list_directory: %q", r.text())
	}
	if r := callDirect(t, s, "list_directory", map[string]any{"path": "b.bin"}); !r.isError() {
		t.Errorf("listing a file: %q", r.text())
	}
	// Deleting.
	if r := callDirect(t, s, "delete_file", map[string]any{"path": "sub"}); !r.isError() || !strings.Contains(r.text(), "recursive=true") {
		t.Errorf("deleting a non-empty dir: %q", r.text())
	}
	if r := callDirect(t, s, "delete_file", map[string]any{"path": "sub", "recursive": true}); r.isError() {
		t.Errorf("recursive delete: %q", r.text())
	}
	if _, err := os.Stat(filepath.Join(ws, "sub")); !os.IsNotExist(err) {
		t.Errorf("sub still exists: %v", err)
	}
	if r := callDirect(t, s, "delete_file", map[string]any{"path": "/workspace"}); !r.isError() {
		t.Errorf("deleting /workspace itself was allowed")
	}
	if r := callDirect(t, s, "read_file", map[string]any{"path": "nope.txt"}); !r.isError() || r.text() != "reading: /workspace/nope.txt does not exist" {
		t.Errorf("missing file: %q", r.text())
	}
}

func TestFileSizeCaps(t *testing.T) {
	s, env, _ := newTestServer(t, Options{}, service.Options{Limits: service.Limits{MaxFileBytes: 1024, MaxReadBytes: 1000}})
	ws := env.workspace(t, s)
	if r := callDirect(t, s, "write_file", map[string]any{"path": "big", "content": strings.Repeat("a", 2000)}); !r.isError() || !strings.Contains(r.text(), "above the 1.0 KiB write limit") {
		t.Errorf("oversized write: %q", r.text())
	}
	// Reads of larger files come in pages that say how to read on.
	if err := os.WriteFile(filepath.Join(ws, "big"), []byte(strings.Repeat("ab", 2048)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := callDirect(t, s, "read_file", map[string]any{"path": "big"})
	if r.isError() || !strings.Contains(r.text(), "bytes 0 to 1000 of 4096") || !strings.Contains(r.text(), "offset=1000") {
		t.Errorf("first page: %q", r.text())
	}
	r = callDirect(t, s, "read_file", map[string]any{"path": "big", "offset": 4000})
	if r.isError() || !strings.Contains(r.text(), "bytes 4000 to 4096 of 4096") || !strings.Contains(r.text(), "end of file") {
		t.Errorf("last page: %q", r.text())
	}
}

// TestPathEscapes checks that nothing outside the workspace can be read,
// written, listed or deleted: not by "..", not by absolute paths, not
// through symlinks the sandboxed code planted.
func TestPathEscapes(t *testing.T) {
	s, env, _ := newTestServer(t, Options{})
	ws := env.workspace(t, s)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("TOPSECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Symlinks an attacker in the sandbox could create.
	for name, target := range map[string]string{
		"abs-link":   secret, // absolute, to the host file
		"rel-link":   "../../" + filepath.Base(outside) + "/secret",
		"dir-link":   outside,       // a directory outside
		"etc-link":   "/etc",        // absolute, as the sandbox would write it
		"shadow":     "/etc/shadow", // absolute
		"dotdot-dir": "..",          // the workspace's parent
	} {
		if err := os.Symlink(target, filepath.Join(ws, name)); err != nil {
			t.Fatal(err)
		}
	}
	read := []string{
		"../../etc/shadow", "../secret", "/etc/passwd", "/etc/shadow", "/workspace/../etc/passwd",
		"abs-link", "rel-link", "dir-link/secret", "etc-link/passwd", "shadow", "dotdot-dir/" + filepath.Base(ws) + "/../x",
	}
	for _, p := range read {
		r := callDirect(t, s, "read_file", map[string]any{"path": p})
		if !r.isError() || strings.Contains(r.text(), "TOPSECRET") || strings.Contains(r.text(), "root:") {
			t.Errorf("read_file(%q) was not refused: %q", p, r.text())
		}
		if strings.Contains(r.text(), ws) || strings.Contains(r.text(), outside) {
			t.Errorf("read_file(%q) leaked a host path: %q", p, r.text())
		}
	}
	for _, p := range []string{"../evil", "/tmp/evil", "dir-link/evil", "dotdot-dir/evil", "etc-link/evil"} {
		r := callDirect(t, s, "write_file", map[string]any{"path": p, "content": "x"})
		if !r.isError() {
			t.Errorf("write_file(%q) was not refused: %q", p, r.text())
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
		t.Errorf("a file was written outside the workspace")
	}
	for _, p := range []string{"dir-link", "..", "/etc"} {
		if r := callDirect(t, s, "list_directory", map[string]any{"path": p}); !r.isError() {
			t.Errorf("list_directory(%q) was not refused: %q", p, r.text())
		}
	}
	if r := callDirect(t, s, "delete_file", map[string]any{"path": "dir-link/secret"}); !r.isError() {
		t.Errorf("delete through a symlink was not refused: %q", r.text())
	}
	// Deleting the link itself is fine and leaves the target alone.
	if r := callDirect(t, s, "delete_file", map[string]any{"path": "abs-link"}); r.isError() {
		t.Errorf("deleting a symlink: %q", r.text())
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("symlink target was removed: %v", err)
	}
	// search_files does not follow links out.
	r := callDirect(t, s, "search_files", map[string]any{"pattern": "*", "contains": "TOPSECRET"})
	if r.isError() || strings.Contains(r.text(), "secret  (") {
		t.Errorf("search_files followed a link out: %q", r.text())
	}
	if r := callDirect(t, s, "read_file", map[string]any{"path": "../../etc/shadow"}); !strings.Contains(r.text(), "leads outside /workspace") {
		t.Errorf("refusal message unclear: %q", r.text())
	}
	if r := callDirect(t, s, "read_file", map[string]any{"path": "shadow"}); !strings.Contains(r.text(), "leads outside /workspace") {
		t.Errorf("symlink refusal message unclear: %q", r.text())
	}
}

func TestFIFODoesNotHang(t *testing.T) {
	s, env, _ := newTestServer(t, Options{})
	ws := env.workspace(t, s)
	if err := syscall.Mkfifo(filepath.Join(ws, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan toolResult, 3)
	go func() {
		done <- callDirect(t, s, "read_file", map[string]any{"path": "pipe"})
		done <- callDirect(t, s, "write_file", map[string]any{"path": "pipe", "content": "x"})
		done <- callDirect(t, s, "search_files", map[string]any{"pattern": "*", "contains": "x"})
	}()
	for i := range 3 {
		select {
		case r := <-done:
			if i < 2 && !r.isError() {
				t.Errorf("call %d on a FIFO succeeded: %q", i, r.text())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a file tool hung on a FIFO")
		}
	}
}

func TestSearchFiles(t *testing.T) {
	s, env, _ := newTestServer(t, Options{}, service.Options{Limits: service.Limits{MaxSearchResults: 3}})
	ws := env.workspace(t, s)
	files := map[string]string{
		"main.py":            "import os\nprint('needle here')\n",
		"src/util.py":        "def f():\n    return 1\n",
		"src/deep/needle.go": "package needle\n",
		"README.md":          "a needle in a haystack\n",
		"data/blob.bin":      "\x00\x01needle",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ws, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args map[string]any
		want []string
		not  []string
	}{
		{"glob name", map[string]any{"pattern": "*.py"}, []string{"/workspace/main.py", "/workspace/src/util.py"}, []string{"needle.go"}},
		{"glob path", map[string]any{"pattern": "src/*.py"}, []string{"/workspace/src/util.py"}, []string{"main.py"}},
		{"substring", map[string]any{"pattern": "NEEDLE"}, []string{"/workspace/src/deep/needle.go"}, []string{"main.py"}},
		{"under path", map[string]any{"pattern": "*", "path": "src/deep"}, []string{"/workspace/src/deep/needle.go"}, []string{"util.py"}},
		{"contains", map[string]any{"pattern": "*", "contains": "needle"}, []string{"/workspace/main.py", "2: print('needle here')", "/workspace/README.md"}, []string{"blob.bin", "util.py"}},
		{"bounded", map[string]any{"pattern": "*"}, []string{"stopped early"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := callDirect(t, s, "search_files", tc.args)
			if r.isError() {
				t.Fatalf("search_files: %q", r.text())
			}
			for _, w := range tc.want {
				if !strings.Contains(r.text(), w) {
					t.Errorf("result lacks %q:\n%s", w, r.text())
				}
			}
			for _, n := range tc.not {
				if strings.Contains(r.text(), n) {
					t.Errorf("result has %q:\n%s", n, r.text())
				}
			}
		})
	}
	if r := callDirect(t, s, "search_files", map[string]any{"pattern": "[a-"}); !r.isError() {
		t.Errorf("bad glob accepted")
	}
}
