package proctree

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillReachesOtherSessions starts a shell whose grandchild runs in a
// session of its own (as node's kernel does) and checks that Kill ends it.
func TestKillReachesOtherSessions(t *testing.T) {
	cmd := exec.Command("sh", "-c", "setsid sh -c 'echo $$; exec sleep 60' & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, err := out.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("reading the grandchild's pid: %q", buf[:n])
	}
	// Wait until the grandchild has exec'd sleep and is listed below cmd.
	for i := 0; i < 100 && !slices.Contains(Descendants(cmd.Process.Pid), grandchild); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	Kill(cmd.Process.Pid)
	cmd.Wait()
	for i := 0; i < 100; i++ {
		if syscall.Kill(grandchild, 0) != nil {
			return
		}
		// A killed process the test does not own lingers as a zombie until
		// its parent (init) reaps it; a zombie is gone for our purpose.
		if st, err := exec.Command("ps", "-o", "stat=", "-p", strconv.Itoa(grandchild)).Output(); err == nil && strings.HasPrefix(strings.TrimSpace(string(st)), "Z") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(grandchild, syscall.SIGKILL)
	t.Fatalf("grandchild %d in its own session survived Kill", grandchild)
}
