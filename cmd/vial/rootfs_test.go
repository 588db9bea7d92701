package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rootfsRun runs `vial rootfs ARGS` against stateDir and returns the exit
// code, stdout and stderr.
func rootfsRun(t *testing.T, stateDir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{StateDir: stateDir, Stdout: &out, Stderr: &errb}
	code := cmdRootfs(t.Context(), g, args)
	return code, out.String(), errb.String()
}

func writeTestRootfsTar(t *testing.T, p string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, body string
		typ        byte
	}{{"usr/", "", tar.TypeDir}, {"usr/bin/", "", tar.TypeDir}, {"usr/bin/sh", "#!", tar.TypeReg}, {"etc/", "", tar.TypeDir}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o755, Size: int64(len(e.body))})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRootfsCLI(t *testing.T) {
	state := t.TempDir()
	archive := filepath.Join(t.TempDir(), "tiny.tar")
	writeTestRootfsTar(t, archive)

	code, out, errs := rootfsRun(t, state, "import", archive, "--name", "tiny:1")
	if code != 0 || !strings.HasPrefix(out, "tiny:1 sha256:") || !strings.Contains(errs, "==> ") {
		t.Fatalf("import: code %d\nstdout %s\nstderr %s", code, out, errs)
	}
	digest := strings.Fields(out)[1]

	code, out, _ = rootfsRun(t, state, "ls")
	if code != 0 || !strings.Contains(out, "tiny:1") || !strings.Contains(out, "host") {
		t.Errorf("ls: code %d\n%s", code, out)
	}
	code, out, _ = rootfsRun(t, state, "ls", "--json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["digest"] != digest {
		t.Errorf("ls --json: code %d\n%s", code, out)
	}
	code, out, _ = rootfsRun(t, state, "inspect", "tiny:1")
	var info map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info["format"] != "tar" {
		t.Errorf("inspect: code %d\n%s", code, out)
	}

	code, _, errs = rootfsRun(t, state, "inspect", "python:3.11-slim")
	if code != 1 || !strings.Contains(errs, "rootfs build python --name python:3.11-slim") {
		t.Errorf("inspect missing: code %d\n%s", code, errs)
	}
	for _, args := range [][]string{{}, {"bogus"}, {"inspect"}, {"import"}, {"build"}, {"build", "python", "--packages", "bad name!"}, {"inspect", "Bad Name"}} {
		if code, _, _ := rootfsRun(t, state, args...); code != exitUsage {
			t.Errorf("vial rootfs %q: code %d, want %d", args, code, exitUsage)
		}
	}

	code, out, _ = rootfsRun(t, state, "rm", "tiny:1")
	if code != 0 || !strings.Contains(out, "removed tiny:1") {
		t.Errorf("rm: code %d\n%s", code, out)
	}
	code, out, _ = rootfsRun(t, state, "gc")
	if code != 0 || !strings.Contains(out, "freed") {
		t.Errorf("gc: code %d\n%s", code, out)
	}
	if code, _, _ := rootfsRun(t, state, "rm", "tiny:1"); code != 1 {
		t.Errorf("second rm: code %d, want 1", code)
	}
}

// TestRootfsBuildFromConfig checks what `vial rootfs build --env|--agent`
// decides before it builds anything (the builds themselves need root and
// a mirror; rootfs.TestBuildPython covers those).
func TestRootfsBuildFromConfig(t *testing.T) {
	state, cfg := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"host image", []string{"build", "--env", "minimal"}, "built-in host image"},
		{"unknown env", []string{"build", "--env", "nope"}, `environment "nope" not found`},
		{"env and agent", []string{"build", "--env", "minimal", "--agent", "x"}, "exclude each other"},
		{"unknown agent", []string{"build", "--agent", "ghost"}, `agent "ghost" not found`},
		{"bad extra package", []string{"build", "--env", "data-science", "--packages", "Not A Package!"}, "not Debian package names"},
		{"no recipe", []string{"build"}, "usage:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := rootfsRun(t, state, append(tc.args, "--config-dir", cfg)...)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Errorf("code %d, stderr:\n%s\nwant %q", code, errs, tc.want)
			}
		})
	}
	// An environment whose image names no recipe asks for one.
	writeEnv(t, cfg, "tools", "[sandbox.docker]\nimage = \"ghcr.io/acme/tools:2\"\npackages = [\"jq\"]\n")
	code, _, errs := rootfsRun(t, state, "build", "--env", "tools", "--config-dir", cfg)
	if code != exitUsage || !strings.Contains(errs, "vial rootfs build RECIPE --env tools") {
		t.Errorf("code %d, stderr:\n%s", code, errs)
	}
}

func writeEnv(t *testing.T, cfg, name, body string) {
	t.Helper()
	dir := filepath.Join(cfg, "config", "environments")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body = "[metadata]\nname = \"" + name + "\"\n\n" + body
	if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPythonVersionMismatch(t *testing.T) {
	for _, tc := range []struct{ name, recipe, want string }{
		{"python:3.11-slim", "python", ""},
		{"python:3.12-slim", "python", "not 3.12"},
		{"python", "python", ""},
		{"node:3.12", "node", ""},
		{"ghcr.io/x/ds:3.10", "data-science", "not 3.10"},
	} {
		if got := pythonVersionMismatch(tc.name, tc.recipe); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("pythonVersionMismatch(%q, %q) = %q, want %q", tc.name, tc.recipe, got, tc.want)
		}
	}
}

// TestResolveImageNames: names with a registry or a path in them go to the
// store, whose not-found error says how to get the image; relative
// directories are refused rather than guessed at.
func TestResolveImageNames(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct{ name, want string }{
		{"ghcr.io/x/y", "rootfs import FILE --name ghcr.io/x/y:latest"},
		{"python:3.11-slim", "vial --state-dir " + state + " rootfs build python --name python:3.11-slim"},
		{"docker.io/library/python:3.12", "rootfs build python --name python:3.12"},
		{"./rootfs", "must be given as an absolute path"},
	} {
		_, err := resolveImage(state, tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resolveImage(%q) = %v, want it to say %q", tc.name, err, tc.want)
		}
	}
	// A relative path that names a directory here is refused too.
	wd := t.TempDir()
	if err := os.MkdirAll(filepath.Join(wd, "images", "py"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(wd)
	if _, err := resolveImage(state, "images/py"); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("resolveImage of a relative directory: %v", err)
	}
}
