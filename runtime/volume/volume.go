// Package volume gives a directory a hard size and inode limit: a sparse
// image file formatted as ext4, mounted on the directory through a loop
// device. Whatever is written below the directory lands in the image, and
// the image can never grow past its size, so the host loses at most that
// many bytes of disk, and never more files than the inodes it was given.
//
// Why this mechanism: it needs nothing from the host's own file system
// but sparse files (ext4, xfs, btrfs all have them) and no mount option
// on / (project quotas need prjquota/pquota, set when the file system is
// mounted, which most hosts do not have); it is independent of cgroups
// (v1 or v2); and it bounds bytes and inodes per volume in the kernel,
// with ENOSPC at the limit. A volume costs a few milliseconds: the file
// system is formatted once per size by mkfs.ext4 and its few metadata
// blocks kept as a template (in memory, and under TemplateDir for the
// next process), so each volume is a sparse file with those blocks
// written into it, a loop device and a mount. Measured on the 2-core
// development VM (BenchmarkCreate, 1 GiB): 2.0 ms to create (5.9 ms with
// mkfs every time), 1.15 ms to discard one a sandbox wrote little to (the
// shutdown ioctl, for one it wrote more, adds 0.85 ms).
//
// Loop devices are attached with LO_FLAGS_AUTOCLEAR: the kernel detaches
// one when its file system is unmounted (or when the process that
// attached it dies before mounting), so a volume never leaks a loop
// device longer than its mount. Collect unmounts the volumes of owners
// that died.
package volume

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Error classes, checked with errors.Is: the field's (containerd/errdefs).
var (
	// ErrInvalid: a size, inode count or path that cannot be a volume.
	ErrInvalid = errdefs.ErrInvalidArgument
	// ErrUnavailable: the host cannot make volumes (no loop devices, no
	// mkfs.ext4, not root).
	ErrUnavailable = errdefs.ErrUnavailable
)

// ImageSuffix is appended to a volume's directory to name its image file:
// the volume mounted on DIR lives in DIR.img.
const ImageSuffix = ".img"

// MinBytes is the smallest volume: ext4 needs room for its own metadata.
const MinBytes = 1 << 20

// bytesPerInode is the ratio InodesFor uses: ext4's own default for file
// systems of this kind (mke2fs.conf inode_ratio = 16384).
const bytesPerInode = 16 << 10

// minInodes keeps small volumes usable.
const minInodes = 128

// InodesFor is the inode limit vial derives from a volume's size: one
// inode per 16 KiB, at least 128. A volume of 1 GiB holds 65,536 files
// and directories. The ratio is the one mkfs.ext4 itself picks: it fits
// ordinary trees (source code, virtual environments, node_modules average
// well above 16 KiB a file), and every inode costs 256 bytes of the
// volume's own space, so a denser table would eat the byte limit.
func InodesFor(bytes int64) int64 {
	return max(bytes/bytesPerInode, minInodes)
}

// Volume is a mounted, size-limited file system. Its methods are safe for
// concurrent use.
type Volume struct {
	dir, image string
	bytes      int64
	inodes     int64
	// The file system's free blocks and inodes when it was new; Close
	// compares them with what is left (see written).
	freeBlocks, freeFiles uint64

	once sync.Once
	err  error
}

// Create makes dir (which must not exist; its parent must) and mounts on
// it a fresh, empty file system of bytes bytes and inodes inodes (0 means
// InodesFor(bytes)) whose image is dir+ImageSuffix. The root of the file
// system is owned by root with mode 0755; the caller chowns it. Close
// unmounts it and removes dir and the image. It needs root.
func Create(dir string, bytes, inodes int64) (_ *Volume, err error) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return nil, fmt.Errorf("volume %q: %w: the directory must be an absolute, clean path", dir, ErrInvalid)
	}
	if bytes < MinBytes {
		return nil, fmt.Errorf("volume of %d bytes: %w: at least %d bytes", bytes, ErrInvalid, MinBytes)
	}
	if inodes == 0 {
		inodes = InodesFor(bytes)
	}
	if inodes < minInodes || inodes > bytes/1024 {
		return nil, fmt.Errorf("volume of %d bytes with %d inodes: %w: between %d and one per KiB", bytes, inodes, ErrInvalid, minInodes)
	}
	v := &Volume{dir: dir, image: dir + ImageSuffix, bytes: bytes, inodes: inodes}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating volume directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(v.image)
			os.Remove(dir)
		}
	}()
	fromTemplate, err := format(v.image, bytes, inodes)
	if err != nil {
		return nil, err
	}
	if err := mount(v.image, dir); err != nil {
		if !fromTemplate {
			return nil, err
		}
		// A template that does not mount (damaged on disk, or from an
		// older mkfs) is dropped, and the image formatted afresh.
		forget(templateKey{bytes, inodes})
		os.Remove(v.image)
		if err := create(v.image, bytes); err != nil {
			return nil, err
		}
		if err := mkfs(v.image, inodes); err != nil {
			return nil, err
		}
		if err := mount(v.image, dir); err != nil {
			return nil, err
		}
	}
	// mkfs makes lost+found for fsck, which never runs on a volume; the
	// sandbox sees an empty directory. (Templates have none since
	// dropLostFound; one stored before that still does.)
	if err := unix.Rmdir(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, unix.ENOENT) {
		unmount(dir)
		return nil, fmt.Errorf("preparing volume: %w", err)
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		v.freeBlocks, v.freeFiles = st.Bfree, st.Ffree
	}
	return v, nil
}

// Path is the directory the volume is mounted on.
func (v *Volume) Path() string { return v.dir }

// Image is the volume's image file.
func (v *Volume) Image() string { return v.image }

// Bytes is the volume's size.
func (v *Volume) Bytes() int64 { return v.bytes }

// Inodes is the volume's inode count as asked for (ext4 rounds it up to
// fill its block groups).
func (v *Volume) Inodes() int64 { return v.inodes }

// Close discards the volume's contents: it shuts the file system down (so
// that nothing still dirty in memory is written to an image about to be
// deleted), unmounts it, which detaches the loop device, and removes the
// image and the directory. It is safe to call more than once.
func (v *Volume) Close() error {
	v.once.Do(func() { v.err = discard(v.dir, v.image, v.written) })
	return v.err
}

// Below these, unmounting writes back what a sandbox left dirty faster
// than the shutdown ioctl, which costs about 0.85 ms even on a clean file
// system (measured here): most sandboxes write little or nothing.
const (
	shutdownBytes  = 1 << 20
	shutdownInodes = 256
)

// written reports whether the file system on v holds more than a little
// data or many more inodes than when it was new. statfs counts blocks
// reserved for dirty data not yet written (ext4's delayed allocation), so
// data still in memory is seen. Unknown counts say yes.
func (v *Volume) written() bool {
	var st unix.Statfs_t
	if v.freeBlocks == 0 || unix.Statfs(v.dir, &st) != nil || st.Bsize <= 0 {
		return true
	}
	return st.Bfree+uint64(shutdownBytes/st.Bsize) < v.freeBlocks || st.Ffree+shutdownInodes < v.freeFiles
}

// discard shuts down, unmounts and removes the volume mounted on dir with
// image image. A dir that is no longer a mount point is just removed. The
// file system is shut down first unless written says it holds little.
func discard(dir, image string, written func() bool) error {
	var errs []error
	if isMountPoint(dir) {
		if written == nil || written() {
			shutdown(dir)
		}
		if err := unmount(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(image); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("removing volume image: %w", err))
	}
	if len(errs) == 0 {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing volume directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Check reports whether this host can make volumes, and if not what to do.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("volumes: %w: loop devices and mounts need root", ErrUnavailable)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("volumes: %w: no /dev/loop-control (load the loop module: modprobe loop; in a container, pass the loop devices in)", ErrUnavailable)
	}
	if _, err := mkfsPath(); err != nil {
		return err
	}
	return nil
}

// mkfsPath finds mkfs.ext4 (e2fsprogs), also where PATH leaves out sbin.
func mkfsPath() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("volumes: %w: mkfs.ext4 not found (install it with: apt-get install -y e2fsprogs)", ErrUnavailable)
}

// mkfs formats image (an existing file of its final size) with bytes and
// inodes. No journal: a volume never outlives a crash, so there is
// nothing to replay. lazy_itable_init leaves inode tables unwritten (the
// image stays sparse); no reserved blocks for root; no resize inode (a
// volume never grows); nodiscard (the file is new and sparse already).
func mkfs(image string, inodes int64) error {
	path, err := mkfsPath()
	if err != nil {
		return err
	}
	cmd := exec.Command(path, "-q", "-F", "-t", "ext4",
		"-O", "^has_journal,^resize_inode",
		"-E", "lazy_itable_init=1,nodiscard",
		"-m", "0", "-N", strconv.FormatInt(inodes, 10), image)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("formatting volume: %s: %w", strings.TrimSpace(string(out)), err)
	}
	return nil
}

// mountOpts: nosuid and nodev, as for every writable place a sandbox has;
// noinit_itable keeps the kernel from zeroing inode tables in the
// background (the image stays sparse until files are made).
const mountOpts = "noinit_itable,nobarrier"

// mount attaches image to a free loop device and mounts it on dir.
func mount(image, dir string) error {
	dev, err := attach(image)
	if err != nil {
		return err
	}
	// Our descriptor of the device keeps it attached until the mount
	// holds it; closing it after the mount hands the device's lifetime to
	// the mount (LO_FLAGS_AUTOCLEAR).
	defer dev.Close()
	if err := unix.Mount(dev.Name(), dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, mountOpts); err != nil {
		return fmt.Errorf("mounting volume (%s on %s): %w", dev.Name(), dir, err)
	}
	return nil
}

// attach binds image to a free loop device, retrying when another process
// takes the same free device first.
func attach(image string) (*os.File, error) {
	img, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening volume image: %w", err)
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("volumes: %w: %w", ErrUnavailable, err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
	// AUTOCLEAR: detached on the last close or unmount, never leaked.
	// Not LO_FLAGS_DIRECT_IO: it would keep the image's blocks out of the
	// host's page cache, but it forces the freshly written image to disk
	// before the first read, which made every volume 4-5 ms slower here.
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:], filepath.Base(image))
	for try := 0; ; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("finding a free loop device: %w", err)
		}
		name := "/dev/loop" + strconv.Itoa(n)
		dev, err := os.OpenFile(name, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && try < 100 {
				// udev has not made the node yet.
				time.Sleep(time.Millisecond)
				continue
			}
			return nil, fmt.Errorf("opening %s: %w", name, err)
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if errors.Is(err, unix.EBUSY) && try < 100 {
			continue // another process attached it first
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
			return attachLegacy(img, ctl, image)
		}
		return nil, fmt.Errorf("attaching %s to %s: %w", image, name, err)
	}
}

// attachLegacy is attach for kernels before 5.8 (no LOOP_CONFIGURE).
func attachLegacy(img, ctl *os.File, image string) (*os.File, error) {
	for try := 0; try < 100; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("finding a free loop device: %w", err)
		}
		name := "/dev/loop" + strconv.Itoa(n)
		dev, err := os.OpenFile(name, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", name, err)
		}
		if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err != nil {
			dev.Close()
			if errors.Is(err, unix.EBUSY) {
				continue
			}
			return nil, fmt.Errorf("attaching %s to %s: %w", image, name, err)
		}
		info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
		copy(info.File_name[:], filepath.Base(image))
		if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), &info); err != nil {
			unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
			dev.Close()
			return nil, fmt.Errorf("configuring %s: %w", name, err)
		}
		return dev, nil
	}
	return nil, fmt.Errorf("attaching %s: %w: every free loop device was taken by another process first", image, ErrUnavailable)
}

// ext4IocShutdown is EXT4_IOC_SHUTDOWN (_IOR('X', 125, __u32)), the same
// number as XFS_IOC_GOINGDOWN; with ext4GoingFlagsNoLogFlush the file
// system drops everything not yet written.
const (
	ext4IocShutdown          = 0x8004587d
	ext4GoingFlagsNoLogFlush = 0x2
)

// shutdown stops all I/O to the file system mounted on dir: its contents
// are about to be deleted, and writing back what a sandbox left dirty in
// memory (up to its memory limit) would only cost time and disk writes.
// Errors are ignored: unmounting then writes back as usual.
func shutdown(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil || st.Type != unix.EXT4_SUPER_MAGIC {
		return
	}
	flag := uint32(ext4GoingFlagsNoLogFlush)
	unix.IoctlSetPointerInt(fd, ext4IocShutdown, int(flag))
}

// unmount unmounts dir; if something still holds the file system (a
// process that escaped the teardown, another mount namespace), it is
// detached lazily and goes, with its loop device, when the last user does.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting volume %s: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether dir is the root of a mount.
func isMountPoint(dir string) bool {
	var st, pst unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino
}
