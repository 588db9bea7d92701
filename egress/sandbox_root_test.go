package egress

// Root tests with real sandboxes on runc, crun and runsc: programs inside
// the sandbox (python's urllib, curl, glibc's resolver) reach the test
// upstream through vial's proxy and DNS, and nothing else.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testupstream"
	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/runtime/crun"
	"github.com/vial-run/vial/runtime/runc"
	"github.com/vial-run/vial/runtime/runsc"
)

var runtimes = []string{"runc", "crun", "runsc"}

// testEngine returns an engine on a fresh state directory; everything the
// test leaves in it (sandboxes, networks) is collected when it ends.
func testEngine(t testing.TB, rt string) (*runtime.Engine, string) {
	t.Helper()
	testutil.RequireRoot(t)
	if rt != "" {
		testutil.RequireBinary(t, rt)
	}
	state := t.TempDir()
	e, err := runtime.New(runtime.Options{StateDir: state, Backends: []*runtime.Backend{runc.New(), crun.New(), runsc.New()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.GC(context.Background())
		if _, err := Collect(state); err != nil {
			t.Errorf("Collect: %v", err)
		}
	})
	return e, state
}

func attachment(n *Network) *runtime.Network {
	return &runtime.Network{NetnsPath: n.NetnsPath, ResolvConf: n.ResolvConf, Env: n.Env}
}

// checksPy runs inside the sandbox and prints one key=value line per
// check. argv: upstream address, host loopback port.
const checksPy = `
import socket, ssl, sys, urllib.request, urllib.error
upstream, loport = sys.argv[1], sys.argv[2]
def get(url, proxy=True):
    o = urllib.request.build_opener(urllib.request.ProxyHandler() if proxy else urllib.request.ProxyHandler({}))
    try:
        with o.open(url, timeout=15) as r:
            return "%d %s" % (r.status, r.read().decode().strip())
    except urllib.error.HTTPError as e:
        return "%d %s" % (e.code, e.read().decode(errors="replace").strip()[:300])
    except Exception as e:
        return "error %s: %s" % (type(e).__name__, str(e)[:200])
def tunnel(host, server_name):
    s = socket.create_connection(("10.87.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (host.encode(), host.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            return "closed"
        head += d
    if not head.startswith(b"HTTP/1.1 200"):
        return "connect " + head.split(b"\r\n")[0].decode()
    try:
        t = ssl.create_default_context().wrap_socket(s, server_hostname=server_name)
        t.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % server_name.encode())
        return "ok " + t.recv(300).decode(errors="replace").split("\r\n")[0]
    except Exception as e:
        return "error " + type(e).__name__
def via_proxy(url):
    # A request straight to the proxy, whatever NO_PROXY says.
    s = socket.create_connection(("10.87.0.1", 3128), timeout=10)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url.encode())
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode() + " " + body.decode(errors="replace").strip()
def resolve(name):
    try:
        return ",".join(sorted({a[4][0] for a in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}))
    except socket.gaierror as e:
        return "gaierror %d" % e.errno
r = {}
r["py_http"] = get("http://allowed.test/")
r["py_https"] = get("https://allowed.test/")
r["py_dns_allowed_https"] = get("https://dns-allowed.test/")
r["py_noproxy_https"] = get("https://allowed.test/", proxy=False)
r["py_denied_http"] = get("http://denied.test/")
r["py_denied_https"] = get("https://denied.test/")
r["py_literal_http"] = get("http://%s/" % upstream)
r["py_literal_https"] = get("https://%s/" % upstream)
r["py_metadata"] = get("http://169.254.169.254/latest/meta-data/")
r["py_metadata_name"] = get("http://meta.test/")
r["py_hostself"] = get("http://hostself.test/")
r["py_hostip"] = get("http://hostip.test/")
r["py_own_loopback"] = get("http://127.0.0.1:%s/" % loport)
r["py_host_loopback"] = via_proxy("http://127.0.0.1:%s/" % loport)
r["py_host_loopback_name"] = get("http://loop.test/")
r["py_direct_upstream"] = get("http://%s/" % upstream, proxy=False)
r["py_direct_metadata"] = get("http://169.254.169.254/", proxy=False)
r["sni_match"] = tunnel("allowed.test", "allowed.test")
r["sni_mismatch"] = tunnel("allowed.test", "other.test")
r["dns_allowed"] = resolve("allowed.test")
r["dns_denied"] = resolve("denied.test")
for k, v in r.items():
    print("%s=%s" % (k, v.replace("\n", " ")))
`

// checksSh runs checksPy and the same with curl when the image has it.
const checksSh = `
echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ,)"
/usr/bin/python3 /workspace/checks.py "$@"
if command -v curl >/dev/null; then
	echo "curl_http=$(curl -sS --max-time 15 http://allowed.test/ 2>&1)"
	echo "curl_https=$(curl -sS --max-time 15 https://allowed.test/ 2>&1)"
	echo "curl_noproxy_https=$(curl -sS --noproxy '*' --max-time 15 https://allowed.test/ 2>&1)"
	echo "curl_denied_http=$(curl -sS --max-time 15 -o /dev/null -w '%{http_code}' http://denied.test/ 2>&1)"
	echo "curl_denied_https=$(curl -sS --max-time 15 https://denied.test/ 2>&1 | head -c 120)"
	echo "curl_literal=$(curl -sS --max-time 15 -o /dev/null -w '%{http_code}' http://$1/ 2>&1)"
	echo "curl_metadata=$(curl -sS --max-time 15 -o /dev/null -w '%{http_code}' http://169.254.169.254/ 2>&1)"
else
	echo "curl=absent"
fi
`

// parseChecks turns key=value lines into a map.
func parseChecks(out string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// checkWant is what each check must print: a regular expression.
var checkWant = map[string]string{
	"ifaces":                `^eth0,lo,$`,
	"py_http":               `^200 hello from allowed.test over http$`,
	"py_https":              `^200 hello from allowed.test over https$`,
	"py_dns_allowed_https":  `^200 hello from dns-allowed.test over https$`,
	"py_noproxy_https":      `^200 hello from allowed.test over https$`,
	"py_denied_http":        `^403 .*not in allowed_hosts`,
	"py_denied_https":       `^error .*(403|Forbidden)`,
	"py_literal_http":       `^403 .*address literal`,
	"py_literal_https":      `^error .*(403|Forbidden)`,
	"py_metadata":           `^403 .*address literal`,
	"py_metadata_name":      `^403 .*link-local`,
	"py_hostself":           `^403 .*address of this host`,
	"py_hostip":             `^403 .*address of this host`,
	"py_own_loopback":       `^error .*(Connection refused|Errno 111)`, // NO_PROXY: the sandbox's own lo
	"py_host_loopback":      `^403 .*blocked by "127.0.0.1"`,
	"py_host_loopback_name": `^403 .*loopback`,
	"py_direct_upstream":    `^error .*(unreachable|Errno 101)`,
	"py_direct_metadata":    `^error .*(unreachable|Errno 101)`,
	"sni_match":             `^ok HTTP/1.1 200`,
	"sni_mismatch":          `^error `,
	"dns_allowed":           `^10\.87\.0\.1$`,
	"dns_denied":            `^gaierror -2$`, // EAI_NONAME: NXDOMAIN
	"curl_http":             `^hello from allowed.test over http$`,
	"curl_https":            `^hello from allowed.test over https$`,
	"curl_noproxy_https":    `^hello from allowed.test over https$`,
	"curl_denied_http":      `^403$`,
	"curl_denied_https":     `403`,
	"curl_literal":          `^403$`,
	"curl_metadata":         `^403$`,
}

// TestSandboxEgress runs python's urllib and curl in a sandbox on every
// runtime against the test upstream: allowed names are reached over HTTP
// and HTTPS, everything else is refused, and the upstream's resolver never
// hears of a refused name.
func TestSandboxEgress(t *testing.T) {
	u := testupstream.New(t)
	// A service on the host's loopback: no sandbox may ever reach it.
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	var loHits atomic.Int32
	go func() {
		for {
			c, err := lo.Accept()
			if err != nil {
				return
			}
			loHits.Add(1)
			c.Close()
		}
	}()
	_, loPort, _ := net.SplitHostPort(lo.Addr().String())

	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			e, state := testEngine(t, rt)
			img, err := rootfs.Host(state)
			if err != nil {
				t.Fatal(err)
			}
			var ev events
			n := openTestNetwork(t, u, state, &ev)
			ws := workspace(t, u)
			var out, errb bytes.Buffer
			res, err := e.Run(t.Context(), rt, runtime.Request{
				Image:     img,
				Args:      []string{"/bin/sh", "/workspace/checks.sh", u.IP.String(), loPort},
				Env:       caEnv,
				Workspace: ws,
				Network:   attachment(n),
				Timeout:   3 * time.Minute,
				Stdout:    &out, Stderr: &errb,
			})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("sandbox: %v %+v\nstdout:\n%s\nstderr:\n%s", err, res, out.String(), errb.String())
			}
			got := parseChecks(out.String())
			if got["curl"] == "absent" {
				t.Log("curl is not in the image: checked with python only")
			}
			for k, want := range checkWant {
				v, ok := got[k]
				if !ok {
					if strings.HasPrefix(k, "curl_") && got["curl"] == "absent" {
						continue
					}
					t.Errorf("%s: no result (stdout %q, stderr %q)", k, out.String(), errb.String())
					continue
				}
				if !regexp.MustCompile(want).MatchString(v) {
					t.Errorf("%s = %q; want it to match %s", k, v, want)
				}
			}
			for _, name := range u.DNSLog() {
				if strings.Contains(name, "denied") || strings.Contains(name, "other") {
					t.Errorf("the upstream resolver saw a query for %q", name)
				}
			}
			if _, ok := ev.find(KindConnect, "allowed.test", false); !ok {
				t.Error("no refusal event for the CONNECT whose server name did not match")
			}
			if _, ok := ev.find(KindDNS, "denied.test", false); !ok {
				t.Error("no DNS refusal event for denied.test")
			}
		})
	}
	if n := loHits.Load(); n > 0 {
		t.Errorf("the host's loopback service was reached %d times", n)
	}
}

// caEnv points python, OpenSSL and curl inside the sandbox at the test CA
// in the workspace; the host's trust store is never touched.
var caEnv = []string{
	"SSL_CERT_FILE=/workspace/ca.pem", "REQUESTS_CA_BUNDLE=/workspace/ca.pem", "CURL_CA_BUNDLE=/workspace/ca.pem",
}

// workspace is a directory bound at /workspace holding the test CA and
// the check scripts.
func workspace(t testing.TB, u *testupstream.Upstream) string {
	ws := t.TempDir()
	os.Chmod(ws, 0o755)
	for name, data := range map[string][]byte{"ca.pem": u.CAPEM, "checks.py": []byte(checksPy), "checks.sh": []byte(checksSh)} {
		if err := os.WriteFile(filepath.Join(ws, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}

// TestSandboxStoredImage checks the network on a stored image (resolv.conf
// is a mount point vial adds when it stores an image), with python only.
func TestSandboxStoredImage(t *testing.T) {
	u := testupstream.New(t)
	img := testutil.StoredImage(t)
	e, state := testEngine(t, "runc")
	n := openTestNetwork(t, u, state, nil)
	var out, errb bytes.Buffer
	script := `import urllib.request; print(urllib.request.urlopen("https://allowed.test/", timeout=15).read().decode().strip())`
	res, err := e.Run(t.Context(), "runc", runtime.Request{
		Image: img, Args: []string{"python3", "-c", script}, Env: caEnv, Workspace: workspace(t, u),
		Network: attachment(n), Timeout: time.Minute, Stdout: &out, Stderr: &errb,
	})
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(out.String()) != "hello from allowed.test over https" {
		t.Fatalf("python on %s: %v %+v %q %q", img.Name, err, res, out.String(), errb.String())
	}
}

// TestSandboxNetworkOff: without a Network a sandbox has loopback only,
// on every runtime, exactly as before egress existed.
func TestSandboxNetworkOff(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			e, state := testEngine(t, rt)
			img, err := rootfs.Host(state)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			res, err := e.Run(t.Context(), rt, runtime.Request{
				Image: img, Args: []string{"/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,; cat /etc/resolv.conf | grep -c nameserver"},
				Stdout: &out,
			})
			if err != nil || res.ExitCode > 1 {
				t.Fatalf("%v %+v %q", err, res, out.String())
			}
			if got := strings.TrimSpace(out.String()); got != "lo,0" {
				t.Errorf("interfaces and name servers without a network: %q; want only lo and none", got)
			}
		})
	}
}

// TestOpenCloseCycles opens a network, runs a sandbox in it and closes
// both, 50 times; nothing of any cycle may be left: no namespace (no
// process, thread, descriptor or mount refers to one), no mount, no veth.
func TestOpenCloseCycles(t *testing.T) {
	e, state := testEngine(t, "runc")
	img, err := rootfs.Host(state)
	if err != nil {
		t.Fatal(err)
	}
	threadsBefore := threadNetns()
	var inos []uint64
	for i := range 50 {
		n, err := Open(t.Context(), fmt.Sprintf("cycle-%d", i), Options{StateDir: state})
		if err != nil {
			t.Fatalf("cycle %d: Open: %v", i, err)
		}
		inos = append(inos, nsIno(n.NetnsPath), nsIno(filepath.Join(n.dir, pinProxy)))
		res, err := e.Run(t.Context(), "runc", runtime.Request{Image: img, Args: []string{"/bin/true"}, Network: attachment(n)})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("cycle %d: sandbox: %v %+v", i, err, res)
		}
		if err := n.Close(); err != nil {
			t.Fatalf("cycle %d: Close: %v", i, err)
		}
	}
	// Only the private base mount is left; Collect (gc) removes it.
	if m := mountsUnder(filepath.Join(state, "netns")); len(m) != 1 {
		t.Errorf("mounts after closing every network: %q; want only the base", m)
	}
	if _, err := Collect(state); err != nil {
		t.Fatal(err)
	}
	assertGone(t, state, inos)
	if after := threadNetns(); len(after) > len(threadsBefore) {
		t.Errorf("threads of this process are in other network namespaces: %v (before: %v)", after, threadsBefore)
	}
}

// TestCollectAfterKill kills a vial-like owner (a network with a sandbox
// running in it) with SIGKILL, then collects: runtime GC and Collect
// together leave nothing behind.
func TestCollectAfterKill(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc")
	state := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+state)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v (stderr: %s)", err, stderr.String())
	}
	var sIno, pIno uint64
	var sandboxPID int
	if _, err := fmt.Sscanf(line, "ready %d %d %d", &sIno, &pIno, &sandboxPID); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	if st, err := Collect(state); err != nil || st.Networks != 1 {
		t.Fatalf("Collect after the owner died: %+v %v; want one network collected", st, err)
	}
	e, err := runtime.New(runtime.Options{StateDir: state, Backends: []*runtime.Backend{runc.New()}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := e.GC(t.Context()); err != nil || rep.Containers == 0 {
		t.Fatalf("runtime GC: %v %v", rep, err)
	}
	// Dead means gone or a zombie: this machine's pid 1 reaps slowly.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", sandboxPID)); err == nil && !strings.Contains(string(st), ") Z ") {
		t.Errorf("the sandbox's process %d is still alive: %s", sandboxPID, st)
	}
	assertGone(t, state, []uint64{sIno, pIno})
	if st, err := Collect(state); err != nil || st != (CollectReport{}) {
		t.Errorf("a second Collect found more: %+v %v", st, err)
	}
}

const helperEnv = "VIAL_EGRESS_TEST_OWNER"

// helperMain is the owner TestCollectAfterKill kills: it opens a network,
// starts a sandbox in it, says so and waits.
func helperMain() int {
	state := os.Getenv(helperEnv)
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	n, err := Open(context.Background(), "owner", Options{StateDir: state})
	if err != nil {
		return fail(err)
	}
	e, err := runtime.New(runtime.Options{StateDir: state, Backends: []*runtime.Backend{runc.New()}})
	if err != nil {
		return fail(err)
	}
	img, err := rootfs.Host(state)
	if err != nil {
		return fail(err)
	}
	sb, err := e.Start(context.Background(), "runc", runtime.Request{Image: img, Args: []string{"/bin/sleep", "1000"}, Network: attachment(n)})
	if err != nil {
		return fail(err)
	}
	pid, err := os.ReadFile(filepath.Join(state, "sandboxes", sb.ID, "init.pid"))
	if err != nil {
		return fail(err)
	}
	fmt.Printf("ready %d %d %s\n", nsIno(n.NetnsPath), nsIno(filepath.Join(n.dir, pinProxy)), strings.TrimSpace(string(pid)))
	time.Sleep(time.Hour)
	return 0
}

func nsIno(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// assertGone checks that nothing on the host refers to any of the network
// namespaces inos any more (so they, and the veths in them, are gone), and
// that nothing is mounted under the state directory's netns directory.
func assertGone(t *testing.T, state string, inos []uint64) {
	t.Helper()
	refs := netnsRefs()
	for _, ino := range inos {
		if who, ok := refs[ino]; ok {
			t.Errorf("network namespace %d is still held by %s", ino, who)
		}
	}
	if m := mountsUnder(filepath.Join(state, "netns")); len(m) > 0 {
		t.Errorf("still mounted: %q", m)
	}
	if _, err := os.Stat(filepath.Join(state, "netns")); err == nil {
		if ents, _ := os.ReadDir(filepath.Join(state, "netns")); len(ents) > 0 {
			t.Errorf("left in %s/netns: %v", state, ents)
		}
	}
	if l := testupstream.Links(); len(l) > 0 {
		t.Logf("test interfaces present (an upstream still running): %v", l)
	}
}

var nsLink = regexp.MustCompile(`^net:\[(\d+)\]$`)

// netnsRefs returns every network namespace something on the host refers
// to, with who: a thread's namespace, an open descriptor, or a mount in
// any mount namespace.
func netnsRefs() map[uint64]string {
	refs := map[uint64]string{}
	add := func(link, who string) {
		if m := nsLink.FindStringSubmatch(link); m != nil {
			ino, _ := strconv.ParseUint(m[1], 10, 64)
			refs[ino] = who
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	ours := ownProcesses()
	seenMnt := map[string]bool{}
	for _, p := range procs {
		// Threads and descriptors only of this test and what it started:
		// a namespace's inode number is reused once it is freed, and other
		// tests running beside this one (runsc makes namespaces of its
		// own) may hold a new namespace under an old number.
		if ours[filepath.Base(p)] {
			tasks, _ := filepath.Glob(p + "/task/*/ns/net")
			for _, tk := range tasks {
				l, _ := os.Readlink(tk)
				add(l, tk)
			}
			fds, _ := filepath.Glob(p + "/fd/*")
			for _, fd := range fds {
				l, _ := os.Readlink(fd)
				add(l, fd)
			}
		}
		mnt, _ := os.Readlink(p + "/ns/mnt")
		if mnt == "" || seenMnt[mnt] {
			continue
		}
		seenMnt[mnt] = true
		data, _ := os.ReadFile(p + "/mountinfo")
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && slices.Contains(f, "nsfs") {
				add(f[3], p+"/mountinfo "+f[4])
			}
		}
	}
	return refs
}

// ownProcesses returns the pids of this process and its descendants.
func ownProcesses() map[string]bool {
	parent := map[string]string{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 {
			parent[filepath.Base(filepath.Dir(st))] = f[1]
		}
	}
	self := strconv.Itoa(os.Getpid())
	ours := map[string]bool{self: true}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if ours[pp] && !ours[pid] {
				ours[pid], changed = true, true
			}
		}
	}
	return ours
}

// threadNetns lists the network namespaces of this process's threads
// that are not the process's own.
func threadNetns() []string {
	own, _ := os.Readlink("/proc/self/ns/net")
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	var out []string
	for _, tk := range tasks {
		if l, _ := os.Readlink(tk); l != own {
			out = append(out, tk+" "+l)
		}
	}
	return out
}
