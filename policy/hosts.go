package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// DefaultBlockedHosts is seed 001's blocked_hosts for http_request. The
// configuration carries it (vial does not hard-code it); it is here for
// callers and tests that need the seed's list.
var DefaultBlockedHosts = []string{"localhost", "127.0.0.1", "*.internal"}

// HostRules decide which hosts a network call may reach: http_request's
// blocked_hosts, and the sandbox egress allowlist.
//
// Entries, matched without regard to case and to a trailing dot:
//   - an exact name: "api.example.com";
//   - "*.suffix": any name under suffix, at any depth ("a.internal",
//     "a.b.internal") but not the bare suffix ("internal"): write both to
//     cover both, as in TLS wildcard certificates;
//   - "*": every host;
//   - an IP literal, "10.0.0.1" or "::1" (an IPv4-mapped IPv6 address is
//     the IPv4 address), or a CIDR prefix, "10.0.0.0/8";
//   - any of these with ":port" ("api.example.com:443", "[::1]:8080"):
//     only that port;
//   - "localhost": the local host under any spelling — the name, names
//     under .localhost (RFC 6761), 127.0.0.0/8, ::1, and the unspecified
//     addresses 0.0.0.0 and ::, which reach the local host on Linux.
//
// Host names are compared as ASCII: a name in its IDNA form
// ("xn--bcher-kva.example") is compared as written, and a host with
// non-ASCII characters is refused (an enforcer must not guess how it will
// be encoded). A host whose last label is a number but which is not a
// canonical IP address ("127.1", "0x7f000001", "2130706433",
// "127.000.0.1") is refused: some resolvers read those as IP addresses.
//
// A malformed entry blocks every host in Blocked and allows none in
// Allowed, so that a typo cannot open anything; Validate reports it.
type HostRules struct {
	// Allowed, when not empty, are the only hosts allowed. Empty allows
	// every host Blocked does not name: http_request's blocked_hosts is a
	// deny list. An egress allowlist that must deny by default has to
	// handle "no allowed hosts" itself, before asking.
	Allowed []string
	// Blocked always wins over Allowed.
	Blocked []string
}

// Allow reports whether a call may reach host on port (0 when unknown;
// an entry with a port then blocks, but does not allow), and the rule that
// decided: `blocked "*.internal"`, `allowed "api.example.com"`, `allowed
// hosts` (not in a non-empty Allowed), `invalid host`, or "" (allowed, no
// entry involved).
//
// Allow judges the host as written. A name can resolve to any address, so
// an enforcer must also call Allow with each address the name resolved to,
// and connect only to an address it allowed (never resolving again), or a
// name pointing at 127.0.0.1 reaches what "localhost" blocks.
func (h HostRules) Allow(host string, port int) (ok bool, rule string) {
	v := h.check(host, port)
	switch {
	case v.invalid:
		return false, "invalid host"
	case !v.ok && v.entry != "":
		return false, fmt.Sprintf("blocked %q", v.entry)
	case !v.ok:
		return false, "allowed hosts"
	case v.entry != "":
		return true, fmt.Sprintf("allowed %q", v.entry)
	}
	return true, ""
}

// Validate reports every malformed entry, joined, with class
// errdefs.ErrInvalidArgument.
func (h HostRules) Validate() error {
	var errs []error
	for _, list := range []struct {
		name    string
		entries []string
	}{{"allowed", h.Allowed}, {"blocked", h.Blocked}} {
		for _, e := range list.entries {
			if _, err := parseHostEntry(e); err != nil {
				errs = append(errs, fmt.Errorf("%s host %q: %w", list.name, e, err))
			}
		}
	}
	return errors.Join(errs...)
}

type hostVerdict struct {
	ok      bool
	invalid bool
	entry   string // the entry that decided
	reason  string
}

func (h HostRules) check(host string, port int) hostVerdict {
	hh, err := parseHost(host)
	if err == nil && (port < 0 || port > 65535) {
		err = fmt.Errorf("port %d is out of range", port)
	}
	if err != nil {
		return hostVerdict{invalid: true, reason: fmt.Sprintf("host %q was refused: %v", truncate(host, 100), err)}
	}
	for _, e := range h.Blocked {
		he, err := parseHostEntry(e)
		if err != nil || he.matches(hh, port, true) {
			return hostVerdict{entry: e, reason: fmt.Sprintf("host %s is blocked by the operator", hh.show())}
		}
	}
	if len(h.Allowed) == 0 {
		return hostVerdict{ok: true}
	}
	for _, e := range h.Allowed {
		if he, err := parseHostEntry(e); err == nil && he.matches(hh, port, false) {
			return hostVerdict{ok: true, entry: e}
		}
	}
	return hostVerdict{reason: fmt.Sprintf("host %s is not among the hosts the operator allows", hh.show())}
}

// hostName is a parsed host: an IP address or a lower-case ASCII name.
type hostName struct {
	ip   netip.Addr // valid for an IP literal
	name string
}

func (h hostName) show() string {
	if h.ip.IsValid() {
		return h.ip.String()
	}
	return h.name
}

func parseHost(s string) (hostName, error) {
	if s == "" {
		return hostName{}, errors.New("empty host")
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return hostName{}, errors.New("the name is not ASCII; use its IDNA (xn--) form")
		}
	}
	bracketed := false
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s, bracketed = s[1:len(s)-1], true
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return hostName{}, errors.New("an address with a zone is not a host vial can judge")
		}
		return hostName{ip: ip.Unmap()}, nil
	}
	if bracketed {
		return hostName{}, errors.New("brackets hold an IPv6 address")
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if err := checkName(name); err != nil {
		return hostName{}, err
	}
	return hostName{name: name}, nil
}

// checkName checks a lower-case host name without its trailing dot.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty host")
	}
	if len(name) > 253 {
		return errors.New("the name is longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" {
			return errors.New("the name has an empty label")
		}
		if len(l) > 63 {
			return errors.New("a label is longer than 63 characters")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("the name holds %q", c)
			}
		}
	}
	// The URL standard reads a host whose last label is a number as an
	// IPv4 address in any of inet_aton's forms, and so do some
	// resolvers: "127.1" is 127.0.0.1 to them. A canonical address
	// parsed above; anything else numeric is ambiguous.
	if numericLabel(labels[len(labels)-1]) {
		return errors.New("a numeric host that is not a canonical IP address (some resolvers read forms like 127.1 or 0x7f000001 as an address)")
	}
	return nil
}

func numericLabel(l string) bool {
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		for i := 0; i < len(h); i++ {
			if !isHex(h[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return l != ""
}

// hostEntry is a parsed HostRules entry.
type hostEntry struct {
	any       bool
	localhost bool
	suffix    string // "*.internal": ".internal"
	name      string
	ip        netip.Addr
	prefix    netip.Prefix
	port      int // 0: any port
}

var errHostEntry = fmt.Errorf("malformed host entry: %w", errdefs.ErrInvalidArgument)

func parseHostEntry(e string) (hostEntry, error) {
	s := strings.ToLower(strings.TrimSpace(e))
	var he hostEntry
	if s == "" {
		return he, fmt.Errorf("%w: empty", errHostEntry)
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return he, fmt.Errorf("%w: not ASCII; use the IDNA (xn--) form", errHostEntry)
		}
	}
	// Split off a port: "[v6]:p", "name:p", "v4:p". A bare IPv6 address
	// has several colons and no port.
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return he, fmt.Errorf("%w: unclosed [", errHostEntry)
		}
		rest := s[end+1:]
		s = s[1:end]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return he, fmt.Errorf("%w: text after ]", errHostEntry)
			}
			port, err := parsePort(p)
			if err != nil {
				return he, err
			}
			he.port = port
		}
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return he, fmt.Errorf("%w: brackets must hold an IPv6 address", errHostEntry)
		}
		he.ip = ip.Unmap()
		return he, nil
	}
	if strings.Count(s, ":") == 1 {
		h, p, _ := strings.Cut(s, ":")
		port, err := parsePort(p)
		if err != nil {
			return he, err
		}
		he.port, s = port, h
	}
	switch {
	case s == "*":
		he.any = true
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return he, fmt.Errorf("%w: %v", errHostEntry, err)
		}
		if p.Addr().Zone() != "" {
			return he, fmt.Errorf("%w: a prefix with a zone", errHostEntry)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: hosts are unmapped too.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		he.prefix = p.Masked()
	case strings.HasPrefix(s, "*."):
		suf := strings.TrimSuffix(s[2:], ".")
		if err := checkName(suf); err != nil {
			return he, fmt.Errorf("%w: %v", errHostEntry, err)
		}
		he.suffix = "." + suf
	default:
		if ip, err := netip.ParseAddr(s); err == nil {
			if ip.Zone() != "" {
				return he, fmt.Errorf("%w: an address with a zone", errHostEntry)
			}
			he.ip = ip.Unmap()
			break
		}
		name := strings.TrimSuffix(s, ".")
		if err := checkName(name); err != nil {
			return he, fmt.Errorf("%w: %v", errHostEntry, err)
		}
		he.name = name
		he.localhost = name == "localhost"
	}
	return he, nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: port %q is not a number from 1 to 65535", errHostEntry, p)
	}
	return n, nil
}

// matches reports whether the entry covers the host and port. With port
// 0 (unknown), an entry naming a port matches only if unknownMatches: a
// Blocked entry blocks a call whose port it cannot see, an Allowed entry
// does not allow it.
func (e hostEntry) matches(h hostName, port int, unknownMatches bool) bool {
	if e.port != 0 && e.port != port && !(port == 0 && unknownMatches) {
		return false
	}
	switch {
	case e.any:
		return true
	case e.localhost:
		if h.ip.IsValid() {
			return h.ip.IsLoopback() || h.ip.IsUnspecified()
		}
		return h.name == "localhost" || strings.HasSuffix(h.name, ".localhost")
	case e.suffix != "":
		return !h.ip.IsValid() && strings.HasSuffix(h.name, e.suffix)
	case e.name != "":
		return !h.ip.IsValid() && h.name == e.name
	case e.ip.IsValid():
		return h.ip.IsValid() && h.ip == e.ip
	case e.prefix.IsValid():
		return h.ip.IsValid() && e.prefix.Contains(h.ip)
	}
	return false
}
