package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vial-run/vial/runtime/oci"
)

// Network attaches a sandbox to a network its caller prepared (package
// egress does: a namespace whose only way out is vial's proxy and DNS).
// A Request without one gets an empty network namespace with only
// loopback.
type Network struct {
	// NetnsPath is a pinned network namespace the sandbox joins instead
	// of getting an empty one of its own.
	NetnsPath string
	// ResolvConf is a host file bound read-only at /etc/resolv.conf. The
	// image must already hold a regular file there (every image vial
	// stores or generates does): a runtime creates a missing bind target
	// inside the image, which other sandboxes share. Empty binds nothing.
	ResolvConf string
	// Env is added to the sandbox's environment after Request.Env (the
	// proxy variables).
	Env []string
}

// SandboxParams are the facts about one sandbox that a backend may turn
// into its own command-line flags (Backend.SandboxArgs).
type SandboxParams struct {
	// Network is true when the sandbox joins a Network instead of getting
	// an empty namespace.
	Network bool
}

// resolvTarget is where Network.ResolvConf is bound.
const resolvTarget = "/etc/resolv.conf"

// checkNetwork validates req.Network against the request's image.
func checkNetwork(req *Request) error {
	n := req.Network
	if n == nil {
		return nil
	}
	var errs []error
	if !filepath.IsAbs(n.NetnsPath) || filepath.Clean(n.NetnsPath) != n.NetnsPath {
		errs = append(errs, fmt.Errorf("network namespace path %q: must be an absolute, clean path", n.NetnsPath))
	}
	if n.ResolvConf != "" && (!filepath.IsAbs(n.ResolvConf) || filepath.Clean(n.ResolvConf) != n.ResolvConf) {
		errs = append(errs, fmt.Errorf("resolv.conf path %q: must be an absolute, clean path", n.ResolvConf))
	}
	for _, kv := range n.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("network environment entry %q is not KEY=VALUE", kv))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if n.ResolvConf != "" && req.Image != nil {
		if err := regularInImage(req.Image.Root, resolvTarget); err != nil {
			return fmt.Errorf("image %s: %w: %v; the network's resolv.conf is bound there and creating it would change the image every sandbox shares (vial rootfs build|import adds it)",
				req.Image.Name, ErrInvalid, err)
		}
	}
	return nil
}

// regularInImage checks that target (absolute, inside the sandbox) is a
// regular file in the image root, resolving links inside the root only: a
// link there would let the runtime create or cover a file elsewhere.
func regularInImage(root, target string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening image root: %w", err)
	}
	defer r.Close()
	fi, err := r.Lstat(strings.TrimPrefix(target, "/"))
	switch {
	case err != nil:
		return fmt.Errorf("it has no %s", target)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("its %s is not a regular file (%s)", target, fi.Mode().Type())
	}
	return nil
}

// networkOpts joins the sandbox to n: its namespace, its resolv.conf and
// its environment. Nil keeps the base spec's empty namespace.
func networkOpts(n *Network) []oci.SpecOpt {
	if n == nil {
		return nil
	}
	opts := []oci.SpecOpt{oci.WithNetworkNamespace(n.NetnsPath)}
	if n.ResolvConf != "" {
		opts = append(opts, oci.WithReadOnlyBind(n.ResolvConf, resolvTarget))
	}
	return append(opts, oci.WithEnv(n.Env...))
}

// sandboxArgs are the backend's global arguments for this request.
func (b *Backend) sandboxArgs(req *Request) []string {
	if b.SandboxArgs == nil {
		return nil
	}
	return b.SandboxArgs(SandboxParams{Network: req.Network != nil})
}

// runCommand is the runtime invocation that creates and starts s: the
// backend's global arguments, then s's own (Backend.SandboxArgs), then
// args.
func (s *sandbox) runCommand(args ...string) *exec.Cmd {
	return s.backend.command(s.root, append(slices.Clone(s.args), args...)...)
}
