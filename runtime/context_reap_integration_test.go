package runtime_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/runtime"
)

// orphanMaker leaves 500 orphaned processes, each of which exits at once:
// unreaped, each stays a zombie holding a pid, and a pids limit of 128
// stops the loop with fork errors.
const orphanMaker = `i=0; while [ $i -lt 500 ]; do (: &) || exit 1; i=$((i+1)); done; echo made`

// zombieCount prints how many processes in the sandbox are zombies.
const zombieCount = `sleep 0.2; n=0; for s in /proc/[0-9]*/stat; do read -r l < $s 2>/dev/null || continue; l=${l##*) }; [ "${l%% *}" = Z ] && n=$((n+1)); done; echo $n`

// TestContextsReapOrphansInSandboxes starts each language's driver as vial
// serve does (node under the init; python forking its own; bash reaping
// itself), and checks that pid 1 is what SandboxCommand started, that 500
// orphans leave no zombie, and that the context stays usable, on runc
// (with a pids limit the zombies would exhaust) and runsc.
func TestContextsReapOrphansInSandboxes(t *testing.T) {
	testutil.RequireRoot(t)
	drivers := t.TempDir()
	if err := runtime.WriteDrivers(drivers); err != nil {
		t.Fatal(err)
	}
	shell := func(lang runtime.Language, script string) string {
		switch lang {
		case runtime.Python:
			return "import subprocess\nprint(subprocess.run(['sh', '-c', " + pyQuote(script) + "], capture_output=True, text=True).stdout, end='')"
		case runtime.JavaScript:
			return "process.stdout.write(child_process.spawnSync('sh', ['-c', " + pyQuote(script) + "]).stdout.toString())"
		}
		return "sh -c " + shQuote(script)
	}
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			lim := runtime.Limits{Pids: 128}
			if rt == "runsc" {
				// runsc counts its own threads against the limit, and a
				// low one can take the sandbox down (see HOST-FACTS).
				lim = runtime.Limits{}
			}
			for _, lang := range []runtime.Language{runtime.Python, runtime.JavaScript, runtime.Bash} {
				t.Run(string(lang), func(t *testing.T) {
					if lang == runtime.JavaScript {
						if _, err := exec.LookPath("node"); err != nil {
							testutil.Require(t, false, "node is not installed on the host")
						}
					}
					argv, err := runtime.SandboxCommand(lang, runtime.DriverDir)
					if err != nil {
						t.Fatal(err)
					}
					c := startContext(t, e, rt, hostImage(t), drivers, lang, lim)
					defer c.Close()
					run := func(code string) runtime.ExecResult {
						t.Helper()
						res, err := c.Exec(t.Context(), runtime.ExecRequest{Code: code, Timeout: time.Minute})
						if err != nil {
							t.Fatalf("Exec(%q): %v", code, err)
						}
						if res.Dead || res.TimedOut {
							t.Fatalf("Exec(%q) = %+v", code, res)
						}
						return res
					}
					// (A test binary built with cgo runs the init as init.bin.)
					want := argv[0] + " "
					if lang == runtime.JavaScript {
						want = runtime.InitArg
					}
					if res := run(shell(lang, "tr '\\0' ' ' < /proc/1/cmdline")); !strings.Contains(res.Stdout, want) {
						t.Errorf("pid 1 is %q, want %q", res.Stdout, argv)
					}
					if res := run(shell(lang, orphanMaker)); res.Stdout != "made\n" {
						t.Errorf("making orphans: stdout %q stderr %q", res.Stdout, res.Stderr)
					}
					if res := run(shell(lang, zombieCount)); res.Stdout != "0\n" {
						t.Errorf("zombies left: %q (stderr %q)", res.Stdout, res.Stderr)
					}
					if res := run(shell(lang, "echo alive")); res.Stdout != "alive\n" {
						t.Errorf("after the orphans: %q", res.Stdout)
					}
				})
			}
		})
	}
}

// pyQuote quotes s as a Python or JavaScript string literal.
func pyQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`)
	return "'" + r.Replace(s) + "'"
}

// shQuote quotes s for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
