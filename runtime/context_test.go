package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var allLanguages = []Language{Python, JavaScript, Bash}

// step is one call and what its result must contain.
type step struct {
	code string
	want ExecResult // compared on the fields below only
}

// summary keeps the deterministic part of a result.
func summary(r ExecResult) ExecResult {
	s := ExecResult{
		Stdout: r.Stdout, Stderr: r.Stderr, Value: r.Value, HasValue: r.HasValue,
		ExitStatus: r.ExitStatus, TimedOut: r.TimedOut, Dead: r.Dead,
		StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
	}
	if r.Error != nil {
		s.Error = &ExecError{Name: r.Error.Name}
	}
	return s
}

func runSteps(t *testing.T, c *Context, steps []step) {
	t.Helper()
	for i, s := range steps {
		res, err := c.Exec(t.Context(), ExecRequest{Code: s.code, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("call %d %q: %v", i, s.code, err)
		}
		if diff := cmp.Diff(s.want, summary(res)); diff != "" {
			t.Errorf("call %d %q (-want +got):\n%s", i, s.code, diff)
			if res.Error != nil {
				t.Logf("traceback:\n%s", res.Error.Traceback)
			}
		}
	}
}

func TestContextStatePersists(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lang  Language
		steps []step
	}{
		{"python", Python, []step{
			{"x = 41\nimport json\ndef f(v): return v + 1", ExecResult{}},
			{"import os; os.chdir('/tmp')", ExecResult{}},
			{"print(json.dumps([f(x)]))\nos.getcwd()", ExecResult{Stdout: "[42]\n", Value: "'/tmp'", HasValue: true}},
			{"class P:\n  def __repr__(self): return 'P!'\nP()", ExecResult{Value: "P!", HasValue: true}},
			{"x = None\nx", ExecResult{}}, // None shows nothing, as in the REPL
			{"import asyncio\nawait asyncio.sleep(0)\nx is None", ExecResult{Value: "True", HasValue: true}},
		}},
		{"javascript", JavaScript, []step{
			{"let x = 1", ExecResult{}},
			{"x + 1", ExecResult{Value: "2", HasValue: true}},
			{"const y = 10; function g(v) { return v * y }", ExecResult{}},
			{"g(x)", ExecResult{Value: "10", HasValue: true}},
			{"let x = 5; x", ExecResult{Value: "5", HasValue: true}}, // redeclaration, as a re-run cell
			{"class A { v = 3 }; process.chdir('/tmp')", ExecResult{}},
			{"[new A().v, process.cwd()]", ExecResult{Value: "[ 3, '/tmp' ]", HasValue: true}},
			{"const r = await Promise.resolve(7); r * 2", ExecResult{Value: "14", HasValue: true}},
			{"r", ExecResult{Value: "7", HasValue: true}},
			{"console.log('hi', {a: 1})", ExecResult{Stdout: "hi { a: 1 }\n"}},
		}},
		{"bash", Bash, []step{
			{"x=41; f() { echo \"f:$*\"; }; declare -a arr=(a b c)", ExecResult{}},
			{"cd /tmp", ExecResult{}},
			{"f $((x+1)) ${arr[2]}; pwd", ExecResult{Stdout: "f:42 c\n/tmp\n"}},
			{"export V=1; false", ExecResult{ExitStatus: 1}},
			{"bash -c 'echo $V'", ExecResult{Stdout: "1\n"}},
			{"exit 3; echo not reached", ExecResult{ExitStatus: 3}},
			{"echo still $x", ExecResult{Stdout: "still 41\n"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runSteps(t, newHostContext(t, tt.lang, ContextOptions{}), tt.steps)
		})
	}
}

func TestContextErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		lang       Language
		code       string
		wantName   string
		wantInTB   []string
		notInTB    []string
		wantStatus int
	}{
		{"python exception", Python, "def boom():\n    1/0\nboom()", "ZeroDivisionError",
			[]string{"Traceback", "<cell", "boom", "1/0", "division by zero"}, []string{"python.py"}, 1},
		{"python syntax", Python, "def f(:", "SyntaxError", []string{"SyntaxError"}, []string{"python.py"}, 1},
		{"python sys.exit", Python, "import sys; sys.exit(4)", "SystemExit", nil, nil, 4},
		{"python custom", Python, "class MyErr(Exception): pass\nraise MyErr('bad')", "MyErr", []string{"MyErr: bad"}, nil, 1},
		{"javascript error", JavaScript, "function boom() { null.x }\nboom()", "TypeError",
			[]string{"TypeError", "<cell", "boom"}, []string{"node.js", "node:"}, 1},
		{"javascript syntax", JavaScript, "function f( {", "SyntaxError", []string{"SyntaxError"}, nil, 1},
		{"javascript throw value", JavaScript, "throw 5", "Uncaught", []string{"5"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, tt.lang, ContextOptions{})
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.code})
			if err != nil {
				t.Fatal(err)
			}
			if res.Error == nil {
				t.Fatalf("no error in %+v", res)
			}
			if res.Error.Name != tt.wantName || res.ExitStatus != tt.wantStatus {
				t.Errorf("got %s status %d, want %s status %d", res.Error.Name, res.ExitStatus, tt.wantName, tt.wantStatus)
			}
			for _, s := range tt.wantInTB {
				if !strings.Contains(res.Error.Traceback, s) {
					t.Errorf("traceback lacks %q:\n%s", s, res.Error.Traceback)
				}
			}
			for _, s := range tt.notInTB {
				if strings.Contains(res.Error.Traceback, s) {
					t.Errorf("traceback shows driver frames (%q):\n%s", s, res.Error.Traceback)
				}
			}
			// The context survives its code's errors.
			if res, err := c.Exec(t.Context(), ExecRequest{Code: "echo ok"}); err != nil || res.Dead {
				t.Errorf("after the error: %+v, %v", res, err)
			}
		})
	}
}

func TestContextTimeoutInterrupts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		lang       Language
		code, next string
		wantNext   string
	}{
		{"python busy loop", Python, "x = 1\nwhile True: pass", "x", "1"},
		{"python sleep", Python, "import time; time.sleep(60)", "2+2", "4"},
		{"python subprocess", Python, "import os; os.system('sleep 60')", "3", "3"},
		{"javascript busy loop", JavaScript, "let x = 1; while (true) {}", "x", "1"},
		{"javascript await", JavaScript, "await new Promise(() => {})", "1+1", "2"},
		{"bash busy loop", Bash, "x=1; while :; do :; done", "echo $x", "1\n"},
		{"bash sleep", Bash, "sleep 60; echo not reached", "echo alive", "alive\n"},
		{"bash nested functions", Bash, "g() { while :; do :; done; }; h() { g; echo no; }; h; echo no", "echo alive", "alive\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, tt.lang, ContextOptions{})
			start := time.Now()
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.code, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !res.TimedOut || res.Dead {
				t.Fatalf("got TimedOut=%v Dead=%v, want the code interrupted and the context alive (%+v)", res.TimedOut, res.Dead, res)
			}
			if res.Stdout != "" && strings.Contains(res.Stdout, "not reached") {
				t.Errorf("the code went on after the interrupt: %q", res.Stdout)
			}
			// Not a speed assertion: a hang would take the full minute.
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("the interrupted call took %v", d)
			}
			res, err = c.Exec(t.Context(), ExecRequest{Code: tt.next})
			if err != nil {
				t.Fatal(err)
			}
			got := res.Value
			if tt.lang == Bash {
				got = res.Stdout
			}
			if got != tt.wantNext || res.Error != nil {
				t.Errorf("next call: got %q (%+v), want %q", got, res, tt.wantNext)
			}
		})
	}
}

func TestContextOutput(t *testing.T) {
	t.Parallel()
	const capN = 64 << 10
	tests := []struct {
		name string
		lang Language
		code string
		want ExecResult
	}{
		{"python flood", Python, "print('y' * 200000, end='')", ExecResult{Stdout: strings.Repeat("y", capN), StdoutTruncated: true}},
		{"python stderr flood", Python, "import sys\nfor i in range(2000): sys.stderr.write('e' * 100)",
			ExecResult{Stderr: strings.Repeat("e", capN), StderrTruncated: true}},
		{"python subprocess", Python, "import os, subprocess\nprint('a', flush=True)\nos.system('echo b; echo c >&2')\nsubprocess.run(['sh', '-c', 'echo d'])\nprint('e')",
			ExecResult{Stdout: "a\nb\nd\ne\n", Stderr: "c\n"}},
		{"python invalid utf-8", Python, "import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe!')", ExecResult{Stdout: "ok\uFFFD!", Value: "5", HasValue: true}},
		{"javascript flood", JavaScript, "process.stdout.write('y'.repeat(200000))", ExecResult{Stdout: strings.Repeat("y", capN), StdoutTruncated: true, Value: "true", HasValue: true}},
		{"javascript subprocess", JavaScript, "child_process.spawnSync('sh', ['-c', 'echo a; echo b >&2'], {stdio: 'inherit'}); console.error('c')",
			ExecResult{Stdout: "a\n", Stderr: "b\nc\n"}},
		{"javascript invalid utf-8", JavaScript, "process.stdout.write(Buffer.from([0x6f, 0xff, 0x6b])); undefined", ExecResult{Stdout: "o\uFFFDk"}},
		{"bash flood", Bash, "yes | head -c 500000", ExecResult{Stdout: strings.Repeat("y\n", capN/2), StdoutTruncated: true}},
		{"bash both streams", Bash, "echo out; echo err >&2; sh -c 'echo sub'", ExecResult{Stdout: "out\nsub\n", Stderr: "err\n"}},
		{"bash invalid utf-8", Bash, `printf 'a\xffb'`, ExecResult{Stdout: "a\uFFFDb"}},
		{"bash NUL bytes", Bash, `printf 'a\0b'`, ExecResult{Stdout: "a\x00b"}},
		{"bash background job", Bash, "sleep 2 & echo started", ExecResult{Stdout: "started\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, tt.lang, ContextOptions{OutputCap: capN})
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.code})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summary(res), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestContextDriverCapsOutput(t *testing.T) {
	t.Parallel()
	// The drivers' own default cap (1 MiB) holds without the Go side's.
	for _, lang := range allLanguages {
		t.Run(string(lang), func(t *testing.T) {
			t.Parallel()
			code := map[Language]string{
				Python:     "import sys\nfor i in range(300): sys.stdout.write('x' * 10000)",
				JavaScript: "for (let i = 0; i < 300; i++) process.stdout.write('x'.repeat(10000))",
				Bash:       "for i in 1 2 3; do head -c 1000000 /dev/zero | tr '\\0' x; done",
			}[lang]
			c := newHostContext(t, lang, ContextOptions{OutputCap: 8 << 20})
			res, err := c.Exec(t.Context(), ExecRequest{Code: code})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Stdout) != DefaultOutputCap || !res.StdoutTruncated {
				t.Errorf("got %d bytes, truncated=%v; want %d, true", len(res.Stdout), res.StdoutTruncated, DefaultOutputCap)
			}
		})
	}
}

func TestContextFigures(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Python, ContextOptions{})
	// A stand-in for matplotlib: the driver must patch pyplot.show as it is
	// imported and collect the figures left open.
	dir := filepath.Join(c.Workspace(), "matplotlib")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"__init__.py": "",
		"pyplot.py": `
_figs = {}
class _Fig:
    def __init__(self, n): self.n = n
    def savefig(self, f, format=None, **kw): f.write(b'\x89PNG fig%d' % self.n)
def plot(*a):
    n = len(_figs) + 1
    _figs[n] = _Fig(n)
def show(): raise RuntimeError('unpatched show')
def get_fignums(): return sorted(_figs)
def figure(n): return _figs[n]
def close(which): _figs.clear()
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Exec(t.Context(), ExecRequest{Code: "import matplotlib.pyplot as plt\nplt.plot(1)\nplt.show()\nplt.plot(2)"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		t.Fatalf("%s: %s\n%s", res.Error.Name, res.Error.Message, res.Error.Traceback)
	}
	want := []Image{{"image/png", []byte("\x89PNG fig1")}, {"image/png", []byte("\x89PNG fig1")}}
	// show() took figure 1 and closed it; figure 2 (numbered 1 again by the
	// stub) was collected at the end of the call.
	if diff := cmp.Diff(want, res.Images); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
	res, _ = c.Exec(t.Context(), ExecRequest{Code: "1"})
	if len(res.Images) != 0 {
		t.Errorf("figures reported twice: %d", len(res.Images))
	}
}

func TestContextSerialisesCalls(t *testing.T) {
	t.Parallel()
	for _, lang := range allLanguages {
		t.Run(string(lang), func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, lang, ContextOptions{})
			// Each call sets a shared variable, yields, and reads it back: if
			// calls overlapped, some would read another call's value.
			code := map[Language]string{
				Python:     "v = %d\nimport time; time.sleep(0.005)\nprint(v)",
				JavaScript: "var v = %d; await new Promise(r => setTimeout(r, 5)); console.log(v)",
				Bash:       "v=%d; sleep 0.005; echo $v",
			}[lang]
			const n = 12
			var wg sync.WaitGroup
			got := make([]string, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					res, err := c.Exec(t.Context(), ExecRequest{Code: fmt.Sprintf(code, i)})
					got[i], errs[i] = res.Stdout, err
				})
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil || got[i] != fmt.Sprintf("%d\n", i) {
					t.Errorf("call %d: got %q, %v", i, got[i], errs[i])
				}
			}
		})
	}
}

// fakeDriver starts a bash script standing in for a driver.
func fakeDriver(t *testing.T, script string, opts ContextOptions) (*Context, error) {
	t.Helper()
	h := startHost(t, []string{"bash", "-c", script})
	return NewContext(t.Context(), h, opts)
}

const fakeReady = `printf 'vial1 ready 0\nend\n'; `

func TestContextKilledWhenDriverIgnoresInterrupt(t *testing.T) {
	t.Parallel()
	c, err := fakeDriver(t, `trap '' INT; `+fakeReady+`while read -r l; do :; done`, ContextOptions{Grace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(t.Context(), ExecRequest{Code: "x", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || !res.Dead {
		t.Fatalf("got %+v, want TimedOut and Dead", res)
	}
	_, err = c.Exec(t.Context(), ExecRequest{Code: "x"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "dead") {
		t.Errorf("next call: %v, want a dead-context ErrNotFound", err)
	}
}

func TestContextDies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lang Language
		code string
	}{
		{"python os._exit", Python, "import os; os._exit(3)"},
		{"python killed", Python, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"},
		{"javascript killed", JavaScript, "process.kill(process.pid, 'SIGKILL')"},
		{"javascript process.reallyExit", JavaScript, "process.reallyExit(2)"},
		{"bash builtin exit", Bash, "builtin exit 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, tt.lang, ContextOptions{})
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.code})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Dead {
				t.Fatalf("got %+v, want Dead", res)
			}
			_, err = c.Exec(t.Context(), ExecRequest{Code: "1"})
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("next call: %v, want ErrNotFound", err)
			}
			if info := c.Info(); !info.Dead {
				t.Errorf("Info says alive")
			}
		})
	}
}

func TestContextDiesWhileIdle(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Python, ContextOptions{})
	if _, err := c.Exec(t.Context(), ExecRequest{Code: "import os, signal, subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 0.2; kill -9 %d' % os.getpid()])"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	_, err := c.Exec(t.Context(), ExecRequest{Code: "1"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "exited") {
		t.Errorf("got %v, want a dead-context ErrNotFound", err)
	}
}

func TestContextProtocolErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
	}{
		{"garbage", fakeReady + `read -r l; echo 'hello world'; sleep 10`},
		{"wrong id", fakeReady + `read -r l; printf 'vial1 result 99\nend\n'; sleep 10`},
		{"huge field", fakeReady + `read -r l; printf 'vial1 result 1\nstdout 999999999999\n'; sleep 10`},
		{"truncated", fakeReady + `read -r l; printf 'vial1 result 1\nstdout 10\nabc'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := fakeDriver(t, tt.script, ContextOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Exec(t.Context(), ExecRequest{Code: "x", Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Dead || res.TimedOut {
				t.Errorf("got %+v, want Dead (not a timeout)", res)
			}
		})
	}
}

func TestContextStartFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script, want string
	}{
		{"exits", `echo 'python3: not found' >&2; exit 127`, "python3: not found"},
		{"wrong first message", `printf 'vial1 result 1\nend\n'; sleep 10`, "before ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := fakeDriver(t, tt.script, ContextOptions{Language: Python})
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrUnavailable mentioning %q", err, tt.want)
			}
		})
	}
	t.Run("not ready in time", func(t *testing.T) {
		t.Parallel()
		_, err := fakeDriver(t, `sleep 10`, ContextOptions{StartTimeout: 200 * time.Millisecond})
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("got %v, want ErrUnavailable", err)
		}
	})
}

func TestContextCancelledCall(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Python, ContextOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Exec(ctx, ExecRequest{Code: "x = 1\nimport time; time.sleep(60)", Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	// The abandoned call is interrupted in the background; the next call
	// waits for that and then runs normally.
	res, err := c.Exec(t.Context(), ExecRequest{Code: "x + 1"})
	if err != nil || res.Value != "2" {
		t.Errorf("next call: %+v, %v", res, err)
	}
}

func TestContextRejectsInvalidUTF8Code(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Python, ContextOptions{})
	if _, err := c.Exec(t.Context(), ExecRequest{Code: "print('\xff')"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}

func TestContextLargeCode(t *testing.T) {
	t.Parallel()
	for _, lang := range allLanguages {
		t.Run(string(lang), func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, lang, ContextOptions{})
			comment := map[Language]string{Python: "#", JavaScript: "//", Bash: "#"}[lang]
			line := comment + strings.Repeat("z", 99) + "\n"
			code := strings.Repeat(line, 50000) + map[Language]string{Python: "print('end')", JavaScript: "console.log('end')", Bash: "echo end"}[lang]
			res, err := c.Exec(t.Context(), ExecRequest{Code: code})
			if err != nil || res.Stdout != "end\n" {
				t.Errorf("5 MB of code: %q, %v", res.Stdout, err)
			}
		})
	}
}

func TestCapText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
		cut  bool
	}{
		{"short", "abc", 10, "abc", false},
		{"cut", "abcdef", 3, "abc", true},
		{"rune boundary", "aé", 2, "a", true},
		{"invalid", "a\xffb", 10, "a\uFFFDb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := capText(tt.in, tt.n)
			if got != tt.want || cut != tt.cut {
				t.Errorf("capText(%q, %d) = %q, %v; want %q, %v", tt.in, tt.n, got, cut, tt.want, tt.cut)
			}
		})
	}
}

func TestWriteDriversIdempotent(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		if err := WriteDrivers(dir); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"bash.sh", "init", "node.js", "python.py"}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	interp, err := elfInterpreter(self)
	if err != nil {
		t.Fatal(err)
	}
	if interp != "" {
		// A cgo build of the test binary: the binary goes behind a script.
		want = []string{"bash.sh", "init", "init.bin", "node.js", "python.py"}
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for _, n := range names {
		got, _ := os.ReadFile(filepath.Join(dir, n))
		if strings.HasPrefix(n, "init") {
			fi, err := os.Stat(filepath.Join(dir, n))
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v, %v; want an executable", n, fi.Mode(), err)
			}
			continue
		}
		want, _ := driverFS.ReadFile("drivers/" + n)
		if !slices.Equal(want, got) {
			t.Errorf("%s differs from the embedded copy", n)
		}
	}
}

func TestInitCommand(t *testing.T) {
	argv, err := DriverCommand(Bash, DriverDir)
	if err != nil {
		t.Fatal(err)
	}
	got := InitCommand(DriverDir, argv)
	want := []string{"/opt/vial/drivers/init", "__vial-init", "--", "bash", "/opt/vial/drivers/bash.sh"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
