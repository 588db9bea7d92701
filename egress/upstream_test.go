package egress

import (
	"testing"

	"github.com/vial-run/vial/internal/testupstream"
)

// testRules is the policy every test uses: two names on the default
// ports, a third name on the upstream's port 8080 only, and the names
// that lead to refused addresses (so that the address check, not the
// policy, is what refuses them).
func testRules(t testing.TB) *HostRules {
	t.Helper()
	r, err := NewHostRules(
		[]string{"allowed.test", "dns-allowed.test", "allowed.test:8080", "meta.test", "hostself.test", "loop.test", "hostip.test"},
		[]string{"localhost", "127.0.0.1", "*.internal"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testOptions are Options for a network that reaches u.
func testOptions(u *testupstream.Upstream, t testing.TB, stateDir string) Options {
	hosts := map[string]string{
		"allowed.test":  u.IP.String(),
		"denied.test":   u.IP.String(),
		"meta.test":     "169.254.169.254",
		"hostself.test": u.HostIP.String(),
		"loop.test":     "127.0.0.1",
	}
	if a := testupstream.PrimaryHostAddr(); a.IsValid() {
		hosts["hostip.test"] = a.String()
	}
	return Options{
		StateDir:          stateDir,
		Policy:            testRules(t),
		Hosts:             hosts,
		AllowPrivateCIDRs: []string{u.Prefix.String()},
		Resolver:          u.Resolver(),
	}
}
