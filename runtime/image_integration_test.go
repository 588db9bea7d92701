package runtime_test

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
)

// fixtureTar writes a small root filesystem as a .tar.gz, the way a user's
// own tooling would hand vial one: busybox (static) for the shell and
// tools, and the host's python3 with exactly the libraries ldd names and
// the pure-Python part of its standard library. Nothing from the host's
// /etc goes in; passwd and group are written here.
func fixtureTar(t *testing.T) string {
	t.Helper()
	busybox := testutil.RequireBinary(t, "busybox")
	py, err := filepath.EvalSymlinks("/usr/bin/python3")
	testutil.Require(t, err == nil, "the host has no /usr/bin/python3 to copy into the fixture image")
	ver := regexp.MustCompile(`python3\.[0-9]+$`).FindString(py)
	testutil.Require(t, ver != "", "cannot tell the version of "+py)

	p := filepath.Join(t.TempDir(), "fixture-python.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	seen := map[string]bool{}
	add := func(hdr *tar.Header, body io.Reader) {
		t.Helper()
		if seen[hdr.Name] {
			return
		}
		seen[hdr.Name] = true
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := func(name string) {
		var parts []string
		for _, c := range strings.Split(name, "/") {
			parts = append(parts, c)
			add(&tar.Header{Name: strings.Join(parts, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
	}
	file := func(name, src string) {
		t.Helper()
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		dir(filepath.Dir(name))
		r, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: fi.Size()}, r)
	}
	symlink := func(name, target string) {
		dir(filepath.Dir(name))
		add(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}, nil)
	}
	text := func(name, body string) {
		dir(filepath.Dir(name))
		add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, strings.NewReader(body))
	}
	// A merged-/usr layout, as Debian has it.
	dir("usr/bin")
	dir("usr/lib")
	dir("usr/lib64")
	symlink("bin", "usr/bin")
	symlink("lib", "usr/lib")
	symlink("lib64", "usr/lib64")
	file("usr/bin/busybox", busybox)
	for _, applet := range []string{"sh", "ls", "cat", "echo", "sleep", "touch", "id", "test"} {
		symlink("usr/bin/"+applet, "busybox")
	}
	file("usr/bin/"+ver, py)
	symlink("usr/bin/python3", ver)
	// The libraries the dynamic loader will look for, at the paths it
	// will look for them (ldd's), with the content of the real files.
	for _, bin := range []string{py, busybox} {
		out, _ := exec.Command("ldd", bin).Output() // static: "not a dynamic executable"
		for _, lib := range regexp.MustCompile(`(/[^\s]+) \(0x`).FindAllStringSubmatch(string(out), -1) {
			real, err := filepath.EvalSymlinks(lib[1])
			if err != nil {
				t.Fatal(err)
			}
			inImage := strings.TrimPrefix(lib[1], "/")
			for _, top := range []string{"lib/", "lib64/"} {
				if strings.HasPrefix(inImage, top) {
					inImage = "usr/" + inImage
				}
			}
			file(inImage, real)
		}
	}
	stdlib := "/usr/lib/" + ver
	skip := map[string]bool{"test": true, "tests": true, "idlelib": true, "tkinter": true, "turtledemo": true,
		"ensurepip": true, "lib2to3": true, "pydoc_data": true, "__pycache__": true, "site-packages": true, "dist-packages": true}
	err = filepath.WalkDir(stdlib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip[d.Name()] || strings.HasPrefix(d.Name(), "config-") {
			return filepath.SkipDir
		}
		name := strings.TrimPrefix(p, "/")
		switch {
		case d.IsDir():
			dir(name)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			symlink(name, target)
		case d.Type().IsRegular() && (strings.HasSuffix(name, ".py") || strings.HasSuffix(name, ".so")):
			file(name, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
	text("etc/group", "root:x:0:\nnogroup:x:65534:\n")
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// writerScript runs in sandbox A: it writes where a sandbox may (/tmp,
// /workspace) and tries where it must not (the image), reports, and waits.
const writerScript = `
import sys
for p in ['/tmp/mark', '/workspace/mark']:
    with open(p, 'w') as f:
        f.write('from A')
v = '%d.%d' % sys.version_info[:2]
for p in ['/leak', '/etc/leak', '/usr/leak', '/usr/bin/python3', '/usr/lib/python' + v + '/os.py']:
    try:
        with open(p, 'a') as f:
            f.write('leaked')
        print('WROTE', p)
    except OSError as e:
        print('refused', p, e.strerror)
print('ready', sys.version.split()[0], flush=True)
sys.stdin.readline()
`

// readerScript runs in sandbox B while A lives: none of A's files may be
// visible.
const readerScript = `
import os, sys
seen = [p for p in ['/tmp/mark', '/workspace/mark', '/leak', '/etc/leak', '/usr/leak'] if os.path.exists(p)]
print('seen', seen, 'python', sys.version.split()[0])
`

// TestImportedTarballIsSharedReadOnly imports a tarball the test makes
// itself, runs python3 from it under runc and runsc, and checks that a
// sandbox's writes land only in its own writable places: never in the
// shared image (whose digest is recomputed afterwards) and never in
// another sandbox running from the same image at the same time. While a
// sandbox runs, the store refuses to remove the image.
func TestImportedTarballIsSharedReadOnly(t *testing.T) {
	testutil.RequireRoot(t)
	archive := fixtureTar(t)
	st, err := rootfs.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Import(t.Context(), archive, "fixture-python:1")
	if err != nil {
		t.Fatalf("importing the fixture tarball: %v", err)
	}
	// Bound as contexts bind their drivers: a runtime creates a missing
	// mount target inside the root, so this checks the image has it.
	drivers := t.TempDir()
	binds := []rootfs.Bind{{Source: drivers, Target: runtime.DriverDir}}
	for _, rt := range []string{"runc", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			e := engine(t, rt)
			a, err := e.Start(t.Context(), rt, runtime.Request{Image: img, Binds: binds, Args: []string{"python3", "-c", writerScript}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			var report []string
			lines := bufio.NewScanner(a.Stdout())
			done := make(chan struct{})
			go func() {
				defer close(done)
				for lines.Scan() {
					report = append(report, lines.Text())
					if strings.HasPrefix(lines.Text(), "ready") {
						return
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("sandbox A never got ready")
			}
			if len(report) == 0 || !strings.HasPrefix(report[len(report)-1], "ready 3.") {
				stderr, _ := io.ReadAll(io.LimitReader(a.Stderr(), 4096))
				t.Fatalf("python3 from the imported image: %q, stderr %s", report, stderr)
			}
			t.Logf("sandbox A: %q", report)
			for _, l := range report[:len(report)-1] {
				if !strings.HasPrefix(l, "refused ") || strings.Contains(l, "No such file") {
					t.Errorf("sandbox A: %s", l)
				}
			}
			if got, err := os.ReadFile(filepath.Join(a.Workspace, "mark")); err != nil || string(got) != "from A" {
				t.Errorf("A's workspace file: %q, %v", got, err)
			}

			// B, from the same image at the same time, sees none of it.
			o := run(t, e, rt, runtime.Request{Image: img, Binds: binds, Args: []string{"python3", "-c", readerScript}})
			t.Logf("sandbox B: %q", o.stdout)
			if o.res.ExitCode != 0 || !strings.HasPrefix(o.stdout, "seen [] python 3.") {
				t.Errorf("sandbox B: exit %d, stdout %q, stderr %q", o.res.ExitCode, o.stdout, o.stderr)
			}

			// The image is in use: rm refuses, and says so.
			if info, err := st.Inspect("fixture-python:1"); err != nil || info.InUse != 1 {
				t.Errorf("Inspect while A runs: %+v, %v; want in use by 1", info, err)
			}
			if err := st.Remove("fixture-python:1", false); !errors.Is(err, rootfs.ErrInUse) {
				t.Errorf("Remove while A runs: %v, want ErrInUse", err)
			}
			fmt.Fprintln(a.Stdin())
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if info, err := st.Inspect("fixture-python:1"); err != nil || info.InUse != 0 {
				t.Errorf("Inspect after A ended: %+v, %v; want in use by 0", info, err)
			}
		})
	}
	// Nothing any sandbox did changed a byte of the shared tree.
	digest, _, err := rootfs.TreeDigest(img.Root)
	if err != nil {
		t.Fatal(err)
	}
	if digest != img.Digest {
		t.Errorf("the shared image changed: digest %s, stored as %s", digest, img.Digest)
	}
	if err := st.Remove("fixture-python:1", false); err != nil {
		t.Errorf("Remove after every sandbox ended: %v", err)
	}
}
