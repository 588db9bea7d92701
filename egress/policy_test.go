package egress

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/internal/testupstream"
)

func TestHostRules(t *testing.T) {
	r, err := NewHostRules(
		[]string{"pypi.org", "*.example.com", "mirror.corp:3141", "10.1.0.0/16", "192.0.2.7:8443", "[2001:db8::1]:443", "Upper.Case.ORG."},
		[]string{"localhost", "127.0.0.1", "*.internal", "bad.example.com", "pypi.org:80"},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		port int
		want bool
		why  string
	}{
		{"pypi.org", 443, true, `allowed by "pypi.org"`},
		{"PyPI.org.", 443, true, ""},
		{"pypi.org", 80, false, `blocked by "pypi.org:80"`}, // a blocked port wins
		{"pypi.org", 0, true, ""},                           // DNS: some port is open
		{"pypi.org", 22, false, "port 22 not allowed"},
		{"www.pypi.org", 443, false, "not in allowed_hosts"},
		{"files.example.com", 443, true, `allowed by "*.example.com"`},
		{"a.b.example.com", 80, true, ""},
		{"example.com", 443, false, "not in allowed_hosts"}, // *.suffix is not the suffix itself
		{"evilexample.com", 443, false, ""},
		{"bad.example.com", 443, false, `blocked by "bad.example.com"`},
		{"bad.example.com", 0, false, "blocked"}, // blocked on every port: no DNS answer
		{"mirror.corp", 3141, true, ""},
		{"mirror.corp", 443, false, "port 443 not allowed"},
		{"mirror.corp", 0, true, ""},
		{"upper.case.org", 443, true, ""},
		{"localhost", 80, false, "blocked"},
		{"db.internal", 443, false, `blocked by "*.internal"`},
		{"127.0.0.1", 80, false, "blocked"},
		{"10.1.2.3", 443, true, `allowed by "10.1.0.0/16"`},
		{"10.2.0.1", 443, false, "address literal"},
		{"192.0.2.7", 8443, true, ""},
		{"192.0.2.7", 443, false, "address literal"},
		{"[2001:db8::1]", 443, true, ""},
		{"2001:db8::1", 443, true, ""},
		{"10.1.0.0.example.com", 443, true, ""}, // a name, matched as a name
		{"bad name", 443, false, "not a valid host name"},
		{"", 443, false, "not a valid host name"},
	} {
		ok, why := r.Allow(tc.host, tc.port)
		if ok != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("Allow(%q, %d) = %v, %q; want %v, %q", tc.host, tc.port, ok, why, tc.want, tc.why)
		}
	}
}

func TestHostRulesErrors(t *testing.T) {
	_, err := NewHostRules([]string{"*", "*.com", "bad host", "a.org:0", "a.org:70000", "ok.org", "-x.org"}, []string{"*.internal", "x:y"})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v; want invalid argument", err)
	}
	for _, bad := range []string{`"*"`, `"*.com"`, `"bad host"`, `"a.org:0"`, `"a.org:70000"`, `"-x.org"`, `"x:y"`} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error does not name %s: %v", bad, err)
		}
	}
	if strings.Contains(err.Error(), `"ok.org"`) || strings.Contains(err.Error(), `"*.internal"`) {
		t.Errorf("error names a good entry: %v", err)
	}
}

func TestAddrGuard(t *testing.T) {
	own := netip.MustParseAddr("10.9.9.9")
	allowed, err := parseCIDRs([]string{"10.0.0.0/8", "169.254.169.254", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	strict := &addrGuard{own: func(a netip.Addr) bool { return a == own }}
	open := &addrGuard{allowed: allowed, own: strict.own}
	for _, tc := range []struct {
		addr         string
		strict, open string // "" means dialable
	}{
		{"93.184.216.34", "", ""},
		{"2606:2800:220:1:248:1893:25c8:1946", "", ""},
		{"127.0.0.1", "loopback", "loopback"},
		{"127.8.8.8", "loopback", "loopback"},
		{"::1", "loopback", "loopback"},
		{"::ffff:127.0.0.1", "loopback", "loopback"},
		{"0.0.0.0", "unspecified", "unspecified"},
		{"::", "unspecified", "unspecified"},
		{"224.0.0.1", "multicast", "multicast"},
		{"ff02::1", "multicast", "multicast"},
		{"255.255.255.255", "broadcast", "broadcast"},
		{"10.0.0.1", "private", ""},
		{"::ffff:10.0.0.1", "private", ""},
		{"10.9.9.9", "this host", "this host"}, // the host's own, even inside an allowed range
		{"172.16.0.1", "private", "private"},
		{"192.168.1.1", "private", "private"},
		{"100.64.0.1", "carrier-grade", "carrier-grade"},
		{"169.254.169.254", "link-local", ""},
		{"169.254.0.1", "link-local", "link-local"},
		{"fd12::1", "unique-local", ""},
		{"fc00::1", "unique-local", "unique-local"},
		{"fe80::1", "link-local", "link-local"},
		{"64:ff9b::a00:1", "NAT64", "NAT64"},
		{"2002:a00:1::", "6to4", "6to4"},
		{"240.0.0.1", "reserved", "reserved"},
	} {
		a := netip.MustParseAddr(tc.addr)
		for _, g := range []struct {
			name string
			g    *addrGuard
			want string
		}{{"strict", strict, tc.strict}, {"open", open, tc.open}} {
			got := g.g.refused(a)
			if (got == "") != (g.want == "") || !strings.Contains(got, g.want) {
				t.Errorf("%s guard: refused(%s) = %q; want %q", g.name, tc.addr, got, g.want)
			}
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	for _, bad := range [][]string{{"0.0.0.0/0"}, {"::/0"}, {"not-a-cidr"}, {"10.0.0.0/33"}} {
		if _, err := parseCIDRs(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseCIDRs(%q) = %v; want invalid argument", bad, err)
		}
	}
	got, err := parseCIDRs([]string{"10.1.2.3/8", "192.0.2.1"})
	if err != nil || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.0.2.1/32" {
		t.Errorf("parseCIDRs = %v, %v", got, err)
	}
}

func TestDialerHosts(t *testing.T) {
	_, err := newDialer(map[string]string{"ok.test": "10.0.0.1", "bad name": "10.0.0.1", "x.test": "nope"}, nil, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "bad name") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("newDialer with bad hosts: %v", err)
	}
	d, err := newDialer(map[string]string{"Mirror.Test.": "10.0.0.1", "meta.test": "169.254.169.254"}, []string{"10.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The static table is used before DNS: these names do not exist.
	addrs, err := d.resolve(t.Context(), "mirror.test", 443)
	if err != nil || len(addrs) != 1 || addrs[0].String() != "10.0.0.1" {
		t.Errorf("resolve(mirror.test) = %v, %v", addrs, err)
	}
	_, err = d.resolve(t.Context(), "meta.test", 80)
	var de *DeniedError
	if !asDenied(err, &de) || !strings.Contains(de.Reason, "link-local") || !errdefs.IsPermissionDenied(err) {
		t.Errorf("resolve(meta.test) = %v; want a link-local refusal", err)
	}
}

func asDenied(err error, de **DeniedError) bool {
	d, ok := err.(*DeniedError)
	if ok {
		*de = d
	}
	return ok
}

func TestHostLocal(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "127.3.2.1"} {
		if !hostLocal(netip.MustParseAddr(a)) {
			t.Errorf("hostLocal(%s) = false", a)
		}
	}
	if a := testupstream.PrimaryHostAddr(); a.IsValid() && !hostLocal(a) {
		t.Errorf("hostLocal(%s), an address of this host, = false", a)
	}
	// A route lookup only: nothing is sent.
	if hostLocal(netip.MustParseAddr("198.51.100.7")) {
		t.Error("a documentation address counts as the host's own")
	}
}
