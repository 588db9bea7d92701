package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// writeMeta records m in the sandbox's lock file, which its owner holds
// locked for the sandbox's life. A file of its own (meta.json, as vial
// wrote before) cost a create and an unlink per sandbox, 0.1-0.2 ms each
// on the development VM's ext4.
func writeMeta(lock *os.File, m sandboxMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding sandbox metadata: %w", err)
	}
	if _, err := lock.Write(data); err != nil {
		return fmt.Errorf("writing sandbox metadata: %w", err)
	}
	return nil
}

// readMeta reads what writeMeta recorded in sandbox directory sdir, or the
// meta.json of a sandbox an older vial left. A missing or unreadable
// record gives the zero value: gc then removes what it can without
// knowing the runtime.
func readMeta(sdir string) sandboxMeta {
	var m sandboxMeta
	for _, name := range []string{"lock", "meta.json"} {
		if data, err := os.ReadFile(filepath.Join(sdir, name)); err == nil && json.Unmarshal(data, &m) == nil {
			return m
		}
	}
	return m
}
