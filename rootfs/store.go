package rootfs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vial-run/vial/internal/lazyre"
)

// Store is vial's content-addressed image store under <stateDir>/images:
//
//	images/index.json             names ("python:latest") -> digests and image config
//	images/lock                   flock(2) serialising index changes and gc
//	images/sha256/<hex>/rootfs/   the unpacked root filesystem, never written after unpack
//	images/sha256/<hex>/image.json  what the tree holds and where it came from
//	images/tmp/<random>/          imports in progress (each holds a flocked .lock)
//	images/host/                  the built-in host image (see Host)
//
// A tree is unpacked once, named by the digest of its content, and shared
// read-only by every sandbox that uses it (the runtime mounts it read-only
// as the bundle's root); a second import of the same content only adds a
// name. A Store is safe for concurrent use by several goroutines and
// processes once its fields are set: imports unpack aside and take the
// lock only to rename the result into place and update the index.
type Store struct {
	// Limits bound every import's unpacking; zero fields take defaults.
	Limits Limits
	// Progress receives human-readable step lines during Import and Build
	// (nil: none). It is written from the calling goroutine only.
	Progress io.Writer

	stateDir string
	dir      string
}

// ImageInfo describes a stored image.
type ImageInfo struct {
	Name     string      `json:"name"`    // the name it was looked up by ("" when looked up by digest)
	Names    []string    `json:"names"`   // every name that points at Digest
	Digest   string      `json:"digest"`  // "sha256:<hex>", see TreeDigest
	Root     string      `json:"root"`    // the unpacked root filesystem
	Size     int64       `json:"size"`    // bytes of regular files
	Entries  int         `json:"entries"` // files, directories and links
	Created  time.Time   `json:"created"` // when the content was first stored
	Source   string      `json:"source"`  // what the name was imported from
	Format   string      `json:"format"`  // "tar", "docker-save", "oci-layout", "directory", "mmdebstrap", ...
	Layers   int         `json:"layers,omitempty"`
	Config   Config      `json:"config"`
	Recipe   string      `json:"recipe,omitempty"`   // the build recipe, for built images
	Packages []string    `json:"packages,omitempty"` // extra packages baked in by build
	Unpack   UnpackStats `json:"unpack"`
	InUse    int         `json:"in_use"` // live sandboxes running from it now (see Use)
}

// Config is the runtime configuration an image archive carried (OCI image
// config); vial uses Env and ignores the rest, which is kept for inspect.
type Config struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// index is images/index.json.
type index struct {
	Version int                  `json:"version"`
	Names   map[string]*indexRef `json:"names"`
}

// indexRef is one name: its digest and the per-name facts (the same tree
// can come from two archives with different configs).
type indexRef struct {
	Digest   string    `json:"digest"`
	Created  time.Time `json:"created"`
	Source   string    `json:"source"`
	Format   string    `json:"format"`
	Layers   int       `json:"layers,omitempty"`
	Config   Config    `json:"config"`
	Recipe   string    `json:"recipe,omitempty"`
	Packages []string  `json:"packages,omitempty"`
}

// contentMeta is sha256/<hex>/image.json: facts about the tree itself.
type contentMeta struct {
	Digest  string      `json:"digest"`
	Size    int64       `json:"size"`
	Entries int         `json:"entries"`
	Created time.Time   `json:"created"`
	Unpack  UnpackStats `json:"unpack"`
}

// OpenStore opens (creating if needed) the image store under
// <stateDir>/images.
func OpenStore(stateDir string) (*Store, error) {
	if stateDir == "" {
		return nil, fmt.Errorf("opening image store: %w: empty state directory", ErrInvalid)
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	s := &Store{stateDir: abs, dir: filepath.Join(abs, "images")}
	for _, d := range []string{s.dir, filepath.Join(s.dir, "sha256")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("opening image store: %w", err)
		}
	}
	// Imports in progress may hold half-unpacked archives: owner only.
	if err := os.MkdirAll(filepath.Join(s.dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	return s, nil
}

// Dir returns the store's directory, <stateDir>/images.
func (s *Store) Dir() string { return s.dir }

func (s *Store) progress(format string, args ...any) {
	if s.Progress != nil {
		fmt.Fprintf(s.Progress, "==> "+format+"\n", args...)
	}
}

// lock takes the store's exclusive lock; the returned func releases it.
// Use takes it shared while it records a lease.
func (s *Store) lock() (func(), error) {
	return flockFile(filepath.Join(s.dir, "lock"), syscall.LOCK_EX)
}

func (s *Store) readIndex() (*index, error) {
	idx := &index{Version: 1, Names: map[string]*indexRef{}}
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading image index: %w", err)
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("reading image index %s: %w", filepath.Join(s.dir, "index.json"), err)
	}
	if idx.Names == nil {
		idx.Names = map[string]*indexRef{}
	}
	return idx, nil
}

// writeIndex replaces index.json atomically: write aside, fsync, rename.
// Callers hold the lock.
func (s *Store) writeIndex(idx *index) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, "index.json"), append(b, '\n'), 0o644)
}

func writeFileAtomic(name string, data []byte, perm fs.FileMode) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

var hex64 = lazyre.New(`^[0-9a-f]{64}$`)

// contentDir returns sha256/<hex> for a "sha256:<hex>" digest, refusing
// anything else so a digest can never become a path outside the store.
func (s *Store) contentDir(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || !hex64.MatchString(hexPart) {
		return "", fmt.Errorf("%w: malformed digest %q", ErrInvalid, digest)
	}
	return filepath.Join(s.dir, "sha256", hexPart), nil
}

// Resolve returns the image called name: "host" is the built-in host image
// (Host), an absolute path a directory image (Dir), "sha256:<hex>" (or an
// unambiguous prefix of at least 12 hex digits) a stored digest, and
// anything else a stored name, "repo[:tag]" with tag "latest" when absent
// ("python:3.11-slim", "docker.io/library/python:3.12" and "python:3.12"
// are one name). A missing image is an ErrNotFound error that names the
// command that would get it.
func (s *Store) Resolve(name string) (*Image, error) {
	switch {
	case name == "host":
		return Host(s.stateDir)
	case filepath.IsAbs(name):
		return Dir(name)
	}
	info, err := s.stored(name)
	if err != nil {
		return nil, err
	}
	return info.image(), nil
}

// stored describes the stored image name without its use count.
func (s *Store) stored(name string) (*ImageInfo, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	ref, key, err := s.lookup(idx, name)
	if err != nil {
		return nil, err
	}
	return s.info(idx, key, ref)
}

func (info *ImageInfo) image() *Image {
	env := append([]string(nil), info.Config.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append([]string{DefaultPath}, env...)
	}
	name := info.Name
	if name == "" {
		name = info.Digest
	}
	return &Image{Name: name, Digest: info.Digest, Root: info.Root, Env: env}
}

// Inspect describes the stored image name (a name or a digest, as for
// Resolve; "host" and directories are not stored images).
func (s *Store) Inspect(name string) (*ImageInfo, error) {
	info, err := s.stored(name)
	if err != nil {
		return nil, err
	}
	if uses, err := s.inUse(false); err == nil {
		info.InUse = uses[info.Digest]
	}
	return info, nil
}

// lookup finds name in idx; key is the normalized name ("" for a digest).
func (s *Store) lookup(idx *index, name string) (*indexRef, string, error) {
	if strings.HasPrefix(name, "sha256:") {
		digest, err := s.expandDigest(name)
		if err != nil {
			return nil, "", err
		}
		// Prefer a name's config; a digest without one has only content.
		for _, k := range sortedNames(idx) {
			if idx.Names[k].Digest == digest {
				return idx.Names[k], "", nil
			}
		}
		return &indexRef{Digest: digest}, "", nil
	}
	key, err := NormalizeName(name)
	if err != nil {
		return nil, "", err
	}
	ref, ok := idx.Names[key]
	if !ok {
		return nil, "", fmt.Errorf("image %q: %w in %s; get it with %s", name, ErrNotFound, s.dir, s.hint(key))
	}
	return ref, key, nil
}

// expandDigest turns a digest or a prefix of at least 12 hex digits into
// the full digest of a stored tree.
func (s *Store) expandDigest(d string) (string, error) {
	hexPart := strings.TrimPrefix(d, "sha256:")
	if hex64.MatchString(hexPart) {
		dir, _ := s.contentDir(d)
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("image %s: %w", d, ErrNotFound)
		}
		return d, nil
	}
	if len(hexPart) < 12 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: digest %q: want sha256: and 64 hex digits, or at least 12", ErrInvalid, d)
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return "", fmt.Errorf("listing images: %w", err)
	}
	var found []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), hexPart) && hex64.MatchString(e.Name()) {
			found = append(found, "sha256:"+e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("image %s: %w", d, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: digest prefix %s matches %d images", ErrInvalid, d, len(found))
}

// hint is the command that would create the missing image key.
func (s *Store) hint(key string) string {
	global := ""
	if s.stateDir != "/var/lib/vial" {
		global = " --state-dir " + s.stateDir
	}
	imp := fmt.Sprintf("%q", "vial"+global+" rootfs import FILE --name "+key)
	if recipe := RecipeFor(key); recipe != "" {
		b := "vial" + global + " rootfs build " + recipe
		if key != recipe+":latest" {
			b += " --name " + key
		}
		return fmt.Sprintf("%q or %s", b, imp)
	}
	return imp
}

func (s *Store) info(idx *index, key string, ref *indexRef) (*ImageInfo, error) {
	dir, err := s.contentDir(ref.Digest)
	if err != nil {
		return nil, err
	}
	var cm contentMeta
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image %s (%s): %w: its content is missing from the store; import it again", key, ref.Digest, ErrNotFound)
		}
		return nil, fmt.Errorf("reading image metadata: %w", err)
	}
	if err := json.Unmarshal(b, &cm); err != nil {
		return nil, fmt.Errorf("reading image metadata %s: %w", filepath.Join(dir, "image.json"), err)
	}
	info := &ImageInfo{
		Name: key, Digest: ref.Digest, Root: filepath.Join(dir, "rootfs"),
		Size: cm.Size, Entries: cm.Entries, Created: ref.Created, Source: ref.Source,
		Format: ref.Format, Layers: ref.Layers, Config: ref.Config, Recipe: ref.Recipe,
		Packages: ref.Packages, Unpack: cm.Unpack,
	}
	if info.Created.IsZero() {
		info.Created = cm.Created
	}
	for _, k := range sortedNames(idx) {
		if idx.Names[k].Digest == ref.Digest {
			info.Names = append(info.Names, k)
		}
	}
	return info, nil
}

func sortedNames(idx *index) []string {
	keys := make([]string, 0, len(idx.Names))
	for k := range idx.Names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// List describes every stored name, sorted by name, and every stored tree
// no name points at (Name ""; gc removes those).
func (s *Store) List() ([]*ImageInfo, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	uses, err := s.inUse(false)
	if err != nil {
		return nil, err
	}
	var out []*ImageInfo
	named := map[string]bool{}
	for _, k := range sortedNames(idx) {
		info, err := s.info(idx, k, idx.Names[k])
		if err != nil {
			return nil, err
		}
		info.InUse = uses[info.Digest]
		named[info.Digest] = true
		out = append(out, info)
	}
	digests, err := s.digests()
	if err != nil {
		return nil, err
	}
	for _, d := range digests {
		if named[d] {
			continue
		}
		if info, err := s.info(idx, "", &indexRef{Digest: d}); err == nil {
			info.InUse = uses[d]
			out = append(out, info)
		}
	}
	return out, nil
}

// digests lists the stored trees.
func (s *Store) digests() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []string
	for _, e := range ents {
		if hex64.MatchString(e.Name()) {
			out = append(out, "sha256:"+e.Name())
		}
	}
	return out, nil
}

// Remove deletes the name (or, given a digest, every name pointing at it)
// and then the content itself once no name points at it. Content that
// live sandboxes run from (see Use) is never deleted: without force,
// Remove refuses with an ErrInUse error and changes nothing; with force,
// it removes the names and leaves the content for a later GC, after the
// sandboxes have ended.
func (s *Store) Remove(name string, force bool) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	ref, key, err := s.lookup(idx, name)
	if err != nil {
		return err
	}
	if key != "" {
		delete(idx.Names, key)
	} else {
		for k, r := range idx.Names {
			if r.Digest == ref.Digest {
				delete(idx.Names, k)
			}
		}
	}
	stillNamed := false
	for _, r := range idx.Names {
		stillNamed = stillNamed || r.Digest == ref.Digest
	}
	inUse := 0
	if !stillNamed {
		uses, err := s.inUse(true)
		if err != nil {
			return err
		}
		inUse = uses[ref.Digest]
	}
	if inUse > 0 && !force {
		return fmt.Errorf("image %s (%s): %w by %d running sandbox(es); stop them first (vial ps lists them), or rm --force to drop the name now and let vial rootfs gc remove the content after they end",
			name, shortHex(ref.Digest), ErrInUse, inUse)
	}
	if err := s.writeIndex(idx); err != nil {
		return err
	}
	if stillNamed || inUse > 0 {
		return nil
	}
	dir, err := s.contentDir(ref.Digest)
	if err != nil {
		return err
	}
	if err := removeTree(dir); err != nil {
		return fmt.Errorf("removing image %s: %w", ref.Digest, err)
	}
	return nil
}

func shortHex(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// GCResult is what GC removed.
type GCResult struct {
	Removed []string // digests of removed trees
	Bytes   int64    // their size
	Staging int      // abandoned import directories removed
	InUse   []string // digests of unnamed trees kept because live sandboxes use them
}

// GC removes every stored tree no name points at, unless a live sandbox
// runs from it (see Use), every import directory whose importer is gone
// (its .lock is not held), and the leases of sandboxes whose owner died.
func (s *Store) GC() (GCResult, error) {
	var res GCResult
	unlock, err := s.lock()
	if err != nil {
		return res, err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return res, err
	}
	named := map[string]bool{}
	for _, r := range idx.Names {
		named[r.Digest] = true
	}
	digests, err := s.digests()
	if err != nil {
		return res, err
	}
	uses, err := s.inUse(true)
	if err != nil {
		return res, err
	}
	var errs []error
	for _, d := range digests {
		if named[d] {
			continue
		}
		if uses[d] > 0 {
			res.InUse = append(res.InUse, d)
			continue
		}
		dir, _ := s.contentDir(d)
		var cm contentMeta
		if b, err := os.ReadFile(filepath.Join(dir, "image.json")); err == nil {
			_ = json.Unmarshal(b, &cm)
		}
		if err := removeTree(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", d, err))
			continue
		}
		res.Removed = append(res.Removed, d)
		res.Bytes += cm.Size
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		errs = append(errs, fmt.Errorf("listing %s: %w", filepath.Join(s.dir, "tmp"), err))
	}
	for _, e := range ents {
		dir := filepath.Join(s.dir, "tmp", e.Name())
		if busy(filepath.Join(dir, ".lock")) {
			continue
		}
		if err := removeTree(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
			continue
		}
		res.Staging++
	}
	return res, errors.Join(errs...)
}

// busy reports whether another open file description holds an flock on
// name; a missing lock file means nobody does.
func busy(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	return false
}

// staging is one import's private directory under images/tmp; its .lock
// is held until the import ends so gc leaves it alone.
type staging struct {
	dir  string
	lock *os.File
}

func (s *Store) newStaging() (*staging, error) {
	var b [8]byte
	rand.Read(b[:])
	dir := filepath.Join(s.dir, "tmp", hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating import directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("locking import directory: %w", err)
	}
	return &staging{dir: dir, lock: f}, nil
}

func (st *staging) discard() {
	removeTree(st.dir)
	st.lock.Close()
}

// commit moves a fully unpacked and digested tree (st.dir/image) into the
// store under digest and points name at it, all under the store lock so gc
// never sees a tree without its name.
func (s *Store) commit(st *staging, digest, name string, ref *indexRef) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	dir, err := s.contentDir(digest)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "image.json")); err == nil {
		s.progress("content already stored as %s; adding the name only", digest)
	} else {
		if _, err := os.Lstat(dir); err == nil {
			// A tree without metadata is left from a crash: replace it.
			if err := removeTree(dir); err != nil {
				return fmt.Errorf("removing incomplete %s: %w", dir, err)
			}
		}
		if err := os.Rename(filepath.Join(st.dir, "image"), dir); err != nil {
			return fmt.Errorf("moving image into the store: %w", err)
		}
		// The tree is shared by every sandbox and must never change after
		// its digest was taken: nothing in vial opens it for writing, and
		// the runtime mounts it read-only. Directory modes are left as the
		// image has them (a read-only store directory would stop nothing
		// for root and only make removal harder for everyone else).
		_ = os.Chmod(filepath.Join(dir, "image.json"), 0o444)
	}
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	ref.Digest = digest
	idx.Names[name] = ref
	return s.writeIndex(idx)
}

// nameRE and tagRE follow the OCI distribution spec's reference grammar,
// with an optional registry host (which may carry a port) first.
var (
	componentRE = lazyre.New(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	hostRE      = lazyre.New(`^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?$`)
	tagRE       = lazyre.New(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// NormalizeName returns the canonical "repo:tag" form of an image name:
// tag "latest" when absent, and Docker Hub's implicit prefixes removed, so
// "python", "python:latest" and "docker.io/library/python:latest" are the
// same name. "host" and digests are not names.
func NormalizeName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: image name %q: %s", ErrInvalid, name, why)
	}
	if name == "" {
		return bad("empty")
	}
	if len(name) > 255 {
		return bad("longer than 255 characters")
	}
	repo, tag := name, "latest"
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		repo, tag = name[:i], name[i+1:]
	}
	if strings.Contains(tag, "@") || strings.Contains(repo, "@") {
		return bad("digest references are not names; use sha256:<hex> alone")
	}
	if !tagRE.MatchString(tag) {
		return bad("the tag must be letters, digits, '_', '.' or '-'")
	}
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"} {
		if rest, ok := strings.CutPrefix(repo, p); ok && rest != "" {
			repo = rest
			break
		}
	}
	parts := strings.Split(repo, "/")
	for i, c := range parts {
		if i == 0 && len(parts) > 1 && (strings.ContainsAny(c, ".:") || c == "localhost") {
			if !hostRE.MatchString(c) {
				return bad("malformed registry host " + c)
			}
			continue
		}
		if !componentRE.MatchString(c) {
			return bad("want lower-case letters, digits and separators (. _ -) between '/'")
		}
	}
	if repo == "host" {
		return bad(`"host" is the built-in host image`)
	}
	if repo == "sha256" {
		return bad("sha256 is reserved for digests")
	}
	return repo + ":" + tag, nil
}
