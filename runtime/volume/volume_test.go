package volume

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testutil"
)

func requireVolumes(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	err := Check()
	testutil.Require(t, err == nil, "volumes unavailable: "+errString(err))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// allocated is the disk space a file takes on the host.
func allocated(t testing.TB, path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// loopsBacking lists the loop devices whose backing file is path.
func loopsBacking(path string) []string {
	ents, _ := os.ReadDir("/sys/block")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "loop") && backing("/dev/"+e.Name()) == path {
			out = append(out, e.Name())
		}
	}
	return out
}

// checkGone fails unless the volume at dir left no mount, no loop device,
// no image and no directory.
func checkGone(t *testing.T, dir string) {
	t.Helper()
	if m, _ := Mounted(filepath.Dir(dir)); len(m) > 0 {
		t.Errorf("still mounted: %v", m)
	}
	// The kernel detaches an autoclear device as the unmount completes.
	deadline := time.Now().Add(5 * time.Second)
	for len(loopsBacking(dir+ImageSuffix)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := loopsBacking(dir + ImageSuffix); len(l) > 0 {
		t.Errorf("loop devices still attached: %v", l)
	}
	for _, p := range []string{dir, dir + ImageSuffix} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
}

func TestInodesFor(t *testing.T) {
	for _, tc := range []struct{ bytes, want int64 }{
		{1 << 30, 65536},
		{1 << 20, 128},
		{64 << 20, 4096},
	} {
		if got := InodesFor(tc.bytes); got != tc.want {
			t.Errorf("InodesFor(%d) = %d, want %d", tc.bytes, got, tc.want)
		}
	}
}

func TestCreateRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name          string
		dir           string
		bytes, inodes int64
	}{
		{"relative", "ws", 1 << 30, 0},
		{"unclean", "/tmp/../ws", 1 << 30, 0},
		{"too small", "/tmp/ws", 4096, 0},
		{"too few inodes", "/tmp/ws", 1 << 30, 10},
		{"too many inodes", "/tmp/ws", 1 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Create(tc.dir, tc.bytes, tc.inodes); !errors.Is(err, ErrInvalid) {
				t.Errorf("Create: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCreateRefusesHugeVolumes(t *testing.T) {
	requireVolumes(t)
	dir := filepath.Join(t.TempDir(), "ws")
	// 64 TiB: more than ext4 allows one file (16 TiB); xfs and btrfs take it.
	v, err := Create(dir, 64<<40, 0)
	if err == nil {
		v.Close()
		t.Skip("this host's file system takes a 64 TiB sparse file")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Create(64 TiB): %v, want ErrInvalid", err)
	}
	checkGone(t, dir)
}

// TestLimits fills a volume past its size and past its inode count: the
// writes fail with ENOSPC, the image never takes more of the host's disk
// than the volume's size, and Close leaves nothing behind.
func TestLimits(t *testing.T) {
	requireVolumes(t)
	const size = 32 << 20
	dir := filepath.Join(t.TempDir(), "ws")
	v, err := Create(dir, size, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("a new volume holds %v (%v), want nothing", ents, err)
	}
	var sfs unix.Statfs_t
	unix.Statfs(dir, &sfs)
	t.Logf("new volume: %d MiB usable of %d, %d inodes, image takes %d KiB", sfs.Bavail*uint64(sfs.Bsize)>>20, size>>20, sfs.Files, allocated(t, v.Image())>>10)

	// Bytes: one big file until the volume is full.
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	written := 0
	for i := 0; i < 2*size/len(buf); i++ {
		n, err := f.Write(buf)
		written += n
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write past the limit: %v, want ENOSPC", err)
			}
			break
		}
	}
	f.Sync()
	f.Close()
	if written >= size {
		t.Fatalf("wrote %d bytes into a volume of %d", written, size)
	}
	if got := allocated(t, v.Image()); got > size {
		t.Errorf("image takes %d bytes of the host's disk, more than the volume's %d", got, size)
	}
	t.Logf("wrote %d MiB before ENOSPC; image takes %d MiB", written>>20, allocated(t, v.Image())>>20)
	os.Remove(filepath.Join(dir, "big"))

	// Inodes: empty files until there are no more.
	made := 0
	for i := 0; i < 100000; i++ {
		f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("creating file %d: %v, want ENOSPC", i, err)
			}
			break
		}
		f.Close()
		made++
	}
	if want := InodesFor(size); int64(made) > want+want/8 || int64(made) < want/2 {
		t.Errorf("made %d files in a volume of %d inodes", made, want)
	}
	t.Logf("made %d files before ENOSPC (limit %d)", made, InodesFor(size))
	if got := allocated(t, v.Image()); got > size {
		t.Errorf("image takes %d bytes of the host's disk, more than the volume's %d", got, size)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checkGone(t, dir)
}

// TestCloseDiscardsDirtyData: a volume full of data not yet written back
// closes at once; the data is never written to the image.
func TestCloseDiscardsDirtyData(t *testing.T) {
	requireVolumes(t)
	dir := filepath.Join(t.TempDir(), "ws")
	v, err := Create(dir, 256<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "dirty"))
	if err != nil {
		v.Close()
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 0xa5
	}
	for i := 0; i < 200; i++ {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close() // no sync: the pages are dirty
	start := time.Now()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close with ~200 MiB dirty: %v", time.Since(start))
	for len(loopsBacking(dir+ImageSuffix)) > 0 && time.Since(start) < 5*time.Second {
		time.Sleep(time.Millisecond)
	}
	t.Logf("loop device detached after %v", time.Since(start))
	checkGone(t, dir)
}

// TestWritten: a new volume (from a template or mkfs) is empty, without
// lost+found, and counts as unwritten, so Close skips the shutdown ioctl;
// dirty data still in memory (delayed allocation) or many new inodes count
// as written.
func TestWritten(t *testing.T) {
	requireVolumes(t)
	for _, tc := range []struct {
		name string
		fill func(dir string) error
		want bool
	}{
		{"new", func(string) error { return nil }, false},
		{"a small file", func(dir string) error { return os.WriteFile(filepath.Join(dir, "f"), []byte("hello"), 0o600) }, false},
		{"8 MiB not synced", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte{1}, 8<<20), 0o600)
		}, true},
		{"1000 empty files", func(dir string) error {
			for i := range 1000 {
				if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), nil, 0o600); err != nil {
					return err
				}
			}
			return nil
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 2 { // the first may format with mkfs; the second uses the template
				dir := filepath.Join(t.TempDir(), "ws")
				v, err := Create(dir, 64<<20, 0)
				if err != nil {
					t.Fatal(err)
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("round %d: a new volume holds %d entries (%s)", round, len(ents), ents[0].Name())
				}
				if err := tc.fill(dir); err != nil {
					v.Close()
					t.Fatal(err)
				}
				if got := v.written(); got != tc.want {
					t.Errorf("round %d: written() = %v, want %v", round, got, tc.want)
				}
				if err := v.Close(); err != nil {
					t.Fatal(err)
				}
				checkGone(t, dir)
			}
		})
	}
}

// TestCollect: the volumes of an owner that died (never closed) are
// found and discarded; nothing else is touched.
func TestCollect(t *testing.T) {
	requireVolumes(t)
	base := t.TempDir()
	os.Mkdir(filepath.Join(base, "sandboxes"), 0o755)
	var vols []*Volume
	for _, name := range []string{"a", "b c"} {
		v, err := Create(filepath.Join(base, "sandboxes", name), 8<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		os.WriteFile(filepath.Join(v.Path(), "x"), []byte("x"), 0o644)
		vols = append(vols, v)
	}
	other, err := Create(filepath.Join(base, "other"), 8<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	m, err := Mounted(filepath.Join(base, "sandboxes"))
	if err != nil || len(m) != 2 {
		t.Fatalf("Mounted: %v, %v; want both volumes", m, err)
	}
	n, err := Collect(filepath.Join(base, "sandboxes"))
	if err != nil || n != 2 {
		t.Fatalf("Collect: %d, %v; want 2", n, err)
	}
	for _, v := range vols {
		checkGone(t, v.Path())
	}
	if _, err := os.Stat(filepath.Join(other.Path(), ".")); err != nil || !isMountPoint(other.Path()) {
		t.Errorf("a volume outside the collected directory was touched: %v", err)
	}
}

// TestDamagedTemplate: a template on disk that does not make a mountable
// file system is dropped, and volumes are formatted afresh.
func TestDamagedTemplate(t *testing.T) {
	requireVolumes(t)
	old := TemplateDir
	TemplateDir = t.TempDir()
	defer func() { TemplateDir = old }()
	const size = 8 << 20
	key := templateKey{size, InodesFor(size)}
	forget(key)
	// A first volume makes the template, in memory and on disk.
	v, err := Create(filepath.Join(t.TempDir(), "a"), size, 0)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := os.Stat(templatePath(key)); err != nil {
		t.Fatalf("no template on disk: %v", err)
	}
	// Another process finds only a damaged file.
	forget(key)
	if err := os.WriteFile(templatePath(key), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(templatePath(key), size); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "b")
	v, err = Create(dir, size, 0)
	if err != nil {
		t.Fatalf("Create with a damaged template: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
		t.Error(err)
	}
	v.Close()
	checkGone(t, dir)
}

// BenchmarkCreate measures a volume's cost: from the template (the
// default) and with mkfs every time, and the parts of one.
func BenchmarkCreate(b *testing.B) {
	requireVolumes(b)
	for _, tc := range []struct {
		name     string
		template bool
	}{{"template", true}, {"mkfs", false}} {
		b.Run(tc.name, func(b *testing.B) {
			UseTemplates = tc.template
			defer func() { UseTemplates = true }()
			base := b.TempDir()
			var create, close time.Duration
			for i := 0; i < b.N; i++ {
				dir := filepath.Join(base, strconv.Itoa(i))
				start := time.Now()
				v, err := Create(dir, 1<<30, 0)
				if err != nil {
					b.Fatal(err)
				}
				create += time.Since(start)
				start = time.Now()
				if err := v.Close(); err != nil {
					b.Fatal(err)
				}
				close += time.Since(start)
			}
			b.ReportMetric(float64(create.Microseconds())/float64(b.N)/1000, "ms-create")
			b.ReportMetric(float64(close.Microseconds())/float64(b.N)/1000, "ms-close")
		})
	}
}

// BenchmarkSteps splits one Create into formatting and mounting.
func BenchmarkSteps(b *testing.B) {
	requireVolumes(b)
	base := b.TempDir()
	var fmtT, mountT, umountT time.Duration
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(base, strconv.Itoa(i))
		os.Mkdir(dir, 0o700)
		s := time.Now()
		if _, err := format(dir+ImageSuffix, 1<<30, InodesFor(1<<30)); err != nil {
			b.Fatal(err)
		}
		fmtT += time.Since(s)
		s = time.Now()
		if err := mount(dir+ImageSuffix, dir); err != nil {
			b.Fatal(err)
		}
		mountT += time.Since(s)
		s = time.Now()
		if err := discard(dir, dir+ImageSuffix, nil); err != nil {
			b.Fatal(err)
		}
		umountT += time.Since(s)
	}
	b.ReportMetric(float64(fmtT.Microseconds())/float64(b.N)/1000, "ms-format")
	b.ReportMetric(float64(mountT.Microseconds())/float64(b.N)/1000, "ms-mount")
	b.ReportMetric(float64(umountT.Microseconds())/float64(b.N)/1000, "ms-discard")
}
