package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/internal/testutil"
)

// Issue 10: nothing a sandbox does reaches vial's own process unbounded.
// Each hostile program runs in a real sandbox under `vial serve`, driven
// by the official Go SDK's client (and the TypeScript one where a client's
// own limit is the point), on runc and runsc. Through all of them the
// server's peak RSS stays under maxServeRSS, the client stays connected,
// and the next call works.

// maxServeRSS is the bound README's "What protects the host" states for
// vial serve's memory under any sandbox behaviour.
const maxServeRSS = 300 << 20

// rss returns the current and the peak resident set of pid, in bytes.
func rss(t *testing.T, pid int) (cur, peak int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading vial serve's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			cur = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return cur, peak
}

// fakePyplot makes the driver's figure capture see 16 figures of 3.9 MB
// each: a program can always pretend to be matplotlib.
const fakePyplot = `
import sys, types, os
class _Fig:
    def savefig(self, b, **kw):
        b.write(b'\x89PNG\r\n\x1a\n' + os.urandom(3900000))
plt = types.ModuleType('matplotlib.pyplot')
plt.get_fignums = lambda: list(range(1, 17))
plt.figure = lambda n: _Fig()
plt.close = lambda *a: None
sys.modules['matplotlib.pyplot'] = plt
`

func TestHostileSandboxes(t *testing.T) {
	for _, rt := range runtimes() {
		t.Run(rt, func(t *testing.T) {
			s := startServe(t, rt, "--pool-size", "0")
			pid := s.cmd.Process.Pid

			t.Run("wire flood between calls", func(t *testing.T) {
				s := s.on(t)
				s.mustOK("run_code", map[string]any{"code": testutil.WireFloodPrelude})
				s.mustOK("run_code", map[string]any{"code": `flood(b'vial1 result 3\n', b'x 0\n\n' * 4096, 0.5)`})
				time.Sleep(3 * time.Second)
				// The context was ended with a reason; the default context is
				// replaced, and the next call says its state was reset.
				r := s.mustOK("run_code", map[string]any{"code": "'flood' in dir()"})
				if r.sc["value"] != "False" || !strings.Contains(strings.ToLower(r.text), "reset") && !strings.Contains(strings.ToLower(r.text), "new") {
					t.Errorf("after a flood between calls: %s", r.text)
				}
			})

			t.Run("wire flood in a call", func(t *testing.T) {
				s := s.on(t)
				id := s.newContext("python")
				s.mustOK("run_code", map[string]any{"context_id": id, "code": testutil.WireFloodPrelude})
				r := s.call("run_code", map[string]any{"context_id": id, "code": `flood(b'vial1 result 2\n', b'x 0\n\n' * 4096, 0); time.sleep(60)`, "timeout": 30})
				if !r.isError && r.sc["dead"] != true {
					t.Errorf("a forged answer was accepted: %s", r.text)
				}
				if r := s.mustOK("run_code", map[string]any{"code": "6 * 7"}); r.sc["value"] != "42" {
					t.Errorf("the next call: %s", r.text)
				}
			})

			t.Run("16 large images", func(t *testing.T) {
				s := s.on(t)
				id := s.newContext("python")
				res, err := s.cs.CallTool(s.ctx, &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"context_id": id, "code": fakePyplot}})
				if err != nil {
					t.Fatalf("run_code: %v", err)
				}
				b, _ := json.Marshal(res)
				r := decode(res)
				t.Logf("16 figures of 3.9 MB: a %d-byte result with %d images", len(b), r.images)
				if len(b) > 5<<20 {
					t.Errorf("the result is %d bytes", len(b))
				}
				if !strings.Contains(r.text, "omitted") && !strings.Contains(r.text, "left out") {
					t.Errorf("the result does not say images were left out: %s", r.text)
				}
				if r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "1 + 1"}); r.sc["value"] != "2" {
					t.Errorf("the next call: %s", r.text)
				}
			})

			t.Run("1 MB of < on stdout", func(t *testing.T) {
				s := s.on(t)
				res, err := s.cs.CallTool(s.ctx, &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"code": "print('<' * (1 << 20)); print('\\x00' * (1 << 20))"}})
				if err != nil {
					t.Fatalf("run_code: %v", err)
				}
				b, _ := json.Marshal(res)
				if len(b) > 5<<20 {
					t.Errorf("the result is %d bytes as JSON", len(b))
				}
				if r := s.mustOK("run_code", map[string]any{"code": "1"}); r.sc["value"] != "1" {
					t.Errorf("the next call: %s", r.text)
				}
			})

			t.Run("20000-deep tree", func(t *testing.T) {
				s := s.on(t)
				// In the shared workspace, whose file tools need no sandbox.
				// Under runsc, gVisor's own memory for 20,000 nested
				// directories can reach the sandbox's limit first: the
				// context dies (its limit held) and the tree it made so far
				// stays for the file tools.
				r := s.mustOK("run_code", map[string]any{"timeout": 120, "code": deepTree("deep")})
				t.Logf("making the tree: %s", firstLines(r.text, 1))
				start := time.Now()
				r = s.mustOK("search_files", map[string]any{"pattern": "*.txt", "contains": "needle"})
				t.Logf("search_files over the tree: %v: %s", time.Since(start), firstLines(r.text, 3))
				if !strings.Contains(r.text, "stopped") {
					t.Errorf("search_files does not say where it stopped: %s", firstLines(r.text, 5))
				}
				s.mustOK("list_directory", map[string]any{"path": "deep"})
				start = time.Now()
				s.mustOK("delete_file", map[string]any{"path": "deep", "recursive": true})
				t.Logf("delete_file of the tree: %v", time.Since(start))
				if r := s.mustOK("list_directory", nil); strings.Contains(r.text, "deep") {
					t.Errorf("the tree is still there: %s", r.text)
				}
				// Again in a context's own workspace, which goes with it.
				id := s.newContext("python")
				r = s.mustOK("run_code", map[string]any{"context_id": id, "timeout": 120, "code": deepTree("deep2")})
				t.Logf("making a second tree: %s", firstLines(r.text, 1))
				if r := s.call("stop_context", map[string]any{"context_id": id}); r.isError && !strings.Contains(r.text, "no context") {
					t.Errorf("stop_context: %s", r.text)
				}
				if r := s.mustOK("run_code", map[string]any{"code": "6 * 7"}); r.sc["value"] != "42" {
					t.Errorf("the next call: %s", r.text)
				}
			})

			t.Run("1000 calls queued on one context", func(t *testing.T) {
				s := s.on(t)
				id := s.newContext("python")
				var wg sync.WaitGroup
				var refused atomic.Int32
				for range 1000 {
					wg.Go(func() {
						res, err := s.cs.CallTool(s.ctx, &sdk.CallToolParams{Name: "run_code", Arguments: map[string]any{"context_id": id, "code": "import time; time.sleep(0.5)"}})
						if err == nil && res.IsError {
							refused.Add(1)
						}
					})
				}
				time.Sleep(500 * time.Millisecond) // the calls are in
				var worst time.Duration
				for range 10 {
					start := time.Now()
					if err := s.cs.Ping(s.ctx, nil); err != nil {
						t.Fatalf("ping: %v", err)
					}
					s.mustOK("list_contexts", nil)
					worst = max(worst, time.Since(start))
				}
				t.Logf("with 1000 calls on one context: ping + list_contexts took at most %v; %d calls refused at once", worst, refused.Load())
				if worst > 100*time.Millisecond {
					t.Errorf("ping + list_contexts took %v under the queue, want under 100 ms", worst)
				}
				s.mustOK("stop_context", map[string]any{"context_id": id})
				wg.Wait()
			})

			t.Run("full /tmp in bash", func(t *testing.T) {
				s := s.on(t)
				r := s.mustOK("run_shell", map[string]any{"command": "head -c 200M /dev/zero > /tmp/fill; echo still-visible; echo on-stderr >&2"})
				for _, want := range []string{"still-visible", "on-stderr", "No space left"} {
					if !strings.Contains(r.text, want) {
						t.Errorf("full /tmp: no %q in %s", want, r.text)
					}
				}
				s.mustOK("run_shell", map[string]any{"command": "rm -f /tmp/fill"})
			})

			t.Run("34 MB exception message", func(t *testing.T) {
				s := s.on(t)
				id := s.newContext("python")
				s.mustOK("run_code", map[string]any{"context_id": id, "code": "kept = 'yes'"})
				r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "raise ValueError('x' * 34_000_000)"})
				if r.sc["dead"] == true || !strings.Contains(r.text, "ValueError") {
					t.Errorf("a huge exception: %s", firstLines(r.text, 3))
				}
				if r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "kept"}); r.sc["value"] != "'yes'" {
					t.Errorf("the context lost its state: %s", r.text)
				}
			})

			t.Run("spinning thread after a timeout", func(t *testing.T) {
				s := s.on(t)
				id := s.newContext("python")
				r := s.mustOK("run_code", map[string]any{"context_id": id, "timeout": 1, "code": `
import threading, time
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
time.sleep(100)`})
				if strings.Contains(r.text, "still usable") {
					t.Errorf("a context with a spinning thread is called usable: %s", r.text)
				}
			})

			cur, peak := rss(t, pid)
			t.Logf("vial serve on %s: RSS %d MiB now, %d MiB at most", rt, cur>>20, peak>>20)
			if peak > maxServeRSS {
				t.Errorf("vial serve's peak RSS was %d MiB, over the %d MiB bound", peak>>20, maxServeRSS>>20)
			}
			s.closeAndCheckClean(s.sandboxIDs())
		})
	}
}

// deepTree is Python that nests 20,000 directories under /workspace/NAME
// and leaves a file at the bottom.
func deepTree(name string) string {
	return `
import os
os.chdir('/workspace')
os.mkdir('` + name + `')
os.chdir('` + name + `')
for i in range(20000):
    os.mkdir('d')
    os.chdir('d')
open('bottom.txt', 'w').write('needle')
os.chdir('/workspace')
print('made')`
}

// TestDiskQuotaAndUIDs: a context cannot put more than its disk_limit of
// bytes, nor more files than its inode limit, onto the host's disk
// (measured with df on the state directory's file system); two contexts
// run as different host uids, and the inotify exhaustion of one does not
// touch the other.
func TestDiskQuotaAndUIDs(t *testing.T) {
	for _, rt := range runtimes() {
		t.Run(rt, func(t *testing.T) {
			s := startServe(t, rt, "--pool-size", "0", "--disk", "64m")
			t.Run("disk quota", func(t *testing.T) {
				s := s.on(t)
				before := dfUsed(t, s.stateDir)
				r := s.mustOK("run_shell", map[string]any{"command": "dd if=/dev/zero of=/workspace/fill bs=1M count=200 2>&1; df -k /workspace | tail -1"})
				if !strings.Contains(r.text, "No space left") {
					t.Errorf("200 MB into a 64 MiB workspace: %s", r.text)
				}
				used, imgs := dfUsed(t, s.stateDir)-before, volumeBytes(t, s.stateDir)
				t.Logf("after 200 MB into a 64 MiB workspace: the state directory's file system grew %d MiB (df), workspace images hold %d MiB", used>>20, imgs>>20)
				if imgs > 64<<20 {
					t.Errorf("the workspace images hold %d MiB, over the 64 MiB limit", imgs>>20)
				}
				r = s.mustOK("run_code", map[string]any{"code": `
import os
os.remove('/workspace/fill')
os.mkdir('/workspace/many')
n = 0
try:
    while n < 100000:
        open('/workspace/many/%d' % n, 'w').close()
        n += 1
except OSError as e:
    print('stopped at', n, e.strerror)`})
				if !strings.Contains(r.text, "stopped at") || strings.Contains(r.text, "stopped at 100000") {
					t.Errorf("files into a 64 MiB workspace (4096 inodes): %s", r.text)
				}
				s.mustOK("delete_file", map[string]any{"path": "many", "recursive": true})
				if r := s.mustOK("run_code", map[string]any{"code": "open('/workspace/after.txt', 'w').write('ok')"}); r.isError {
					t.Errorf("writing after the quota was hit: %s", r.text)
				}
			})

			if rt == "runc" { // runsc's uids are gVisor's own, and so are its per-user limits
				t.Run("distinct host uids", func(t *testing.T) {
					s := s.on(t)
					a, b := s.newContext("python"), s.newContext("python")
					ua := s.mustOK("run_code", map[string]any{"context_id": a, "code": "import os; os.getuid()"}).sc["value"]
					ub := s.mustOK("run_code", map[string]any{"context_id": b, "code": "import os; os.getuid()"}).sc["value"]
					if ua == ub || ua == "65534" {
						t.Errorf("two contexts run as uid %v and %v", ua, ub)
					}
					r := s.mustOK("run_code", map[string]any{"context_id": a, "code": `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while len(fds) < 10000:
    fd = libc.inotify_init()
    if fd < 0:
        break
    fds.append(fd)
len(fds)`})
					t.Logf("context a (uid %v) took %v inotify instances", ua, r.sc["value"])
					r = s.mustOK("run_code", map[string]any{"context_id": b, "code": "import ctypes; ctypes.CDLL(None).inotify_init() >= 0"})
					if r.sc["value"] != "True" {
						t.Errorf("context b (uid %v) got no inotify instance after a took them all: %s", ub, r.text)
					}
					s.mustOK("stop_context", map[string]any{"context_id": a})
					s.mustOK("stop_context", map[string]any{"context_id": b})
				})
			}

			s.closeAndCheckClean(s.sandboxIDs())
		})
	}
}

// dfUsed returns the bytes in use on dir's file system, as df shows them.
func dfUsed(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// volumeBytes returns the disk space the workspace images under dir
// take (allocated blocks, not their sparse size).
func volumeBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".img") {
			var st syscall.Stat_t
			if syscall.Stat(p, &st) == nil {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	return strings.Join(l[:min(n, len(l))], "\n")
}

// TestResponseBudgetTypeScriptClient: the official TypeScript client drops
// the connection when a message is over 10 MiB. 1 MB of '<' and of NUL on
// stdout (six bytes each as JSON) and a 10 MiB file read stay under it:
// the client stays connected and the next call works.
func TestResponseBudgetTypeScriptClient(t *testing.T) {
	res := runTS(t, newStateDir(t), []string{"--pool-size", "0"}, "none", []tsStep{
		{Tool: "run_code", Args: map[string]any{"code": "print('<' * (1 << 20)); print('\\x00' * (1 << 20))"}},
		{Tool: "run_code", Args: map[string]any{"code": "open('/workspace/big.txt', 'w').write('<' * (10 << 20))"}},
		{Tool: "read_file", Args: map[string]any{"path": "big.txt"}},
		{Tool: "read_file", Args: map[string]any{"path": "big.txt", "encoding": "base64"}},
		{Tool: "run_code", Args: map[string]any{"code": "6 * 7"}},
	})
	if len(res.Steps) != 5 {
		t.Fatalf("%d steps: %+v", len(res.Steps), res.Steps)
	}
	for i, st := range res.Steps {
		if st.Error != "" {
			t.Errorf("step %d (%s): the client failed: %s", i, st.Tool, st.Error)
		}
	}
	if !strings.Contains(res.Steps[4].Text, "42") {
		t.Errorf("the last call: %q", res.Steps[4].Text)
	}
	if !strings.Contains(res.Steps[2].Text, "offset") {
		t.Errorf("a 10 MiB read does not say how to read on: %q", firstLines(res.Steps[2].Text, 3))
	}
}

// TestClientStopsReading: a client that stops reading cannot hold the
// server: when it then closes stdin, everything is torn down within 5 s.
func TestClientStopsReading(t *testing.T) {
	requireE2E(t)
	state := newStateDir(t)
	cmd := exec.Command(vialBin, "--state-dir", state, "serve", "--runtime", "runc", "--pool-size", "0")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe() // never read after the handshake
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("vial serve stderr:\n%s", stderr.String())
		}
	})
	send := func(v map[string]any) {
		b, _ := json.Marshal(v)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatalf("writing to vial serve: %v", err)
		}
	}
	send(map[string]any{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-06-18", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "stops-reading", "version": "1"}}})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "serverInfo") {
		t.Fatalf("initialize: %q %v", line, err)
	}
	send(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	// Calls with large answers, never read: the pipe to the client fills.
	for i := range 40 {
		send(map[string]any{"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": map[string]any{
			"name": "run_code", "arguments": map[string]any{"code": "print('y' * 500000)"}}})
	}
	deadline := time.Now().Add(60 * time.Second)
	var ids []string
	for time.Now().Before(deadline) {
		out, _ := exec.Command(vialBin, "--state-dir", state, "ps").CombinedOutput()
		ids = nil
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] != "ID" {
				ids = append(ids, f[0])
			}
		}
		if len(ids) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(ids) == 0 {
		t.Fatal("no sandbox started")
	}
	time.Sleep(2 * time.Second) // the answers pile up unread
	start := time.Now()
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("vial serve still running 20 s after stdin closed, its client not reading")
	}
	took := time.Since(start)
	t.Logf("vial serve exited %v after stdin closed, with its client not reading", took)
	if took > 5*time.Second {
		t.Errorf("teardown took %v, want at most 5 s", took)
	}
	out, _ := exec.Command(vialBin, "--state-dir", state, "ps").CombinedOutput()
	for _, id := range ids {
		if strings.Contains(string(out), id) {
			t.Errorf("sandbox %s left after exit", id)
		}
	}
	io.Copy(io.Discard, stdout)
}

// TestUserWorkspaceSurvives: whatever a sandbox does in a user's own
// --workspace DIR (vial run), vial leaves the user's files there.
func TestUserWorkspaceSurvives(t *testing.T) {
	requireE2E(t)
	ws := t.TempDir()
	os.Chmod(ws, 0o777)
	if err := os.WriteFile(filepath.Join(ws, "keep.txt"), []byte("the user's"), 0o666); err != nil {
		t.Fatal(err)
	}
	state := newStateDir(t)
	for _, rt := range runtimes() {
		cmd := exec.Command(vialBin, "--state-dir", state, "run", "--runtime", rt, "--workspace", ws, "--timeout", "60s", "--",
			"python3", "-c", `
import os
os.chdir('/workspace'); os.makedirs('deep', exist_ok=True); os.chdir('deep')
for i in range(5000):
    os.mkdir('d'); os.chdir('d')
try:
    open('/tmp/fill', 'wb').write(b'0' * (200 << 20))
except OSError as e:
    print('tmp full:', e.strerror)
`)
		out, err := cmd.CombinedOutput()
		t.Logf("%s: %v %s", rt, err, out)
		if b, err := os.ReadFile(filepath.Join(ws, "keep.txt")); err != nil || string(b) != "the user's" {
			t.Fatalf("%s: the user's file: %q %v", rt, b, err)
		}
		os.RemoveAll(filepath.Join(ws, "deep"))
	}
}
