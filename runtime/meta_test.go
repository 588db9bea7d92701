package runtime

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMetaInLock(t *testing.T) {
	dir := t.TempDir()
	lock, err := os.Create(filepath.Join(dir, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	want := sandboxMeta{ID: "vabc-1", Runtime: "crun", Created: time.Now().UTC().Truncate(time.Second), PID: 42}
	if err := writeMeta(lock, want); err != nil {
		t.Fatal(err)
	}
	if got := readMeta(dir); got != want {
		t.Errorf("readMeta = %+v, want %+v", got, want)
	}
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
