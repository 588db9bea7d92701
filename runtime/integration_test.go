package runtime_test

// Root integration tests: real runtimes, real cgroups, real seccomp, the
// real host image. Each runs against runc, crun and runsc; a missing
// runtime skips the subtest on a developer's machine and fails under
// CI=true.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/crun"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/runc"
	"github.com/vial-run/vial/runtime/runsc"
)

var stateDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vial-it-")
	if err != nil {
		panic(err)
	}
	stateDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func allBackends() []*runtime.Backend {
	return []*runtime.Backend{runc.New(), crun.New(), runsc.New()}
}

// engine returns an engine on the shared state directory, requiring root
// and, if name is not empty, that runtime.
func engine(t *testing.T, name string) *runtime.Engine {
	t.Helper()
	testutil.RequireRoot(t)
	if name != "" {
		testutil.RequireBinary(t, name)
	}
	e, err := runtime.New(runtime.Options{StateDir: stateDir, Backends: allBackends()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func hostImage(t *testing.T) *rootfs.Image {
	t.Helper()
	img, err := rootfs.Host(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type output struct {
	res            runtime.Result
	stdout, stderr string
}

func run(t *testing.T, e *runtime.Engine, rt string, req runtime.Request) output {
	t.Helper()
	var out, errb bytes.Buffer
	if req.Image == nil {
		req.Image = hostImage(t)
	}
	req.Stdout, req.Stderr = &out, &errb
	res, err := e.Run(t.Context(), rt, req)
	if err != nil {
		t.Fatalf("Run(%q): %v (stderr: %s)", req.Args, err, errb.String())
	}
	return output{res, out.String(), errb.String()}
}

// forEachRuntime runs f under every runtime, against the built-in host
// image and against a stored image (testutil.StoredImage: the python image
// CI builds once into $VIAL_TEST_STORE), as subtests "host/runc",
// "python/runsc", ...
func forEachRuntime(t *testing.T, f func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image)) {
	stored := os.Getenv(testutil.ImageEnv)
	if stored == "" {
		stored = "python"
	}
	for _, im := range []string{"host", stored} {
		t.Run(im, func(t *testing.T) {
			for _, rt := range []string{"runc", "crun", "runsc"} {
				t.Run(rt, func(t *testing.T) {
					e := engine(t, rt)
					img := hostImage(t)
					if im != "host" {
						img = testutil.StoredImage(t)
					}
					f(t, e, rt, img)
				})
			}
		})
	}
}

// probe is a shell script run inside the sandbox; each line reports one
// protection as key=value.
const probe = `
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo uid=$(id -u)
echo user=$(id -un)
touch /probe 2>/tmp/err; echo rootwrite=$(cat /tmp/err)
unshare -U true 2>/dev/null; echo unshare=$?
mount -t tmpfs none /tmp 2>/dev/null; echo mount=$?
python3 -c 'import ctypes; l=ctypes.CDLL(None, use_errno=True); r=l.ptrace(0,0,0,0); print("ptrace=%d errno=%d" % (r, ctypes.get_errno()))'
echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ,)
echo procs=$(ls -d /proc/[0-9]* | wc -l)
echo shadow=$(test -e /etc/shadow && echo visible || echo hidden)
echo roothome=$(ls -A /root | wc -l)
echo hostfile=$(cat "$HOSTFILE" 2>/dev/null || echo hidden)
echo hostname=$(hostname)
echo ws=$(echo ok > /workspace/w && cat /workspace/w)
`

func parseProbe(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestHardening(t *testing.T) {
	// A file on the host outside the image: the sandbox must not see it.
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("host-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		o := run(t, e, rt, runtime.Request{Image: img, Args: []string{"sh", "-c", probe}, Env: []string{"HOSTFILE=" + secret}})
		if o.res.ExitCode != 0 {
			t.Fatalf("probe exited %d: %s", o.res.ExitCode, o.stderr)
		}
		p := parseProbe(o.stdout)
		wantRootWrite := "Read-only file system"
		if rt == "runsc" {
			// gVisor checks permissions before the read-only flag, so
			// the sandbox's uid writing to root-owned / sees EACCES; the mount
			// itself is read-only (checked below).
			wantRootWrite = "Permission denied"
		}
		for k, want := range map[string]string{
			"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
			"NoNewPrivs": "1", "Seccomp": "2", "user": runtime.UserName,
			"unshare": "1", "ifaces": "lo,", "shadow": "hidden", "roothome": "0",
			"hostfile": "hidden", "hostname": "sandbox", "ws": "ok",
		} {
			if p[k] != want {
				t.Errorf("%s = %q, want %q", k, p[k], want)
			}
		}
		// A host uid of its own, from vial's range, never 65534 or root.
		if uid, _ := strconv.Atoi(p["uid"]); !hostuid.InRange(uid) {
			t.Errorf("uid = %q, want one of vial's own (from %d)", p["uid"], hostuid.First)
		}
		if !strings.Contains(p["rootwrite"], wantRootWrite) {
			t.Errorf("writing / gave %q, want %q", p["rootwrite"], wantRootWrite)
		}
		if p["mount"] == "0" {
			t.Errorf("mount succeeded inside the sandbox")
		}
		if !strings.HasPrefix(p["ptrace"], "-1 errno=1") {
			t.Errorf("ptrace: %q, want -1 with EPERM", p["ptrace"])
		}
		// Only the probe's own processes: sh, its children, no host pids.
		if n, _ := strconv.Atoi(p["procs"]); n == 0 || n > 6 {
			t.Errorf("sandbox sees %d processes, want only its own few", n)
		}
		if rt == "runsc" {
			m := run(t, e, rt, runtime.Request{Image: img, Args: []string{"sh", "-c", "grep ' / ' /proc/mounts"}})
			if !strings.Contains(m.stdout, " ro,") && !strings.Contains(m.stdout, "(ro") && !strings.Contains(m.stdout, " ro ") {
				t.Errorf("root is not mounted read-only: %s", m.stdout)
			}
		}
	})
}

func TestPythonHelloWorld(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		o := run(t, e, rt, runtime.Request{Image: img, Args: []string{"python3", "-c", "print(2+2)"}})
		if o.stdout != "4\n" || o.res.ExitCode != 0 {
			t.Fatalf("got %q exit %d stderr %q", o.stdout, o.res.ExitCode, o.stderr)
		}
		if o.res.PeakMemory == 0 {
			t.Errorf("peak memory not reported")
		}
	})
}

func TestExitStatusIsAResult(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		o := run(t, e, rt, runtime.Request{Image: img, Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
		if o.res.ExitCode != 3 || o.stdout != "out\n" || !strings.Contains(o.stderr, "err") {
			t.Fatalf("got exit %d stdout %q stderr %q", o.res.ExitCode, o.stdout, o.stderr)
		}
	})
}

func TestOOMKill(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		o := run(t, e, rt, runtime.Request{Image: img,
			Args:   []string{"python3", "-c", "b = b'x' * (1 << 30); print('survived')"},
			Limits: runtime.Limits{MemoryBytes: 128 << 20},
		})
		if !o.res.OOMKilled || strings.Contains(o.stdout, "survived") {
			t.Fatalf("1 GiB under 128 MiB: %+v stdout %q", o.res, o.stdout)
		}
		if o.res.PeakMemory > 140<<20 {
			t.Errorf("peak memory %d exceeds the limit", o.res.PeakMemory)
		}
		// A program that stays within its limit is not reported as OOM.
		o = run(t, e, rt, runtime.Request{Image: img,
			Args:   []string{"sh", "-c", "exit 9"},
			Limits: runtime.Limits{MemoryBytes: 128 << 20},
		})
		if o.res.OOMKilled {
			t.Errorf("exit 9 reported as OOM kill")
		}
	})
}

func TestTimeout(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		o := run(t, e, rt, runtime.Request{Image: img, Args: []string{"sleep", "100"}, Timeout: time.Second})
		if !o.res.TimedOut {
			t.Fatalf("not timed out: %+v", o.res)
		}
		// "about 1 s": generous, this checks the kill works, not speed.
		if o.res.Wall > 10*time.Second {
			t.Errorf("timeout took %s", o.res.Wall)
		}
	})
}

const forkBomb = `
import os, time
n = 0
end = time.time() + 3
while time.time() < end:
    try:
        if os.fork() == 0:
            # A small process, so the pids limit binds before memory does.
            os.execv("/bin/sleep", ["sleep", "5"])
        n += 1
    except OSError:
        pass
print("forked", n)
`

func TestForkBombContained(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		done := make(chan output, 1)
		go func() {
			done <- run(t, e, rt, runtime.Request{Image: img,
				Args:    []string{"python3", "-c", forkBomb},
				Limits:  runtime.Limits{Pids: 64},
				Timeout: 20 * time.Second,
			})
		}()
		// The host stays responsive while the bomb runs.
		time.Sleep(time.Second)
		start := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Errorf("host cannot start a process during the fork bomb: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("host took %s to start /bin/true during the fork bomb", d)
		}
		o := <-done
		var n int
		fmt.Sscanf(o.stdout, "forked %d", &n)
		limit := 64
		if rt == "runsc" {
			limit = 1024
		}
		if n == 0 || n >= limit {
			t.Errorf("fork bomb forked %d processes under a pids limit of %d: %+v %s", n, limit, o.res, o.stderr)
		}
	})
}

func TestCPUQuota(t *testing.T) {
	const busy = `
import time
t = time.time()
while time.time() - t < 2.0:
    pass
`
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		o := run(t, e, rt, runtime.Request{Image: img, Args: []string{"python3", "-c", busy}, Limits: runtime.Limits{CPUs: 0.5}})
		if o.res.ExitCode != 0 {
			t.Fatalf("exit %d: %s", o.res.ExitCode, o.stderr)
		}
		share := o.res.CPU.Seconds() / 2.0
		t.Logf("cpu %s over 2s busy loop: %.2f of a core", o.res.CPU, share)
		if share < 0.3 || share > 0.7 {
			t.Errorf("CPU quota 0.5 gave %.2f of a core", share)
		}
	})
}

func TestWritesStayInWorkspace(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		ws := t.TempDir()
		os.Chmod(ws, 0o777)
		o := run(t, e, rt, runtime.Request{Image: img, Args: []string{"sh", "-c", "echo data > /workspace/out; echo tmp > /tmp/t; cat /tmp/t"}, Workspace: ws})
		if o.res.ExitCode != 0 || o.stdout != "tmp\n" {
			t.Fatalf("exit %d stdout %q stderr %q", o.res.ExitCode, o.stdout, o.stderr)
		}
		got, err := os.ReadFile(filepath.Join(ws, "out"))
		if err != nil || string(got) != "data\n" {
			t.Fatalf("workspace file: %q, %v", got, err)
		}
	})
}

func TestBadInput(t *testing.T) {
	e := engine(t, "runc")
	img := hostImage(t)
	before := counts(t, e)
	for _, tc := range []struct {
		name string
		req  runtime.Request
		rt   string
		want error
	}{
		{"no command", runtime.Request{Image: img}, "runc", runtime.ErrInvalid},
		{"no image", runtime.Request{Args: []string{"true"}}, "runc", runtime.ErrInvalid},
		{"tiny memory", runtime.Request{Image: img, Args: []string{"true"}, Limits: runtime.Limits{MemoryBytes: 1}}, "runc", runtime.ErrInvalid},
		{"negative cpus", runtime.Request{Image: img, Args: []string{"true"}, Limits: runtime.Limits{CPUs: -1}}, "runc", runtime.ErrInvalid},
		{"relative workspace", runtime.Request{Image: img, Args: []string{"true"}, Workspace: "ws"}, "runc", runtime.ErrInvalid},
		{"unknown runtime", runtime.Request{Image: img, Args: []string{"true"}}, "kata", runtime.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Run(t.Context(), tc.rt, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want class %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	t.Run("runtime not installed", func(t *testing.T) {
		e2, _ := runtime.New(runtime.Options{StateDir: stateDir, Backends: []*runtime.Backend{{Name: "runc", Install: "apt-get install -y runc"}}})
		_, err := e2.Run(t.Context(), "runc", runtime.Request{Image: img, Args: []string{"true"}})
		if !errors.Is(err, runtime.ErrUnavailable) || !strings.Contains(err.Error(), "apt-get install") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("command not found", func(t *testing.T) {
		_, err := e.Run(t.Context(), "runc", runtime.Request{Image: img, Args: []string{"no-such-program"}})
		if err == nil || !strings.Contains(err.Error(), "no-such-program") {
			t.Fatalf("got %v", err)
		}
	})
	for _, p := range []string{"/", "/etc", "relative/dir", "/nonexistent/image", "/tmp/../etc"} {
		t.Run("image "+p, func(t *testing.T) {
			if _, err := rootfs.Dir(p); err == nil {
				t.Fatalf("rootfs.Dir(%q) accepted a hostile or missing path", p)
			}
		})
	}
	if after := counts(t, e); after != before {
		t.Errorf("bad input left something behind: before %+v after %+v", before, after)
	}
}

// leakCounts are the things a sandbox creates on the host.
type leakCounts struct {
	Containers, Cgroups, Mounts, Processes, StateDirs int
	Loops                                             int // loop devices backed by a file under the state directory
	UIDLeases                                         int // host uid leases held for the state directory's sandboxes
}

func counts(t *testing.T, e *runtime.Engine) leakCounts {
	t.Helper()
	var c leakCounts
	for _, b := range e.Backends() {
		root := filepath.Join(e.StateDir(), "runtime", b.Name)
		if b.Path == "" {
			continue
		}
		if _, err := os.Stat(root); err != nil {
			continue
		}
		out, _ := exec.Command(b.Path, "--root", root, "list", "--quiet").Output()
		c.Containers += len(strings.Fields(string(out)))
	}
	// Only this state directory's cgroups: another vial on the machine
	// (a parallel test, a serve) is not a leak of ours.
	ids, _ := cgroups.List()
	for _, id := range ids {
		if e.Owns(id) {
			c.Cgroups++
		}
	}
	c.Mounts = len(runtime.Mounts(e.StateDir()))
	out, _ := exec.Command("pgrep", "-f", e.StateDir()).Output()
	c.Processes = len(strings.Fields(string(out)))
	ents, _ := os.ReadDir(filepath.Join(e.StateDir(), "sandboxes"))
	c.StateDirs = len(ents)
	c.Loops = len(loopsUnder(e.StateDir()))
	leases, _ := os.ReadDir(hostuid.Dir)
	for _, l := range leases {
		// A lease file names its owner: the sandbox directory.
		if data, err := os.ReadFile(filepath.Join(hostuid.Dir, l.Name())); err == nil && strings.Contains(string(data), e.StateDir()+"/") {
			c.UIDLeases++
		}
	}
	return c
}

// loopsUnder lists the loop devices whose backing file is under dir.
func loopsUnder(dir string) []string {
	var out []string
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, d := range devs {
		data, err := os.ReadFile(d)
		if err == nil && strings.HasPrefix(string(data), dir+"/") {
			out = append(out, strings.TrimSpace(string(data)))
		}
	}
	return out
}

func TestNoLeaks(t *testing.T) {
	for _, tc := range []struct {
		rt string
		n  int
	}{{"runc", 100}, {"crun", 30}, {"runsc", 20}} {
		t.Run(tc.rt, func(t *testing.T) {
			e := engine(t, tc.rt)
			before := counts(t, e)
			for i := 0; i < tc.n; i++ {
				req := runtime.Request{Args: []string{"true"}}
				switch i % 4 {
				case 1:
					req.Args = []string{"sh", "-c", "exit 3"}
				case 2:
					req.Args, req.Timeout = []string{"sleep", "10"}, 100*time.Millisecond
				case 3:
					req.Args = []string{"sh", "-c", "sleep 10 & sleep 10 & echo started"}
					req.Timeout = 200 * time.Millisecond
				}
				run(t, e, tc.rt, req)
			}
			if after := counts(t, e); after != before {
				t.Errorf("after %d runs: before %+v after %+v", tc.n, before, after)
			}
		})
	}
}

// TestStartSandbox covers the long-lived, pipe-driven sandboxes contexts use.
func TestStartSandbox(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image) {
		before := counts(t, e)
		sb, err := e.Start(t.Context(), rt, runtime.Request{Image: img, Args: []string{"sh", "-c", "while read l; do echo \"got $l\"; done"}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(sb.Stdin(), "ping")
		buf := make([]byte, 64)
		n, err := sb.Stdout().Read(buf)
		if err != nil || string(buf[:n]) != "got ping\n" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		if u, err := sb.Usage(); err != nil || u.Memory == 0 {
			t.Errorf("usage %+v, %v", u, err)
		}
		if err := sb.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sb.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed after Close")
		}
		if after := counts(t, e); after != before {
			t.Errorf("before %+v after %+v", before, after)
		}
	})
}

// TestCrashRecovery SIGKILLs a vial process mid-run and checks that `vial
// gc` removes everything it left.
func TestCrashRecovery(t *testing.T) {
	e := engine(t, "runc")
	bin := filepath.Join(t.TempDir(), "vial")
	build := exec.Command("go", "build", "-o", bin, "../cmd/vial")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vial: %v\n%s", err, out)
	}
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			testutil.RequireBinary(t, rt)
			before := counts(t, e)
			cmd := exec.Command(bin, "--state-dir", stateDir, "run", "--runtime", rt, "--", "sleep", "100")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until the container is running, then kill vial outright.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for counts(t, e).Containers == before.Containers {
				if ctx.Err() != nil {
					t.Fatal("container never appeared")
				}
				time.Sleep(50 * time.Millisecond)
			}
			cmd.Process.Kill()
			cmd.Wait()
			if mid := counts(t, e); mid == before {
				t.Fatal("nothing was left behind to collect; the test proves nothing")
			}
			out, err := exec.Command(bin, "--state-dir", stateDir, "gc").CombinedOutput()
			if err != nil {
				t.Fatalf("vial gc: %v\n%s", err, out)
			}
			t.Logf("vial gc: %s", out)
			deadline := time.Now().Add(10 * time.Second)
			for counts(t, e) != before && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if after := counts(t, e); after != before {
				t.Errorf("after gc: before %+v after %+v", before, after)
			}
		})
	}
}
