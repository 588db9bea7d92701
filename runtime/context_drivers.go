package runtime

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// DriverDir is where the engine mounts the drivers, read-only, inside a
// context's sandbox.
const DriverDir = "/opt/vial/drivers"

//go:embed drivers/python.py drivers/node.js drivers/bash.sh
var driverFS embed.FS

// driverFiles maps each language to its driver program.
var driverFiles = map[Language]string{
	Python:     "python.py",
	JavaScript: "node.js",
	Bash:       "bash.sh",
}

// WriteDrivers writes the driver programs into dir (created if missing),
// for the engine to bind-mount read-only at DriverDir, and with them the
// sandbox's init: a copy of the running executable, which must therefore
// call InitMain when started with InitArg (see InitMain for why). It is
// idempotent: files already holding the right bytes are left alone,
// others are replaced atomically, so sandboxes already running keep a
// consistent view. Safe for concurrent use with itself on the same dir.
func WriteDrivers(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating driver directory: %w", err)
	}
	if err := installInit(dir); err != nil {
		return err
	}
	return fs.WalkDir(driverFS, "drivers", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		want, err := driverFS.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, path.Base(p))
		if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
			if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm() == 0o644 {
				return nil
			}
		}
		tmp, err := os.CreateTemp(dir, ".driver-*")
		if err != nil {
			return fmt.Errorf("writing driver %s: %w", path.Base(p), err)
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(want); err != nil {
			tmp.Close()
			return fmt.Errorf("writing driver %s: %w", path.Base(p), err)
		}
		// World-readable: the driver runs as an unprivileged user.
		if err := tmp.Chmod(0o644); err != nil {
			tmp.Close()
			return fmt.Errorf("writing driver %s: %w", path.Base(p), err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("writing driver %s: %w", path.Base(p), err)
		}
		if err := os.Rename(tmp.Name(), dst); err != nil {
			return fmt.Errorf("installing driver %s: %w", path.Base(p), err)
		}
		return nil
	})
}

// DriverCommand returns the argv that starts lang's driver, with the
// drivers found in dir (DriverDir inside a sandbox). The interpreter is
// looked up on the sandbox's PATH. In a sandbox, run it under the init
// (see InitCommand).
func DriverCommand(lang Language, dir string) ([]string, error) {
	file, ok := driverFiles[lang]
	if !ok {
		return nil, fmt.Errorf("language %q (want python, javascript or bash): %w", lang, ErrInvalid)
	}
	p := path.Join(dir, file)
	switch lang {
	case Python:
		// -u is not needed (the driver flushes); -B keeps the read-only
		// root and the workspace free of __pycache__ writes it cannot make.
		return []string{"python3", "-B", p}, nil
	case JavaScript:
		return []string{"node", p}, nil
	default:
		return []string{"bash", p}, nil
	}
}

// InitCommand returns argv (a DriverCommand) run under the init that
// WriteDrivers installs in dir (DriverDir inside a sandbox): the init's
// path, InitArg, "--", then argv. The init reaps the orphaned processes
// the user's code leaves, which the drivers cannot (see InitMain).
func InitCommand(dir string, argv []string) []string {
	return append([]string{path.Join(dir, initFile), InitArg, "--"}, argv...)
}

// SandboxCommand returns the argv that starts lang's driver as the pid 1
// of a sandbox, with the drivers and the init found in dir (DriverDir).
// Pid 1 must reap the orphans the user's code leaves. Node cannot, so it
// runs under the init. Bash reaps any child it is sent SIGCHLD for, and
// the python driver forks its own init at start; neither pays the extra
// exec of the init (about 1 ms under runc and 17 ms under runsc).
func SandboxCommand(lang Language, dir string) ([]string, error) {
	argv, err := DriverCommand(lang, dir)
	if err != nil {
		return nil, err
	}
	if lang == JavaScript {
		return InitCommand(dir, argv), nil
	}
	return argv, nil
}

// ParseLanguage maps the names a model may use to a Language.
func ParseLanguage(s string) (Language, error) {
	switch s {
	case "python", "python3", "py":
		return Python, nil
	case "javascript", "js", "node", "nodejs":
		return JavaScript, nil
	case "bash", "shell", "sh":
		return Bash, nil
	}
	return "", fmt.Errorf("language %q (want python, javascript or bash): %w", s, ErrInvalid)
}
