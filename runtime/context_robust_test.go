package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// orphanMaker leaves 500 orphaned processes, each of which exits at once:
// unreaped, each would stay a zombie holding a pid.
const orphanMaker = `i=0; while [ $i -lt 500 ]; do (: &); i=$((i+1)); done; echo made`

// orphanCode runs orphanMaker from lang's code.
var orphanCode = map[Language]string{
	Python:     "import subprocess\nprint(subprocess.run(['sh', '-c', '" + orphanMaker + "'], capture_output=True, text=True).stdout, end='')",
	JavaScript: "process.stdout.write(child_process.spawnSync('sh', ['-c', '" + orphanMaker + "']).stdout.toString())",
	Bash:       "sh -c '" + orphanMaker + "'",
}

// zombiesOf counts the zombies whose parent is pid.
func zombiesOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the ")" that ends the command name: state, ppid.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// TestContextReapsOrphans checks that the init in front of every driver
// reaps the orphans the user's code leaves (here a subreaper on the host;
// pid 1 in a sandbox, see TestContextsReapOrphansInSandboxes), and that
// the context stays usable.
func TestContextReapsOrphans(t *testing.T) {
	t.Parallel()
	for _, lang := range allLanguages {
		t.Run(string(lang), func(t *testing.T) {
			t.Parallel()
			h := startHost(t, hostArgv(t, lang))
			c, err := NewContext(context.Background(), h, ContextOptions{Language: lang, Workspace: h.cmd.Dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			res, err := c.Exec(t.Context(), ExecRequest{Code: orphanCode[lang], Timeout: time.Minute})
			if err != nil || res.Stdout != "made\n" || res.Dead {
				t.Fatalf("making orphans: %+v, %v", res, err)
			}
			init := h.cmd.Process.Pid
			n := zombiesOf(t, init)
			for deadline := time.Now().Add(5 * time.Second); n > 0 && time.Now().Before(deadline); n = zombiesOf(t, init) {
				time.Sleep(20 * time.Millisecond)
			}
			if n > 0 {
				t.Errorf("%d orphans left as zombies", n)
			}
			next := map[Language]string{Python: "print('ok')", JavaScript: "console.log('ok')", Bash: "echo ok"}[lang]
			if res, err := c.Exec(t.Context(), ExecRequest{Code: next}); err != nil || res.Stdout != "ok\n" {
				t.Errorf("next call: %+v, %v", res, err)
			}
		})
	}
}

func TestContextBashSurvives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
	}{
		{"set -e ends the call", []step{
			{"x=1; set -e; echo a; false; echo not reached", ExecResult{Stdout: "a\n", ExitStatus: 1}},
			{"echo $x; [[ $- == *e* ]] && echo errexit kept", ExecResult{Stdout: "1\nerrexit kept\n"}},
			// Still on: a failure in a function ends the whole call.
			{"f() { echo in f; (exit 4); echo not reached; }; f; echo not reached", ExecResult{Stdout: "in f\n", ExitStatus: 4}},
			// Where set -e ignores a failure, so does the call.
			{"if false; then :; fi; false || echo or; ! true; echo went on", ExecResult{Stdout: "or\nwent on\n"}},
			// A subshell exits on its own failure; its status ends the call.
			{"(false; echo not reached); echo not reached", ExecResult{ExitStatus: 1}},
			{"set +e; false; echo off", ExecResult{Stdout: "off\n"}},
		}},
		{"set -euo pipefail with a failing pipeline", []step{
			{"set -euo pipefail; false | true; echo not reached", ExecResult{ExitStatus: 1}},
			{"echo ${y:-unset} $-", ExecResult{Stdout: "unset ehuBET\n"}},
			{"set +euo pipefail; false | true; echo $?", ExecResult{Stdout: "0\n"}},
		}},
		{"exit", []step{
			{"v=2; echo a; exit 3; echo not reached", ExecResult{Stdout: "a\n", ExitStatus: 3}},
			{"g() { echo in g; exit 4; echo not reached; }; h() { g; echo not reached; }; h; echo not reached", ExecResult{Stdout: "in g\n", ExitStatus: 4}},
			{"false; exit", ExecResult{ExitStatus: 1}},
			{"exit 256", ExecResult{}},
			{"(exit 5); echo $?; echo $(exit 6; echo no)$?", ExecResult{Stdout: "5\n6\n"}},
			{"echo $v", ExecResult{Stdout: "2\n"}},
		}},
		{"driver unaffected by the user's shell", []step{
			{"set -fCu; shopt -s failglob nullglob; IFS=,; PATH=/nonexistent; trap 'echo user int' INT; printf() { :; }; head() { :; }; cat() { :; }; echo set", ExecResult{Stdout: "set\n"}},
			{"echo a,b; builtin printf '%s\\n' \"$PATH\"", ExecResult{Stdout: "a,b\n/nonexistent\n"}},
			{"PATH=/usr/bin:/bin; unset -f printf head cat; echo ok", ExecResult{Stdout: "ok\n"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runSteps(t, newHostContext(t, Bash, ContextOptions{}), tt.steps)
		})
	}
}

func TestContextBashSessionEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, code       string
		status           int
		stdout, inStderr string
	}{
		{"builtin exit", "echo bye; builtin exit 5", 5, "bye\n", ""},
		{"unbound variable", "set -u; echo start; echo $nope; echo not reached", 1, "start\n", "nope: unbound variable"},
		// Without the driver's ERR trap, set -e exits the shell.
		{"errexit with the ERR trap removed", "set -e; trap - ERR; echo before; echo err >&2; false; echo not reached", 1, "before\n", "err"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, Bash, ContextOptions{})
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.code})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Dead || res.ExitStatus != tt.status || res.Stdout != tt.stdout || !strings.Contains(res.Stderr, tt.inStderr) {
				t.Errorf("got %+v, want Dead, status %d, stdout %q, stderr with %q", res, tt.status, tt.stdout, tt.inStderr)
			}
			if _, why := c.Dead(); why != "its session ended" {
				t.Errorf("dead because %q", why)
			}
		})
	}
}

func TestContextBashBackgroundOutput(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Bash, ContextOptions{})
	// The background job keeps the call's pipes open: the call still ends
	// with the output its foreground wrote, and the job's later output
	// shows up nowhere.
	start := time.Now()
	res, err := c.Exec(t.Context(), ExecRequest{Code: "(sleep 0.5; echo late; echo late >&2) & echo now; echo err >&2"})
	if err != nil || res.Stdout != "now\n" || res.Stderr != "err\n" || res.Dead {
		t.Fatalf("got %+v, %v", res, err)
	}
	t.Logf("the call took %v", time.Since(start))
	time.Sleep(time.Second)
	res, err = c.Exec(t.Context(), ExecRequest{Code: "echo next"})
	if err != nil || res.Stdout != "next\n" || res.Stderr != "" {
		t.Fatalf("next call: %+v, %v", res, err)
	}
	// A background job that writes right away, then exits.
	// A bare wait waits for the user's jobs only.
	res, err = c.Exec(t.Context(), ExecRequest{Code: "echo one; (echo two) & wait; echo three", Timeout: 5 * time.Second})
	if err != nil || res.Stdout != "one\ntwo\nthree\n" || res.TimedOut {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestContextJavaScriptSurvives(t *testing.T) {
	t.Parallel()
	type call struct {
		code     string
		want     ExecResult // Stdout, Value, ExitStatus, Error.Name
		inStderr string
	}
	exitErr := &ExecError{Name: "ProcessExit"}
	tests := []struct {
		name  string
		calls []call
	}{
		{"process.exit ends the call", []call{
			{"var x = 1; console.log('a'); process.exit(3); console.log('not reached')", ExecResult{Stdout: "a\n", ExitStatus: 3, Error: exitErr}, ""},
			{"process.exit()", ExecResult{}, ""},
			{"await new Promise(() => setTimeout(() => process.exit(4), 10))", ExecResult{ExitStatus: 4, Error: exitErr}, ""},
			{"x", ExecResult{Value: "1", HasValue: true}, ""},
		}},
		{"uncaught exception in a callback", []call{
			// While a call awaits, it ends the call with the error.
			{"await new Promise(() => setTimeout(() => { throw new RangeError('cb') }, 10))", ExecResult{ExitStatus: 1, Error: &ExecError{Name: "RangeError"}}, ""},
			// Between calls, it is printed in the next call's stderr.
			{"setTimeout(() => { throw new Error('later') }, 10); 1", ExecResult{Value: "1", HasValue: true}, ""},
			{"PAUSE", ExecResult{}, ""},
			{"2", ExecResult{Value: "2", HasValue: true}, "Uncaught Error: later"},
		}},
		{"unhandled rejection", []call{
			{"Promise.reject(new TypeError('rej')); 1", ExecResult{Value: "1", HasValue: true}, "Uncaught (in promise) TypeError: rej"},
			{"async function f() { throw new SyntaxError('af') }; f(); await new Promise(r => setTimeout(r, 100)); 'not reached'",
				ExecResult{ExitStatus: 1, Error: &ExecError{Name: "SyntaxError"}}, ""},
			{"3", ExecResult{Value: "3", HasValue: true}, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, JavaScript, ContextOptions{})
			for i, cl := range tt.calls {
				if cl.code == "PAUSE" {
					time.Sleep(300 * time.Millisecond)
					continue
				}
				res, err := c.Exec(t.Context(), ExecRequest{Code: cl.code, Timeout: 10 * time.Second})
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				got := ExecResult{Stdout: res.Stdout, Value: res.Value, HasValue: res.HasValue, ExitStatus: res.ExitStatus, Dead: res.Dead}
				if res.Error != nil {
					got.Error = &ExecError{Name: res.Error.Name}
				}
				if diff := cmp.Diff(cl.want, got); diff != "" {
					t.Errorf("call %d %q (-want +got):\n%s", i, cl.code, diff)
				}
				if !strings.Contains(res.Stderr, cl.inStderr) || strings.Contains(res.Stderr, "node.js") {
					t.Errorf("call %d: stderr %q, want it to hold %q and no driver frames", i, res.Stderr, cl.inStderr)
				}
			}
		})
	}
}

func TestContextJavaScriptSessionEnds(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, JavaScript, ContextOptions{})
	res, err := c.Exec(t.Context(), ExecRequest{Code: "console.log('dying'); process.kill(process.pid, 'SIGKILL')"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Dead || res.Stdout != "dying\n" || res.Error == nil || res.Error.Name != "SessionEnded" || res.ExitStatus != 137 {
		t.Errorf("got %+v (error %+v), want the session's end reported with its output", res, res.Error)
	}
	if _, why := c.Dead(); why != "its session ended" {
		t.Errorf("dead because %q", why)
	}
}

// TestInitScriptFallback runs the init a dynamically linked vial installs,
// in both of its branches.
func TestInitScriptFallback(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, interp, wantErr string
	}{
		{"interpreter present", "/bin/sh", ""},
		{"interpreter missing", "/nonexistent/ld.so", "not reaped"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			script := fmt.Sprintf(initScript, tt.interp, tt.interp)
			bin := "#!/bin/sh\n[ \"$1\" = " + InitArg + " ] && [ \"$2\" = -- ] && shift 2 && echo via-bin && exec \"$@\"\nexit 99\n"
			for name, text := range map[string]string{"init": script, "init.bin": bin} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(filepath.Join(dir, "init"), InitArg, "--", "echo", "driver")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			want := "via-bin\ndriver\n"
			if tt.wantErr != "" {
				want = "driver\n"
			}
			if err != nil || string(out) != want || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("got %q, stderr %q, %v; want %q", out, stderr.String(), err, want)
			}
		})
	}
}
