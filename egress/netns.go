package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"

	"github.com/vial-run/vial/internal/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The /30 between a sandbox's namespace S and its private namespace P.
// Every sandbox uses the same addresses: each pair lives in its own two
// namespaces, which reach nothing else, so they never meet.
var (
	ProxyIP   = netip.MustParseAddr("10.87.0.1") // P's end: the proxy and DNS listen here
	SandboxIP = netip.MustParseAddr("10.87.0.2") // S's end
)

const (
	prefixLen = 30
	// ProxyPort is the HTTP proxy's port (plain HTTP and CONNECT).
	ProxyPort = 3128
	// Interface names: what the sandbox sees, and P's end.
	sandboxIf = "eth0"
	proxyIf   = "vial0"
	// The veth MTU: runsc over a link with a 64 KiB MTU stalls HTTPS.
	linkMTU = 1500
)

// Names of the files in a network's directory <state>/netns/<id>/ (the
// directory itself is flock-held by its owner), and of the resolv.conf
// every sandbox shares, <state>/netns/resolv.conf.
const (
	pinSandbox = "sandbox"     // nsfs bind mount of S: what the runtime joins
	pinProxy   = "proxy"       // nsfs bind mount of P
	resolvName = "resolv.conf" // bound at /etc/resolv.conf in every sandbox
)

// resolvConf names vial's DNS as the only name server. It is the same for
// every sandbox (each reaches its own vial at the same address).
var resolvConf = "# vial: names are answered by vial's egress DNS, for allowed hosts only\n" +
	"nameserver " + ProxyIP.String() + "\noptions timeout:2 attempts:2\n"

// listeners are the sockets vial opened inside P.
type listeners struct {
	proxy, http, tls, dnsTCP net.Listener
	dnsUDP                   net.PacketConn
}

func (l *listeners) close() {
	for _, c := range []net.Listener{l.proxy, l.http, l.tls, l.dnsTCP} {
		if c != nil {
			c.Close()
		}
	}
	if l.dnsUDP != nil {
		l.dnsUDP.Close()
	}
}

// createNamespaces makes S and P, pins them under dir, joins them with a
// veth pair and opens vial's listeners inside P.
//
// All of it runs on one goroutine locked to its OS thread. That thread
// moves into the new namespaces (unshare) and is never unlocked: when the
// goroutine returns, Go ends the thread, so no other goroutine ever runs
// in P or S by accident. The sockets opened there keep belonging to P for
// their whole life, whichever thread later uses them.
func createNamespaces(dir string) (*listeners, error) {
	type result struct {
		l   *listeners
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		// Deliberately no UnlockOSThread (see above).
		l, err := setupOnThread(dir)
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}

func setupOnThread(dir string) (_ *listeners, err error) {
	// Should this goroutine happen to run on the main thread, Go parks
	// that thread for good instead of ending it; it must not stay in P
	// then, or P would outlive its network. Going home first costs a
	// syscall.
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening vial's network namespace: %w", err)
	}
	defer unix.Close(home)
	defer unix.Setns(home, unix.CLONE_NEWNET)

	// P first: S's end of the veth is created in S and its peer moved
	// straight into P.
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("creating proxy network namespace: %w", err)
	}
	if err := pin(filepath.Join(dir, pinProxy)); err != nil {
		return nil, err
	}
	pfd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening proxy network namespace: %w", err)
	}
	defer unix.Close(pfd)

	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("creating sandbox network namespace: %w", err)
	}
	if err := pin(filepath.Join(dir, pinSandbox)); err != nil {
		return nil, err
	}
	if err := configure(sandboxIf, SandboxIP, func(h *netlink.Handle) error {
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = sandboxIf, linkMTU
		veth := &netlink.Veth{LinkAttrs: la, PeerName: proxyIf, PeerMTU: linkMTU, PeerNamespace: netlink.NsFd(pfd)}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("creating veth pair: %w", err)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sandbox namespace: %w", err)
	}

	if err := unix.Setns(pfd, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("entering proxy network namespace: %w", err)
	}
	if err := configure(proxyIf, ProxyIP, nil); err != nil {
		return nil, fmt.Errorf("proxy namespace: %w", err)
	}
	l := &listeners{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	tcp := func(port int) (net.Listener, error) {
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ProxyIP, uint16(port))))
		if err != nil {
			return nil, err
		}
		return ln, nil
	}
	if l.proxy, err = tcp(ProxyPort); err != nil {
		return nil, fmt.Errorf("opening proxy listener: %w", err)
	}
	if l.http, err = tcp(80); err != nil {
		return nil, fmt.Errorf("opening http listener: %w", err)
	}
	if l.tls, err = tcp(443); err != nil {
		return nil, fmt.Errorf("opening tls listener: %w", err)
	}
	if l.dnsTCP, err = tcp(53); err != nil {
		return nil, fmt.Errorf("opening dns listener: %w", err)
	}
	udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ProxyIP, 53)))
	if err != nil {
		return nil, fmt.Errorf("opening dns listener: %w", err)
	}
	l.dnsUDP = udp
	return l, nil
}

// configure brings lo up in the current thread's namespace, runs extra
// (which may create links), then gives the interface name addr/30 and
// brings it up. A fresh namespace has lo down.
func configure(name string, addr netip.Addr, extra func(*netlink.Handle) error) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	if extra != nil {
		if err := extra(h); err != nil {
			return err
		}
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	ipn := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(prefixLen, 32)}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("addressing %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

// pin keeps the calling thread's network namespace alive after the
// thread ends: a bind mount of its nsfs file onto path (as `ip netns`
// does, but in vial's own private directory).
func pin(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating namespace pin: %w", err)
	}
	f.Close()
	if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pinning network namespace: %w", err)
	}
	return nil
}

// unpin releases a pin; the namespace goes when nothing else holds it.
func unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpinning %s: %w", filepath.Base(path), err)
	}
	return nil
}

// ensureBase makes base a private mount point (bound onto itself, then
// MS_PRIVATE), so the pins made under it are not propagated into other
// mount namespaces — where they would keep namespaces alive — and no
// other namespace's unmounts reach them (slirp4netns --enable-sandbox was
// seen unmounting every pin in a shared directory).
func ensureBase(base string) error {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", base, err)
	}
	root, err := isMountRoot(base)
	if err != nil {
		return err
	}
	if !root {
		if err := unix.Mount(base, base, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mounting %s: %w", base, err)
		}
	}
	if err := unix.Mount("", base, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making %s private: %w", base, err)
	}
	// The shared resolv.conf: replaced (never rewritten in place: running
	// sandboxes keep the file they bound) when it is missing or stale.
	p := filepath.Join(base, resolvName)
	if b, err := os.ReadFile(p); err == nil && string(b) == resolvConf {
		return nil
	}
	tmp, err := os.CreateTemp(base, ".resolv-")
	if err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(resolvConf)
	if err = errors.Join(err, tmp.Chmod(0o644), tmp.Close()); err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	return nil
}

// isMountRoot reports whether path is a mount point.
func isMountRoot(path string) (bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false, fmt.Errorf("inspecting %s: %w", path, err)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	return slices.Contains(mountsUnder(path), path), nil // kernels before 5.8
}

// mountsUnder returns the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string { return mountinfo.PointsUnder(dir) }
