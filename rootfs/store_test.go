package rootfs

import (
	"archive/tar"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestImportFormats(t *testing.T) {
	plain := mkTar(t, baseRootfs()...)
	layer1 := mkTar(t, append(baseRootfs(), file("old", "x"), dir("opt/"), dir("opt/app/"), file("opt/app/stale", "x"))...)
	layer2 := mkTar(t, file(".wh.old", ""), file("opt/app/.wh..wh..opq", ""), file("opt/app/main.py", "print(1)\n"))
	ociDir := mkOCILayout(t, filepath.Join(t.TempDir(), "oci"), "3.12", []string{"PATH=/usr/bin", "LANG=C.UTF-8"}, gzipBytes(t, layer1), zstdBytes(t, layer2))
	wantLayered := []string{"bin -> usr/bin", "etc/", "etc/group", "etc/os-release", "etc/passwd", "etc/resolv.conf", "opt/", "opt/app/", "opt/app/main.py",
		"opt/vial/", "opt/vial/drivers/", "proc/", "sys/", "dev/", "tmp/", "usr/", "usr/bin/", "usr/bin/sh", "workspace/"}
	slices.Sort(wantLayered)
	wantPlain := []string{"bin -> usr/bin", "dev/", "etc/", "etc/group", "etc/os-release", "etc/passwd", "etc/resolv.conf", "opt/", "opt/vial/", "opt/vial/drivers/", "proc/", "sys/", "tmp/", "usr/", "usr/bin/", "usr/bin/sh", "workspace/"}

	src := t.TempDir()
	for _, tc := range []struct {
		name, file string
		data       []byte
		dir        string
		importAs   string
		wantName   string
		wantFormat string
		wantTree   []string
		wantEnv    []string
	}{
		{name: "tar", file: "rootfs.tar", data: plain, importAs: "plain", wantName: "plain:latest", wantFormat: "tar", wantTree: wantPlain},
		{name: "tar.gz", file: "my-image.tar.gz", data: gzipBytes(t, plain), wantName: "my-image:latest", wantFormat: "tar+gzip", wantTree: wantPlain},
		{name: "tar.zst", file: "x.tzst", data: zstdBytes(t, plain), importAs: "python:3.11-slim", wantName: "python:3.11-slim", wantFormat: "tar+zstd", wantTree: wantPlain},
		{name: "docker-save", file: "save.tar", data: mkDockerSave(t, "example/app:1.0", []string{"FOO=bar"}, layer1, layer2),
			wantName: "example/app:1.0", wantFormat: "docker-save", wantTree: wantLayered, wantEnv: []string{DefaultPath, "FOO=bar"}},
		{name: "docker-save-gz", file: "save.tar.gz", data: gzipBytes(t, mkDockerSave(t, "docker.io/library/app:2", nil, layer1, layer2)),
			wantName: "app:2", wantFormat: "docker-save+gzip", wantTree: wantLayered},
		{name: "oci-dir", dir: ociDir, wantName: "oci:3.12", wantFormat: "oci-layout", wantTree: wantLayered, wantEnv: []string{"PATH=/usr/bin", "LANG=C.UTF-8"}},
		{name: "oci-tar", file: "py.oci.tar", data: tarDir(t, ociDir), wantName: "py.oci:3.12", wantFormat: "oci-layout", wantTree: wantLayered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			p := tc.dir
			if p == "" {
				p = writeFile(t, filepath.Join(src, tc.file), tc.data)
			}
			info, err := s.ImportInfo(t.Context(), p, tc.importAs)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if info.Name != tc.wantName || info.Format != tc.wantFormat {
				t.Errorf("name, format = %q, %q; want %q, %q", info.Name, info.Format, tc.wantName, tc.wantFormat)
			}
			if d := cmp.Diff(tc.wantTree, tree(t, info.Root)); d != "" {
				t.Errorf("tree (-want +got):\n%s", d)
			}
			img, err := s.Resolve(tc.wantName)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if img.Root != info.Root || img.Digest != info.Digest || !strings.HasPrefix(img.Digest, "sha256:") {
				t.Errorf("Resolve = %+v, want root %s digest %s", img, info.Root, info.Digest)
			}
			if tc.wantEnv != nil {
				if d := cmp.Diff(tc.wantEnv, img.Env); d != "" {
					t.Errorf("env (-want +got):\n%s", d)
				}
			}
			b, _ := os.ReadFile(filepath.Join(img.Root, "etc/passwd"))
			if !strings.Contains(string(b), ":65534:") {
				t.Errorf("etc/passwd has no uid 65534:\n%s", b)
			}
			if fi, _ := os.Stat(filepath.Join(img.Root, "tmp")); fi == nil || fi.Mode()&os.ModeSticky == 0 {
				t.Errorf("tmp is not sticky: %v", fi)
			}
		})
	}
}

// TestDigestIndependentOfFormat imports the same tree as tar, gzip, zstd
// and a directory and expects one digest and one stored copy.
func TestDigestIndependentOfFormat(t *testing.T) {
	s := openStore(t)
	plain := mkTar(t, baseRootfs()...)
	src := t.TempDir()
	dirSrc := filepath.Join(src, "dir")
	os.Mkdir(dirSrc, 0o755)
	if _, err := Unpack(t.Context(), strings.NewReader(string(plain)), dirSrc, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for i, p := range []string{
		writeFile(t, filepath.Join(src, "a.tar"), plain),
		writeFile(t, filepath.Join(src, "b.tar.gz"), gzipBytes(t, plain)),
		writeFile(t, filepath.Join(src, "c.tar.zst"), zstdBytes(t, plain)),
		dirSrc,
	} {
		info, err := s.ImportInfo(t.Context(), p, "img"+string(rune('a'+i)))
		if err != nil {
			t.Fatalf("import %s: %v", p, err)
		}
		digests = append(digests, info.Digest)
	}
	if digests[0] != digests[1] || digests[1] != digests[2] || digests[2] != digests[3] {
		t.Errorf("digests differ: %v", digests)
	}
	all, _ := s.digests()
	if len(all) != 1 {
		t.Errorf("stored %d trees, want 1", len(all))
	}
	info, _ := s.Inspect("imga")
	if d := cmp.Diff([]string{"imga:latest", "imgb:latest", "imgc:latest", "imgd:latest"}, info.Names); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}
}

func TestTreeDigest(t *testing.T) {
	root := t.TempDir()
	if _, err := Unpack(t.Context(), strings.NewReader(string(mkTar(t, baseRootfs()...))), root, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	d1, st, err := TreeDigest(root)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 8 || st.Size == 0 {
		t.Errorf("stats = %+v", st)
	}
	old := time.Unix(1, 0)
	os.Chtimes(filepath.Join(root, "etc/passwd"), old, old)
	if d2, _, _ := TreeDigest(root); d2 != d1 {
		t.Errorf("mtime changed the digest")
	}
	os.Chmod(filepath.Join(root, "etc/passwd"), 0o600)
	d3, _, _ := TreeDigest(root)
	if d3 == d1 {
		t.Errorf("mode change kept the digest")
	}
	os.Chmod(filepath.Join(root, "etc/passwd"), 0o644)
	os.Remove(filepath.Join(root, "bin"))
	os.Symlink("usr/sbin", filepath.Join(root, "bin"))
	if d4, _, _ := TreeDigest(root); d4 == d1 {
		t.Errorf("symlink target change kept the digest")
	}
}

func TestResolveMissing(t *testing.T) {
	s := openStore(t)
	for _, tc := range []struct{ name, want string }{
		{"python:3.11-slim", `"vial --state-dir ` + filepath.Dir(s.Dir()) + ` rootfs build python --name python:3.11-slim"`},
		{"python", `rootfs build python" or`},
		{"data-science", `rootfs build data-science"`},
		{"node:20", `rootfs build node --name node:20"`},
		{"acme/tool:1", `"vial --state-dir ` + filepath.Dir(s.Dir()) + ` rootfs import FILE --name acme/tool:1"`},
	} {
		_, err := s.Resolve(tc.name)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Resolve(%q) = %v, want ErrNotFound", tc.name, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%q) error %q does not contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := s.Resolve("Bad Name"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := s.Resolve("sha256:" + strings.Repeat("a", 64)); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing digest: %v", err)
	}
	if _, err := s.Resolve("relative/dir/../x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative path: %v", err)
	}
}

func TestResolveByDigest(t *testing.T) {
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "a.tar"), mkTar(t, baseRootfs()...))
	img, err := s.Import(t.Context(), p, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{img.Digest, img.Digest[:19]} {
		got, err := s.Resolve(ref)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", ref, err)
		}
		if got.Root != img.Root {
			t.Errorf("Resolve(%s).Root = %s, want %s", ref, got.Root, img.Root)
		}
	}
	if _, err := s.Resolve("sha256:abc"); !errors.Is(err, ErrInvalid) {
		t.Errorf("short prefix: %v", err)
	}
}

func TestRemoveAndGC(t *testing.T) {
	s := openStore(t)
	src := t.TempDir()
	a := writeFile(t, filepath.Join(src, "a.tar"), mkTar(t, baseRootfs()...))
	b := writeFile(t, filepath.Join(src, "b.tar"), mkTar(t, append(baseRootfs(), file("extra", "x"))...))
	ia, err := s.Import(t.Context(), a, "one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(t.Context(), a, "two"); err != nil {
		t.Fatal(err)
	}
	ib, err := s.Import(t.Context(), b, "three")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("one", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ia.Root); err != nil {
		t.Fatalf("content removed while still named: %v", err)
	}
	if err := s.Remove("two:latest", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ia.Root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("content kept after its last name went: %v", err)
	}
	if err := s.Remove("two", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}

	// Leftovers gc must clean: an unnamed tree, an abandoned import; and
	// one it must not: an import still running (its lock held).
	orphan := filepath.Join(s.Dir(), "sha256", strings.Repeat("b", 64))
	writeFile(t, filepath.Join(orphan, "rootfs", "f"), []byte("x"))
	writeFile(t, filepath.Join(orphan, "image.json"), []byte(`{"size":1}`))
	abandoned := filepath.Join(s.Dir(), "tmp", "dead")
	writeFile(t, filepath.Join(abandoned, ".lock"), nil)
	live, err := s.newStaging()
	if err != nil {
		t.Fatal(err)
	}
	defer live.discard()

	res, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"sha256:" + strings.Repeat("b", 64)}, res.Removed); d != "" || res.Staging != 1 {
		t.Errorf("GC = %+v (-want +got removed: %s)", res, d)
	}
	for p, want := range map[string]bool{orphan: false, abandoned: false, live.dir: true, ib.Root: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", p, err == nil, want)
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "three:latest" {
		t.Errorf("List = %+v", list)
	}
	if err := s.Remove(ib.Digest, false); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("List after removing by digest = %+v", list)
	}
}

// TestConcurrentImports imports the same content under several names at
// once: every import succeeds and the tree is stored once.
func TestConcurrentImports(t *testing.T) {
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "a.tar.gz"), gzipBytes(t, mkTar(t, baseRootfs()...)))
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			// A separate Store per goroutine, as separate processes would have.
			s2, err := OpenStore(filepath.Dir(s.Dir()))
			if err == nil {
				_, err = s2.Import(t.Context(), p, "img"+string(rune('a'+i)))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, _ := s.List()
	if len(list) != 6 {
		t.Errorf("List has %d names, want 6", len(list))
	}
	if all, _ := s.digests(); len(all) != 1 {
		t.Errorf("stored %d trees, want 1", len(all))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not cleaned: %v", ents)
	}
}

func TestImportDirectory(t *testing.T) {
	s := openStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "usr/bin/python3"), []byte("#!py"))
	os.Chmod(filepath.Join(src, "usr/bin/python3"), 0o755|os.ModeSetuid)
	os.Link(filepath.Join(src, "usr/bin/python3"), filepath.Join(src, "usr/bin/python3.11"))
	os.Symlink("usr/bin", filepath.Join(src, "bin"))
	os.Symlink("/etc/shadow", filepath.Join(src, "shadow-link"))
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := s.ImportInfo(t.Context(), src, "fromdir")
	if err != nil {
		t.Fatal(err)
	}
	if info.Unpack.SkippedDevices != 1 || info.Unpack.DroppedSetID != 1 {
		t.Errorf("unpack stats = %+v, want one FIFO skipped and one setuid dropped", info.Unpack)
	}
	a, _ := os.Stat(filepath.Join(info.Root, "usr/bin/python3"))
	b, _ := os.Stat(filepath.Join(info.Root, "usr/bin/python3.11"))
	if !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
	if a.Mode()&os.ModeSetuid != 0 {
		t.Error("setuid kept")
	}
	if l, _ := os.Readlink(filepath.Join(info.Root, "shadow-link")); l != "/etc/shadow" {
		t.Errorf("symlink = %q", l)
	}
	if fi, _ := os.Stat(filepath.Join(filepath.Dir(info.Root), "image.json")); fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("image.json mode %v is writable", fi.Mode())
	}
}

func TestImportErrors(t *testing.T) {
	s := openStore(t)
	src := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(src, "nope.tar"), os.ErrNotExist},
		{"not-tar", writeFile(t, filepath.Join(src, "junk.tar"), []byte("this is not a tar archive at all, not even close..........")), ErrInvalid},
		{"empty", writeFile(t, filepath.Join(src, "empty.tar"), mkTar(t)), ErrInvalid},
		{"hostile", writeFile(t, filepath.Join(src, "evil.tar"), mkTar(t, file("../../evil", "x"))), ErrUnsafe},
		{"bad-oci-digest", func() string {
			d := mkOCILayout(t, filepath.Join(src, "oci"), "1", nil, mkTar(t, baseRootfs()...))
			blobs, _ := filepath.Glob(filepath.Join(d, "blobs/sha256/*"))
			for _, b := range blobs {
				if data, _ := os.ReadFile(b); len(data) > 1000 { // the layer
					data[600] ^= 1
					os.WriteFile(b, data, 0o644)
				}
			}
			return d
		}(), errAny},
		{"docker-save-escaping-layer", writeFile(t, filepath.Join(src, "ds.tar"), mkTar(t,
			file("manifest.json", `[{"Config":"","RepoTags":["x:1"],"Layers":["../../../etc/passwd"]}]`))), errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Import(t.Context(), tc.path, "x")
			if err == nil || (tc.want != errAny && !errors.Is(err, tc.want)) {
				t.Fatalf("Import = %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("failed imports left %d staging dirs", len(ents))
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("failed imports stored %v", list)
	}
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"python", "python:latest"},
		{"python:3.11-slim", "python:3.11-slim"},
		{"docker.io/library/python:3.12", "python:3.12"},
		{"docker.io/acme/tool", "acme/tool:latest"},
		{"ghcr.io/acme/tool:v1.2", "ghcr.io/acme/tool:v1.2"},
		{"localhost:5000/x", "localhost:5000/x:latest"},
		{"data-science", "data-science:latest"},
		{"host", ""}, {"host:1", ""}, {"", ""}, {"Python", ""}, {"a/../b", ""}, {"x:", ""},
		{"x@sha256:abc", ""}, {"a b", ""}, {"sha256", ""}, {"-x", ""}, {"x:" + strings.Repeat("t", 129), ""},
	} {
		got, err := NormalizeName(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestDebianPackages(t *testing.T) {
	debs, unmapped := DebianPackages([]string{"numpy", "pandas==2.1", "Pillow>=10", "scikit_learn", "git", "python3-yaml", "numpy", "bad name!", "requests[socks]"})
	if d := cmp.Diff([]string{"python3-numpy", "python3-pandas", "python3-pil", "python3-sklearn", "git", "python3-yaml", "python3-requests"}, debs); d != "" {
		t.Errorf("debs (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"bad name!"}, unmapped); d != "" {
		t.Errorf("unmapped (-want +got):\n%s", d)
	}
}

func TestRecipeFor(t *testing.T) {
	for in, want := range map[string]string{"python:3.11-slim": "python", "python-dev": "python", "node-dev": "node",
		"node:20": "node", "data-science": "data-science", "minimal": "minimal", "acme/x": "", "library/python": "python"} {
		if got := RecipeFor(in); got != want {
			t.Errorf("RecipeFor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBuildScriptEmbedded checks the embedded build script through its
// command-line entry point scripts/build-rootfs.sh: its recipe list equals
// Recipes() and it refuses hostile package lists.
func TestBuildScriptEmbedded(t *testing.T) {
	if len(buildScript) == 0 {
		t.Fatal("build script not embedded")
	}
	out, err := exec.Command("bash", "../scripts/build-rootfs.sh", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, Recipes()) {
		t.Errorf("script recipes %v, Recipes() %v", got, Recipes())
	}
	if err := exec.Command("bash", "-n", "../scripts/build-rootfs.sh").Run(); err != nil {
		t.Errorf("bash -n: %v", err)
	}
	// Package lists cannot smuggle options or patterns into mmdebstrap.
	cmd := exec.Command("bash", "../scripts/build-rootfs.sh", "--packages", "git,--mode=sudo", "python", t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "want comma separated Debian package names") {
		t.Errorf("hostile --packages accepted: %v %s", err, out)
	}
}

// TestTarHeaderTypes makes sure the tar helpers produce what they claim,
// so the hostile corpus really is hostile.
func TestTarHeaderTypes(t *testing.T) {
	tr := tar.NewReader(strings.NewReader(string(mkTar(t, symlink("a", "/"), hardlink("b", "../x"), file("../c", "")))))
	var got []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got = append(got, string(h.Typeflag)+" "+h.Name+" "+h.Linkname)
	}
	if d := cmp.Diff([]string{"2 a /", "1 b ../x", "0 ../c "}, got); d != "" {
		t.Error(d)
	}
}
