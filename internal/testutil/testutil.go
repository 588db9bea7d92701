// Package testutil holds helpers for vial's tests that need root, a
// runtime or a kernel feature. Such a test skips with the reason on a
// developer's machine, and fails under CI=true: a missing install step in
// CI must never hide behind a skip.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips (or, under CI=true, fails) t unless ok holds.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("requirement missing under CI: %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

// RequireRoot requires uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root")
}

// RequireBinary requires an executable on PATH and returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, name+" is not installed")
	return p
}
