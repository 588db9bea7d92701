package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireRootBuild skips unless the test can build images for real (root,
// mmdebstrap, chroot); under CI=true a missing requirement fails instead,
// so a broken CI setup cannot hide behind a skip.
func requireRootBuild(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"mmdebstrap", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "building images needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
}

// TestBuildPython builds the python image with mmdebstrap, stores it and
// runs python3 from it as nobody. It downloads ~30 MB from the Debian
// mirror and takes ~30-60 s; -short skips it.
func TestBuildPython(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building an image")
	}
	requireRootBuild(t)
	s := openStore(t)
	var out strings.Builder
	info, err := s.Build(t.Context(), BuildOptions{Recipe: "python", Output: &out})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.String())
	}
	t.Logf("python: %s, %s, %d entries", info.Digest, HumanSize(info.Size), info.Entries)
	if !strings.Contains(out.String(), "==> [1/3] mmdebstrap") || !strings.Contains(out.String(), "==> built python:latest") {
		t.Errorf("no progress lines in the output:\n%s", out.String())
	}
	img, err := s.Resolve("python")
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range append(MountPoints, "etc/passwd") {
		if _, err := os.Lstat(filepath.Join(img.Root, mp)); err != nil {
			t.Errorf("image lacks /%s: %v", mp, err)
		}
	}
	cmd := exec.Command("chroot", "--userspec=65534:65534", img.Root, "/usr/bin/python3", "-c",
		"import ctypes, json, sqlite3, ssl, pwd; print(pwd.getpwuid(65534).pw_name)")
	cmd.Env = img.Env
	b, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "nobody" {
		t.Fatalf("python3 in the image: %v\n%s", err, b)
	}
	if info.Size > 150_000_000 {
		t.Errorf("python image is %s, want it small (< 150 MB)", HumanSize(info.Size))
	}
}
