// Package rootfs turns images into read-only root directories for
// sandboxes: the built-in host image, directories, and images in vial's
// content-addressed store.
package rootfs

import (
	"github.com/containerd/errdefs"

	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Image is a prepared, read-only root filesystem. Sandboxes never write to
// Root; their writable places (/tmp, /workspace) are separate mounts.
type Image struct {
	Name   string   // "host", a stored image's name, or the directory of a directory image
	Digest string   // "sha256:<hex>" content digest; "" for host and directory images
	Root   string   // absolute host directory used as the bundle's root.path
	Binds  []Bind   // extra read-only bind mounts the image needs (the host image's /usr, ...)
	Env    []string // the image's default environment, e.g. PATH=...
}

// Bind is a read-only bind mount of a host path into the sandbox.
type Bind struct {
	Source string // absolute host path
	Target string // absolute path inside the sandbox
}

// DefaultPath is the PATH a sandbox gets when its image sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// MountPoints are the directories every image root must contain: the
// targets of the mounts every sandbox gets, and of the context drivers'
// bind (runtime.DriverDir). A runtime creates a missing mount target in
// the root directory itself, before it makes the root read-only — in a
// stored image that would be a write into the tree every sandbox shares,
// so they are made when the image is stored and the runtime refuses an
// image that lacks one (see Image.MissingMountPoint).
var MountPoints = append(slices.Clone(SandboxMountPoints), "opt/vial", "opt/vial/drivers")

// SandboxMountPoints are the targets of the mounts every sandbox gets,
// whatever else is bound into it.
var SandboxMountPoints = []string{"proc", "sys", "dev", "tmp", "workspace"}

// FileMountPoints are files every image root must contain, for the same
// reason as MountPoints: a sandbox with the network on gets vial's
// resolv.conf bound over etc/resolv.conf (see runtime.Network). Stored
// images get an empty one (replacing a link, which the runtime would
// follow) when they are stored; the host image generates its own.
var FileMountPoints = []string{"etc/resolv.conf"}

// MissingMountPoint returns the first of targets (absolute paths inside
// the sandbox) that does not exist in a stored image's root, or "". Host
// and directory images (no Digest) are vial's or the user's own to
// change, and always pass.
func (img *Image) MissingMountPoint(targets ...string) string {
	if img.Digest == "" {
		return ""
	}
	for _, t := range targets {
		if _, err := os.Lstat(filepath.Join(img.Root, filepath.Clean("/"+t))); err != nil {
			return t
		}
	}
	return ""
}

// ErrNotFound and ErrInvalid classify this package's errors. They are
// errdefs classes with this package's wording: errdefs.IsNotFound and
// errdefs.IsInvalidArgument hold for them.
var (
	ErrNotFound = errdefs.ErrNotFound.WithMessage("image not found")
	ErrInvalid  = errdefs.ErrInvalidArgument.WithMessage("invalid image")
)

// forbiddenRoots are host directories that are never accepted as an image
// root: handing one of them to a sandbox would expose the host itself
// (its secrets, devices or kernel interfaces) rather than an image.
var forbiddenRoots = map[string]bool{
	"/": true, "/etc": true, "/root": true, "/home": true, "/proc": true, "/sys": true,
	"/dev": true, "/boot": true, "/run": true, "/var": true, "/usr": true,
}

// Dir returns a directory image: path must be an absolute, clean path to a
// directory that looks like a root filesystem (it has bin/ or usr/bin/).
// Symlinks are resolved first so that a link to "/" is refused like "/"
// itself. Missing mount points are created in the directory.
func Dir(path string) (*Image, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("image path %q: %w: must be absolute", path, ErrInvalid)
	}
	for _, part := range strings.Split(path, "/") {
		if part == ".." {
			return nil, fmt.Errorf("image path %q: %w: must not contain \"..\"", path, ErrInvalid)
		}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image path %q: %w: no such directory", path, ErrNotFound)
		}
		return nil, fmt.Errorf("resolving image path %q: %w", path, err)
	}
	if forbiddenRoots[real] {
		return nil, fmt.Errorf("image path %q: %w: %s is part of the host, not an image (use --image host for a read-only view of the host's programs)", path, ErrInvalid, real)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("image path %q: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("image path %q: %w: not a directory", path, ErrInvalid)
	}
	if !exists(filepath.Join(real, "bin")) && !exists(filepath.Join(real, "usr/bin")) {
		return nil, fmt.Errorf("image path %q: %w: no bin/ or usr/bin/ inside, not a root filesystem", path, ErrInvalid)
	}
	if err := ensureMountPoints(real); err != nil {
		return nil, err
	}
	return &Image{Name: path, Root: real, Env: []string{DefaultPath}}, nil
}

// ensureMountPoints creates the directories MountPoints names under root,
// through an os.Root so a symlinked mount point cannot lead outside.
func ensureMountPoints(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening image root: %w", err)
	}
	defer r.Close()
	for _, mp := range MountPoints {
		if err := r.MkdirAll(mp, 0o755); err != nil {
			return fmt.Errorf("creating mount point /%s in image: %w", mp, err)
		}
	}
	// runc gives a tmpfs the mode of the directory it is mounted on, so
	// /tmp must be world-writable and sticky in the image itself.
	if err := r.Chmod("tmp", 0o777|os.ModeSticky); err != nil {
		return fmt.Errorf("preparing /tmp in image: %w", err)
	}
	// A directory image is the user's own tree: a missing file mount
	// point is added, an existing one (even a link) is left alone.
	for _, f := range FileMountPoints {
		if _, err := r.Lstat(f); err == nil {
			continue
		}
		if err := r.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("creating /%s in image: %w", filepath.Dir(f), err)
		}
		if err := r.WriteFile(f, nil, 0o644); err != nil {
			return fmt.Errorf("creating mount point /%s in image: %w", f, err)
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
