// Package oci builds OCI runtime-spec config.json documents for vial's
// sandboxes from pure options: every SpecOpt only transforms the document,
// all I/O (resolving images, creating directories) happens before.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOpt transforms a spec. Options never perform I/O.
type SpecOpt func(*specs.Spec) error

// The base spec's user. 65534 ("nobody") owns no file on a normal host,
// so a process that escaped its mount namespace still could not write to
// host files it does not own. The runtime gives most sandboxes a host uid
// of their own instead (WithUser), so that they do not share per-user
// kernel limits.
const (
	UID = 65534
	GID = 65534
)

// Default sizes of the sandbox's own tmpfs mounts.
const (
	DefaultTmpBytes = 64 << 20
	devBytes        = 64 << 20 // /dev holds only device nodes, as in runc's default spec
	shmBytes        = 64 << 20
)

// maskedPaths are the /proc and /sys entries runc's own default spec hides
// (plus powercap, as Docker does): they leak host information (kernel
// memory, keys, timers, firmware, power usage side channels).
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// readonlyPaths are /proc entries that let a process change the host
// kernel's state if writable.
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// SpecVersion is the runtime-spec version vial's documents declare. The
// Go types are newer, but every field vial sets exists in 1.0.2, and older
// runtimes (crun 1.8) refuse versions they do not know.
const SpecVersion = "1.0.2"

// New returns the hardened base spec with opts applied in order.
//
// The base is deny-by-default: read-only root; pid, mount, ipc, uts,
// cgroup and network namespaces (the network namespace is empty, so only
// loopback exists); uid/gid 65534 (until WithUser); every capability set empty;
// noNewPrivileges; masked and read-only /proc and /sys paths; a device
// cgroup that denies everything but the runtime's standard devices; small
// rlimits. Options add what a particular sandbox needs.
func New(opts ...SpecOpt) (*specs.Spec, error) {
	s := base()
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func base() *specs.Spec {
	noCaps := []string{}
	return &specs.Spec{
		Version:  SpecVersion,
		Hostname: "sandbox",
		Root:     &specs.Root{Readonly: true},
		Process: &specs.Process{
			User: specs.User{UID: UID, GID: GID},
			Args: []string{"/bin/true"},
			Env:  []string{"HOME=/tmp", "LANG=C.UTF-8", "TERM=dumb"},
			Cwd:  "/",
			// Every set empty: the sandboxed process holds no capability,
			// and with noNewPrivileges it can never gain one through a
			// setuid binary or file capabilities.
			Capabilities: &specs.LinuxCapabilities{
				Bounding: noCaps, Effective: noCaps, Inheritable: noCaps, Permitted: noCaps, Ambient: noCaps,
			},
			NoNewPrivileges: true,
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0}, // no core dumps of sandboxed memory on the host
				// No RLIMIT_NPROC: it counts per uid across the whole
				// host, and sandboxes that share a uid (a workspace
				// several share, or 65534) would share it. The pids
				// cgroup bounds processes per sandbox instead.
			},
			// Sandboxes are the first the kernel kills if the host itself
			// runs out of memory.
			OOMScoreAdj: intPtr(1000),
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=" + strconv.Itoa(devBytes)}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.Itoa(shmBytes), "nr_inodes=" + strconv.FormatInt(TmpInodesFor(shmBytes), 10)}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			tmpfs("/tmp", DefaultTmpBytes),
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   slices.Clone(maskedPaths),
			ReadonlyPaths: slices.Clone(readonlyPaths),
		},
	}
}

func tmpfs(dest string, size int64) specs.Mount {
	return specs.Mount{Destination: dest, Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.FormatInt(size, 10),
			"nr_inodes=" + strconv.FormatInt(TmpInodesFor(size), 10)}}
}

// TmpInodesFor is the inode limit of a tmpfs of size bytes: one file or
// directory per 4 KiB page. A tmpfs file with any data takes at least a
// page, so the limit only stops floods of empty files and directories,
// whose kernel memory (about 1 KiB each) the default limit (half the
// host's pages) would let grow to the sandbox's whole memory limit.
func TmpInodesFor(size int64) int64 { return max(size/4096, 256) }

func intPtr(i int) *int { return &i }

// WithRoot sets the root filesystem directory (kept read-only).
func WithRoot(path string) SpecOpt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("root %q is not absolute", path)
		}
		s.Root.Path = path
		return nil
	}
}

// WithArgs sets the command to run.
func WithArgs(args ...string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("no command to run")
		}
		s.Process.Args = slices.Clone(args)
		return nil
	}
}

// WithEnv adds KEY=VALUE entries, replacing earlier ones with the same key.
func WithEnv(env ...string) SpecOpt {
	return func(s *specs.Spec) error {
		for _, kv := range env {
			key, _, ok := cut(kv)
			if !ok {
				return fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
			}
			s.Process.Env = slices.DeleteFunc(s.Process.Env, func(e string) bool {
				k, _, _ := cut(e)
				return k == key
			})
			s.Process.Env = append(s.Process.Env, kv)
		}
		return nil
	}
}

func cut(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], i > 0
		}
	}
	return kv, "", false
}

// WithCwd sets the working directory inside the sandbox.
func WithCwd(dir string) SpecOpt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("working directory %q is not absolute", dir)
		}
		s.Process.Cwd = dir
		return nil
	}
}

// WithUser sets the uid and gid the sandboxed process runs as, with no
// supplementary groups.
func WithUser(uid, gid uint32) SpecOpt {
	return func(s *specs.Spec) error {
		if uid == 0 || gid == 0 {
			// Deny: nothing in vial runs sandboxed code as root.
			return fmt.Errorf("sandbox user %d:%d: root is never a sandbox's user", uid, gid)
		}
		s.Process.User = specs.User{UID: uid, GID: gid}
		return nil
	}
}

// WithHostname sets the sandbox's hostname (in its own UTS namespace).
func WithHostname(name string) SpecOpt {
	return func(s *specs.Spec) error { s.Hostname = name; return nil }
}

// WithNetworkNamespace makes the sandbox join the network namespace
// pinned at path instead of getting an empty one of its own.
func WithNetworkNamespace(path string) SpecOpt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("network namespace path %q is not absolute", path)
		}
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = path
				return nil
			}
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
		return nil
	}
}

// WithReadOnlyBind bind-mounts a host path read-only, without setuid or
// device files.
func WithReadOnlyBind(source, dest string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dest, Type: "bind", Source: source,
			Options: []string{"rbind", "ro", "nosuid", "nodev"}})
		return nil
	}
}

// WithWorkspace bind-mounts a host directory read-write at /workspace, the
// sandbox's only persistent writable place.
func WithWorkspace(source string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/workspace", Type: "bind", Source: source,
			Options: []string{"rbind", "rw", "nosuid", "nodev"}})
		return nil
	}
}

// WithTmpSize sets the size of the /tmp tmpfs, and its inode limit with
// it (TmpInodesFor).
func WithTmpSize(bytes int64) SpecOpt {
	return func(s *specs.Spec) error {
		if bytes <= 0 {
			return nil
		}
		for i, m := range s.Mounts {
			if m.Destination == "/tmp" {
				s.Mounts[i] = tmpfs("/tmp", bytes)
			}
		}
		return nil
	}
}

// WithRlimit sets (or replaces) one rlimit.
func WithRlimit(typ string, soft, hard uint64) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.Rlimits = slices.DeleteFunc(s.Process.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == typ })
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
		return nil
	}
}

// WithResources sets memory, CPU and pids limits, keeping the device rules.
func WithResources(r *specs.LinuxResources) SpecOpt {
	return func(s *specs.Spec) error {
		if r == nil {
			return nil
		}
		s.Linux.Resources.Memory = r.Memory
		s.Linux.Resources.CPU = r.CPU
		s.Linux.Resources.Pids = r.Pids
		return nil
	}
}

// WithCgroupsPath places the container's cgroup explicitly. Without it a
// runtime nests the container under the caller's own cgroup.
func WithCgroupsPath(p string) SpecOpt {
	return func(s *specs.Spec) error { s.Linux.CgroupsPath = p; return nil }
}

// WithSeccomp installs a seccomp profile.
func WithSeccomp(p *specs.LinuxSeccomp) SpecOpt {
	return func(s *specs.Spec) error { s.Linux.Seccomp = p; return nil }
}

// WithAnnotation records key=value on the bundle (vial marks its bundles).
func WithAnnotation(key, value string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[key] = value
		return nil
	}
}

// Write stores s as dir/config.json.
func Write(dir string, s *specs.Spec) error { return WriteWithSeccomp(dir, s, nil) }

// WriteWithSeccomp stores s as dir/config.json with seccompJSON, a
// marshalled *specs.LinuxSeccomp, as its linux.seccomp in place of
// s.Linux.Seccomp; nil keeps s's own. A profile that is the same for many
// sandboxes is marshalled once this way: vial's ~370-call profile is most
// of the document's encoding cost. The document is compact JSON: indenting
// it cost four times its encoding, on every sandbox's start.
func WriteWithSeccomp(dir string, s *specs.Spec, seccompJSON []byte) error {
	data, err := Encode(s, seccompJSON)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("writing config.json: %w", err)
	}
	return nil
}

// Encode renders s as config.json (see WriteWithSeccomp).
func Encode(s *specs.Spec, seccompJSON []byte) ([]byte, error) {
	if seccompJSON == nil {
		data, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encoding config.json: %w", err)
		}
		return data, nil
	}
	if s.Linux == nil {
		return nil, errors.New("encoding config.json: a seccomp profile needs a linux section")
	}
	// The document is assembled from the spec without its linux section,
	// that section without its profile, and the profile. Neither
	// json.RawMessage nor a Marshaler would do: encoding/json re-scans
	// their output, which costs more than marshalling the profile.
	outer, linux := *s, *s.Linux
	outer.Linux, linux.Seccomp = nil, nil
	doc, err := json.Marshal(&outer)
	if err != nil {
		return nil, fmt.Errorf("encoding config.json: %w", err)
	}
	sec, err := json.Marshal(&linux)
	if err != nil {
		return nil, fmt.Errorf("encoding config.json: %w", err)
	}
	// Both are objects; the spec always has ociVersion, and neither holds
	// the key added to it (both fields are omitempty and nil).
	out := make([]byte, 0, len(doc)+len(sec)+len(seccompJSON)+32)
	out = append(out, doc[:len(doc)-1]...)
	out = append(out, `,"linux":`...)
	out = append(out, sec[:len(sec)-1]...)
	if len(sec) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"seccomp":`...)
	out = append(out, seccompJSON...)
	return append(out, "}}"...), nil
}
