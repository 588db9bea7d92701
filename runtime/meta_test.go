package runtime

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCreateLock(t *testing.T) {
	dir := t.TempDir()
	want := sandboxMeta{ID: "vabc-1", Runtime: "crun", Created: time.Now().UTC().Truncate(time.Second), PID: 42}
	lock, err := createLock(dir, want)
	if err != nil {
		t.Fatal(err)
	}
	if got := readMeta(dir); got != want {
		t.Errorf("readMeta = %+v, want %+v", got, want)
	}
	// Held: the owner is alive.
	if dead, err := OwnerDead(dir); err != nil || dead {
		t.Errorf("OwnerDead with the lock held = %v, %v", dead, err)
	}
	if _, err := createLock(dir, want); err == nil {
		t.Error("a second lock was created over a held one")
	}
	lock.Close()
	if dead, err := OwnerDead(dir); err != nil || !dead {
		t.Errorf("OwnerDead after the owner closed its lock = %v, %v", dead, err)
	}
	// The fallback for file systems without O_TMPFILE.
	other := t.TempDir()
	f, err := createLockInPlace(filepath.Join(other, "lock"), []byte(`{"runtime":"runc"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if dead, _ := OwnerDead(other); dead || readMeta(other).Runtime != "runc" {
		t.Errorf("fallback lock: dead %v, meta %+v", dead, readMeta(other))
	}
}

func TestReadMetaOfOlderSandboxes(t *testing.T) {
	// A sandbox an older vial left: an empty lock and meta.json.
	old := t.TempDir()
	os.WriteFile(filepath.Join(old, "lock"), nil, 0o600)
	os.WriteFile(filepath.Join(old, "meta.json"), []byte(`{"id":"vabc-2","runtime":"runsc","pid":7}`), 0o600)
	if got := readMeta(old); got.Runtime != "runsc" || got.PID != 7 {
		t.Errorf("readMeta of an old sandbox = %+v", got)
	}
	if got := readMeta(t.TempDir()); got != (sandboxMeta{}) {
		t.Errorf("readMeta of an empty directory = %+v", got)
	}
}
