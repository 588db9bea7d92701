package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

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
	// SpecOpts adjust the bundle for this runtime. They do not see the
	// seccomp profile: that is AdjustSeccomp's.
	SpecOpts []oci.SpecOpt
	// AdjustSeccomp adjusts this runtime's private copy of vial's default
	// seccomp profile (seccomp.Default), once per process: the result is
	// marshalled once and written into every bundle of the runtime. Nil
	// keeps the default.
	AdjustSeccomp func(*specs.LinuxSeccomp)
	// MinPids is the smallest pids limit the runtime tolerates (runsc's
	// sentry threads count against it).
	MinPids int64
	// Start starts every invocation of the runtime CLI in place of
	// cmd.Start (crun's private mount namespace on hybrid cgroup hosts).
	// Nil means cmd.Start.
	Start func(cmd *exec.Cmd) error
	// Cleanup runs after a container is deleted, with the runtime root.
	Cleanup func(root string) error
}

// command builds an invocation of the runtime CLI with root as --root.
// It deliberately does not use exec.CommandContext: killing the CLI does
// not stop the container, so cancellation is handled by the engine with
// an explicit kill and delete.
func (b *Backend) command(root string, args ...string) *exec.Cmd {
	full := append([]string{"--root", root}, b.GlobalArgs...)
	return exec.Command(b.Path, append(full, args...)...)
}

// start starts cmd, an invocation of the runtime CLI, as the backend
// requires (Backend.Start).
func (b *Backend) start(cmd *exec.Cmd) error {
	if b.Start != nil {
		return b.Start(cmd)
	}
	return cmd.Start()
}

// combinedOutput runs cmd to completion, started as the backend requires,
// and returns its stdout and stderr together.
func (b *Backend) combinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := b.start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return buf.Bytes(), err
}

// Version runs `<runtime> --version` and returns its first line.
func (b *Backend) Version(ctx context.Context) (string, error) {
	if b.Path == "" {
		return "", fmt.Errorf("%s: %w: not installed (%s)", b.Name, ErrUnavailable, b.Install)
	}
	out, err := b.combinedOutput(exec.CommandContext(ctx, b.Path, "--version"))
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w: %s", b.Name, err, strings.TrimSpace(string(out)))
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, nil
}
