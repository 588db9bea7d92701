package hostuid

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testutil"
)

func TestAcquireDistinct(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	var leases []*Lease
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Acquire(dir, "test")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[l.UID()] {
				t.Errorf("uid %d leased twice", l.UID())
			}
			if !InRange(l.UID()) || l.GID() != l.UID() {
				t.Errorf("lease %d/%d outside the range", l.UID(), l.GID())
			}
			seen[l.UID()] = true
			leases = append(leases, l)
		}()
	}
	wg.Wait()
	for _, l := range leases {
		if err := l.Release(); err != nil {
			t.Error(err)
		}
		if err := l.Release(); err != nil {
			t.Errorf("second Release: %v", err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("released slots left files: %d", len(ents))
	}
}

// TestHeldSlotIsNotTaken: a slot whose lock is held (by another lease,
// i.e. another open file) is never handed out, and a slot released while
// another process waits for it is not taken twice.
func TestHeldSlotIsNotTaken(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if got, _, err := try(dir, l.UID()); err != nil || got != nil {
		t.Fatalf("try on a held slot: %v, %v", got, err)
	}
	l.Release()
	got, stale, err := try(dir, l.UID())
	if err != nil || got == nil || stale {
		t.Fatalf("try on a released slot: %v, stale %v, %v", got, stale, err)
	}
	got.Release()
}

// TestStaleSlots: the slot file of a dead owner (unlocked) is collected,
// unless a process still runs as its uid.
func TestStaleSlots(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	uid := First + Count - 1
	free := First + Count - 2
	for _, u := range []int{uid, free} {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(u)), []byte("pid 1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if !processUIDs()[uid] {
		t.Fatalf("a process running as %d was not seen", uid)
	}
	n, err := Collect(dir)
	if err != nil || n != 1 {
		t.Fatalf("Collect: %d, %v; want 1 (the slot without processes)", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, strconv.Itoa(uid))); err != nil {
		t.Errorf("the slot of a uid with a live process was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, strconv.Itoa(free))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the free stale slot was kept: %v", err)
	}
	// Killed and not yet reaped, the process is a zombie: it holds nothing
	// any more, and does not keep the uid.
	cmd.Process.Kill()
	for i := 0; i < 500 && statusUIDs("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/status") != nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n, err := Collect(dir); err != nil || n != 1 {
		t.Errorf("Collect after the process ended (a zombie now): %d, %v; want 1", n, err)
	}
	cmd.Wait()
}

func BenchmarkAcquire(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < b.N; i++ {
		l, err := Acquire(dir, "bench")
		if err != nil {
			b.Fatal(err)
		}
		l.Release()
	}
}
