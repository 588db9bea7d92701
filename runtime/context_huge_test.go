package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestContextHugeErrors: an exception with a 34 MB message (which once
// killed a Python context: its answer was too large to read), a huge
// thrown value, a huge stderr, each comes back cut, and the context lives.
func TestContextHugeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		lang    Language
		code    string
		errName string // "" where the failure is not an exception
	}{
		{"python message", Python, "raise ValueError('x' * 34_000_000)", "ValueError"},
		{"python chained", Python, "try:\n    raise KeyError('k' * 20_000_000)\nexcept KeyError as e:\n    raise RuntimeError('r' * 20_000_000) from e", "RuntimeError"},
		{"python unicode", Python, "raise ValueError('é' * 20_000_000)", "ValueError"},
		{"javascript error", JavaScript, "throw new Error('x'.repeat(34e6))", "Error"},
		{"javascript string", JavaScript, "throw 'x'.repeat(34e6)", "Uncaught"},
		{"javascript value", JavaScript, "({ [util.inspect.custom]: () => 'v'.repeat(34e6) })", ""},
		{"bash stderr", Bash, "head -c 34000000 /dev/zero | tr '\\0' x >&2; false", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, tt.lang, ContextOptions{})
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.code, Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if res.Dead {
				t.Fatalf("the context died: %+v", res)
			}
			if tt.errName != "" {
				if res.Error == nil || res.Error.Name != tt.errName {
					t.Fatalf("error %+v, want %s", res.Error, tt.errName)
				}
				if n := len(res.Error.Message); n > maxErrorText+100 || n < 1000 {
					t.Errorf("message of %d bytes, want it cut to about %d", n, maxErrorText)
				}
				// Node's util.inspect cuts a thrown string itself ("... N more characters").
				if n := len(res.Error.Traceback); n > maxErrorText+100 || !strings.Contains(res.Error.Traceback, "bytes cut") && !strings.Contains(res.Error.Traceback, "more characters") {
					t.Errorf("traceback of %d bytes, want it cut to about %d, saying so", n, maxErrorText)
				}
			}
			if len(res.Value) > DefaultOutputCap || len(res.Stderr) > DefaultOutputCap {
				t.Errorf("value of %d bytes, stderr of %d", len(res.Value), len(res.Stderr))
			}
			if tt.lang == Bash && (!res.StderrTruncated || res.ExitStatus != 1) {
				t.Errorf("bash: stderr truncated %v, status %d; want true, 1", res.StderrTruncated, res.ExitStatus)
			}
			next := map[Language]string{Python: "print('ok')", JavaScript: "console.log('ok')", Bash: "echo ok"}[tt.lang]
			if res, err := c.Exec(t.Context(), ExecRequest{Code: next}); err != nil || res.Stdout != "ok\n" {
				t.Errorf("the next call: %+v, %v", res, err)
			}
		})
	}
}

// TestContextImageBudget: the Python driver keeps the images of a call
// under VIAL_IMAGE_BYTES and MAX_IMAGES and counts the rest; vial keeps
// them under ContextOptions.ImageBytes.
func TestContextImageBudget(t *testing.T) {
	t.Parallel()
	const pyplot = `
_figs = []
class _Fig:
    def __init__(self, n, size): self.n, self.size = n, size
    def savefig(self, f, format=None, **kw): f.write(b'%02d' % self.n + b'.' * (self.size - 2))
def figure_of(size): _figs.append(_Fig(len(_figs) + 1, size))
def show(): raise RuntimeError('unpatched show')
def get_fignums(): return list(range(1, len(_figs) + 1))
def figure(n): return _figs[n - 1]
def close(which): _figs.clear()
`
	tests := []struct {
		name    string
		env     string // VIAL_IMAGE_BYTES for the driver
		opts    ContextOptions
		code    string
		kept    int
		omitted int
	}{
		{"driver budget", "VIAL_IMAGE_BYTES=250", ContextOptions{}, "for s in (100, 100, 100, 10, 300): plt.figure_of(s)", 3, 2},
		{"at most 16", "", ContextOptions{}, "for s in range(20): plt.figure_of(10)", 16, 4},
		{"vial's budget", "", ContextOptions{ImageBytes: 150}, "for s in (100, 100, 10): plt.figure_of(s)", 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var env []string
			if tt.env != "" {
				env = append(env, tt.env)
			}
			h := startHost(t, hostArgv(t, Python), env...)
			dir := filepath.Join(h.cmd.Dir, "matplotlib")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, text := range map[string]string{"__init__.py": "", "pyplot.py": pyplot} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			opts := tt.opts
			opts.Language = Python
			c, err := NewContext(t.Context(), h, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res, err := c.Exec(t.Context(), ExecRequest{Code: "import matplotlib.pyplot as plt\n" + tt.code})
			if err != nil || res.Error != nil {
				t.Fatalf("%+v, %v", res.Error, err)
			}
			if len(res.Images) != tt.kept || res.ImagesOmitted != tt.omitted {
				t.Errorf("kept %d images, omitted %d; want %d, %d", len(res.Images), res.ImagesOmitted, tt.kept, tt.omitted)
			}
		})
	}
}
