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
