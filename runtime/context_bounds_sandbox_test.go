package runtime_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/oci"
)

// sandboxDrivers writes the drivers once for a test.
func sandboxDrivers(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := runtime.WriteDrivers(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireNode skips (or fails under CI) when the host image has no node.
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		testutil.Require(t, false, "node is not installed on the host")
	}
}

// TestContextWireFloodInSandboxes runs the hostile writers of
// runtime.FloodScenarios from a process inside a real sandbox, on runc
// and runsc: vial's heap stays bounded, the call or the context ends with
// a clear reason, and a new context works. Not parallel: it measures the
// test process's heap.
func TestContextWireFloodInSandboxes(t *testing.T) {
	testutil.RequireRoot(t)
	drivers := sandboxDrivers(t)
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			img := hostImage(t)
			for _, sc := range runtime.FloodScenarios {
				t.Run(sc.Name, func(t *testing.T) {
					runtime.CheckFlood(t, sc, func(o runtime.ContextOptions) *runtime.Context {
						return startContextWith(t, e, rt, drivers, runtime.Python, runtime.Request{Image: img}, o)
					})
				})
			}
		})
	}
}

// TestContextBusyInSandboxes checks, on runc and runsc, that a timed-out
// call that leaves a thread or a process spinning ends its context, read
// from the sandbox's cgroup, and that one leaving a sleeper does not.
func TestContextBusyInSandboxes(t *testing.T) {
	testutil.RequireRoot(t)
	drivers := sandboxDrivers(t)
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			img := hostImage(t)
			for _, sc := range runtime.BusyScenarios {
				t.Run(sc.Name, func(t *testing.T) {
					if sc.Lang == runtime.JavaScript {
						requireNode(t)
					}
					runtime.CheckBusy(t, sc, func(o runtime.ContextOptions) *runtime.Context {
						return startContextWith(t, e, rt, drivers, sc.Lang, runtime.Request{Image: img}, o)
					})
				})
			}
		})
	}
}

// smallWorkspace mounts a tmpfs of size bytes, owned by the sandbox's
// user, on a fresh directory, so that a test can fill a workspace without
// filling the host's disk; it is unmounted when the test ends.
func smallWorkspace(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0700,uid=%d,gid=%d", size, oci.UID, oci.GID)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		t.Fatalf("mounting a small workspace: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting the small workspace: %v", err)
		}
	})
	return dir
}

// TestContextsWithFullDisks fills a context's /tmp (its tmpfs) and its
// workspace, then runs calls in each language on runc and runsc: what the
// code printed and the "No space left on device" error both arrive (the
// bash driver once kept each call's plumbing in $TMPDIR and answered "no
// output").
func TestContextsWithFullDisks(t *testing.T) {
	testutil.RequireRoot(t)
	drivers := sandboxDrivers(t)
	const enospc = "No space left on device"
	type call struct {
		code   string
		stdout string // a prefix the stdout must have
		err    string // text the stderr or the error must hold
		dead   bool   // the call ends the session
	}
	langs := []struct {
		lang  runtime.Language
		calls []call
	}{
		{runtime.Bash, []call{
			{"head -c 200m /dev/zero >/tmp/fill; head -c 200m /dev/zero >/workspace/fill; echo filled", "filled\n", enospc, false},
			{"echo hello; echo x >/tmp/more", "hello\n", enospc, false},
			{"echo hello; echo x >/workspace/more", "hello\n", enospc, false},
			{"seq 1 100000 | tail -n 1; seq 1 20000 >&2", "100000\n", "19999\n20000\n", false},
			{"set -e; echo a; false; echo not reached", "a\n", "", false},
			{"echo still", "still\n", "", false},
			// The session's last answer, written at its exit.
			{"echo bye; echo err >&2; builtin exit 5", "bye\n", "err\n", true},
		}},
		{runtime.Python, []call{
			{"for p in ('/tmp/fill', '/workspace/fill'):\n    try:\n        with open(p, 'wb') as f:\n            while True: f.write(bytes(1 << 20))\n    except OSError as e: print(p, e.strerror)",
				"/tmp/fill " + enospc + "\n/workspace/fill " + enospc, "", false},
			{"print('hello')\nwith open('/tmp/more', 'w') as f: f.write('x' * (1 << 20))", "hello\n", enospc, false},
			{"print('hello')\nwith open('/workspace/more', 'w') as f: f.write('x' * (1 << 20))", "hello\n", enospc, false},
			{"print('x' * 500000)", strings.Repeat("x", 1000), "", false},
		}},
		{runtime.JavaScript, []call{
			{"for (const p of ['/tmp/fill', '/workspace/fill']) { try { const fd = fs.openSync(p, 'w'); for (;;) fs.writeSync(fd, Buffer.alloc(1 << 20)) } catch (e) { console.log(p, e.code) } }",
				"/tmp/fill ENOSPC\n/workspace/fill ENOSPC", "", false},
			{"console.log('hello'); fs.writeFileSync('/tmp/more', 'x'.repeat(1 << 20))", "hello\n", "ENOSPC", false},
			{"console.log('hello'); fs.writeFileSync('/workspace/more', 'x'.repeat(1 << 20))", "hello\n", "ENOSPC", false},
		}},
	}
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			img := hostImage(t)
			for _, l := range langs {
				t.Run(string(l.lang), func(t *testing.T) {
					if l.lang == runtime.JavaScript {
						requireNode(t)
					}
					ws := smallWorkspace(t, 8<<20)
					c := startContextWith(t, e, rt, drivers, l.lang, runtime.Request{Image: img, Workspace: ws}, runtime.ContextOptions{})
					defer c.Close()
					for _, cl := range l.calls {
						res, err := c.Exec(t.Context(), runtime.ExecRequest{Code: cl.code})
						if err != nil {
							t.Fatalf("%q: %v", cl.code, err)
						}
						text := res.Stderr
						if res.Error != nil {
							text += res.Error.Name + ": " + res.Error.Message
						}
						if !strings.HasPrefix(res.Stdout, cl.stdout) || !strings.Contains(text, cl.err) || res.Dead != cl.dead {
							t.Errorf("%q: stdout %q, stderr and error %q, dead %v; want stdout from %q, %q, dead %v", cl.code, trunc(res.Stdout), trunc(text), res.Dead, trunc(cl.stdout), cl.err, cl.dead)
						}
					}
				})
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// TestContextBlockedImportsInSandboxes runs the blocked-imports checks in
// a Python context in real sandboxes, the rules given as vial serve gives
// them (runtime.BlockedImportsEnv in the sandbox's environment).
func TestContextBlockedImportsInSandboxes(t *testing.T) {
	testutil.RequireRoot(t)
	drivers := sandboxDrivers(t)
	env, err := runtime.BlockedImportsEnv(strings.Split(runtime.BlockedImportsRules, ","))
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			req := runtime.Request{Image: hostImage(t), Env: append(runtime.DriverEnv(runtime.ContextOptions{}), env)}
			c := startContextWith(t, e, rt, drivers, runtime.Python, req, runtime.ContextOptions{})
			defer c.Close()
			runtime.CheckBlockedImports(t, c)
		})
	}
}
