package pid1

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// initCmd runs this test binary as the init of sh -c script: the package's
// init function takes over when it sees Arg.
func initCmd(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], Arg, "--", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH=/usr/local/bin:/usr/bin:/bin")
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return ee.ExitCode()
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script string
		want         int
	}{
		{"success", "exit 0", 0},
		{"failure", "exit 3", 3},
		{"killed", "kill -9 $$", 128 + 9},
		// The driver's orphans do not count: only its own status does.
		{"orphans", "(sleep 0.1; exit 9) & (exit 8) & exit 4", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := exitCode(t, initCmd(t, tt.script).Run()); got != tt.want {
				t.Errorf("exit status %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("missing program", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(os.Args[0], Arg, "--", "no-such-program-vial")
		out, err := cmd.CombinedOutput()
		if got := exitCode(t, err); got != 127 || !strings.Contains(string(out), "no-such-program-vial") {
			t.Errorf("got %d %q, want 127 and a message", got, out)
		}
	})
}

// TestForwardsSignals sends the init what vial sends a context's pid 1.
func TestForwardsSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			cmd := initCmd(t, "trap 'exit 42' INT TERM; echo ready; while :; do sleep 0.01; done")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 6)
			if _, err := out.Read(buf); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if got := exitCode(t, err); got != 42 {
					t.Errorf("exit status %d, want 42 (the driver's trap)", got)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("the signal did not reach the driver")
			}
		})
	}
}

// TestDriverLeadsASession checks that the driver gets a session and
// process group of its own, as it had as pid 1.
func TestDriverLeadsASession(t *testing.T) {
	t.Parallel()
	out, err := initCmd(t, `[ "$(ps -o sid= -p $$ | tr -d ' ')" = $$ ] && [ "$(ps -o pgid= -p $$ | tr -d ' ')" = $$ ] && echo leader`).Output()
	if err != nil {
		if _, lerr := exec.LookPath("ps"); lerr != nil {
			t.Skip("ps is not installed")
		}
		t.Fatal(err)
	}
	if string(out) != "leader\n" {
		t.Errorf("got %q", out)
	}
}
