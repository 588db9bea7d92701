package runtime_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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

// TestRecoverBesideNewSandboxes runs start-up recovery over and over
// while sandboxes are being made on the same state directory, as `vial
// run` runs it beside its own sandbox: it must never take a sandbox being
// prepared for a dead one, nor its cgroup for a stray one.
func TestRecoverBesideNewSandboxes(t *testing.T) {
	e := engine(t, "runc")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				// Orphans to collect, each a runtime call: the longer
				// recovery takes between reading the sandbox directories
				// and listing the cgroups, the likelier a new sandbox
				// falls in between.
				for range 3 {
					orphan(t, e)
				}
				e.Recover(t.Context())
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		e.Recover(t.Context()) // the last orphans
	}()
	for i := range 20 {
		sb, err := e.Start(t.Context(), "runc", runtime.Request{Image: hostImage(t), Args: []string{"sleep", "30"}})
		if err != nil {
			t.Fatalf("sandbox %d: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond)
		select {
		case <-sb.Done():
			t.Fatalf("sandbox %d was killed by recovery", i)
		default:
		}
		_, uerr := sb.Usage()
		cerr := sb.Close()
		if uerr != nil || cerr != nil {
			t.Fatalf("sandbox %d lost its cgroup or directory to recovery: usage: %v, close: %v", i, uerr, cerr)
		}
	}
}

// orphan makes the directory a killed vial would leave for one sandbox of
// e's state directory: a lock nobody holds, naming the runc runtime.
func orphan(t *testing.T, e *runtime.Engine) {
	id := e.NewIDForTest()
	dir := filepath.Join(e.StateDir(), "sandboxes", id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		t.Error(err)
		return
	}
	os.WriteFile(filepath.Join(dir, "lock"), []byte(`{"id":"`+id+`","runtime":"runc"}`), 0o600)
}
