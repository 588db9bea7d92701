package runtime

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/vial-run/vial/runtime/oci"
)

// Backend describes one OCI runtime (runc, crun, runsc) as data. The engine
// drives every backend through the same OCI CLI contract (run, kill,
// delete, list); a backend only contributes its own flags, spec options
// and clean-up — there is no per-runtime branch anywhere else.
type Backend struct {
	// Name is what users select ("runc", "crun", "runsc").
	Name string
	// Path is the runtime binary; empty means it was not found.
	Path string
	// Install tells a user how to get the binary when it is missing.
	Install string
	// GlobalArgs go before the subcommand, after --root.
	GlobalArgs []string
	// SandboxArgs maps one sandbox's parameters to more global arguments
	// for the invocation that creates it (after GlobalArgs), e.g. runsc's
	// network mode. Nil means none.
	SandboxArgs func(SandboxParams) []string
	// LogArgs returns the flags that send the runtime's own log to path in
	// JSON, so its errors are told apart from the program's stderr.
	LogArgs func(path string) []string
	// SpecOpts adjust the bundle for this runtime.
	SpecOpts []oci.SpecOpt
	// MinPids is the smallest pids limit the runtime tolerates (runsc's
	// sentry threads count against it).
	MinPids int64
	// Wrap adjusts every command before it starts (crun's private mount
	// namespace on hybrid cgroup hosts). Nil means none.
	Wrap func(cmd *exec.Cmd)
	// Cleanup runs after a container is deleted, with the runtime root.
	Cleanup func(root string) error
}

// command builds an invocation of the runtime CLI with root as --root.
// It deliberately does not use exec.CommandContext: killing the CLI does
// not stop the container, so cancellation is handled by the engine with
// an explicit kill and delete.
func (b *Backend) command(root string, args ...string) *exec.Cmd {
	full := append([]string{"--root", root}, b.GlobalArgs...)
	cmd := exec.Command(b.Path, append(full, args...)...)
	if b.Wrap != nil {
		b.Wrap(cmd)
	}
	return cmd
}

// Version runs `<runtime> --version` and returns its first line.
func (b *Backend) Version(ctx context.Context) (string, error) {
	if b.Path == "" {
		return "", fmt.Errorf("%s: %w: not installed (%s)", b.Name, ErrUnavailable, b.Install)
	}
	cmd := exec.CommandContext(ctx, b.Path, "--version")
	if b.Wrap != nil {
		b.Wrap(cmd)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w: %s", b.Name, err, strings.TrimSpace(string(out)))
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, nil
}
