package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Usage reads what a finished run reports — the group's peak memory, its
// CPU time and its OOM kills, as Stats reports them — from the three files
// that hold them. Stats reads every
// counter of every hierarchy through containerd's library (memory.stat,
// per-CPU usage, blkio, hugetlb...), which cost `vial run` about 0.8 ms
// after each sandbox on the 2-core development VM; this costs a few tens
// of microseconds. Memory and Pids are left zero.
func (g *Group) Usage() (Stats, error) {
	var s Stats
	var err error
	if g.v2 != nil {
		dir := filepath.Join("/sys/fs/cgroup", Parent, g.id)
		if s.PeakMemory, err = readUint(filepath.Join(dir, "memory.peak")); err != nil {
			// memory.peak exists from Linux 5.19; before, Stats knows
			// another way.
			return g.Stats()
		}
		usec, err := readKey(filepath.Join(dir, "cpu.stat"), "usage_usec")
		if err != nil {
			return s, fmt.Errorf("reading cgroup usage: %w", err)
		}
		s.CPU = time.Duration(usec) * time.Microsecond
		if s.OOMKills, err = readKey(filepath.Join(dir, "memory.events"), "oom_kill"); err != nil {
			return s, fmt.Errorf("reading cgroup usage: %w", err)
		}
		return s, nil
	}
	if s.PeakMemory, err = readUint(filepath.Join("/sys/fs/cgroup/memory", Parent, g.id, "memory.max_usage_in_bytes")); err != nil {
		return s, fmt.Errorf("reading cgroup usage: %w", err)
	}
	ns, err := readUint(filepath.Join("/sys/fs/cgroup/cpuacct", Parent, g.id, "cpuacct.usage"))
	if err != nil {
		return s, fmt.Errorf("reading cgroup usage: %w", err)
	}
	s.CPU = time.Duration(ns)
	// As Stats: the group's own count, which v1 keeps in the runtime's
	// leaf instead (see OOMKilled).
	if s.OOMKills, err = readKey(filepath.Join("/sys/fs/cgroup/memory", Parent, g.id, "memory.oom_control"), "oom_kill"); err != nil {
		return s, fmt.Errorf("reading cgroup usage: %w", err)
	}
	return s, nil
}

// procs lists the processes in the group and below it (the runtime's
// leaf), reading cgroup.procs directly: the pids hierarchy on v1 (memory
// where there is none), the group itself on v2. containerd's Processes
// walks every file of the group with an lstat each.
func (g *Group) procs() ([]int, error) {
	dir := filepath.Join("/sys/fs/cgroup", Parent, g.id)
	if g.v2 == nil {
		dir = filepath.Join("/sys/fs/cgroup/pids", Parent, g.id)
		if _, err := os.Stat("/sys/fs/cgroup/pids"); err != nil {
			dir = filepath.Join("/sys/fs/cgroup/memory", Parent, g.id)
		}
	}
	var out []int
	if err := procsUnder(dir, &out); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// procsUnder appends the pids in dir's cgroup.procs and in its
// subdirectories' to out. A group that is gone holds nothing.
func procsUnder(dir string, out *[]int) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			*out = append(*out, pid)
		}
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
			if err := procsUnder(filepath.Join(dir, e.Name()), out); err != nil {
				return err
			}
		}
	}
	return nil
}

func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// readKey reads the value of key in a flat keyed file ("key value" lines,
// as cpu.stat and memory.events); a missing key reads as 0.
func readKey(path, key string) (uint64, error) {
	data, err := os.ReadFile(path)
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
