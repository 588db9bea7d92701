package crun

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testutil"
)

func TestStartOnlyOnHybridHosts(t *testing.T) {
	if b := New(); (b.Start != nil) != hybrid() {
		t.Errorf("Start set: %v, hybrid host: %v; the private namespace is for hybrid hosts only", b.Start != nil, hybrid())
	}
}

// TestStartHidingUnified starts processes the way the backend starts
// crun, many at once, and checks that each saw a tmpfs over the cgroup2
// mount while this process (every thread of it) and the host still see
// cgroup2 there, and that no mount was left behind.
func TestStartHidingUnified(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, hybrid(), "needs a hybrid cgroup host (cgroup2 at "+unifiedMount+")")
	before := mounts(t)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			cmd := exec.Command("/bin/sh", "-c", "stat -f -c %T "+unifiedMount+"; grep -c . /proc/self/mountinfo")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := startHidingUnified(cmd); err != nil {
				t.Errorf("starting: %v", err)
				return
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("sh: %v: %s", err, out.String())
				return
			}
			if fs, _, _ := strings.Cut(out.String(), "\n"); fs != "tmpfs" {
				t.Errorf("the child saw %q at %s, want tmpfs", fs, unifiedMount)
			}
		})
		// Meanwhile, goroutines of this process keep seeing the host's
		// mounts whatever thread they run on.
		wg.Go(func() {
			var st unix.Statfs_t
			if err := unix.Statfs(unifiedMount, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
				t.Errorf("this process sees %x at %s (err %v), want cgroup2", st.Type, unifiedMount, err)
			}
		})
	}
	wg.Wait()
	if after := mounts(t); after != before {
		t.Errorf("mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The host's view, from a process that is not ours.
	out, err := exec.Command("stat", "-f", "-c", "%T", unifiedMount).Output()
	if err != nil || strings.TrimSpace(string(out)) != "cgroup2fs" {
		t.Errorf("the host sees %q at %s (err %v), want cgroup2fs", out, unifiedMount, err)
	}
}

func mounts(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/1/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
