// Package runc provides the runc backend: runc driven through the OCI CLI
// contract with nothing of its own but its JSON log flags.
package runc

import (
	"os/exec"

	"github.com/vial-run/vial/runtime"
)

// New returns the runc backend; Path is empty when runc is not installed.
func New() *runtime.Backend {
	path, _ := exec.LookPath("runc")
	return &runtime.Backend{
		Name:    "runc",
		Path:    path,
		Install: "install it with: apt-get install -y runc",
		LogArgs: func(p string) []string { return []string{"--log", p, "--log-format", "json"} },
	}
}
