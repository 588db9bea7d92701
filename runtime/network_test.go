package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime/oci"
)

func TestCheckNetwork(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	img := &rootfs.Image{Name: "img", Root: root}
	good := &Network{NetnsPath: "/var/lib/vial/netns/x/sandbox", ResolvConf: "/var/lib/vial/netns/x/resolv.conf", Env: []string{"HTTP_PROXY=http://10.87.0.1:3128"}}

	if err := checkNetwork(&Request{Image: img}); err != nil {
		t.Errorf("no network: %v", err)
	}
	err := checkNetwork(&Request{Image: img, Network: good})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no /etc/resolv.conf") {
		t.Errorf("image without resolv.conf: %v", err)
	}
	os.Symlink("../run/resolv.conf", filepath.Join(root, "etc/resolv.conf"))
	if err := checkNetwork(&Request{Image: img, Network: good}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("image with a resolv.conf link: %v", err)
	}
	os.Remove(filepath.Join(root, "etc/resolv.conf"))
	os.WriteFile(filepath.Join(root, "etc/resolv.conf"), nil, 0o644)
	if err := checkNetwork(&Request{Image: img, Network: good}); err != nil {
		t.Errorf("good network: %v", err)
	}
	// An image whose /etc leads out of it is refused, not followed.
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "resolv.conf"), nil, 0o644)
	root2 := t.TempDir()
	os.Symlink(out, filepath.Join(root2, "etc"))
	if err := checkNetwork(&Request{Image: &rootfs.Image{Name: "x", Root: root2}, Network: good}); !errors.Is(err, ErrInvalid) {
		t.Errorf("image with /etc linking outside: %v", err)
	}
	bad := &Network{NetnsPath: "relative", ResolvConf: "/a/../b", Env: []string{"NOEQUALS"}}
	err = checkNetwork(&Request{Image: img, Network: bad})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad network: %v", err)
	}
	for _, want := range []string{"relative", "/a/../b", "NOEQUALS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}

func TestNetworkSpec(t *testing.T) {
	off, err := oci.New(networkOpts(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	n := &Network{NetnsPath: "/s/netns/x/sandbox", ResolvConf: "/s/netns/x/resolv.conf", Env: []string{"HTTP_PROXY=p"}}
	on, err := oci.New(append([]oci.SpecOpt{oci.WithEnv("HTTP_PROXY=user")}, networkOpts(n)...)...)
	if err != nil {
		t.Fatal(err)
	}
	netns := func(s *specs.Spec) (specs.LinuxNamespace, int) {
		var found specs.LinuxNamespace
		count := 0
		for _, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				found, count = ns, count+1
			}
		}
		return found, count
	}
	if ns, c := netns(off); c != 1 || ns.Path != "" {
		t.Errorf("network off: %+v (%d entries); want one fresh network namespace", ns, c)
	}
	if ns, c := netns(on); c != 1 || ns.Path != n.NetnsPath {
		t.Errorf("network on: %+v (%d entries); want one joining %s", ns, c, n.NetnsPath)
	}
	i := slices.IndexFunc(on.Mounts, func(m specs.Mount) bool { return m.Destination == "/etc/resolv.conf" })
	if i < 0 || on.Mounts[i].Source != n.ResolvConf || !slices.Contains(on.Mounts[i].Options, "ro") {
		t.Errorf("resolv.conf mount: %+v", on.Mounts)
	}
	if !slices.Contains(on.Process.Env, "HTTP_PROXY=p") || slices.Contains(on.Process.Env, "HTTP_PROXY=user") {
		t.Errorf("the network's environment must win over the request's: %q", on.Process.Env)
	}
}

func TestSandboxArgs(t *testing.T) {
	b := &Backend{Name: "x", GlobalArgs: []string{"--g"}, SandboxArgs: func(p SandboxParams) []string {
		if p.Network {
			return []string{"--net=on"}
		}
		return []string{"--net=off"}
	}}
	s := &sandbox{backend: b, root: "/r", args: b.sandboxArgs(&Request{Network: &Network{}})}
	if got := s.runCommand("run", "id").Args[1:]; !slices.Equal(got, []string{"--root", "/r", "--g", "--net=on", "run", "id"}) {
		t.Errorf("run with a network: %q", got)
	}
	s.args = b.sandboxArgs(&Request{})
	if got := s.runCommand("run", "id").Args[1:]; !slices.Equal(got, []string{"--root", "/r", "--g", "--net=off", "run", "id"}) {
		t.Errorf("run without a network: %q", got)
	}
	if got := b.command("/r", "kill", "id").Args[1:]; !slices.Equal(got, []string{"--root", "/r", "--g", "kill", "id"}) {
		t.Errorf("other commands: %q", got)
	}
}
