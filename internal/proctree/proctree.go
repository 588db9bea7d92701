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
