package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/hostile from hostileCases")

// hostileCase is one archive of the hostile corpus and what unpacking it
// must give. Every case also gets the universal check: nothing outside
// the target changed.
type hostileCase struct {
	name    string
	ents    []ent
	limits  Limits
	wantErr error    // nil: success; errAny: some error
	want    []string // the tree after unpacking (nil: not checked)
	check   func(t *testing.T, root string)
}

var errAny = errors.New("any error")

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "dotdot", ents: []ent{file("../evil", "x")}, wantErr: ErrUnsafe},
		{name: "dotdot-nested", ents: []ent{dir("a/"), file("a/../../evil", "x")}, wantErr: ErrUnsafe},
		{name: "dotdot-deep", ents: []ent{file("a/b/../../../../../../../../tmp/evil", "x")}, wantErr: ErrUnsafe},
		{name: "dotdot-inside", ents: []ent{file("a/b/../c", "x")}, want: []string{"a/", "a/c"}},
		{name: "absolute", ents: []ent{file("/etc/evil", "x"), file("//twice", "y")},
			want: []string{"etc/", "etc/evil", "twice"}},
		{name: "symlink-out-abs-then-write", ents: []ent{symlink("escape", "/"), file("escape/outside/secret", "pwned"), file("escape/etc/passwd", "pwned")},
			want: []string{"escape -> /", "etc/", "etc/passwd", "outside/", "outside/secret"}},
		{name: "symlink-out-rel-then-write", ents: []ent{symlink("escape", "../outside"), file("escape/secret", "pwned")},
			want: []string{"escape -> ../outside", "outside/", "outside/secret"}},
		{name: "symlink-chain-out", ents: []ent{symlink("a", "b"), symlink("b", "c/../../../.."), file("a/outside/secret", "pwned")},
			want: []string{"a -> b", "b -> c/../../../..", "outside/", "outside/secret"}},
		{name: "symlink-dir-then-dir-entry", ents: []ent{symlink("d", "../outside"), dir("d/"), file("d/secret", "pwned")},
			want: []string{"d/", "d/secret"}},
		{name: "symlink-replaced-by-file", ents: []ent{symlink("x", "../outside/secret"), file("x", "mine")},
			want: []string{"x"}},
		{name: "symlink-loop", ents: []ent{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")}, wantErr: ErrUnsafe},
		{name: "hardlink-outside-dotdot", ents: []ent{hardlink("hl", "../outside/secret")}, wantErr: ErrUnsafe},
		{name: "hardlink-outside-abs", ents: []ent{hardlink("hl", "/outside/secret")}, wantErr: errAny},
		{name: "hardlink-through-symlink", ents: []ent{symlink("s", "../outside"), hardlink("hl", "s/secret")}, wantErr: errAny},
		{name: "hardlink-to-symlink-out", ents: []ent{symlink("s", "../outside/secret"), hardlink("hl", "s"), file("hl", "pwned")},
			want: []string{"hl", "s -> ../outside/secret"}},
		{name: "hardlink-inside", ents: []ent{file("a", "data"), hardlink("b", "a")}, want: []string{"a", "b"},
			check: func(t *testing.T, root string) {
				a, _ := os.Stat(filepath.Join(root, "a"))
				b, _ := os.Stat(filepath.Join(root, "b"))
				if !os.SameFile(a, b) {
					t.Error("b is not a hard link to a")
				}
			}},
		{name: "hardlink-dir", ents: []ent{dir("d/"), hardlink("hl", "d")}, wantErr: ErrUnsafe},
		{name: "devices", ents: []ent{
			{name: "dev/mem", typ: tar.TypeChar, mode: 0o666}, {name: "sda", typ: tar.TypeBlock, mode: 0o666},
			{name: "fifo", typ: tar.TypeFifo, mode: 0o666}, file("ok", "x")},
			want: []string{"ok"}},
		{name: "setuid", ents: []ent{{name: "su", body: "x", mode: 0o4755}, {name: "sg", body: "x", mode: 0o2755}, {name: "sticky/", typ: tar.TypeDir, mode: 0o1777}},
			want: []string{"sg", "sticky/", "su"},
			check: func(t *testing.T, root string) {
				for n, want := range map[string]fs.FileMode{"su": 0o755, "sg": 0o755, "sticky": fs.ModeDir | fs.ModeSticky | 0o777} {
					fi, err := os.Lstat(filepath.Join(root, n))
					if err != nil {
						t.Fatal(err)
					}
					if fi.Mode() != want {
						t.Errorf("%s: mode %v, want %v", n, fi.Mode(), want)
					}
				}
			}},
		{name: "huge-file", ents: []ent{{name: "big", body: "", size: 5 << 30, mode: 0o644}}, wantErr: ErrLimit},
		{name: "over-file-limit", ents: []ent{file("big", strings.Repeat("x", 2048))}, limits: Limits{MaxFileSize: 1024}, wantErr: ErrLimit},
		{name: "over-total-limit", ents: []ent{file("a", strings.Repeat("x", 600)), file("b", strings.Repeat("x", 600))},
			limits: Limits{MaxTotalSize: 1000}, wantErr: ErrLimit},
		{name: "too-many-entries", ents: manyFiles(50), limits: Limits{MaxEntries: 20}, wantErr: ErrLimit},
		{name: "truncated", ents: []ent{{name: "short", body: "abc", size: 10, mode: 0o644}}, wantErr: errAny},
		{name: "collision-file-dir-file", ents: []ent{file("a", "1"), dir("a/"), file("a/b", "2"), file("c", "1"), file("c", "2")},
			want: []string{"a/", "a/b", "c"},
			check: func(t *testing.T, root string) {
				if b, _ := os.ReadFile(filepath.Join(root, "c")); string(b) != "2" {
					t.Errorf("c = %q, want the later entry's 2", b)
				}
			}},
		{name: "collision-dir-replaced-by-file", ents: []ent{dir("d/"), file("d/x", "1"), file("d", "file")}, want: []string{"d"}},
		{name: "collision-dir-over-dir-merges", ents: []ent{dir("d/"), file("d/x", "1"), {name: "d/", typ: tar.TypeDir, mode: 0o700}, file("d/y", "2")},
			want: []string{"d/", "d/x", "d/y"}},
		{name: "parent-is-file", ents: []ent{file("f", "x"), file("f/x", "y")}, wantErr: errAny},
		{name: "root-as-file", ents: []ent{file("a/..", "x")}, wantErr: ErrUnsafe},
		{name: "root-as-symlink", ents: []ent{symlink(".", "/")}, wantErr: ErrUnsafe},
		{name: "readonly-dir-then-child", ents: []ent{{name: "ro/", typ: tar.TypeDir, mode: 0o555}, file("ro/x", "1")}, want: []string{"ro/", "ro/x"}},
		{name: "root-entry", ents: []ent{{name: "./", typ: tar.TypeDir, mode: 0o755}, file("./a", "x")}, want: []string{"a"}},
		{name: "chmod-through-symlink", ents: []ent{symlink("s", "../outside/secret"), {name: "s", typ: tar.TypeDir, mode: 0o777}},
			want: []string{"s/"}},
	}
}

func manyFiles(n int) []ent {
	var out []ent
	for i := range n {
		out = append(out, file("f"+string(rune('a'+i%26))+strings.Repeat("x", i/26), ""))
	}
	return out
}

// sandboxDirs makes base/root (the target) and base/outside (a secret the
// archive must not reach) and returns them.
func sandboxDirs(t testing.TB) (base, root string) {
	base = t.TempDir()
	root = filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(base, "outside", "secret"), []byte("secret"))
	return base, root
}

// checkNothingOutside fails unless everything under base except root is
// exactly as before.
func checkNothingOutside(t testing.TB, base, root string, before map[string]string) {
	t.Helper()
	after := snapshot(t, base)
	for p := range after {
		if p == root || strings.HasPrefix(p, root+"/") {
			delete(after, p)
		}
	}
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("unpack changed things outside its root (-before +after):\n%s", d)
	}
}

func outsideSnapshot(t testing.TB, base, root string) map[string]string {
	s := snapshot(t, base)
	for p := range s {
		if p == root || strings.HasPrefix(p, root+"/") {
			delete(s, p)
		}
	}
	return s
}

func TestUnpackHostile(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			base, root := sandboxDirs(t)
			before := outsideSnapshot(t, base, root)
			arch := mkTar(t, tc.ents...)
			_, err := Unpack(t.Context(), bytes.NewReader(arch), root, UnpackOptions{Limits: tc.limits, Whiteouts: true})
			checkNothingOutside(t, base, root, before)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Unpack: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Unpack error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				t.Logf("refused as expected: %v", err)
				return
			}
			if tc.want != nil {
				if d := cmp.Diff(tc.want, tree(t, root)); d != "" {
					t.Errorf("tree (-want +got):\n%s", d)
				}
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

// TestHostileCorpus unpacks the archives stored under testdata/hostile
// (written by -update from hostileCases) and checks the universal
// property on each; the same files seed FuzzUnpackRaw.
func TestHostileCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "hostile")
	if *update {
		os.RemoveAll(dir)
		for _, tc := range hostileCases() {
			writeFile(t, filepath.Join(dir, tc.name+".tar"), mkTar(t, tc.ents...))
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	if len(files) < len(hostileCases()) {
		t.Fatalf("testdata/hostile has %d archives, want %d; run go test ./rootfs -run TestHostileCorpus -update", len(files), len(hostileCases()))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			base, root := sandboxDirs(t)
			before := outsideSnapshot(t, base, root)
			Unpack(t.Context(), bytes.NewReader(b), root, UnpackOptions{Whiteouts: true, Limits: Limits{MaxEntries: 20, MaxFileSize: 1024, MaxTotalSize: 1000}})
			checkNothingOutside(t, base, root, before)
		})
	}
}

func TestUnpackCompressed(t *testing.T) {
	plain := mkTar(t, baseRootfs()...)
	for name, b := range map[string][]byte{"tar": plain, "gzip": gzipBytes(t, plain), "zstd": zstdBytes(t, plain)} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			st, err := Unpack(t.Context(), bytes.NewReader(b), root, UnpackOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 3 {
				t.Errorf("Files = %d, want 3", st.Files)
			}
			want := []string{"bin -> usr/bin", "etc/", "etc/os-release", "etc/passwd", "usr/", "usr/bin/", "usr/bin/sh"}
			if d := cmp.Diff(want, tree(t, root)); d != "" {
				t.Errorf("tree (-want +got):\n%s", d)
			}
		})
	}
	t.Run("xz", func(t *testing.T) {
		_, err := Unpack(t.Context(), bytes.NewReader([]byte{0xfd, '7', 'z', 'X', 'Z', 0}), t.TempDir(), UnpackOptions{})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("xz: err = %v, want ErrInvalid", err)
		}
	})
}

func TestUnpackWhiteouts(t *testing.T) {
	root := t.TempDir()
	u, err := newUnpacker(root, UnpackOptions{Whiteouts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	layers := [][]ent{
		{dir("a/"), file("a/1", "x"), file("a/2", "x"), dir("b/"), file("b/keep", "x"), dir("b/sub/"), file("b/sub/f", "x"), file("gone", "x"), dir("gonedir/"), file("gonedir/f", "x")},
		// Opaque marker after a sibling from the same layer: the sibling stays.
		{file("b/new", "x"), file("b/sub2/new", "x"), file("b/.wh..wh..opq", ""), file(".wh.gone", ""), file(".wh.gonedir", ""), file("a/.wh.1", ""), file(".wh.never-existed", "")},
		{file("gone", "back")},
	}
	for i, l := range layers {
		if err := u.layer(t.Context(), bytes.NewReader(mkTar(t, l...))); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	if err := u.finish(); err != nil {
		t.Fatal(err)
	}
	want := []string{"a/", "a/2", "b/", "b/new", "b/sub2/", "b/sub2/new", "gone"}
	if d := cmp.Diff(want, tree(t, root)); d != "" {
		t.Errorf("tree (-want +got):\n%s", d)
	}
	// Off, whiteouts are plain files.
	root2 := t.TempDir()
	if _, err := Unpack(t.Context(), bytes.NewReader(mkTar(t, file(".wh.x", ""))), root2, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, root2); !slices.Equal(got, []string{".wh.x"}) {
		t.Errorf("without Whiteouts: %v", got)
	}
}

func TestUnpackWhiteoutsHostile(t *testing.T) {
	for _, tc := range []struct {
		name string
		ents []ent
	}{
		{"whiteout-dotdot", []ent{file("../.wh.outside", "")}},
		{"whiteout-through-symlink", []ent{symlink("s", "../outside"), file("s/.wh.secret", "")}},
		{"whiteout-abs-symlink", []ent{symlink("s", "/"), file("s/.wh.outside", "")}},
		{"opaque-through-symlink", []ent{symlink("s", "../outside"), file("s/.wh..wh..opq", "")}},
		{"opaque-root-symlink", []ent{symlink("s", "/.."), file("s/.wh..wh..opq", "")}},
		{"whiteout-dot", []ent{file(".wh..", "")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, root := sandboxDirs(t)
			before := outsideSnapshot(t, base, root)
			Unpack(t.Context(), bytes.NewReader(mkTar(t, tc.ents...)), root, UnpackOptions{Whiteouts: true})
			checkNothingOutside(t, base, root, before)
		})
	}
}
