package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Address classes vial refuses to dial for a sandbox. A name on the
// allowlist may still resolve (by accident, by a hostile DNS answer or by
// rebinding) to an address that reaches something the operator never
// meant to open: the host itself, its loopback services, the cloud
// metadata endpoint, the private network around it. Those are refused
// after resolution, on the address actually dialed.
var (
	// neverDial cannot be opened by AllowPrivateCIDRs: the host's own
	// services and addresses that reach no single remote host.
	neverDial = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),          // "this network"; 0.0.0.0 reaches the host
		netip.MustParsePrefix("127.0.0.0/8"),        // loopback: the host's own services
		netip.MustParsePrefix("224.0.0.0/4"),        // multicast
		netip.MustParsePrefix("255.255.255.255/32"), // broadcast
		netip.MustParsePrefix("::/128"),             // unspecified
		netip.MustParsePrefix("::1/128"),            // loopback
		netip.MustParsePrefix("ff00::/8"),           // multicast
	}
	// privateDial is refused unless AllowPrivateCIDRs covers the address.
	privateDial = []struct {
		p    netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
		{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
		{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
		{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address"},
		{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (cloud metadata lives here)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
		{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
		{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
		{netip.MustParsePrefix("fc00::/7"), "a unique-local (private) address"},
		{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
		// Addresses that embed an IPv4 address a gateway would translate
		// to: they could carry a private IPv4 address past the checks above.
		{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address"},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "a NAT64 address"},
		{netip.MustParsePrefix("2002::/16"), "a 6to4 address"},
		{netip.MustParsePrefix("2001::/32"), "a Teredo address"},
	}
)

// addrGuard decides which resolved addresses vial may dial.
type addrGuard struct {
	allowed []netip.Prefix // AllowPrivateCIDRs
	// own reports whether an address is the host's own (hostLocal;
	// replaceable in tests).
	own func(netip.Addr) bool
}

// parseCIDRs parses AllowPrivateCIDRs. A block that would open every
// address (a /0) is refused: it would turn the private-address check off
// altogether, which is never what an operator naming an internal range
// means. A bare address is taken as a one-address block.
func parseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("allow_private_cidrs entry %q: not a CIDR block or address", s))
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Bits() == 0 {
			errs = append(errs, fmt.Errorf("allow_private_cidrs entry %q: would allow every address; name the private ranges instead", s))
			continue
		}
		out = append(out, p.Masked())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return out, nil
}

// refused returns why a may not be dialed, or "" when it may.
func (g *addrGuard) refused(a netip.Addr) string {
	a = a.Unmap()
	if !a.IsValid() {
		return "an invalid address"
	}
	for _, p := range neverDial {
		if p.Contains(a) {
			switch {
			case a.IsLoopback():
				return "a loopback address (the host's own services)"
			case a.IsMulticast():
				return "a multicast address"
			default:
				return "an unspecified or broadcast address"
			}
		}
	}
	// The host's own addresses are never dialed, even inside a range the
	// operator opened: every service listening on the host would become
	// reachable from every sandbox.
	if g.own != nil && g.own(a) {
		return "an address of this host"
	}
	for _, pd := range privateDial {
		if pd.p.Contains(a) {
			for _, ok := range g.allowed {
				if ok.Contains(a) {
					return ""
				}
			}
			return pd.what + " (not in allow_private_cidrs)"
		}
	}
	return ""
}

// routeHandle is one netlink socket in vial's own namespace, opened on
// first use by an ordinary goroutine (only goroutines that vial locks to a
// thread ever leave that namespace, and they never get here). Requests on
// it are serialized by the library; a route lookup over it costs a few
// microseconds instead of a socket's set-up.
var routeHandle = sync.OnceValues(func() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	h.SetSocketTimeout(5 * time.Second)
	return h, nil
})

// hostLocal reports whether the host delivers traffic for a to itself:
// the kernel's own answer (`ip route get`), asked on every check, so an
// address added to the host a moment ago counts at once — a cached list
// of interface addresses would leave a window in which it did not. It
// runs in vial's own network namespace (an ordinary goroutine's).
func hostLocal(a netip.Addr) bool {
	get := netlink.RouteGet // a fresh socket per call (slower)
	if h, err := routeHandle(); err == nil {
		get = h.RouteGet
	}
	routes, err := get(a.AsSlice())
	if err != nil {
		return false // no route at all: nothing local, and no connection either
	}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL || r.Type == unix.RTN_BROADCAST {
			return true
		}
	}
	return false
}
