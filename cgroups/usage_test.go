package cgroups

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testutil"
)

// TestUsageMatchesStats moves a shell into a fresh group, lets it use
// memory and CPU, and checks that the direct reads (Usage, procs) agree
// with containerd's Stats, and that Kill and Delete leave nothing.
func TestUsageMatchesStats(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, Mode() != "unavailable", "needs cgroups")
	var b [4]byte
	rand.Read(b[:])
	id := "vtest-" + hex.EncodeToString(b[:])
	g, err := Create(id, Limits{CPUs: 1, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Kill(5 * time.Second)
		if err := g.Delete(); err != nil {
			t.Error(err)
		}
		for _, dir := range groupDirs(id) {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s left behind", dir)
			}
		}
	})

	// The shell waits for a line before it uses anything, so that all its
	// use is charged to the group it was moved into.
	cmd := exec.Command("/bin/sh", "-c", `read go; x=$(head -c 8000000 /dev/zero | tr '\0' a); echo ${#x}; read stop`)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for _, dir := range groupDirsToJoin(id) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatalf("joining %s: %v", dir, err)
		}
	}
	fmt.Fprintln(in, "go")
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "8000000\n" {
		t.Fatalf("shell said %q, %v", line, err)
	}
	pids, err := g.procs()
	if err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("procs() = %v, %v; want it to hold the shell %d", pids, err, cmd.Process.Pid)
	}
	fmt.Fprintln(in, "stop")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("shell: %v", err)
	}

	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakMemory != st.PeakMemory || u.CPU != st.CPU || u.OOMKills != st.OOMKills {
		t.Errorf("Usage() = peak %d, cpu %v, oom %d; Stats() = peak %d, cpu %v, oom %d",
			u.PeakMemory, u.CPU, u.OOMKills, st.PeakMemory, st.CPU, st.OOMKills)
	}
	pr := NewPeakReader(id)
	for range 2 { // opened on the first read, read again on the second
		if p, err := pr.Read(); err != nil || p != u.PeakMemory {
			t.Errorf("PeakReader.Read() = %d, %v; want %d", p, err, u.PeakMemory)
		}
	}
	pr.Close()
	if _, err := pr.Read(); err == nil {
		t.Error("PeakReader.Read after Close succeeded")
	}
	if u.PeakMemory < 8_000_000 || u.CPU == 0 {
		t.Errorf("Usage() = peak %d, cpu %v: the shell's 8 MB and its CPU time are missing", u.PeakMemory, u.CPU)
	}
	if pids, err := g.procs(); err != nil || len(pids) != 0 {
		t.Errorf("procs() after exit = %v, %v; want none", pids, err)
	}
}

// groupDirsToJoin are the group's directories a process must be written
// into to be accounted: every hierarchy vial creates it in.
func groupDirsToJoin(id string) []string {
	if Unified() {
		return []string{filepath.Join("/sys/fs/cgroup", Parent, id)}
	}
	var out []string
	for _, h := range []string{"memory", "cpu", "cpuacct", "pids"} {
		out = append(out, filepath.Join("/sys/fs/cgroup", h, Parent, id))
	}
	return out
}
