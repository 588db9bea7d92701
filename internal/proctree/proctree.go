// Package proctree kills a host process together with every process
// descended from it.
//
// Killing a process group is not enough for vial's drivers outside a
// sandbox: node's kernel process starts its own session (it must, to be
// interrupted alone), and the init starts the driver in another, so their
// descendants survive a group kill and keep running on the host. Inside a
// sandbox the runtime kills everything in the container's cgroup; on the
// host (local mode, the host tests) this package does it by walking
// /proc/PID/task/*/children.
package proctree

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kill sends SIGKILL to pid's descendants and then to pid. Each process
// is first stopped, so that it cannot fork a child the walk has not seen;
// the walk is repeated until it finds no new process.
func Kill(pid int) {
	seen := map[int]bool{}
	for {
		found := false
		for _, p := range Descendants(pid) {
			if !seen[p] {
				seen[p] = true
				found = true
				syscall.Kill(p, syscall.SIGSTOP)
			}
		}
		if !found {
			break
		}
	}
	for p := range seen {
		syscall.Kill(p, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// Descendants lists every process below pid, parents before children.
// Processes that exit during the walk are skipped.
func Descendants(pid int) []int {
	var out []int
	queue := children(pid)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, children(p)...)
	}
	return out
}

// children reads pid's direct children from every one of its threads.
func children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// CPU returns the CPU time used so far by pid and its descendants that
// are alive, including the children each of them has waited for, read
// from /proc/PID/stat (in clock ticks of 10 ms, the kernel's USER_HZ).
// The time of a process that exited unreaped is lost, so two readings
// may go down; it is good for telling a busy tree from an idle one, not
// for accounting. Processes that vanish during the walk are skipped.
func CPU(pid int) time.Duration {
	var ticks uint64
	for _, p := range append([]int{pid}, Descendants(pid)...) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the ")" that ends the command name; utime, stime,
		// cutime and cstime are the 14th to 17th of the line.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 15 {
			continue
		}
		for _, s := range f[11:15] {
			if n, err := strconv.ParseUint(s, 10, 64); err == nil {
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
