package runtime_test

import (
	"testing"

	"github.com/vial-run/vial/runtime"
)

// TestFailedPrepareLeavesNothing: a sandbox whose preparation fails after
// its cgroup was started in the background (the workspace cannot be
// made) leaves no cgroup, directory or container behind.
func TestFailedPrepareLeavesNothing(t *testing.T) {
	e := engine(t, "runc")
	before := counts(t, e)
	for range 5 {
		_, err := e.Run(t.Context(), "runc", runtime.Request{Image: hostImage(t), Args: []string{"true"}, Workspace: "/proc/version/ws"})
		if err == nil {
			t.Fatal("a workspace under /proc/version was accepted")
		}
	}
	if after := counts(t, e); after != before {
		t.Errorf("before %+v after %+v", before, after)
	}
}
