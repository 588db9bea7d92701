package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testupstream"
	"github.com/vial-run/vial/internal/testutil"
)

// The network through `vial serve`, as an agent's configuration opens it:
// an upstream the test builds (its own network namespace, joined to the
// host by a veth the test creates) serves allowed.test and denied.test,
// given to vial through [sandbox.network] hosts and allow_private_cidrs.
// No traffic goes anywhere else. egress/'s root tests check every refusal
// in depth on each runtime; this checks the whole path a model uses.

// networkAgent writes a configuration directory with agent "net": image
// and runtime as given, the network open to allowed.test only.
func networkAgent(t *testing.T, u *testupstream.Upstream, rt, image string) string {
	return writeTree(t, map[string]string{
		"config/execution.toml": "[sandbox]\nruntime = \"" + rt + "\"\n",
		"agents/net/agent.toml": fmt.Sprintf(`[metadata]
agent_id = "net"
[sandbox.docker]
image = %q
[sandbox.network]
enabled = true
allowed_hosts = ["allowed.test"]
hosts = { "allowed.test" = %q, "denied.test" = %q }
allow_private_cidrs = [%q]
[shell.env]
SSL_CERT_FILE = "/workspace/ca.pem"
CURL_CA_BUNDLE = "/workspace/ca.pem"
PIP_INDEX_URL = "https://allowed.test/simple/"
PIP_CERT = "/workspace/ca.pem"
[tools]
enabled = ["run_code", "run_shell", "write_file", "create_context", "stop_context", "list_contexts", "http_request", "fetch_url", "install_package"]
require_confirmation = []
auto_approve_patterns = ["*"]
[tools.config.http_request]
auto_approve_methods = ["GET", "HEAD"]
blocked_hosts = ["localhost", "127.0.0.1", "*.internal"]
`, image, u.IP, u.IP, u.Prefix),
	})
}

// probePy fetches each URL with urllib and prints one line per URL: ok and
// the first line of the body, or the error's class.
const probePy = `
import urllib.request, socket
for url in ["http://allowed.test/", "https://allowed.test/", "https://denied.test/", "http://%s/"]:
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode().splitlines()[0]
        print(url, "ok", body)
    except Exception as e:
        print(url, "refused", type(e).__name__)
try:
    socket.gethostbyname("denied.test")
    print("dns denied.test resolved")
except OSError:
    print("dns denied.test NXDOMAIN")
`

func TestNetworkThroughServe(t *testing.T) {
	requireE2E(t)
	u := testupstream.New(t)
	for _, rt := range []string{"runc", "crun", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			// The host image has curl and python's urllib.
			state := newStateDir(t)
			s := startAgent(t, state, networkAgent(t, u, rt, "host"), "net", rt, "--pool-size", "0", "--audit-dir", filepath.Join(state, "audit"))
			s.mustOK("write_file", map[string]any{"path": "ca.pem", "content": string(u.CAPEM)})
			r := s.mustOK("run_code", map[string]any{"code": fmt.Sprintf(probePy, u.IP)})
			for _, want := range []string{
				"http://allowed.test/ ok hello from allowed.test over http",
				"https://allowed.test/ ok hello from allowed.test over https",
				"https://denied.test/ refused",
				"http://" + u.IP.String() + "/ refused",
				"dns denied.test NXDOMAIN",
			} {
				if !strings.Contains(r.text, want) {
					t.Errorf("python: no %q in\n%s", want, r.text)
				}
			}
			r = s.mustOK("run_shell", map[string]any{"command": "curl -sS --max-time 10 https://allowed.test/; echo; curl -sS --max-time 10 https://denied.test/ || echo curl refused $?; curl -sS --noproxy '*' --max-time 5 http://" + u.IP.String() + "/ || echo direct refused"})
			for _, want := range []string{"hello from allowed.test over https", "curl refused", "direct refused"} {
				if !strings.Contains(r.text, want) {
					t.Errorf("curl: no %q in\n%s", want, r.text)
				}
			}
			for _, name := range u.DNSLog() {
				if strings.Contains(name, "denied") {
					t.Errorf("the upstream's resolver saw a query for %q", name)
				}
			}
			// Every decision is in the audit log, with the sandbox (an
			// allowed connection's record comes when it ends).
			var denied, allowed bool
			for deadline := time.Now().Add(10 * time.Second); !(denied && allowed) && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				for _, l := range auditLines(t, state, 3) {
					if l["kind"] != "egress" {
						continue
					}
					if l["sandbox"] == nil || l["sandbox"] == "" {
						t.Fatalf("egress record without its sandbox: %v", l)
					}
					denied = denied || (l["host"] == "denied.test" && l["decision"] == "denied")
					allowed = allowed || (l["host"] == "allowed.test" && l["decision"] == "allowed")
				}
			}
			if !denied || !allowed {
				t.Errorf("audit log: denied.test refusal %v, allowed.test connection %v", denied, allowed)
			}
			ids := s.sandboxIDs()
			s.closeAndCheckClean(ids)
			// Nothing of the networks stays: no directory, no mount.
			if _, err := os.Stat(filepath.Join(state, "netns")); err == nil {
				t.Errorf("%s/netns left after serve ended", state)
			}
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			if strings.Contains(string(mi), state) {
				t.Errorf("mounts left under %s", state)
			}
			if links := testupstream.Links(); len(links) > 2 {
				t.Errorf("interfaces left on the host: %v", links)
			}
		})
	}
}

// TestNetworkTools: install_package from an index the test serves on
// allowed.test (the stored python image has pip), http_request and
// fetch_url under the same allowlist, localhost refused.
func TestNetworkTools(t *testing.T) {
	requireE2E(t)
	img := testutil.StoredImage(t)
	u := testupstream.New(t)
	whl, sum := testWheel(t)
	name := "vialtest_pkg-1.0-py3-none-any.whl"
	index := fmt.Sprintf(`<!DOCTYPE html><html><body><a href="/files/%s#sha256=%s">%s</a></body></html>`, name, sum, name)
	u.Put("/simple/vialtest-pkg/", "text/html", []byte(index))
	u.Put("/files/"+name, "application/octet-stream", whl)

	state := newStateDir(t)
	// vial's own requests (http_request, fetch_url) trust the test CA
	// through Go's SSL_CERT_FILE; the host's trust store is not touched.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, u.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", ca)
	s := startAgent(t, state, networkAgent(t, u, "runc", img.Root), "net", "runc")
	s.mustOK("write_file", map[string]any{"path": "ca.pem", "content": string(u.CAPEM)})

	// A running interpreter that has looked for the module already.
	if r := s.mustOK("run_code", map[string]any{"code": "try:\n import vialtest_pkg\nexcept ImportError:\n print('absent')"}); !strings.Contains(r.text, "absent") {
		t.Fatalf("the package is there before it is installed: %q", r.text)
	}
	r := s.mustOK("install_package", map[string]any{"name": "vialtest-pkg"})
	if !strings.Contains(r.text, "Successfully installed vialtest-pkg-1.0") {
		t.Errorf("install_package: %s", r.text)
	}
	// The default python context, already running, sees it at once.
	if r := s.mustOK("run_code", map[string]any{"code": "import vialtest_pkg; print(vialtest_pkg.VALUE)"}); !strings.Contains(r.text, "--- stdout ---\n42") {
		t.Errorf("importing the installed package: %q", r.text)
	}
	if r := s.call("install_package", map[string]any{"name": "--index-url=http://evil/"}); !r.isError {
		t.Errorf("an option as a package name was accepted: %s", r.text)
	}

	if r := s.mustOK("http_request", map[string]any{"method": "GET", "url": "https://allowed.test/"}); !strings.Contains(r.text, "HTTP 200") || !strings.Contains(r.text, "hello from allowed.test over https") {
		t.Errorf("http_request GET allowed.test: %s", r.text)
	}
	if r := s.mustOK("fetch_url", map[string]any{"url": "https://allowed.test/page"}); !strings.Contains(r.text, "Hello") || strings.Contains(r.text, "secret") {
		t.Errorf("fetch_url: %s", r.text)
	}
	for _, url := range []string{"http://localhost/", "http://127.0.0.1:9/", "https://denied.test/", "http://169.254.169.254/latest/meta-data/"} {
		if r := s.call("http_request", map[string]any{"method": "GET", "url": url}); !r.isError {
			t.Errorf("http_request %s was not refused: %s", url, r.text)
		}
	}
	s.closeAndCheckClean(s.sandboxIDs())
}

// testWheel builds a pure-Python wheel of vialtest-pkg 1.0 whose module
// says VALUE = 42, and returns it with its sha256.
func testWheel(t *testing.T) ([]byte, string) {
	files := []struct{ name, body string }{
		{"vialtest_pkg/__init__.py", "VALUE = 42\n"},
		{"vialtest_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: vialtest-pkg\nVersion: 1.0\n"},
		{"vialtest_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: vial-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := z.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f.body))
		h := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(h[:]), len(f.body))
	}
	record.WriteString("vialtest_pkg-1.0.dist-info/RECORD,,\n")
	w, _ := z.Create("vialtest_pkg-1.0.dist-info/RECORD")
	w.Write([]byte(record.String()))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(h[:])
}
