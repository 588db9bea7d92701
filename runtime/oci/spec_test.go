package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func testSpec(t testing.TB, prof *specs.LinuxSeccomp) *specs.Spec {
	t.Helper()
	s, err := New(WithRoot("/images/x"), WithArgs("python3", "-c", `print("linux")`), WithWorkspace("/ws"),
		WithAnnotation("linux", "seccomp"), WithSeccomp(prof))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var testProfile = &specs.LinuxSeccomp{
	DefaultAction: specs.ActErrno,
	Architectures: []specs.Arch{specs.ArchX86_64},
	Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read", "write"}, Action: specs.ActAllow},
		{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 2114060288, Op: specs.OpMaskedEqual}}},
	},
}

// TestEncodeWithSeccomp: a profile marshalled beforehand gives the same
// document as the profile in the spec.
func TestEncodeWithSeccomp(t *testing.T) {
	// What the runtime reads: the spec as encoding/json renders it.
	want := roundTrip(t, testSpec(t, testProfile))
	pj, err := json.Marshal(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteWithSeccomp(dir, testSpec(t, nil), pj); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got specs.Spec
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("config.json differs from the spec (-want +got):\n%s", diff)
	}
	// Without a prepared profile, the spec's own.
	if err := Write(dir, testSpec(t, testProfile)); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(dir, "config.json"))
	got = specs.Spec{}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("Write: config.json differs from the spec (-want +got):\n%s", diff)
	}
}

func roundTrip(t *testing.T, s *specs.Spec) *specs.Spec {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out specs.Spec
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestEncodeEmptyLinux: a prepared profile in an otherwise empty linux
// section still makes a valid document.
func TestEncodeEmptyLinux(t *testing.T) {
	pj, _ := json.Marshal(testProfile)
	data, err := Encode(&specs.Spec{Version: SpecVersion, Linux: &specs.Linux{}}, pj)
	if err != nil {
		t.Fatal(err)
	}
	var got specs.Spec
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	if got.Linux == nil || got.Linux.Seccomp == nil || len(got.Linux.Seccomp.Syscalls) != 2 {
		t.Errorf("profile lost: %s", data)
	}
	if _, err := Encode(&specs.Spec{Version: SpecVersion}, pj); err == nil {
		t.Error("a profile without a linux section was accepted")
	}
}
