package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/internal/lazyre"
)

// Options configure a sandbox's network.
type Options struct {
	// StateDir is vial's state directory; namespaces are pinned under
	// <StateDir>/netns/<id>/.
	StateDir string
	// Policy decides which names (and ports) the sandbox may reach. Nil
	// refuses everything.
	Policy HostPolicy
	// Hosts is the operator's static table of name → IP address, used
	// before DNS (like /etc/hosts). It only says where a name is: whether
	// the name may be reached is still the Policy's decision, and the
	// address still passes the private-address check.
	Hosts map[string]string
	// AllowPrivateCIDRs are private ranges (CIDR blocks or addresses) vial
	// may dial for an allowed name: an internal package mirror, an
	// air-gapped host. Loopback, multicast, unspecified addresses and the
	// host's own addresses stay refused whatever this says.
	AllowPrivateCIDRs []string
	// Resolver looks up allowed names that are not in Hosts, from vial's
	// own network namespace. Nil means Go's resolver with the host's
	// /etc/resolv.conf.
	Resolver *net.Resolver
	// Events receives every decision (see Event). It is called from many
	// goroutines at once and must not block for long. Nil means none.
	Events func(Event)
	// Log gets one line per decision (refusals and connections at Info,
	// allowed DNS answers at Debug). Nil discards.
	Log *slog.Logger
}

// Network is a sandbox's network while it is open: a namespace S for the
// sandbox whose only interface leads to a private namespace P where
// vial's proxy and DNS listen. There is no route anywhere else: a program
// that ignores the proxy variables reaches nothing but vial. It is safe
// for concurrent use.
type Network struct {
	// ID is the id Open was given.
	ID string
	// NetnsPath is the pinned network namespace the sandbox joins (the
	// OCI spec's network namespace path).
	NetnsPath string
	// ResolvConf is a host file to bind read-only at /etc/resolv.conf in
	// the sandbox: vial's DNS responder as the only name server.
	ResolvConf string
	// Env holds the proxy variables for the sandbox: HTTP_PROXY,
	// HTTPS_PROXY, ALL_PROXY (and their lower-case twins) naming vial's
	// proxy, and NO_PROXY=localhost,127.0.0.1.
	Env []string

	dir   string
	proxy *proxy
	dns   *dnsResponder
	lns   *listeners
	once  sync.Once
	err   error
	undo  func() error
}

// validID matches the ids Open accepts: they become a directory name.
var validID = lazyre.New(`^[a-z0-9][a-z0-9-]{0,63}$`)

// Open creates a sandbox's network: namespaces S and P pinned under
// <StateDir>/netns/<id>/, the veth between them, and vial's proxy and DNS
// listening in P, answering by o.Policy. Close releases all of it; a
// crashed owner's leftovers are removed by Collect. ctx bounds nothing
// yet (creation takes a few milliseconds) and is reserved.
func Open(ctx context.Context, id string, o Options) (_ *Network, err error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("network id %q: %w: want lower-case letters, digits and hyphens", id, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(o.StateDir) {
		return nil, fmt.Errorf("state directory %q: %w: must be absolute", o.StateDir, errdefs.ErrInvalidArgument)
	}
	d, err := newDialer(o.Hosts, o.AllowPrivateCIDRs, o.Resolver)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	rep := newReporter(id, o.Events, o.Log)

	var cu cleanup.Stack
	defer func() {
		if err != nil {
			cu.Clean()
		}
	}()
	base := filepath.Join(o.StateDir, "netns")
	// Collect takes this lock exclusively: while we hold it shared, it
	// cannot take our half-made directory for a dead one's.
	unlock, err := lockBase(o.StateDir, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := ensureBase(base); err != nil {
		return nil, err
	}
	n := &Network{ID: id, dir: filepath.Join(base, id)}
	if err := os.Mkdir(n.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("network %s: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("creating network directory: %w", err)
	}
	cu.Add(func() error { return os.RemoveAll(n.dir) })
	// The directory's flock says its owner lives (Collect leaves it
	// alone); the kernel drops it when this process dies.
	lock, err := os.Open(n.dir)
	if err != nil {
		return nil, fmt.Errorf("opening network directory: %w", err)
	}
	// The directory goes before the lock is let go: a Collect that finds
	// the lock free then finds nothing to remove.
	cu.Add(func() error { err := os.RemoveAll(n.dir); lock.Close(); return err })
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("locking network: %w", err)
	}
	// The pins are undone even if creating them failed half-way.
	cu.Add(func() error {
		return errors.Join(unpin(filepath.Join(n.dir, pinSandbox)), unpin(filepath.Join(n.dir, pinProxy)))
	})
	n.lns, err = createNamespaces(n.dir)
	if err != nil {
		return nil, fmt.Errorf("creating network namespaces: %w", err)
	}
	cu.Add(func() error { n.lns.close(); return nil })
	n.NetnsPath = filepath.Join(n.dir, pinSandbox)
	n.ResolvConf = filepath.Join(base, resolvName)
	proxyURL := "http://" + net.JoinHostPort(ProxyIP.String(), strconv.Itoa(ProxyPort))
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		n.Env = append(n.Env, k+"="+proxyURL)
	}
	n.Env = append(n.Env, "NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1")

	n.proxy = newProxy(o.Policy, d, rep)
	n.proxy.serve(n.lns)
	cu.Add(func() error { n.proxy.stop(); return nil })
	n.dns = &dnsResponder{policy: o.Policy, answer: ProxyIP, rep: rep}
	n.dns.serve(n.lns.dnsUDP, n.lns.dnsTCP, newConnSet(maxDNSConns, nil))
	cu.Add(func() error { n.dns.stop(); return nil })
	n.undo = cu.Release()
	return n, nil
}

// Close stops the listeners, ends every connection, releases both
// namespaces and removes the network's directory. The sandbox should be
// gone first; a sandbox still running keeps its (unreachable) namespace
// until it exits. Safe to call more than once.
func (n *Network) Close() error {
	n.once.Do(func() { n.err = n.undo() })
	return n.err
}

// lockBase takes <stateDir>/netns.lock (shared or exclusive) and returns
// its release.
func lockBase(stateDir string, how int) (func(), error) {
	if err := os.MkdirAll(stateDir, 0o711); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "netns.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening network lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking networks: %w", err)
	}
	return func() { f.Close() }, nil
}

// CollectReport counts what Collect removed.
type CollectReport struct {
	Networks int // directories of dead owners removed
	Mounts   int // namespace pins (and the base mount) unmounted
}

// Collect removes the networks under <stateDir>/netns whose owner is gone
// (it died without Close: the directory's flock is free), unmounting
// their pins so the namespaces and veths die with them. Networks of live vial
// processes are left alone, so it is safe to run beside them (vial gc and
// start-up recovery call it). When no network is left it also unmounts
// the private base mount, leaving nothing mounted behind.
func Collect(stateDir string) (CollectReport, error) {
	var rep CollectReport
	base := filepath.Join(stateDir, "netns")
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		return rep, nil
	}
	unlock, err := lockBase(stateDir, unix.LOCK_EX)
	if err != nil {
		return rep, err
	}
	defer unlock()
	ents, err := os.ReadDir(base)
	if err != nil {
		return rep, fmt.Errorf("reading %s: %w", base, err)
	}
	var errs []error
	live := 0
	for _, ent := range ents {
		dir := filepath.Join(base, ent.Name())
		if !validID.MatchString(ent.Name()) || !ent.IsDir() {
			continue
		}
		if held(dir) {
			live++
			continue
		}
		for _, mp := range mountsUnder(dir) {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
				continue
			}
			rep.Mounts++
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
			continue
		}
		rep.Networks++
	}
	if live == 0 && len(errs) == 0 {
		if root, _ := isMountRoot(base); root {
			if err := unix.Unmount(base, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", base, err))
			} else {
				rep.Mounts++
			}
		}
		stale, _ := filepath.Glob(filepath.Join(base, ".resolv-*"))
		for _, f := range append(stale, filepath.Join(base, resolvName)) {
			os.Remove(f)
		}
		os.Remove(base)
	}
	return rep, errors.Join(errs...)
}

// held reports whether a live process holds the flock on the network
// directory dir.
func held(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}
