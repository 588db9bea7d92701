package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime/oci"
	"github.com/vial-run/vial/seccomp"
)

// TestWriteSpecKeepsTheProfile: the bundle written with the backend's
// prepared profile is the document vial wrote before the profile was
// prepared once — the spec with a private copy of the default profile,
// adjusted by the backend — for a backend that adjusts the profile and
// one that does not, and for every sandbox of the process.
func TestWriteSpecKeepsTheProfile(t *testing.T) {
	dropRead := func(p *specs.LinuxSeccomp) {
		for i := range p.Syscalls {
			p.Syscalls[i].Names = slices.DeleteFunc(p.Syscalls[i].Names, func(n string) bool { return n == "read" })
		}
	}
	for _, b := range []*Backend{
		{Name: "plain"},
		{Name: "adjusting", AdjustSeccomp: dropRead, SpecOpts: []oci.SpecOpt{oci.WithAnnotation("x", "y")}},
	} {
		t.Run(b.Name, func(t *testing.T) {
			for i := range 3 {
				dir := t.TempDir()
				s := &sandbox{id: "vtest-" + string(rune('a'+i)), backend: b, limits: DefaultLimits.WithDefaults(), workspace: "/ws", bundle: dir, uid: oci.UID, gid: oci.GID}
				req := &Request{Image: &rootfs.Image{Root: "/images/x"}, Args: []string{"/bin/true"}}
				spec, err := (&Engine{}).spec(s, req)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.writeSpec(spec); err != nil {
					t.Fatal(err)
				}
				// The old way: the profile in the spec, adjusted after
				// every other option.
				prof, _ := seccomp.Default()
				prof = seccomp.Clone(prof)
				if b.AdjustSeccomp != nil {
					b.AdjustSeccomp(prof)
				}
				spec.Linux.Seccomp = prof
				want, err := json.Marshal(spec)
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(dir, "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				var w, g specs.Spec
				if err := json.Unmarshal(want, &w); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(got, &g); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(w, g); diff != "" {
					t.Fatalf("config.json differs (-want +got):\n%s", diff)
				}
				if b.AdjustSeccomp != nil && seccomp.Allowed(g.Linux.Seccomp, "read") {
					t.Error("the backend's adjustment is missing")
				}
			}
		})
	}
	// The default profile itself is never changed by an adjustment.
	if p, _ := seccomp.Default(); !seccomp.Allowed(p, "read") {
		t.Error("an adjustment changed the shared default profile")
	}
}

func BenchmarkWriteSpec(b *testing.B) {
	dir := b.TempDir()
	s := &sandbox{id: "vbench-1", backend: &Backend{Name: "runc"}, limits: DefaultLimits.WithDefaults(), workspace: "/ws", bundle: dir, uid: oci.UID, gid: oci.GID}
	req := &Request{Image: &rootfs.Image{Root: "/images/x", Binds: []rootfs.Bind{{Source: "/usr", Target: "/usr"}}}, Args: []string{"/bin/true"}}
	for b.Loop() {
		spec, err := (&Engine{}).spec(s, req)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.writeSpec(spec); err != nil {
			b.Fatal(err)
		}
	}
}
