package runtime

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// BusyScenario is a call that times out, and whether it leaves something
// spinning in the sandbox. Exported for the sandbox tests.
type BusyScenario struct {
	Name string
	Lang Language
	Code string
	Busy bool
}

// BusyScenarios: after a timeout, a spinning thread or background process
// ends the context; a sleeping one does not.
// Each waits until its spinner runs before it blocks, so that the timeout
// finds it running even on a loaded host.
var BusyScenarios = []BusyScenario{
	{"python spinning thread", Python, "import threading, time\nrunning = threading.Event()\ndef spin():\n    running.set()\n    while True: pass\nthreading.Thread(target=spin, daemon=True).start()\nrunning.wait()\ntime.sleep(60)", true},
	{"python spinning process", Python, "import subprocess, time\np = subprocess.Popen(['sh', '-c', 'trap \"\" INT; echo running; while :; do :; done'], stdout=subprocess.PIPE)\np.stdout.readline()\ntime.sleep(60)", true},
	{"python sleeping thread", Python, "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\ntime.sleep(60)", false},
	{"javascript spinning worker", JavaScript, "const w = new (require('worker_threads').Worker)('require(\"worker_threads\").parentPort.postMessage(1); for (;;) {}', {eval: true}); await new Promise(r => w.once('message', r)); await new Promise(() => {})", true},
	{"bash spinning job", Bash, "yes >/dev/null & sleep 60", true},
	{"bash sleeping job", Bash, "sleep 100 & sleep 60", false},
}

// CheckBusy runs sc on a context from start with a 3 s timeout and checks
// the result: a busy sandbox ends the context (TimedOut, Dead, Busy and a
// reason that says so); an idle one stays usable.
func CheckBusy(t *testing.T, sc BusyScenario, start func(ContextOptions) *Context) {
	t.Helper()
	// Its debug log shows the sandbox's CPU in each window.
	c := start(ContextOptions{Logger: testLogger(t)})
	defer c.Close()
	res, err := c.Exec(t.Context(), ExecRequest{Code: sc.Code, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.Busy != sc.Busy || res.Dead != sc.Busy {
		t.Fatalf("got TimedOut=%v Busy=%v Dead=%v, want true, %v, %v (%+v)", res.TimedOut, res.Busy, res.Dead, sc.Busy, sc.Busy, res)
	}
	dead, why := c.Dead()
	if sc.Busy {
		if !dead || !strings.Contains(why, "kept running") {
			t.Errorf("dead=%v because %q, want a reason saying something kept running", dead, why)
		}
		return
	}
	next := map[Language]string{Python: "print('ok')", JavaScript: "console.log('ok')", Bash: "echo ok"}[sc.Lang]
	if res, err := c.Exec(t.Context(), ExecRequest{Code: next}); err != nil || res.Stdout != "ok\n" {
		t.Errorf("the next call: %+v, %v", res, err)
	}
}

// testLogger returns a debug-level logger that writes to t's log until
// t ends (a context's goroutines may log a little later).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func TestContextBusyAfterTimeout(t *testing.T) {
	t.Parallel()
	for _, sc := range BusyScenarios {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			CheckBusy(t, sc, func(o ContextOptions) *Context { return newHostContext(t, sc.Lang, o) })
		})
	}
}
