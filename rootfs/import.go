package rootfs

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"
)

// Import stores the image at src under name and returns it. src is one of:
//
//   - a root filesystem tarball (`docker export`, .tar, .tar.gz, .tar.zst,
//     .tar.bz2; the compression is found by magic bytes, not the name);
//   - a `docker save` archive (manifest.json and layer tarballs), as a file
//     or unpacked into a directory;
//   - an OCI image layout (oci-layout, index.json, blobs/), as a tar file or
//     a directory; blob digests are verified;
//   - a directory holding a root filesystem, copied into the store.
//
// Layers are applied in order with whiteouts honoured. Everything reaches
// the disk through Unpack's hardened extraction with s.Limits, so a hostile
// archive cannot write outside the store's staging directory. name "" takes
// the archive's own name (RepoTags, ref.name annotations) or, failing that,
// src's base name. Mount points the runtime needs (MountPoints) and a
// nobody (65534) entry in /etc/passwd are added when missing.
func (s *Store) Import(ctx context.Context, src, name string) (*Image, error) {
	info, err := s.importFrom(ctx, src, name, nil)
	if err != nil {
		return nil, err
	}
	return info.image(), nil
}

// ImportInfo is Import returning the stored image's description.
func (s *Store) ImportInfo(ctx context.Context, src, name string) (*ImageInfo, error) {
	return s.importFrom(ctx, src, name, nil)
}

// sourceInfo is what reading a source found out besides the tree.
type sourceInfo struct {
	format      string
	layers      int
	config      Config
	defaultName string
	defaultTag  string // a bare tag (OCI ref.name "3.12") to put after src's base name
}

func (s *Store) importFrom(ctx context.Context, src, name string, extra *indexRef) (*ImageInfo, error) {
	start := time.Now()
	key := ""
	if name != "" {
		var err error
		if key, err = NormalizeName(name); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", src, err)
	}
	st, err := s.newStaging()
	if err != nil {
		return nil, err
	}
	defer st.discard()
	root := filepath.Join(st.dir, "image", "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("creating staging root: %w", err)
	}
	u, err := newUnpacker(root, UnpackOptions{Limits: s.Limits, Chown: os.Geteuid() == 0})
	if err != nil {
		return nil, err
	}
	defer u.close()

	si, err := s.readSource(ctx, abs, st.dir, u, key)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", src, err)
	}
	if err := u.finish(); err != nil {
		return nil, fmt.Errorf("importing %s: %w", src, err)
	}
	if u.stats.Entries == 0 {
		return nil, fmt.Errorf("importing %s: %w: no files in it", src, ErrInvalid)
	}
	if u.stats.SkippedDevices+u.stats.SkippedOther+u.stats.DroppedSetID > 0 {
		s.progress("left out %d device nodes/FIFOs and %d other special files; dropped setuid/setgid from %d files",
			u.stats.SkippedDevices, u.stats.SkippedOther, u.stats.DroppedSetID)
	}
	if key == "" {
		cands := []string{si.defaultName, nameFromPath(abs)}
		if si.defaultTag != "" {
			cands[0] = nameFromPath(abs) + ":" + si.defaultTag
		}
		for _, cand := range cands {
			if k, err := NormalizeName(cand); err == nil && cand != "" {
				key = k
				break
			}
		}
		if key == "" {
			return nil, fmt.Errorf("importing %s: %w: no usable name in it; pass --name", src, ErrInvalid)
		}
	}
	if err := ensureLayout(u.root); err != nil {
		return nil, fmt.Errorf("importing %s: %w", src, err)
	}
	s.progress("computing the content digest")
	digest, ts, err := TreeDigest(root)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	cm := contentMeta{Digest: digest, Size: ts.Size, Entries: ts.Entries, Created: now, Unpack: u.stats}
	b, _ := json.MarshalIndent(cm, "", "  ")
	if err := os.WriteFile(filepath.Join(st.dir, "image", "image.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("writing image metadata: %w", err)
	}
	ref := &indexRef{Created: now, Source: abs, Format: si.format, Layers: si.layers, Config: si.config}
	if extra != nil {
		ref.Source, ref.Format, ref.Recipe, ref.Packages = extra.Source, extra.Format, extra.Recipe, extra.Packages
	}
	if err := s.commit(st, digest, key, ref); err != nil {
		return nil, err
	}
	s.progress("stored %s as %s: %s, %d entries, in %s", key, digest, HumanSize(ts.Size), ts.Entries, time.Since(start).Round(time.Millisecond))
	return s.Inspect(key)
}

// readSource detects src's kind and unpacks it through u.
func (s *Store) readSource(ctx context.Context, src, scratch string, u *unpacker, want string) (*sourceInfo, error) {
	// The source path itself is the caller's choice: resolve its links once
	// so a directory given through a symlink is walked, not copied as a link.
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return s.readDir(ctx, src, u, want)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file or directory", ErrInvalid)
	}
	kind, comp, err := archiveKind(src)
	if err != nil {
		return nil, err
	}
	if kind == "rootfs" {
		s.progress("unpacking %s root filesystem tarball", compressionLabel(comp))
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := u.layer(ctx, f); err != nil {
			return nil, err
		}
		format := "tar"
		if comp != "tar" {
			format = "tar+" + comp
		}
		return &sourceInfo{format: format, layers: 1}, nil
	}
	// An image archive: unpack the archive itself (hardened, no owners,
	// no whiteouts) beside the staging root, then read it as a directory.
	s.progress("unpacking %s archive", kind)
	adir := filepath.Join(scratch, "archive")
	if err := os.Mkdir(adir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := Unpack(ctx, f, adir, UnpackOptions{Limits: s.Limits}); err != nil {
		return nil, fmt.Errorf("unpacking %s archive: %w", kind, err)
	}
	si, err := s.readDir(ctx, adir, u, want)
	if err != nil {
		return nil, err
	}
	if comp != "tar" {
		si.format += "+" + comp
	}
	return si, nil
}

func compressionLabel(comp string) string {
	if comp == "tar" {
		return "an uncompressed"
	}
	return "a " + comp
}

// archiveKind reads the tar headers of the file at p to tell a root
// filesystem tarball from an image archive: the latter holds only
// manifest.json, oci-layout, index.json, repositories, blobs/ and
// <64-hex>/ or <64-hex>.json entries at its top level. It stops at the
// first entry that does not fit, so a large rootfs costs one header.
func archiveKind(p string) (kind, comp string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	r, closeFn, comp, err := decompress(f)
	if err != nil {
		return "", "", err
	}
	defer closeFn()
	tr := tar.NewReader(r)
	manifest, layout, n := false, false, 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if n == 0 {
				return "", "", fmt.Errorf("%w: not a tar archive (%v)", ErrInvalid, err)
			}
			return "", "", fmt.Errorf("reading archive: %w", err)
		}
		n++
		name, err := cleanName(hdr.Name)
		if err != nil || name == "." {
			continue
		}
		top, _, _ := strings.Cut(name, "/")
		switch {
		case name == "manifest.json":
			manifest = true
		case name == "oci-layout":
			layout = true
		case name == "index.json", name == "repositories", top == "blobs",
			hex64.MatchString(top), hex64.MatchString(strings.TrimSuffix(top, ".json")):
		default:
			return "rootfs", comp, nil
		}
	}
	switch {
	case layout:
		return "oci-layout", comp, nil
	case manifest:
		return "docker-save", comp, nil
	}
	return "rootfs", comp, nil
}

// readDir imports a directory: an OCI layout, an unpacked docker save, or
// a root filesystem.
func (s *Store) readDir(ctx context.Context, dir string, u *unpacker, want string) (*sourceInfo, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if isRegular(r, "oci-layout") && isRegular(r, "index.json") {
		return s.readOCILayout(ctx, r, u, want)
	}
	if isRegular(r, "manifest.json") {
		return s.readDockerSave(ctx, r, u, want)
	}
	s.progress("copying the root filesystem directory %s", dir)
	if err := copyDir(ctx, dir, u); err != nil {
		return nil, err
	}
	return &sourceInfo{format: "directory"}, nil
}

func isRegular(r *os.Root, name string) bool {
	fi, err := r.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// maxJSON bounds manifests and configs read into memory.
const maxJSON = 16 << 20

// readJSON decodes the file name inside r (never outside it: the names
// come from the archive) into v.
func readJSON(r *os.Root, name string, v any) ([]byte, error) {
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxJSON {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrLimit, name, maxJSON)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("%w: parsing %s: %v", ErrInvalid, name, err)
	}
	return b, nil
}

// imageConfig is the part of an OCI/Docker image config vial keeps.
type imageConfig struct {
	Config struct {
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
		User       string   `json:"User"`
	} `json:"config"`
}

func (c *imageConfig) toConfig() Config {
	return Config{Env: c.Config.Env, Entrypoint: c.Config.Entrypoint, Cmd: c.Config.Cmd,
		WorkingDir: c.Config.WorkingDir, User: c.Config.User}
}

// dockerManifest is one entry of a docker save manifest.json.
type dockerManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

func (s *Store) readDockerSave(ctx context.Context, r *os.Root, u *unpacker, want string) (*sourceInfo, error) {
	var ms []dockerManifest
	if _, err := readJSON(r, "manifest.json", &ms); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: manifest.json lists no images", ErrInvalid)
	}
	m := ms[0]
	if want != "" {
	pick:
		for _, c := range ms {
			for _, t := range c.RepoTags {
				if k, err := NormalizeName(t); err == nil && k == want {
					m = c
					break pick
				}
			}
		}
	}
	si := &sourceInfo{format: "docker-save", layers: len(m.Layers)}
	if len(m.RepoTags) > 0 {
		si.defaultName = m.RepoTags[0]
	}
	if m.Config != "" {
		var ic imageConfig
		if _, err := readJSON(r, m.Config, &ic); err != nil {
			return nil, fmt.Errorf("reading image config: %w", err)
		}
		si.config = ic.toConfig()
	}
	u.opts.Whiteouts = true
	for i, l := range m.Layers {
		s.progress("layer %d/%d %s", i+1, len(m.Layers), l)
		if err := applyLayerFile(ctx, r, l, u, nil, ""); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, l, err)
		}
	}
	return si, nil
}

// applyLayerFile applies the layer stored at name inside r. With h set,
// the file's bytes are hashed and must equal want (a blob digest's hex).
func applyLayerFile(ctx context.Context, r *os.Root, name string, u *unpacker, h hash.Hash, want string) error {
	f, err := r.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	var src io.Reader = f
	if h != nil {
		src = io.TeeReader(f, h)
	}
	if err := u.layer(ctx, src); err != nil {
		return err
	}
	if h != nil {
		if _, err := io.Copy(io.Discard, src); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("%w: blob content has digest sha256:%s, want sha256:%s", ErrInvalid, got, want)
		}
	}
	return nil
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	} `json:"platform"`
}

// ociManifest is an OCI image manifest or index (Docker's v2 forms too).
type ociManifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// blobName maps a descriptor's digest onto blobs/sha256/<hex>, refusing
// any other shape, since the digest comes from the archive.
func blobName(d descriptor) (string, string, error) {
	alg, hx, ok := strings.Cut(d.Digest, ":")
	if !ok || alg != "sha256" || !hex64.MatchString(hx) {
		return "", "", fmt.Errorf("%w: unsupported digest %q", ErrInvalid, d.Digest)
	}
	return path.Join("blobs", alg, hx), hx, nil
}

// readBlobJSON reads a JSON blob and checks its digest.
func readBlobJSON(r *os.Root, d descriptor, v any) error {
	name, hx, err := blobName(d)
	if err != nil {
		return err
	}
	b, err := readJSON(r, name, v)
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hx {
		return fmt.Errorf("%w: blob %s does not match its digest", ErrInvalid, d.Digest)
	}
	return nil
}

func isIndex(mt string) bool {
	return mt == "application/vnd.oci.image.index.v1+json" ||
		mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// refName is the image name a descriptor's annotations carry.
func refName(d descriptor) string {
	if n := d.Annotations["io.containerd.image.name"]; n != "" {
		return n
	}
	return d.Annotations["org.opencontainers.image.ref.name"]
}

func (s *Store) readOCILayout(ctx context.Context, r *os.Root, u *unpacker, want string) (*sourceInfo, error) {
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	if _, err := readJSON(r, "oci-layout", &layout); err != nil {
		return nil, err
	}
	if layout.Version != "1.0.0" {
		return nil, fmt.Errorf("%w: oci-layout version %q, want 1.0.0", ErrInvalid, layout.Version)
	}
	var idx ociManifest
	if _, err := readJSON(r, "index.json", &idx); err != nil {
		return nil, err
	}
	si := &sourceInfo{format: "oci-layout"}
	d, err := pickManifest(idx.Manifests, want)
	if err != nil {
		return nil, err
	}
	if n := d.Annotations["io.containerd.image.name"]; n != "" {
		si.defaultName = n
	} else if n := d.Annotations["org.opencontainers.image.ref.name"]; n != "" {
		if strings.ContainsAny(n, ":/") {
			si.defaultName = n
		} else {
			si.defaultTag = n
		}
	}
	// Nested indexes (multi-platform images): pick this machine's platform.
	for depth := 0; isIndex(d.MediaType); depth++ {
		if depth > 4 {
			return nil, fmt.Errorf("%w: image indexes nested too deep", ErrInvalid)
		}
		var nested ociManifest
		if err := readBlobJSON(r, d, &nested); err != nil {
			return nil, err
		}
		if d, err = pickManifest(nested.Manifests, ""); err != nil {
			return nil, err
		}
	}
	var m ociManifest
	if err := readBlobJSON(r, d, &m); err != nil {
		return nil, err
	}
	if isIndex(m.MediaType) || len(m.Manifests) > 0 {
		return nil, fmt.Errorf("%w: manifest %s is an index without a media type in its descriptor", ErrInvalid, d.Digest)
	}
	if m.Config.Digest != "" {
		var ic imageConfig
		if err := readBlobJSON(r, m.Config, &ic); err != nil {
			return nil, fmt.Errorf("reading image config: %w", err)
		}
		si.config = ic.toConfig()
	}
	si.layers = len(m.Layers)
	u.opts.Whiteouts = true
	for i, l := range m.Layers {
		name, hx, err := blobName(l)
		if err != nil {
			return nil, err
		}
		s.progress("layer %d/%d %s (%s)", i+1, len(m.Layers), l.Digest[:19], HumanSize(l.Size))
		if err := applyLayerFile(ctx, r, name, u, sha256.New(), hx); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
		}
	}
	return si, nil
}

// pickManifest chooses one image from an index: the one whose ref-name
// annotation is want, else the only one, else the first for this machine's
// platform. Attestations and other non-image entries ("unknown" platform)
// are never picked.
func pickManifest(ds []descriptor, want string) (descriptor, error) {
	var cands []descriptor
	for _, d := range ds {
		if d.Platform != nil && d.Platform.OS == "unknown" {
			continue
		}
		cands = append(cands, d)
	}
	if len(cands) == 0 {
		return descriptor{}, fmt.Errorf("%w: the index lists no images", ErrInvalid)
	}
	if want != "" {
		for _, d := range cands {
			if k, err := NormalizeName(refName(d)); err == nil && k == want {
				return d, nil
			}
		}
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	for _, d := range cands {
		if d.Platform == nil || (d.Platform.OS == "linux" && d.Platform.Architecture == goruntime.GOARCH) {
			return d, nil
		}
	}
	return descriptor{}, fmt.Errorf("%w: no image for linux/%s in the index", ErrInvalid, goruntime.GOARCH)
}

// copyDir feeds the tree at src to u as tar entries, so a directory import
// gets exactly the checks an archive does. Hard links inside src stay hard
// links; symlinks are copied, never followed.
//
// The walk stays on src's filesystem: a directory with something mounted
// on it (proc, sys, a bind of the host) is copied as an empty mount point,
// so importing a live chroot never copies the kernel's or the host's files.
func copyDir(ctx context.Context, src string, u *unpacker) error {
	if src == "/" {
		return fmt.Errorf("%w: importing / would copy the host; use the built-in host image instead", ErrInvalid)
	}
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	var rootDev uint64
	if fi, err := os.Lstat(src); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			rootDev = uint64(st.Dev)
		}
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			// Sockets and other types tar cannot describe.
			u.stats.Entries++
			u.stats.SkippedOther++
			return nil
		}
		hdr.Name = filepath.ToSlash(rel)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
			hdr.Uname, hdr.Gname = "", ""
			if fi.Mode().IsRegular() && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if first, ok := links[k]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					links[k] = hdr.Name
				}
			}
		}
		u.stats.Entries++
		if u.stats.Entries > u.limits.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrLimit, u.limits.MaxEntries)
		}
		var body io.Reader = strings.NewReader("")
		if hdr.Typeflag == tar.TypeReg {
			// O_NOFOLLOW: a file swapped for a symlink while we walk is
			// refused rather than followed out of src.
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			body = f
		}
		if err := u.entry(hdr, body); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.IsDir() && uint64(st.Dev) != rootDev {
			return fs.SkipDir
		}
		return nil
	})
}

// ensureLayout adds what the runtime needs in every image: the mount points
// of a read-only root (MountPoints, FileMountPoints) and users for uid 0
// and 65534. Writes go
// through the image's os.Root, so links in the image cannot redirect them.
func ensureLayout(r *os.Root) error {
	for _, mp := range MountPoints {
		_, err := r.Lstat(mp)
		if err == nil {
			continue
		}
		if err := r.MkdirAll(mp, 0o755); err != nil {
			return fmt.Errorf("creating mount point /%s: %w", mp, err)
		}
		if mp == "tmp" {
			if err := r.Chmod(mp, 0o777|fs.ModeSticky); err != nil {
				return err
			}
		}
	}
	for _, f := range FileMountPoints {
		fi, err := r.Lstat(f)
		if err == nil && fi.Mode().IsRegular() {
			continue
		}
		if err == nil {
			// A link (or anything else) would be followed or refused by
			// the runtime when vial binds its file there; an empty file
			// stands in for it (nothing reads it without the network).
			if err := r.RemoveAll(f); err != nil {
				return fmt.Errorf("replacing /%s: %w", f, err)
			}
		}
		if err := r.MkdirAll(path.Dir(f), 0o755); err != nil {
			return fmt.Errorf("creating /%s: %w", path.Dir(f), err)
		}
		if err := r.WriteFile(f, nil, 0o644); err != nil {
			return fmt.Errorf("creating mount point /%s: %w", f, err)
		}
	}
	if err := ensureLine(r, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", ":65534:", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"); err != nil {
		return err
	}
	return ensureLine(r, "etc/group", "root:x:0:\n", ":65534:", "nogroup:x:65534:\n")
}

// ensureLine appends line to the file name unless a line holds marker in
// its third field; a missing file is created holding first and line.
func ensureLine(r *os.Root, name, first, marker, line string) error {
	fi, err := r.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		return r.WriteFile(name, []byte(first+line), 0o644)
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return nil // a link or something odd: leave the image's choice alone
	}
	b, err := r.ReadFile(name)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 4)
		if len(f) >= 3 && ":"+f[2]+":" == marker {
			return nil
		}
	}
	f, err := r.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if len(b) > 0 && b[len(b)-1] != '\n' {
		line = "\n" + line
	}
	_, err = f.WriteString(line)
	return err
}

// nameFromPath derives an image name from a file or directory name:
// "python-3.12.tar.zst" gives "python-3.12".
func nameFromPath(p string) string {
	base := strings.ToLower(filepath.Base(p))
	for _, ext := range []string{".tar.gz", ".tar.zst", ".tar.bz2", ".tgz", ".tzst", ".tar", ".oci", ".gz", ".zst"} {
		if strings.HasSuffix(base, ext) {
			base = strings.TrimSuffix(base, ext)
			break
		}
	}
	var b strings.Builder
	for _, c := range base {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), ".-_")
}

// HumanSize formats a byte count as "104.2 MB" (SI units, as du -h --si).
func HumanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
