// Package seccomp holds vial's seccomp profiles as data
// (*specs.LinuxSeccomp) for the OCI bundle's linux.seccomp.
package seccomp

import (
	"fmt"
	"slices"
	"sync"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// withheld are system calls Docker's default profile allows that vial
// denies as well. A code interpreter has no use for them, and each one is
// a way to reach into another process: ptrace lets a process inspect and
// rewrite its children (and, on kernels before 4.8, bypass seccomp
// itself); process_vm_readv/writev read and write another process's
// memory directly.
var withheld = []string{"ptrace", "process_vm_readv", "process_vm_writev"}

var defaultProfile = sync.OnceValues(func() (*specs.LinuxSeccomp, error) {
	// The profile is derived for a process with no capabilities at all, so
	// every rule that Docker grants only with a capability (mount, bpf,
	// unshare of user namespaces, reboot, ...) is left out and those calls
	// fall to the default action: EPERM.
	noCaps := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	p, err := mobyseccomp.GetDefaultProfile(noCaps)
	if err != nil {
		return nil, fmt.Errorf("deriving the default seccomp profile: %w", err)
	}
	for i := range p.Syscalls {
		if p.Syscalls[i].Action == specs.ActAllow {
			p.Syscalls[i].Names = slices.DeleteFunc(p.Syscalls[i].Names, func(n string) bool {
				return slices.Contains(withheld, n)
			})
		}
	}
	p.Syscalls = slices.DeleteFunc(p.Syscalls, func(s specs.LinuxSyscall) bool { return len(s.Names) == 0 })
	return p, nil
})

// Default returns vial's default profile: Docker's default (from
// github.com/moby/profiles/seccomp) for a process without capabilities,
// minus the calls in withheld. Everything not listed fails with EPERM.
// The returned value is shared: callers must not modify it (use Clone).
func Default() (*specs.LinuxSeccomp, error) { return defaultProfile() }

// Clone returns a deep copy of p that the caller may modify.
func Clone(p *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	if p == nil {
		return nil
	}
	c := *p
	c.Architectures = slices.Clone(p.Architectures)
	c.Flags = slices.Clone(p.Flags)
	c.Syscalls = make([]specs.LinuxSyscall, len(p.Syscalls))
	for i, s := range p.Syscalls {
		s.Names = slices.Clone(s.Names)
		s.Args = slices.Clone(s.Args)
		c.Syscalls[i] = s
	}
	return &c
}

// Allowed reports whether profile p allows syscall name unconditionally
// (a rule with that name, action allow and no argument conditions).
func Allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}
