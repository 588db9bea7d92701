package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// HostPolicy decides whether a host may be reached on a port. host is a
// normalized name (lower case, no trailing dot) or an IP address literal;
// port 0 asks whether the host may be reached on any port at all (the DNS
// responder asks this: a name nothing may connect to is not answered).
// It returns the decision and a short reason a person can read (the rule
// that matched, or why nothing did). Implementations must be safe for
// concurrent use.
type HostPolicy interface {
	Allow(host string, port int) (bool, string)
}

// DefaultPorts are the ports an allowed_hosts entry without ":port"
// allows. Deny by default: a bare name opens the web ports only, so that
// allowing "example.com" does not also open its SSH, SMTP or database
// ports; any other port must be named ("example.com:8443").
var DefaultPorts = []int{80, 443}

// HostRules is vial's own HostPolicy: an allowlist and a blocklist of
// entries, each one of
//
//	name             exactly this name (on DefaultPorts when allowing)
//	*.suffix         any name ending in .suffix (not suffix itself)
//	name:port        that name on that port only (also *.suffix:port)
//	address, CIDR    an IP literal the client named, or one inside the block
//	                 (also with :port; IPv6 with a port as [addr]:port)
//
// A blocklist entry wins over every allowlist entry; a blocklist entry
// without a port blocks every port. Names are compared case-insensitively
// and without a trailing dot. A name never matches an address entry and
// an address never matches a name entry: what a name resolves to is
// checked separately (see Options.AllowPrivateCIDRs).
type HostRules struct {
	allow, block []rule
}

type rule struct {
	text   string
	name   string       // exact name, or the suffix (with its leading dot) when wild
	wild   bool         // "*.suffix"
	prefix netip.Prefix // address entries
	port   int          // 0: any port (block) or DefaultPorts (allow)
}

// NewHostRules parses allowed and blocked entries, reporting every bad
// entry at once (class errdefs.ErrInvalidArgument).
func NewHostRules(allowed, blocked []string) (*HostRules, error) {
	var errs []error
	parse := func(list []string, what string) []rule {
		var out []rule
		for _, s := range list {
			r, err := parseRule(s, what == "allowed host")
			if err != nil {
				errs = append(errs, fmt.Errorf("%s entry %q: %w", what, s, err))
				continue
			}
			out = append(out, r)
		}
		return out
	}
	h := &HostRules{allow: parse(allowed, "allowed host"), block: parse(blocked, "blocked host")}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return h, nil
}

func parseRule(s string, allow bool) (rule, error) {
	r := rule{text: s}
	host := strings.TrimSpace(s)
	if h, p, err := splitHostPort(host); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return r, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		host, r.port = h, n
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		r.prefix = netip.PrefixFrom(a, a.BitLen())
		return r, nil
	}
	if p, err := netip.ParsePrefix(host); err == nil {
		r.prefix = p.Masked()
		return r, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		r.wild = true
		host = rest
	}
	if !ValidName(host) {
		return r, errors.New("not a host name, *.suffix, address or CIDR block")
	}
	if r.wild {
		if allow && !strings.Contains(host, ".") {
			// "*.com" would open a whole top-level domain (blocking one,
			// "*.internal", is fine).
			return r, errors.New("an allowed wildcard needs at least two labels after the *")
		}
		r.name = "." + host
	} else {
		r.name = host
	}
	return r, nil
}

// splitHostPort splits "host:port" and "[v6]:port"; a bare IPv6 address
// or a name has no port.
func splitHostPort(s string) (string, string, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return "", "", errors.New("no port")
		}
		return s[1:end], s[end+2:], nil
	}
	if strings.Count(s, ":") != 1 {
		return "", "", errors.New("no port")
	}
	h, p, _ := strings.Cut(s, ":")
	return h, p, nil
}

// ValidName reports whether s is a DNS name vial will handle: ASCII
// letters, digits, hyphens and underscores in labels of 1 to 63
// characters, at most 253 in all. Internationalized names must be given
// in their ASCII (punycode) form.
func ValidName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// NormalizeHost lower-cases a name and drops a trailing dot; an IP literal
// (with or without brackets) comes back in its canonical form.
func NormalizeHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func (r rule) matchesHost(host string, addr netip.Addr, isAddr bool) bool {
	if r.prefix.IsValid() {
		return isAddr && r.prefix.Contains(addr)
	}
	if isAddr {
		return false
	}
	if r.wild {
		return strings.HasSuffix(host, r.name)
	}
	return host == r.name
}

// Allow implements HostPolicy.
func (h *HostRules) Allow(host string, port int) (bool, string) {
	host = NormalizeHost(host)
	addr, err := netip.ParseAddr(host)
	isAddr := err == nil
	if !isAddr && !ValidName(host) {
		return false, "not a valid host name"
	}
	for _, r := range h.block {
		// A block entry with a port blocks only that port; asked about
		// "any port" (0), a port-specific block leaves the others open.
		if r.matchesHost(host, addr, isAddr) && (r.port == 0 || r.port == port) {
			return false, fmt.Sprintf("blocked by %q", r.text)
		}
	}
	for _, r := range h.allow {
		if !r.matchesHost(host, addr, isAddr) {
			continue
		}
		switch {
		case port == 0,
			r.port == port,
			r.port == 0 && slices.Contains(DefaultPorts, port):
			return true, fmt.Sprintf("allowed by %q", r.text)
		}
	}
	if isAddr {
		return false, "an address literal not in allowed_hosts (connect by name)"
	}
	for _, r := range h.allow {
		if r.matchesHost(host, addr, isAddr) {
			return false, fmt.Sprintf("port %d not allowed (%q allows %s)", port, r.text, r.ports())
		}
	}
	return false, "not in allowed_hosts"
}

func (r rule) ports() string {
	if r.port != 0 {
		return "port " + strconv.Itoa(r.port)
	}
	var s []string
	for _, p := range DefaultPorts {
		s = append(s, strconv.Itoa(p))
	}
	return "ports " + strings.Join(s, " and ")
}
