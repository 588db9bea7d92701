package runtime_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
)

// TestContextsInSandboxes runs the language contexts' drivers where they
// run in production, inside real sandboxes, under runc and runsc, from the
// built-in host image and from the stored python image (which has no
// node, so javascript runs from host only): state persists between calls,
// errors come back with their traceback, and files land in the workspace.
func TestContextsInSandboxes(t *testing.T) {
	testutil.RequireRoot(t)
	drivers := t.TempDir()
	if err := runtime.WriteDrivers(drivers); err != nil {
		t.Fatal(err)
	}
	type call struct{ code, value, stdout string }
	langs := []struct {
		lang     runtime.Language
		calls    []call
		failing  string // code that fails, with this text in the error
		errText  string
		needNode bool
	}{
		{runtime.Python, []call{{"x = 41\nwith open('/workspace/py.txt', 'w') as f:\n    f.write('from python')", "", ""}, {"x + 1", "42", ""}},
			"1/0", "ZeroDivisionError", false},
		{runtime.Bash, []call{{"X=41; echo -n from bash > /workspace/sh.txt", "", ""}, {"echo $((X+1))", "", "42\n"}},
			"exit 3", "", false},
		{runtime.JavaScript, []call{{"var x = 41; require('fs').writeFileSync('/workspace/js.txt', 'from node')", "", ""}, {"x + 1", "42", ""}},
			"null.f()", "TypeError", true},
	}
	stored := os.Getenv(testutil.ImageEnv)
	if stored == "" {
		stored = "python"
	}
	for _, im := range []string{"host", stored} {
		t.Run(im, func(t *testing.T) {
			for _, rt := range []string{"runc", "runsc"} {
				t.Run(rt, func(t *testing.T) {
					e := engine(t, rt)
					img := hostImage(t)
					if im != "host" {
						img = testutil.StoredImage(t)
					}
					if im != "host" {
						// The drivers' bind, the workspace, the code's
						// writes: none of it may change the shared image.
						defer func() {
							if d, _, err := rootfs.TreeDigest(img.Root); err != nil || d != img.Digest {
								t.Errorf("the shared image changed: digest %s (%v), stored as %s", d, err, img.Digest)
							}
						}()
					}
					for _, l := range langs {
						t.Run(string(l.lang), func(t *testing.T) {
							if l.needNode {
								if _, err := os.Stat(filepath.Join(img.Root, "usr/bin/node")); err != nil && im != "host" {
									t.Skipf("image %s has no node", im)
								}
								if im == "host" {
									if _, err := exec.LookPath("node"); err != nil {
										testutil.Require(t, false, "node is not installed on the host")
									}
								}
							}
							runContext(t, e, rt, img, drivers, l.lang, func(c *runtime.Context) {
								for i, cl := range l.calls {
									if i > 0 {
										// The health check between calls
										// leaves the session as it was.
										if err := c.Ping(t.Context()); err != nil {
											t.Fatalf("Ping: %v", err)
										}
									}
									res, err := c.Exec(t.Context(), runtime.ExecRequest{Code: cl.code})
									if err != nil {
										t.Fatalf("Exec(%q): %v", cl.code, err)
									}
									if res.Error != nil || res.ExitStatus != 0 || res.Value != cl.value || res.Stdout != cl.stdout {
										t.Fatalf("Exec(%q) = %+v (error %+v), want value %q stdout %q", cl.code, res, res.Error, cl.value, cl.stdout)
									}
								}
								res, err := c.Exec(t.Context(), runtime.ExecRequest{Code: l.failing})
								if err != nil {
									t.Fatalf("Exec(%q): %v", l.failing, err)
								}
								if res.ExitStatus == 0 || (l.errText != "" && (res.Error == nil || !strings.Contains(res.Error.Name+res.Error.Traceback, l.errText))) {
									t.Errorf("Exec(%q) = %+v (error %+v), want a failure naming %q", l.failing, res, res.Error, l.errText)
								}
							})
						})
					}
				})
			}
		})
	}
}

// runContext starts lang's driver in a sandbox from img, as vial serve
// does, hands f the context, and checks the file f's calls wrote.
func runContext(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image, drivers string, lang runtime.Language, f func(*runtime.Context)) {
	t.Helper()
	c := startContext(t, e, rt, img, drivers, lang, runtime.Limits{})
	defer c.Close()
	f(c)
	ents, _ := os.ReadDir(c.Workspace())
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".txt") {
		t.Errorf("workspace holds %v, want the one file the code wrote", ents)
	}
}

// startContext starts lang's driver in a sandbox from img with limits lim,
// as vial serve does (runtime.SandboxCommand, the drivers in drivers bound
// at DriverDir), and returns the context; the caller closes it.
func startContext(t *testing.T, e *runtime.Engine, rt string, img *rootfs.Image, drivers string, lang runtime.Language, lim runtime.Limits) *runtime.Context {
	t.Helper()
	return startContextWith(t, e, rt, drivers, lang, runtime.Request{Image: img, Limits: lim}, runtime.ContextOptions{})
}

// startContextWith is startContext with more of the sandbox's request
// (its Args and the drivers' bind are added) and the context's options.
func startContextWith(t *testing.T, e *runtime.Engine, rt string, drivers string, lang runtime.Language, req runtime.Request, opts runtime.ContextOptions) *runtime.Context {
	t.Helper()
	argv, err := runtime.SandboxCommand(lang, runtime.DriverDir)
	if err != nil {
		t.Fatal(err)
	}
	req.Args = argv
	req.Binds = append(req.Binds, rootfs.Bind{Source: drivers, Target: runtime.DriverDir})
	sb, err := e.Start(t.Context(), rt, req)
	if err != nil {
		t.Fatal(err)
	}
	opts.Language, opts.Workspace = lang, sb.Workspace
	c, err := runtime.NewContext(t.Context(), sb, opts)
	if err != nil {
		sb.Close()
		t.Fatal(err)
	}
	return c
}
