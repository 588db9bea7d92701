package runtime_test

// Hostile tests of what a sandbox can do to the host's disk and to other
// sandboxes through the kernel's per-user limits: the workspace quota
// (bytes and inodes), /tmp's inode limit, distinct host uids, and
// removal of trees no ordinary remover survives.

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/oci"
	"github.com/vial-run/vial/runtime/volume"
)

// shellBox is a long-lived sandbox running a shell that evaluates one
// line of stdin at a time, so a test can look at the host between steps.
type shellBox struct {
	t  *testing.T
	sb *runtime.Sandbox
	r  *bufio.Reader
}

const shellLoop = `while IFS= read -r line; do eval "$line" 2>&1; echo __END__; done`

func startShell(t *testing.T, e *runtime.Engine, rt string, req runtime.Request) *shellBox {
	t.Helper()
	if req.Image == nil {
		req.Image = hostImage(t)
	}
	req.Args = []string{"sh", "-c", shellLoop}
	sb, err := e.Start(t.Context(), rt, req)
	if err != nil {
		t.Fatalf("starting a sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return &shellBox{t: t, sb: sb, r: bufio.NewReader(sb.Stdout())}
}

// do runs one shell line in the sandbox and returns its output.
func (s *shellBox) do(line string) string {
	s.t.Helper()
	// One line per command: a multi-line script travels base64-encoded.
	wire := `eval "$(printf %s '` + base64.StdEncoding.EncodeToString([]byte(line)) + `' | base64 -d)"`
	if _, err := fmt.Fprintln(s.sb.Stdin(), wire); err != nil {
		s.t.Fatalf("writing to the sandbox: %v", err)
	}
	var out strings.Builder
	done := make(chan error, 1)
	go func() {
		for {
			l, err := s.r.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			if l == "__END__\n" {
				done <- nil
				return
			}
			out.WriteString(l)
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			s.t.Fatalf("%q: reading from the sandbox: %v (output so far %q)", line, err, out.String())
		}
	case <-time.After(5 * time.Minute):
		s.t.Fatalf("%q: no answer after 5 minutes", line)
	}
	return out.String()
}

// hostFree is the free space of the file system holding dir, in bytes.
func hostFree(t *testing.T, dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

func allocatedBytes(t *testing.T, path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// fillFiles is a python program that creates empty files in a directory
// until it cannot, and prints "files N ERRNO".
const fillFiles = `import os, errno, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); n = 0; err = "none"
try:
    for i in range(int(sys.argv[2])):
        open(os.path.join(d, str(i)), "w").close(); n += 1
except OSError as e:
    err = errno.errorcode.get(e.errno, str(e.errno))
print("files", n, err)`

// TestDiskQuota: a sandbox writes past its disk limit (dd and python) and
// makes files past its inode limit. It gets ENOSPC, the host loses at
// most the limit, the sandbox and vial keep working, and teardown leaves
// no mount, loop device, uid lease or file.
func TestDiskQuota(t *testing.T) {
	const limit = 64 << 20
	inodes := volume.InodesFor(limit)
	for _, rt := range []string{"runc", "crun", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			testutil.Require(t, volume.Check() == nil, "volumes unavailable")
			before := counts(t, e)
			free0 := hostFree(t, stateDir)
			start := time.Now()
			s := startShell(t, e, rt, runtime.Request{Limits: runtime.Limits{DiskBytes: limit}})
			t.Logf("sandbox with a %d MiB workspace volume started in %v", limit>>20, time.Since(start))
			image := s.sb.Workspace + volume.ImageSuffix

			// Bytes, with dd: four times the limit, synced.
			out := s.do("dd if=/dev/zero of=/workspace/fill bs=1M count=256 conv=fsync; df -k /workspace | tail -1")
			if !strings.Contains(out, "No space left on device") {
				t.Errorf("dd past the limit: %q, want ENOSPC", out)
			}
			lost := free0 - hostFree(t, stateDir)
			alloc := allocatedBytes(t, image)
			t.Logf("dd: host free space down %d MiB (other processes write too); the volume's image takes %d MiB", lost>>20, alloc>>20)
			if alloc > limit {
				t.Errorf("the image takes %d bytes of the host's disk, more than the limit %d", alloc, limit)
			}
			if lost > 2*limit {
				t.Errorf("the host lost %d MiB for a %d MiB limit", lost>>20, limit>>20)
			}

			// Bytes, with python, after the sandbox freed the space.
			out = s.do(`rm /workspace/fill; python3 -c 'import errno
n = 0
try:
    f = open("/workspace/py", "wb")
    while n < 256:
        f.write(b"x" * (1 << 20)); n += 1
    f.close()
    print("wrote all")
except OSError as e:
    print("stopped after", n, "MiB:", errno.errorcode[e.errno])'`)
			if !strings.Contains(out, "ENOSPC") && !strings.Contains(out, "EDQUOT") {
				t.Errorf("python writing past the limit: %q, want ENOSPC", out)
			}
			if alloc := allocatedBytes(t, image); alloc > limit {
				t.Errorf("the image takes %d bytes of the host's disk, more than the limit %d", alloc, limit)
			}

			// Inodes: more files than the volume has inodes.
			out = s.do("rm /workspace/py; python3 -c '" + fillFiles + "' /workspace/many " + strconv.FormatInt(4*inodes, 10))
			var n int
			var errName string
			if _, err := fmt.Sscanf(strings.TrimSpace(out), "files %d %s", &n, &errName); err != nil {
				t.Fatalf("making files: %q", out)
			}
			t.Logf("made %d files in a volume of %d inodes, then %s", n, inodes, errName)
			if errName != "ENOSPC" && errName != "EDQUOT" {
				t.Errorf("making files past the inode limit ended with %s, want ENOSPC", errName)
			}
			if int64(n) > inodes {
				t.Errorf("made %d files with an inode limit of %d", n, inodes)
			}
			if alloc := allocatedBytes(t, image); alloc > limit {
				t.Errorf("the image takes %d bytes of the host's disk, more than the limit %d", alloc, limit)
			}

			// /tmp: more files than its inode limit (kernel tmpfs only:
			// runsc's own tmpfs takes no nr_inodes, and bounds /tmp's
			// files by the sandbox's memory instead).
			tmpInodes := oci.TmpInodesFor(oci.DefaultTmpBytes)
			out = s.do("python3 -c '" + fillFiles + "' /tmp/many " + strconv.FormatInt(4*tmpInodes, 10) + "; rm -rf /tmp/many")
			t.Logf("/tmp (limit %d inodes): %s", tmpInodes, strings.TrimSpace(out))
			if rt != "runsc" && !strings.Contains(out, "ENOSPC") {
				t.Errorf("files past /tmp's inode limit: %q, want ENOSPC", out)
			}

			// The sandbox keeps working, and so does vial.
			if out := s.do("rm -rf /workspace/many && echo ok > /workspace/after && cat /workspace/after"); out != "ok\n" {
				t.Errorf("the sandbox after its disk was full: %q", out)
			}
			if o := run(t, e, rt, runtime.Request{Args: []string{"sh", "-c", "echo hi > /workspace/x && cat /workspace/x"}}); o.stdout != "hi\n" {
				t.Errorf("another sandbox meanwhile: %q %q", o.stdout, o.stderr)
			}
			if err := s.sb.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if after := counts(t, e); after != before {
				t.Errorf("teardown left: before %+v after %+v", before, after)
			}
			if _, err := os.Stat(image); !os.IsNotExist(err) {
				t.Errorf("the image is still there: %v", err)
			}
		})
	}
}

// TestDistinctUIDs: two sandboxes run as different host uids, and one that
// takes every inotify instance its uid may have leaves the other's alone
// (fs.inotify.max_user_instances is per uid, 128 by default).
func TestDistinctUIDs(t *testing.T) {
	for _, rt := range []string{"runc", "crun", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			a := startShell(t, e, rt, runtime.Request{})
			b := startShell(t, e, rt, runtime.Request{})
			ua, ub := strings.TrimSpace(a.do("id -u")), strings.TrimSpace(b.do("id -u"))
			t.Logf("inside: %s and %s; id: %s", ua, ub, strings.TrimSpace(a.do("id")))
			if ua == ub {
				t.Fatalf("both sandboxes run as uid %s", ua)
			}
			for _, u := range []string{ua, ub} {
				if n, _ := strconv.Atoi(u); !hostuid.InRange(n) {
					t.Errorf("uid %s is not one of vial's", u)
				}
			}
			// The workspace is the sandbox's own.
			if out := a.do("stat -c '%u %a' /workspace"); out != ua+" 700\n" {
				t.Errorf("workspace owner and mode: %q, want %s 700", out, ua)
			}
			if rt == "runsc" {
				// The sandbox's processes live in gVisor's kernel; on the
				// host there is only the sentry and the gofer, and gVisor
				// keeps per-user limits per sandbox itself.
				return
			}
			// On the host, as read from /proc/PID/status.
			for _, s := range []*shellBox{a, b} {
				pid, err := os.ReadFile(filepath.Join(stateDir, "sandboxes", s.sb.ID, "init.pid"))
				if err != nil {
					t.Fatal(err)
				}
				uids := hostStatusUIDs(t, strings.TrimSpace(string(pid)))
				want := strings.TrimSpace(s.do("id -u"))
				if len(uids) != 4 || uids[0] != want || uids[1] != want {
					t.Errorf("host sees sandbox %s's init as uids %v, want %s", s.sb.ID, uids, want)
				}
			}
			// A takes every inotify instance it can, and holds them.
			a.do(`python3 -c 'import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True); n = 0
while libc.inotify_init1(0) >= 0: n += 1
print(n, os.strerror(ctypes.get_errno()), flush=True); time.sleep(600)' > /tmp/ino 2>&1 &`)
			var held string
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if held = strings.TrimSpace(a.do("cat /tmp/ino")); held != "" {
					break
				}
			}
			t.Logf("A holds %s", held)
			if !strings.Contains(held, "Too many open files") {
				t.Fatalf("A did not run out of inotify instances: %q", held)
			}
			out := b.do(`python3 -c 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print("ok" if fd >= 0 else os.strerror(ctypes.get_errno()))'`)
			if out != "ok\n" {
				t.Errorf("B's inotify_init1 while A holds all of its own: %q", out)
			}
		})
	}
}

func hostStatusUIDs(t *testing.T, pid string) []string {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// treeMaker makes a chain of nested directories (argv[1] deep: 20,000
// here) and a directory of 200,000 entries (files, directories and
// symlinks to /) in the workspace, as sandboxed code did in 0.25 s.
const treeMaker = `import os, sys
os.chdir("/workspace"); os.mkdir("deep"); os.chdir("deep")
for i in range(int(sys.argv[1])):
    os.mkdir("d"); os.chdir("d")
os.chdir("/"); os.mkdir("/workspace/wide"); os.chdir("/workspace/wide")
for i in range(200000):
    k = i % 4
    if k == 0: os.mkdir(str(i))
    elif k == 1: os.symlink("/", str(i))
    else: open(str(i), "w").close()
print("made", flush=True)`

// chainDepth is how deep treeMaker goes under rt. gVisor holds a host
// descriptor for every directory level a process is in and fails with
// EMFILE a little below 20,000 levels (its own protection; the sandbox
// then gets EMFILE everywhere): runsc gets 15,000.
func chainDepth(rt string) string {
	if rt == "runsc" {
		return "15000"
	}
	return "20000"
}

// TestHostileTreesTeardown: trees no ordinary remover survives, made by a
// real sandbox, are removed by teardown (a workspace volume is discarded
// whole) and by `vial gc` after the owner was SIGKILLed, in a workspace
// volume and in a plain directory, as a crashed vial of an earlier
// version left them; gc never fails for good on them.
func TestHostileTreesTeardown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vial")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/vial").CombinedOutput(); err != nil {
		t.Fatalf("building vial: %v\n%s", err, out)
	}
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			before := counts(t, e)
			lim := runtime.Limits{DiskBytes: 1 << 30, DiskInodes: 300000}

			// 1. Teardown of a live sandbox's volume.
			start := time.Now()
			o := run(t, e, rt, runtime.Request{Args: []string{"python3", "-c", treeMaker, chainDepth(rt)}, Limits: lim})
			if !madeTrees(o.stdout) {
				t.Fatalf("making the trees: %q %q", o.stdout, o.stderr)
			}
			t.Logf("made and torn down in %v", time.Since(start))
			if after := counts(t, e); after != before {
				t.Errorf("teardown left: before %+v after %+v", before, after)
			}

			// 2. The owner is SIGKILLed with the trees in its volume.
			cmd := exec.Command(bin, "--state-dir", stateDir, "run", "--runtime", rt, "--disk", "4g", "--",
				"python3", "-c", treeMaker+"\nimport time; time.sleep(600)", chainDepth(rt))
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if !madeTrees(line) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("making the trees under vial run: %q", line)
			}
			cmd.Process.Kill()
			cmd.Wait()
			mid := counts(t, e)
			if mid.Loops == 0 || mid.StateDirs == before.StateDirs {
				t.Errorf("after SIGKILL: %+v; want a volume and a sandbox directory left to collect", mid)
			}
			gc(t, bin, 0)
			waitCounts(t, e, before)

			// 3. The same trees in a plain directory of an orphaned
			// sandbox (as vial before volumes left them): gc removes
			// them whatever their depth.
			orphan := filepath.Join(stateDir, "sandboxes", "v"+tagOf(t, e, rt)+"-00000dead0")
			ws := filepath.Join(orphan, "workspace")
			if err := os.MkdirAll(ws, 0o777); err != nil {
				t.Fatal(err)
			}
			os.Chmod(ws, 0o777)
			o = run(t, e, rt, runtime.Request{Args: []string{"python3", "-c", treeMaker, chainDepth(rt)}, Workspace: ws})
			if !madeTrees(o.stdout) {
				t.Fatalf("making the trees in a plain directory: %q %q", o.stdout, o.stderr)
			}
			old := time.Now().Add(-time.Hour)
			os.Chtimes(orphan, old, old)
			gc(t, bin, 0)
			if _, err := os.Lstat(orphan); !os.IsNotExist(err) {
				t.Errorf("the orphan with hostile trees is still there: %v", err)
			}
			waitCounts(t, e, before)
		})
	}
}

func madeTrees(out string) bool { return out == "made\n" }

// gc runs `vial gc` and checks its exit status.
func gc(t *testing.T, bin string, want int) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(bin, "--state-dir", stateDir, "gc")
	out, err := cmd.CombinedOutput()
	t.Logf("vial gc (%v): %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	if code := cmd.ProcessState.ExitCode(); code != want {
		t.Fatalf("vial gc exited %d (%v), want %d", code, err, want)
	}
}

func waitCounts(t *testing.T, e *runtime.Engine, want leakCounts) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for counts(t, e) != want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := counts(t, e); got != want {
		t.Errorf("left behind: want %+v, got %+v", want, got)
	}
}

// tagOf is the state directory's tag in sandbox ids ("v<tag>-<random>").
func tagOf(t *testing.T, e *runtime.Engine, rt string) string {
	b, err := e.PrepareBundle(rt, runtime.Request{Image: hostImage(t), Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tag, _, _ := strings.Cut(strings.TrimPrefix(b.ID, "v"), "-")
	return tag
}

// TestSharedWorkspace: sandboxes on one runtime.Workspace (vial serve's
// default contexts) run as its uid, change each other's files, and are
// under its quota; Close leaves nothing.
func TestSharedWorkspace(t *testing.T) {
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			before := counts(t, e)
			parent := filepath.Join(stateDir, "workspaces-test")
			os.MkdirAll(parent, 0o711)
			defer os.RemoveAll(parent)
			ws, err := runtime.NewWorkspace(filepath.Join(parent, "shared"), runtime.Limits{DiskBytes: 32 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			req := runtime.Request{Workspace: ws.Path(), User: ws.User()}
			a, b := startShell(t, e, rt, req), startShell(t, e, rt, req)
			want := strconv.Itoa(ws.User().UID())
			for _, s := range []*shellBox{a, b} {
				if got := strings.TrimSpace(s.do("id -u")); got != want {
					t.Errorf("a sandbox on the shared workspace runs as %s, want %s", got, want)
				}
			}
			if out := a.do("echo one > /workspace/f && chmod 600 /workspace/f"); out != "" {
				t.Fatalf("A writing: %q", out)
			}
			if out := b.do("echo two >> /workspace/f && cat /workspace/f"); out != "one\ntwo\n" {
				t.Errorf("B changing A's file: %q", out)
			}
			if out := b.do("dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1 | grep -c 'No space'"); out != "1\n" {
				t.Errorf("B writing past the shared workspace's 32 MiB: %q", out)
			}
			a.sb.Close()
			b.sb.Close()
			if err := ws.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(ws.Path()); !os.IsNotExist(err) {
				t.Errorf("the workspace is still there: %v", err)
			}
			if after := counts(t, e); after != before {
				t.Errorf("left: before %+v after %+v", before, after)
			}
			if l := loopsUnder(parent); len(l) > 0 {
				t.Errorf("loop devices left: %v", l)
			}
		})
	}
}
