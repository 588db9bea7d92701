package runtime

import (
	"encoding/json"
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/runtime/oci"
	"github.com/vial-run/vial/seccomp"
)

// Every bundle of a backend carries the same seccomp profile, about 370
// system calls whose JSON is most of config.json. It is derived and
// marshalled once per backend and process and spliced into each document
// (oci.WriteWithSeccomp); the rest of the spec differs per sandbox and
// costs a few microseconds to build. Measured on the 2-core development
// VM: 120 µs per sandbox for the indented document with the profile
// marshalled each time, 19 µs now.

// preparedProfiles maps a *Backend to a func() ([]byte, error) returning
// its marshalled profile.
var preparedProfiles sync.Map

// seccompJSON returns the backend's profile (SeccompProfile), marshalled.
func (b *Backend) seccompJSON() ([]byte, error) {
	f, ok := preparedProfiles.Load(b)
	if !ok {
		f, _ = preparedProfiles.LoadOrStore(b, sync.OnceValues(func() ([]byte, error) {
			p, err := b.SeccompProfile()
			if err != nil {
				return nil, err
			}
			data, err := json.Marshal(p)
			if err != nil {
				return nil, fmt.Errorf("encoding the seccomp profile: %w", err)
			}
			return data, nil
		}))
	}
	return f.(func() ([]byte, error))()
}

// SeccompProfile returns the seccomp profile of the backend's sandboxes:
// vial's default, adjusted by AdjustSeccomp. The caller owns the copy.
func (b *Backend) SeccompProfile() (*specs.LinuxSeccomp, error) {
	p, err := seccomp.Default()
	if err != nil {
		return nil, err
	}
	p = seccomp.Clone(p)
	if b.AdjustSeccomp != nil {
		b.AdjustSeccomp(p)
	}
	return p, nil
}

// writeSpec stores spec as the bundle's config.json, with the backend's
// prepared seccomp profile.
func (s *sandbox) writeSpec(spec *specs.Spec) error {
	prof, err := s.backend.seccompJSON()
	if err != nil {
		return err
	}
	return oci.WriteWithSeccomp(s.bundle, spec, prof)
}

// Prewarm starts, in the background, the work that the first sandbox of
// runtimeName in this process would otherwise wait for: marshalling the
// backend's seccomp profile (once PrewarmSpecs has derived it), and
// PrewarmSpecs' own work if that has not started. Nothing waits for it,
// and it changes no state but caches.
func (e *Engine) Prewarm(runtimeName string) {
	b, ok := e.backends[runtimeName]
	if !ok || b.Path == "" {
		return
	}
	go func() {
		prewarmSpecs()
		b.seccompJSON()
	}()
}

// PrewarmSpecs starts, in the background, the per-process work that
// preparing any first sandbox would otherwise wait for: building
// encoding/json's encoders for the OCI spec's types (the first
// json.Marshal of a spec builds them for the whole type tree, Windows and
// Solaris included: 0.7-1.8 ms on the 2-core development VM, against 10 µs
// for the next), deriving vial's default seccomp profile, and finding the
// cgroup hierarchies. A one-shot process such as `vial run` calls it
// first thing, so that this overlaps parsing flags, opening the engine,
// resolving the image and making the sandbox's directories.
func PrewarmSpecs() { go prewarmSpecs() }

var prewarmSpecs = sync.OnceFunc(func() {
	cgroups.Prepare()
	seccomp.Default()
	// An empty profile is enough to build the encoders of its types.
	if s, err := oci.New(oci.WithSeccomp(&specs.LinuxSeccomp{})); err == nil {
		oci.Encode(s, nil)
	}
})
