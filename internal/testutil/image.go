package testutil

import (
	"os"
	"testing"

	"github.com/vial-run/vial/rootfs"
)

// StoreEnv names the environment variable that points tests at a vial
// state directory holding built images (CI builds the python image there
// once and reuses it, see .ci/run); ImageEnv names the image to use from
// it, "python" when unset.
const (
	StoreEnv = "VIAL_TEST_STORE"
	ImageEnv = "VIAL_TEST_IMAGE"
)

// StoredImage returns the test image from the store under $VIAL_TEST_STORE.
// Without one, the test skips with the command that would make it, and
// fails under CI=true, where the image is part of the set-up. The store is
// only read (and leased, see rootfs.Use): tests never change its images.
func StoredImage(t testing.TB) *rootfs.Image {
	t.Helper()
	dir := os.Getenv(StoreEnv)
	name := os.Getenv(ImageEnv)
	if name == "" {
		name = "python"
	}
	Require(t, dir != "", "no stored image to test against: set "+StoreEnv+"=DIR after `vial --state-dir DIR rootfs build "+name+"` (CI does this in .ci/run)")
	st, err := rootfs.OpenStore(dir)
	if err != nil {
		t.Fatalf("opening the test image store %s: %v", dir, err)
	}
	img, err := st.Resolve(name)
	Require(t, err == nil, "test image: "+errString(err))
	return img
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
