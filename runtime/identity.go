package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/oci"
)

// UserName is the name a sandbox's own uid has inside it (in the
// /etc/passwd and /etc/group vial binds over the image's).
const UserName = "sandbox"

// maxIdentityFile bounds how much of an image's /etc/passwd or /etc/group
// is read.
const maxIdentityFile = 1 << 20

// prepareUser decides the host uid and gid the sandbox runs as: the
// caller's lease (req.User), else 65534 for a workspace the caller named
// (its files must stay writable by the next sandbox on it, and 65534 is
// what they were written as), else a uid leased for this sandbox alone and
// released at teardown, after its last process is gone.
func (e *Engine) prepareUser(s *sandbox, req *Request, cu *cleanup.Stack) error {
	switch {
	case req.User != nil:
		s.uid, s.gid = req.User.UID(), req.User.GID()
	case req.Workspace != "":
		s.uid, s.gid = oci.UID, oci.GID
	default:
		l, err := hostuid.Acquire(hostuid.Dir, s.dir)
		if err != nil {
			if errors.Is(err, hostuid.ErrExhausted) {
				return fmt.Errorf("%w: %w", ErrExhausted, err)
			}
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		cu.Add(l.Release)
		s.uid, s.gid = l.UID(), l.GID()
	}
	return nil
}

// identityBinds gives a sandbox with a uid of its own a name for it: copies
// of the image's /etc/passwd and /etc/group with a "sandbox" entry for the
// uid and gid added, bound read-only over the image's, so that `id`,
// `whoami`, getpwuid and programs that need a user name (git, ssh, pip
// --user) work. An image without a regular /etc/passwd (a directory image
// may have none, or a symlink) gets nothing: a bind onto a missing target
// would make the runtime create it inside the image.
func identityBinds(s *sandbox, img *rootfs.Image) ([]rootfs.Bind, error) {
	if s.uid == oci.UID {
		return nil, nil // the images' own nobody entry
	}
	r, err := os.OpenRoot(img.Root)
	if err != nil {
		return nil, fmt.Errorf("opening image root: %w", err)
	}
	defer r.Close()
	var binds []rootfs.Bind
	for _, f := range []struct {
		name string
		line func(name string) string
	}{
		{"passwd", func(n string) string { return fmt.Sprintf("%s:x:%d:%d:vial sandbox:/tmp:/bin/sh\n", n, s.uid, s.gid) }},
		{"group", func(n string) string { return fmt.Sprintf("%s:x:%d:\n", n, s.gid) }},
	} {
		rel := "etc/" + f.name
		fi, err := r.Lstat(rel)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		in, err := r.Open(rel)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(in, maxIdentityFile+1))
		in.Close()
		if err != nil || len(data) > maxIdentityFile {
			continue
		}
		name := UserName
		if hasName(data, name) {
			name = "vial-" + UserName
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		data = append(data, f.line(name)...)
		out := filepath.Join(s.dir, "etc-"+f.name)
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return nil, fmt.Errorf("writing the sandbox's /etc/%s: %w", f.name, err)
		}
		binds = append(binds, rootfs.Bind{Source: out, Target: "/" + rel})
	}
	return binds, nil
}

// hasName reports whether a passwd or group file has an entry called name.
func hasName(data []byte, name string) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if n, _, ok := strings.Cut(sc.Text(), ":"); ok && n == name {
			return true
		}
	}
	return false
}
