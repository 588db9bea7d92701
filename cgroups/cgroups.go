// Package cgroups turns limits into OCI resources and owns vial's
// per-sandbox accounting cgroups on cgroup v1 and v2.
//
// Layout: every sandbox gets a group <Parent>/<id> created by vial, and the
// OCI runtime puts the container one level below it, at <Parent>/<id>/c
// (the bundle's cgroupsPath). The runtime enforces the limits on that leaf
// and removes it when the container ends; the vial-owned group above it
// outlives the container, so its counters — peak memory, CPU time, OOM
// events, which the kernel keeps hierarchically — can still be read after
// a foreground `runc run` has returned. That is what lets vial run a
// sandbox with a single runtime invocation and still report usage.
package cgroups

import (
	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/internal/mountinfo"

	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Parent is the cgroup under which every vial sandbox lives.
const Parent = "/vial"

// Leaf is the name of the runtime-managed cgroup inside a sandbox's group.
const Leaf = "c"

// cpuPeriod is the CFS period used for CPU quotas (the kernel default).
const cpuPeriod = 100_000

// Limits are the resource limits of one sandbox. Zero means "no limit".
type Limits struct {
	MemoryBytes int64
	CPUs        float64
	Pids        int64
}

// Resources converts l into OCI resources for the container's cgroup:
// memory with memory+swap equal (so a sandbox cannot swap its way past
// its limit), a CFS quota of CPUs*period, and a pids limit.
func Resources(l Limits) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if l.MemoryBytes > 0 {
		m := l.MemoryBytes
		swap := l.MemoryBytes
		r.Memory = &specs.LinuxMemory{Limit: &m, Swap: &swap}
	}
	if l.CPUs > 0 {
		quota := int64(math.Round(l.CPUs * cpuPeriod))
		period := uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if l.Pids > 0 {
		pids := l.Pids
		r.Pids = &specs.LinuxPids{Limit: &pids}
	}
	return r
}

// LeafPath is the cgroupsPath to put in a sandbox's bundle.
func LeafPath(id string) string { return Parent + "/" + id + "/" + Leaf }

// Stats is a sandbox's resource use read from its group.
type Stats struct {
	PeakMemory uint64 // bytes; the high-water mark of the whole group
	Memory     uint64 // bytes in use now
	CPU        time.Duration
	// OOMKills counts OOM kills where the kernel reports them
	// hierarchically (cgroup v2's memory.events). On v1 the count lives in
	// the runtime's leaf, which is gone after the container ends: see
	// Group.OOMKilled.
	OOMKills uint64
	Pids     uint64
}

// Group is one sandbox's vial-owned cgroup. Safe for concurrent reads.
type Group struct {
	id string
	v1 cgroup1.Cgroup
	v2 *cgroup2.Manager
}

// Unified reports whether the host runs cgroup v2 only.
func Unified() bool { return cgroupsv3.Mode() == cgroupsv3.Unified }

// Mode describes the host's cgroup layout for humans ("v1", "v1 hybrid", "v2").
func Mode() string {
	switch cgroupsv3.Mode() {
	case cgroupsv3.Legacy:
		return "v1"
	case cgroupsv3.Hybrid:
		return "v1 hybrid (cgroup2 mounted without controllers)"
	case cgroupsv3.Unified:
		return "v2"
	}
	return "unavailable"
}

// ErrUnavailable reports that cgroups cannot be used on this host.
var ErrUnavailable = errdefs.ErrUnavailable.WithMessage("cgroups unavailable")

// Create makes the group for sandbox id. It carries the pids and CPU limits
// as a second line of defence (a runtime that ignored them still cannot
// let the sandbox exceed them) but no memory limit: the memory limit sits
// on the leaf, so that the kernel's OOM killer acts there and vial can read
// the group's high-water mark to tell an OOM kill.
func Create(id string, l Limits) (*Group, error) {
	path := Parent + "/" + id
	res := Resources(Limits{CPUs: l.CPUs, Pids: l.Pids})
	switch cgroupsv3.Mode() {
	case cgroupsv3.Unified:
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("creating cgroup %s: %w", path, err)
		}
		// Controllers must be on in the group's subtree for the runtime's
		// leaf to be limited.
		if err := m.ToggleControllers([]string{"memory", "pids", "cpu"}, cgroup2.Enable); err != nil {
			m.Delete()
			return nil, fmt.Errorf("enabling controllers in %s: %w", path, err)
		}
		return &Group{id: id, v2: m}, nil
	case cgroupsv3.Legacy, cgroupsv3.Hybrid:
		cg, err := cgroup1.New(cgroup1.StaticPath(path), res, cgroup1.WithHierarchy(accounting))
		if err != nil {
			return nil, fmt.Errorf("creating cgroup %s: %w", path, err)
		}
		return &Group{id: id, v1: cg}, nil
	}
	return nil, ErrUnavailable
}

// Load opens the existing group of sandbox id (for gc and recovery).
func Load(id string) (*Group, error) {
	path := Parent + "/" + id
	if Unified() {
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, err
		}
		return &Group{id: id, v2: m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(accounting))
	if err != nil {
		return nil, err
	}
	return &Group{id: id, v1: cg}, nil
}

// accountingSubsystems are the v1 hierarchies in which vial itself makes a
// sandbox's group: the ones it reads (memory, cpuacct, pids) or limits
// (cpu, pids). The runtime creates the group's directory in the others
// (cpuset, devices, freezer...) on its own, copying what it needs from the
// parent, and Remove deletes it from every hierarchy. Skipping them saves
// a third of the group's creation time on every run, most of it in
// cpuset's copying of parent values.
var accountingSubsystems = []cgroup1.Name{cgroup1.Memory, cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Pids}

// accounting is cgroup1.Default restricted to accountingSubsystems. It is
// worked out once per process (it parses /proc/self/mountinfo and probes
// every hierarchy): the subsystems only describe where each hierarchy is
// mounted, and every group shares them.
var accounting = sync.OnceValues(readAccounting)

// Prepare does, ahead of a sandbox, the per-process work its group's
// creation would otherwise start with (finding the hierarchies). Safe to
// call from a goroutine of its own beside anything else in this package.
func Prepare() {
	if !Unified() {
		accounting()
	}
	hierarchyRoots()
}

func readAccounting() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		if slices.Contains(accountingSubsystems, s.Name()) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Stats reads the group's counters.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	if g.v2 != nil {
		m, err := g.v2.Stat()
		if err != nil {
			return s, fmt.Errorf("reading cgroup stats: %w", err)
		}
		if m.Memory != nil {
			s.PeakMemory, s.Memory = m.Memory.MaxUsage, m.Memory.Usage
		}
		if m.MemoryEvents != nil {
			s.OOMKills = m.MemoryEvents.OomKill
		}
		if m.CPU != nil {
			s.CPU = time.Duration(m.CPU.UsageUsec) * time.Microsecond
		}
		if m.Pids != nil {
			s.Pids = m.Pids.Current
		}
		return s, nil
	}
	m, err := g.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return s, fmt.Errorf("reading cgroup stats: %w", err)
	}
	if m.Memory != nil && m.Memory.Usage != nil {
		s.PeakMemory, s.Memory = m.Memory.Usage.Max, m.Memory.Usage.Usage
	}
	if m.MemoryOomControl != nil {
		s.OOMKills = m.MemoryOomControl.OomKill
	}
	if m.CPU != nil && m.CPU.Usage != nil {
		s.CPU = time.Duration(m.CPU.Usage.Total)
	}
	if m.Pids != nil {
		s.Pids = m.Pids.Current
	}
	return s, nil
}

// OOMKilled decides whether a sandbox whose program died abnormally was
// killed for memory. On v2 the kernel counts OOM kills hierarchically, so
// the group knows exactly. On v1 the count is kept only in the leaf the
// runtime has already removed, so vial infers it: the group's high-water
// mark reached the limit (within the kernel's charge batch and a margin).
func OOMKilled(s Stats, limit int64) bool {
	if s.OOMKills > 0 {
		return true
	}
	if Unified() || limit <= 0 {
		return false
	}
	slack := uint64(limit / 64)
	if slack < 1<<20 {
		slack = 1 << 20
	}
	return s.PeakMemory+slack >= uint64(limit)
}

// Kill sends SIGKILL to every process in the group and its leaf, and
// repeats until none is left or the deadline passes. Used by gc for
// sandboxes whose runtime state is lost.
func (g *Group) Kill(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := g.pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has %d processes", g.id, len(pids))
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *Group) pids() ([]int, error) { return g.procs() }

// Delete removes the group and anything the runtime left inside it, in
// every hierarchy (on v1 the runtime creates the group's directory in
// hierarchies vial did not, e.g. devices and freezer).
func (g *Group) Delete() error { return Remove(g.id) }

// Remove deletes the directories of sandbox id's group in every hierarchy,
// deepest first. Missing directories are not an error; a directory that
// still holds processes is.
func Remove(id string) error {
	var errs []error
	for _, dir := range groupDirs(id) {
		if err := removeTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree rmdirs dir's subdirectories bottom-up, then dir. cgroupfs
// directories are removed with rmdir, never unlink of their files. It tries
// dir alone first: the runtime has removed its leaf when a container ends,
// so reading the directory is needed only when that fails.
func removeTree(dir string) error {
	err := syscall.Rmdir(dir)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	var err2 error
	for i := 0; i < 50; i++ {
		err2 = syscall.Rmdir(dir)
		if err2 == nil || errors.Is(err2, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err2, syscall.EBUSY) {
			break
		}
		// The last task of a killed container may take a moment to leave.
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, err2)
}

// groupDirs lists sandbox id's group directory in every mounted hierarchy.
func groupDirs(id string) []string {
	var out []string
	for _, root := range hierarchyRoots() {
		out = append(out, filepath.Join(root, Parent, id))
	}
	return out
}

// List returns the ids of every sandbox group under Parent in any
// hierarchy, for gc.
func List() ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	for _, root := range hierarchyRoots() {
		ents, err := os.ReadDir(filepath.Join(root, Parent))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				ids = append(ids, e.Name())
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// hierarchyRoots returns the mount points of every cgroup hierarchy. They
// are read once per process: where the hierarchies are mounted does not
// change while vial runs, and reading /proc/self/mountinfo cost every `vial
// run` about 0.1 ms twice (start-up recovery, teardown).
var hierarchyRoots = sync.OnceValue(readHierarchyRoots)

func readHierarchyRoots() []string {
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil
	}
	var roots []string
	for _, m := range mounts {
		// On a hybrid host this includes the controller-less cgroup2
		// mount: runc creates the container's directory there too.
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			roots = append(roots, m.Point)
		}
	}
	return roots
}

// LeafOOMKills reads the OOM-kill counter of sandbox id's runtime leaf,
// which exists for as long as its container does (a detached container
// that has stopped but is not yet deleted). It is exact where the group's
// inference is not: cgroup v1 keeps the count only in the leaf.
func LeafOOMKills(id string) (uint64, error) {
	file, key := "memory.oom_control", "oom_kill"
	root := "/sys/fs/cgroup/memory"
	if Unified() {
		file, key, root = "memory.events", "oom_kill", "/sys/fs/cgroup"
	}
	data, err := os.ReadFile(filepath.Join(root, Parent, id, Leaf, file))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}
