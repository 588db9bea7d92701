package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/testutil"
)

// TestGCLeavesOtherStateDirs checks that garbage collection on one state
// directory never removes the cgroup of a sandbox named by an engine on
// another (a second vial instance's live sandbox), while it does remove a
// stray cgroup of its own whose sandbox directory is gone.
func TestGCLeavesOtherStateDirs(t *testing.T) {
	testutil.RequireRoot(t)
	mine, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if mine.tag == other.tag {
		t.Skip("the two temporary state directories share a tag; rerun")
	}
	theirs, ours := other.newID(), mine.newID()
	for _, id := range []string{theirs, ours} {
		g, err := cgroups.Create(id, cgroups.Limits{Pids: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Delete() })
	}
	rep, err := mine.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Cgroups != 1 {
		t.Errorf("gc removed %d cgroups, want 1 (its own stray one): %s", rep.Cgroups, rep)
	}
	if !exists(filepath.Join("/sys/fs/cgroup/pids", cgroups.Parent, theirs)) && !exists(filepath.Join("/sys/fs/cgroup", cgroups.Parent, theirs)) {
		t.Errorf("gc on one state directory removed the cgroup of another's sandbox %s", theirs)
	}
	if exists(filepath.Join("/sys/fs/cgroup/pids", cgroups.Parent, ours)) {
		t.Errorf("gc left its own stray cgroup %s", ours)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
