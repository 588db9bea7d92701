package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Timeouts of one upstream connection attempt.
const (
	resolveTimeout = 5 * time.Second
	dialTimeout    = 10 * time.Second
)

// DeniedError is a connection vial refused: the policy said no, or every
// address the name resolved to is one vial does not dial. It carries
// errdefs.ErrPermissionDenied.
type DeniedError struct {
	Host   string
	Port   int
	Reason string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("connection to %s refused: %s", net.JoinHostPort(e.Host, strconv.Itoa(e.Port)), e.Reason)
}

// Unwrap makes errors.Is(err, errdefs.ErrPermissionDenied) hold.
func (e *DeniedError) Unwrap() error { return errdefs.ErrPermissionDenied }

// dialer connects to upstream hosts from vial's own network namespace on
// behalf of a sandbox (or of vial's own tools): by name, through the
// operator's static table or the resolver, and only to addresses the
// guard accepts. It does not consult the HostPolicy; callers do, before
// they call it, because they know which name the client asked for.
type dialer struct {
	hosts    map[string]netip.Addr
	resolver *net.Resolver
	guard    *addrGuard
}

func newDialer(hosts map[string]string, cidrs []string, resolver *net.Resolver) (*dialer, error) {
	var errs []error
	d := &dialer{hosts: map[string]netip.Addr{}, resolver: resolver}
	for name, addr := range hosts {
		n := NormalizeHost(name)
		a, err := netip.ParseAddr(addr)
		switch {
		case !ValidName(n):
			errs = append(errs, fmt.Errorf("hosts entry %q: not a host name", name))
		case err != nil:
			errs = append(errs, fmt.Errorf("hosts entry %q = %q: not an IP address", name, addr))
		default:
			d.hosts[n] = a.Unmap()
		}
	}
	allowed, err := parseCIDRs(cidrs)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			err = fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
		}
		return nil, err
	}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	d.guard = &addrGuard{allowed: allowed, own: hostLocal}
	return d, nil
}

// lookup returns the addresses host (a normalized name or literal) stands
// for: a literal itself, the operator's table, or the resolver.
func (d *dialer) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if a, ok := d.hosts[host]; ok {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	// A fully qualified query: the host's search domains must not turn an
	// allowed "pypi.org" into a lookup of some other name.
	addrs, err := d.resolver.LookupNetIP(ctx, "ip", host+".")
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, errors.Join(errdefs.ErrUnavailable, err))
	}
	return addrs, nil
}

// resolve returns the addresses vial may dial for host (a normalized name
// or literal): all it stands for, less those the guard refuses. When none
// is left the error is a *DeniedError saying why; a failed lookup carries
// errdefs.ErrUnavailable. Nothing is sent to the host itself.
func (d *dialer) resolve(ctx context.Context, host string, port int) ([]netip.Addr, error) {
	addrs, err := d.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	var ok []netip.Addr
	var why []string
	for _, a := range addrs {
		if r := d.guard.refused(a); r != "" {
			why = append(why, r)
			continue
		}
		ok = append(ok, a.Unmap())
	}
	if len(ok) == 0 {
		reason := "the name resolves to no address"
		if len(why) > 0 {
			reason = "it resolves only to " + strings.Join(dedup(why), ", ")
		}
		return nil, &DeniedError{Host: host, Port: port, Reason: reason}
	}
	return ok, nil
}

// connect dials port on the first of addrs (from resolve) that answers,
// and returns the connection and the address dialed. Refusals are
// *DeniedError; other failures carry errdefs.ErrUnavailable.
func (d *dialer) connect(ctx context.Context, host string, port int, addrs []netip.Addr) (net.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	nd := net.Dialer{
		// Checked once more on the socket itself: whatever path led
		// here, nothing connects to an address the guard refuses.
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			if r := d.guard.refused(ap.Addr()); r != "" {
				return &DeniedError{Host: host, Port: port, Reason: r}
			}
			return nil
		},
	}
	var errs []error
	for _, a := range addrs {
		addr := netip.AddrPortFrom(a, uint16(port)).String()
		c, err := nd.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, addr, nil
		}
		var de *DeniedError
		if errors.As(err, &de) {
			return nil, addr, de
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", fmt.Errorf("connecting to %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), errors.Join(errdefs.ErrUnavailable, errors.Join(errs...)))
}

// dial resolves host and connects to it (resolve, then connect).
func (d *dialer) dial(ctx context.Context, host string, port int) (net.Conn, string, error) {
	addrs, err := d.resolve(ctx, host, port)
	if err != nil {
		return nil, "", err
	}
	return d.connect(ctx, host, port, addrs)
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
