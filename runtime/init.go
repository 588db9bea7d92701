package runtime

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vial-run/vial/runtime/pid1"
)

// InitArg is the first argument with which a context's sandbox starts the
// vial executable as its init (see package pid1, which every program
// linking this package runs when it sees InitArg).
const InitArg = pid1.Arg

// initFile is the init program's name in the driver directory.
const initFile = "init"

// initScript is the init when the running executable is dynamically
// linked (built with cgo, as a plain `go build` or `go test` does where a
// C compiler is installed): such a binary starts only where its ELF
// interpreter is, which the host image provides and other images may not.
// Elsewhere the driver runs without a reaper, and its stderr (vial's log)
// says so. `make build` (CGO_ENABLED=0) gives a static vial, which needs
// no fallback.
const initScript = `#!/bin/sh
# Written by vial: the vial executable is dynamically linked (built with
# cgo); build it with CGO_ENABLED=0 for an init that runs in any image.
if [ -e '%s' ]; then
	exec "${0%%/*}/init.bin" "$@"
fi
echo "vial init: %s is missing from this image, so vial (built with cgo) cannot be its init; the driver runs as pid 1 and orphaned processes are not reaped" >&2
shift
[ "$1" = -- ] && shift
exec "$@"
`

// installInit puts the init for contexts into dir: a copy of the running
// executable, which serves as the init through InitMain. A dynamically
// linked executable goes to init.bin behind the fallback initScript.
func installInit(dir string) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("opening the vial executable: %w", err)
	}
	defer self.Close()
	interp, err := elfInterpreter(self)
	if err != nil {
		return fmt.Errorf("reading the vial executable: %w", err)
	}
	if interp == "" {
		return installFile(filepath.Join(dir, initFile), self)
	}
	if err := installFile(filepath.Join(dir, initFile+".bin"), self); err != nil {
		return err
	}
	script := fmt.Sprintf(initScript, interp, interp)
	return installFile(filepath.Join(dir, initFile), bytes.NewReader([]byte(script)))
}

// elfInterpreter returns the ELF interpreter (PT_INTERP) an executable
// names, "" for a static one.
func elfInterpreter(r io.ReaderAt) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", err
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return "", err
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}

// installFile makes dst an executable (0755: the init runs as the
// sandbox's unprivileged user) holding src's bytes. A dst that already
// holds them is left alone; otherwise it is replaced atomically, so that
// sandboxes starting meanwhile see the old file or the new one.
func installFile(dst string, src io.ReadSeeker) error {
	name := filepath.Base(dst)
	if same, err := sameContent(dst, src); err != nil {
		return fmt.Errorf("checking %s: %w", name, err)
	} else if same {
		return nil
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".init-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, src)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("installing %s: %w", name, err)
	}
	return nil
}

// sameContent reports whether path is a 0755 regular file holding
// exactly what src holds from its start.
func sameContent(path string, src io.ReadSeeker) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
		return false, err
	}
	size, err := src.Seek(0, io.SeekEnd)
	if err != nil || size != fi.Size() {
		return false, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	a, b := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		n, err := io.ReadFull(src, a)
		if n > 0 {
			if _, err := io.ReadFull(f, b[:n]); err != nil {
				return false, nil
			}
			if !bytes.Equal(a[:n], b[:n]) {
				return false, nil
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}
