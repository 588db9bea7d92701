package runtime

import (
	"fmt"

	"github.com/vial-run/vial/internal/cleanup"
	"github.com/vial-run/vial/rootfs"
)

// useImage records in the image store that a sandbox runs from img until
// its teardown (rootfs.Use), so that `vial rootfs rm` and `vial rootfs gc`
// never delete a tree under a live sandbox. Host and directory images need
// no record. The record is an flock held by this process, so a crash
// leaves nothing that pins the image.
//
// A stored image must already hold every mount target the sandbox gets
// (rootfs.MountPoints; vial creates them when it stores an image): a
// runtime would otherwise create the missing ones inside the shared tree.
func useImage(req *Request, cu *cleanup.Stack) error {
	img := req.Image
	var targets []string
	for _, mp := range rootfs.SandboxMountPoints {
		targets = append(targets, "/"+mp)
	}
	for _, b := range append(append([]rootfs.Bind(nil), img.Binds...), req.Binds...) {
		targets = append(targets, b.Target)
	}
	if mp := img.MissingMountPoint(targets...); mp != "" {
		return fmt.Errorf("image %s (%s): %w: it has no %s to mount on, and creating it would change the image every sandbox shares; build or import it again (vial rootfs build|import), which adds the mount points vial needs",
			img.Name, img.Digest, ErrInvalid, mp)
	}
	release, err := rootfs.Use(img)
	if err != nil {
		return err
	}
	cu.Add(release)
	return nil
}
