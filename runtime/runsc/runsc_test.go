package runsc

import (
	"slices"
	"testing"

	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/seccomp"
)

// TestNetworkArgs: a sandbox without a network keeps runsc's empty
// network (--network=none, as before networks existed); one with a
// prepared namespace gets gVisor's own stack in it.
func TestNetworkArgs(t *testing.T) {
	b := New()
	if slices.ContainsFunc(b.GlobalArgs, func(a string) bool { return len(a) > 9 && a[:9] == "--network" }) {
		t.Errorf("the network flag is per sandbox, not global: %q", b.GlobalArgs)
	}
	if got := b.SandboxArgs(runtime.SandboxParams{}); !slices.Equal(got, []string{"--network=none"}) {
		t.Errorf("no network: %q", got)
	}
	if got := b.SandboxArgs(runtime.SandboxParams{Network: true}); !slices.Equal(got, []string{"--network=sandbox"}) {
		t.Errorf("network: %q", got)
	}
}

// TestProfileAllowsClone3: under gVisor clone3 is allowed (see
// allowClone3); the default profile answers it with ENOSYS.
func TestProfileAllowsClone3(t *testing.T) {
	p, err := New().SeccompProfile()
	if err != nil {
		t.Fatal(err)
	}
	if !seccomp.Allowed(p, "clone3") {
		t.Error("runsc's profile does not allow clone3")
	}
	d, _ := seccomp.Default()
	if seccomp.Allowed(d, "clone3") {
		t.Error("the default profile allows clone3: runsc's adjustment leaked into it")
	}
}
