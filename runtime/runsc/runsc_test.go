package runsc

import (
	"slices"
	"testing"

	"github.com/vial-run/vial/runtime"
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
