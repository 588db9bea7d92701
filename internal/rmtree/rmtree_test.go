package rmtree

import (
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testutil"
)

// chain makes depth nested directories "d" under dir, one descriptor at a
// time (a path that long cannot be named in one string), with a file and a
// symlink to outside at every 1000th level.
func chain(t testing.TB, dir string, depth int, outside string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if i%1000 == 0 {
			f, err := unix.Openat(fd, "f", unix.O_CREAT|unix.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(f)
			if err := unix.Symlinkat(outside, fd, "link"); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = next
	}
	unix.Close(fd)
}

// lowFiles lowers the descriptor limit for the rest of the test: far below
// the depth of the trees, so a remover that holds one per level fails.
func lowFiles(t *testing.T, n uint64) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// sentinel makes a directory outside the tree with a file in it, and
// checks at the end that both survived.
func sentinel(t *testing.T) string {
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(out, "keep")); err != nil {
			t.Errorf("a file outside the tree was touched: %v", err)
		}
	})
	return out
}

func TestRemoveDeepChain(t *testing.T) {
	out := sentinel(t)
	dir := filepath.Join(t.TempDir(), "tree")
	os.Mkdir(dir, 0o755)
	chain(t, dir, 20000, out)
	lowFiles(t, 64)
	if err := os.RemoveAll(dir); err == nil {
		t.Log("os.RemoveAll coped with the chain here (it did not before the limit was lowered?)")
		chain(t, t.TempDir(), 1, out) // keep the test meaningful below
		os.Mkdir(dir, 0o755)
		chain(t, dir, 20000, out)
	} else {
		t.Logf("os.RemoveAll with 64 descriptors: %v", err)
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
}

func TestRemoveWide(t *testing.T) {
	n := 200000
	if testing.Short() {
		n = 20000
	}
	out := sentinel(t)
	dir := filepath.Join(t.TempDir(), "tree")
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		var err error
		switch i % 4 {
		case 0:
			err = os.Mkdir(filepath.Join(sub, strconv.Itoa(i)), 0o755)
		case 1:
			err = os.Symlink(out, filepath.Join(sub, strconv.Itoa(i)))
		default:
			var f *os.File
			if f, err = os.Create(filepath.Join(sub, strconv.Itoa(i))); err == nil {
				f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
}

func TestRemoveOddEntries(t *testing.T) {
	out := sentinel(t)
	base := t.TempDir()
	for _, tc := range []struct {
		name string
		make func(p string) error
	}{
		{"missing", func(p string) error { return nil }},
		{"file", func(p string) error { return os.WriteFile(p, nil, 0o644) }},
		{"symlink to a directory outside", func(p string) error { return os.Symlink(out, p) }},
		{"dangling symlink", func(p string) error { return os.Symlink("/nonexistent", p) }},
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"locked-down directories", func(p string) error {
			if err := os.MkdirAll(filepath.Join(p, "x", "y"), 0o755); err != nil {
				return err
			}
			os.WriteFile(filepath.Join(p, "x", "y", "f"), nil, 0)
			os.Symlink(out, filepath.Join(p, "x", "y", "out"))
			os.Chmod(filepath.Join(p, "x", "y"), 0)
			return os.Chmod(filepath.Join(p, "x"), 0o500)
		}},
		{"names that look like the remover's own", func(p string) error {
			for _, n := range []string{"a/.rmtree-1/.rmtree-2", "a/b/c", ".rmtree-1/x", ".rmtree-3"} {
				if err := os.MkdirAll(filepath.Join(p, n), 0o755); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(base, "entry")
			if err := tc.make(p); err != nil {
				t.Fatal(err)
			}
			if err := RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("still there: %v", err)
			}
		})
	}
}

func TestRemoveAllIn(t *testing.T) {
	out := sentinel(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ws", "deep"), 0o755)
	chain(t, filepath.Join(dir, "ws", "deep"), 5000, out)
	// A symlinked parent must not lead outside the root.
	os.Symlink(out, filepath.Join(dir, "ws", "escape"))
	root, err := os.OpenRoot(filepath.Join(dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	lowFiles(t, 64)
	if err := RemoveAllIn(root, "escape/keep"); err == nil {
		t.Error("removing through a symlink that leads outside the root: no error")
	}
	if err := RemoveAllIn(root, "escape"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAllIn(root, "deep"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAllIn(root, "."); err == nil {
		t.Error("removing the root itself: no error")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "ws"))
	if len(ents) != 0 {
		t.Errorf("left: %v", ents)
	}
}

// TestRemoveStopsAtMountPoints mounts a tmpfs, and binds a directory of
// the same file system, inside the tree, in a private mount namespace of
// one thread: the remover must neither empty nor remove them, and say so.
func TestRemoveStopsAtMountPoints(t *testing.T) {
	for _, bind := range []bool{false, true} {
		t.Run(map[bool]string{false: "tmpfs", true: "bind"}[bind], func(t *testing.T) { mountPointCase(t, bind) })
	}
}

func mountPointCase(t *testing.T, bind bool) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "tree", "sub", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "sub", "f"), nil, 0o644)
	errc := make(chan error, 1)
	go func() {
		// This thread's mount namespace is private and dies with it: the
		// goroutine never unlocks the thread.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- err
			return
		}
		var err error
		if bind {
			err = unix.Mount(src, mnt, "", unix.MS_BIND, "")
		} else {
			err = unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m")
		}
		if err != nil {
			errc <- err
			return
		}
		os.MkdirAll(filepath.Join(mnt, "d"), 0o755)
		if err := os.WriteFile(filepath.Join(mnt, "d", "precious"), []byte("x"), 0o644); err != nil {
			errc <- err
			return
		}
		err = RemoveAll(filepath.Join(dir, "tree"))
		if !errors.Is(err, ErrMountPoint) {
			errc <- errors.New("RemoveAll over a mount point: " + errString(err) + ", want ErrMountPoint")
			return
		}
		if _, err := os.Stat(filepath.Join(mnt, "d", "precious")); err != nil {
			errc <- errors.New("a file on the mounted file system was removed")
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func BenchmarkRemoveChain(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "t")
		os.Mkdir(dir, 0o755)
		chain(b, dir, 20000, "/nonexistent")
		b.StartTimer()
		if err := RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	}
}
