package seccomp

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDefault(t *testing.T) {
	p, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if p.DefaultAction != specs.ActErrno {
		t.Errorf("default action %q, want errno", p.DefaultAction)
	}
	for _, tc := range []struct {
		name    string
		allowed bool
	}{
		{"read", true}, {"execve", true}, {"clone", false /* allowed only with flag conditions */},
		{"mount", false}, {"umount2", false}, {"ptrace", false}, {"process_vm_readv", false},
		{"bpf", false}, {"reboot", false}, {"kexec_load", false}, {"init_module", false},
		{"sethostname", false}, {"setns", false}, {"pivot_root", false}, {"keyctl", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Allowed(p, tc.name); got != tc.allowed {
				t.Errorf("Allowed(%q) = %v, want %v", tc.name, got, tc.allowed)
			}
		})
	}
	n := 0
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow {
			n += len(s.Names)
		}
	}
	// Docker's profile converted for no capabilities allows about 376 calls.
	if n < 300 || n > 450 {
		t.Errorf("profile allows %d syscalls, expected about 370", n)
	}
}

func TestCloneIsDeep(t *testing.T) {
	p, _ := Default()
	c := Clone(p)
	c.Syscalls[0].Names[0] = "changed"
	if p.Syscalls[0].Names[0] == "changed" {
		t.Fatal("Clone shares Names with the original")
	}
}
