package policy

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestHostRulesAllow(t *testing.T) {
	seed := HostRules{Blocked: DefaultBlockedHosts}
	allow := HostRules{
		Allowed: []string{"api.example.com", "*.pypi.org", "files.example.com:443", "10.0.0.0/8", "2001:db8::1", "[2001:db8::2]:8443"},
		Blocked: []string{"10.1.0.0/16", "evil.pypi.org"},
	}
	tests := []struct {
		name  string
		rules HostRules
		host  string
		port  int
		ok    bool
		rule  string
	}{
		{"seed localhost", seed, "localhost", 80, false, `blocked "localhost"`},
		{"seed LOCALHOST.", seed, "LOCALHOST.", 0, false, `blocked "localhost"`},
		{"seed sub.localhost", seed, "app.localhost", 0, false, `blocked "localhost"`},
		{"seed loopback is localhost", seed, "127.0.0.2", 0, false, `blocked "localhost"`},
		{"seed ::1", seed, "::1", 0, false, `blocked "localhost"`},
		{"seed [::1]", seed, "[::1]", 0, false, `blocked "localhost"`},
		{"seed 0.0.0.0", seed, "0.0.0.0", 0, false, `blocked "localhost"`},
		{"seed ::", seed, "::", 0, false, `blocked "localhost"`},
		{"seed mapped loopback", seed, "::ffff:127.0.0.1", 0, false, `blocked "localhost"`},
		{"seed *.internal", seed, "metadata.google.internal", 80, false, `blocked "*.internal"`},
		{"seed bare internal", seed, "internal", 80, true, ""},
		{"seed public", seed, "example.com", 443, true, ""},
		{"seed public IP", seed, "93.184.215.14", 443, true, ""},
		{"seed idna", seed, "xn--bcher-kva.example", 443, true, ""},
		{"non-ASCII", seed, "bücher.example", 443, false, "invalid host"},
		{"127.1", seed, "127.1", 0, false, "invalid host"},
		{"decimal IP", seed, "2130706433", 0, false, "invalid host"},
		{"hex IP", seed, "0x7f000001", 0, false, "invalid host"},
		{"octal-ish IP", seed, "0177.0.0.1", 0, false, "invalid host"},
		{"leading zeros", seed, "127.000.000.001", 0, false, "invalid host"},
		{"numeric last label", seed, "example.123", 0, false, "invalid host"},
		{"numeric first label", seed, "123.example", 0, true, ""},
		{"empty", seed, "", 0, false, "invalid host"},
		{"empty label", seed, "a..b", 0, false, "invalid host"},
		{"space", seed, "a b", 0, false, "invalid host"},
		{"userinfo", seed, "user@example.com", 0, false, "invalid host"},
		{"zone", seed, "fe80::1%eth0", 0, false, "invalid host"},
		{"bad port", seed, "example.com", 70000, false, "invalid host"},
		{"negative port", seed, "example.com", -1, false, "invalid host"},

		{"allowed exact", allow, "api.example.com", 443, true, `allowed "api.example.com"`},
		{"allowed case", allow, "API.Example.COM.", 443, true, `allowed "api.example.com"`},
		{"allowed suffix", allow, "files.pypi.org", 443, true, `allowed "*.pypi.org"`},
		{"allowed deep suffix", allow, "a.b.pypi.org", 443, true, `allowed "*.pypi.org"`},
		{"suffix is not bare", allow, "pypi.org", 443, false, "allowed hosts"},
		{"suffix is not a substring", allow, "evilpypi.org", 443, false, "allowed hosts"},
		{"blocked wins", allow, "evil.pypi.org", 443, false, `blocked "evil.pypi.org"`},
		{"port entry", allow, "files.example.com", 443, true, `allowed "files.example.com:443"`},
		{"port entry other port", allow, "files.example.com", 80, false, "allowed hosts"},
		{"port entry unknown port", allow, "files.example.com", 0, false, "allowed hosts"},
		{"cidr", allow, "10.2.3.4", 0, true, `allowed "10.0.0.0/8"`},
		{"cidr mapped", allow, "::ffff:10.2.3.4", 0, true, `allowed "10.0.0.0/8"`},
		{"blocked cidr wins", allow, "10.1.2.3", 0, false, `blocked "10.1.0.0/16"`},
		{"ipv6 exact", allow, "2001:DB8::1", 0, true, `allowed "2001:db8::1"`},
		{"ipv6 port", allow, "[2001:db8::2]", 8443, true, `allowed "[2001:db8::2]:8443"`},
		{"ipv6 port wrong", allow, "2001:db8::2", 443, false, "allowed hosts"},
		{"name is not its IP", allow, "api.example.com.evil", 0, false, "allowed hosts"},

		{"blocked port, unknown port blocks", HostRules{Blocked: []string{"db.example:5432"}}, "db.example", 0, false, `blocked "db.example:5432"`},
		{"blocked port, other port passes", HostRules{Blocked: []string{"db.example:5432"}}, "db.example", 443, true, ""},
		{"star", HostRules{Allowed: []string{"*"}}, "anything.example", 1, true, `allowed "*"`},
		{"malformed blocked entry blocks all", HostRules{Blocked: []string{"*.exa mple"}}, "example.com", 1, false, `blocked "*.exa mple"`},
		{"malformed allowed entry allows none", HostRules{Allowed: []string{"[::1"}}, "example.com", 1, false, "allowed hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rule := tt.rules.Allow(tt.host, tt.port)
			if ok != tt.ok || rule != tt.rule {
				t.Errorf("Allow(%q, %d) = %v, %q; want %v, %q", tt.host, tt.port, ok, rule, tt.ok, tt.rule)
			}
		})
	}
}

func TestHostRulesValidate(t *testing.T) {
	good := HostRules{Allowed: []string{"a.example", "*.b.example", "c.example:443", "[::1]:80", "::1", "10.0.0.0/8", "*", "localhost", "1.2.3.4:80", "xn--bcher-kva.example"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good entries: %v", err)
	}
	bad := []string{"", "*.", "a*.example", "a.example:0", "a.example:x", "[::1", "[a.example]", "[::1]x", "bücher.example", "10.0.0.0/33", "127.1", "fe80::1%eth0", "a..b", "-"}
	err := HostRules{Blocked: bad}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	// "-" is a valid (if odd) label: every other entry is reported.
	if n := strings.Count(err.Error(), "\n") + 1; n != len(bad)-1 {
		t.Errorf("got %d errors, want %d:\n%v", n, len(bad)-1, err)
	}
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("no class: %v", err)
	}
}
