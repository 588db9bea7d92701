package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// hostTopLevel are the host directories the host image shows, read-only.
// Where the host has one as a symlink (merged /usr), the image gets the
// same symlink; where it is a real directory, a read-only bind.
var hostTopLevel = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// hostEtcCopy is the allowlist of host /etc entries copied into the host
// image's own /etc. Deny by default: /etc holds secrets (shadow, ssh host
// keys, sudoers, machine-id, npm and pip credentials), so only what
// programs need to start and nothing that identifies or unlocks the host
// is taken. passwd, group, hosts, resolv.conf and nsswitch.conf are
// generated instead of copied.
var hostEtcCopy = []string{
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d", // the dynamic loader finds multiarch libraries through these
	"alternatives",                      // Debian's /usr/bin/awk -> /etc/alternatives/awk links
	"ssl/certs", "ca-certificates.conf", // public CA certificates only, never ssl/private
	"python3", "python3.11", "python3.12", "python3.13", // Debian's sitecustomize.py lives here
	"os-release", "debian_version", "localtime", "timezone",
	"mime.types", "protocols", "services", "gai.conf", "host.conf",
	"bash.bashrc", "profile", "inputrc", "magic", "magic.mime",
}

// hostImageVersion changes whenever the layout generated below changes, so
// an old generated tree is not reused.
const hostImageVersion = "4"

// Host returns the built-in host image: a read-only view of the host's
// /usr, /bin and /lib* with a minimal generated /etc, so vial runs the
// host's own python3 with zero set-up. Its root is generated once under
// <stateDir>/images/host/<stamp>/rootfs and reused while the host's inputs
// (loader cache, alternatives, certificates) are unchanged. Safe for
// concurrent use by several processes: a tree is built aside and renamed
// into place.
func Host(stateDir string) (*Image, error) {
	stamp, err := hostStamp()
	if err != nil {
		return nil, err
	}
	base := filepath.Join(stateDir, "images", "host")
	root := filepath.Join(base, stamp, "rootfs")
	img := &Image{Name: "host", Root: root, Env: []string{DefaultPath}}
	for _, d := range hostTopLevel {
		fi, err := os.Lstat("/" + d)
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir() {
			continue
		}
		img.Binds = append(img.Binds, Bind{Source: "/" + d, Target: "/" + d})
	}
	if _, err := os.Stat(root); err == nil {
		return img, nil
	}
	if err := os.MkdirAll(filepath.Join(base, stamp), 0o755); err != nil {
		return nil, fmt.Errorf("creating host image directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(base, stamp), ".build-")
	if err != nil {
		return nil, fmt.Errorf("creating host image directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := buildHostRoot(tmp); err != nil {
		return nil, fmt.Errorf("building host image: %w", err)
	}
	if err := os.Rename(tmp, root); err != nil && !exists(root) {
		return nil, fmt.Errorf("installing host image: %w", err)
	}
	return img, nil
}

// hostStamp names the generation of the host image from what it copies.
func hostStamp() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "v%s\n", hostImageVersion)
	for _, p := range []string{"/etc/ld.so.cache", "/etc/alternatives", "/etc/ssl/certs", "/etc/os-release"} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	for _, d := range hostTopLevel {
		if t, err := os.Readlink("/" + d); err == nil {
			fmt.Fprintf(h, "%s->%s\n", d, t)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func buildHostRoot(root string) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	for _, d := range hostTopLevel {
		fi, err := os.Lstat("/" + d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink("/" + d)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, filepath.Join(root, d)); err != nil {
				return err
			}
		case fi.IsDir():
			if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
				return err
			}
		}
	}
	for _, d := range append([]string{"etc", "var/tmp", "home", "root", "run"}, MountPoints...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	// runc gives a tmpfs the mode of the directory it is mounted on.
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	etc := filepath.Join(root, "etc")
	for _, name := range hostEtcCopy {
		if err := copyTree(filepath.Join("/etc", name), filepath.Join(etc, name)); err != nil {
			return fmt.Errorf("copying /etc/%s: %w", name, err)
		}
	}
	generated := map[string]string{
		// uid 65534 runs sandboxed code; root exists only so tools that
		// look up uid 0 (ls -l) print a name.
		"passwd":        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n",
		"group":         "root:x:0:\nnogroup:x:65534:\n",
		"hosts":         "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"hostname":      "vial\n",
		"resolv.conf":   "# no network: the sandbox has only a loopback interface\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
	}
	for name, content := range generated {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies a regular file, symlink or directory of them from src to
// dst. Anything else (devices, sockets) is skipped; a missing src is not
// an error. Modes keep only permission bits: setuid/setgid never survive.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == src {
				return nil
			}
			if os.IsPermission(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if strings.Contains(rel, "private") {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type().IsRegular():
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			return copyFile(p, out, info.Mode().Perm()&0o755)
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
