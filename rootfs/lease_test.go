package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInUseImagesSurviveRmAndGC checks that an image a live sandbox runs
// from (a held lease) is neither removed by rm nor collected by gc, and
// that a lease whose owner died pins nothing.
func TestInUseImagesSurviveRmAndGC(t *testing.T) {
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "a.tar"), mkTar(t, baseRootfs()...))
	img, err := s.Import(t.Context(), p, "busy")
	if err != nil {
		t.Fatal(err)
	}
	release, err := Use(img)
	if err != nil {
		t.Fatal(err)
	}
	release2, err := Use(img)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Inspect("busy"); err != nil || info.InUse != 2 {
		t.Fatalf("Inspect: in use %v, %v; want 2", info, err)
	}

	err = s.Remove("busy", false)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "2 running sandbox") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Remove of an image in use: %v", err)
	}
	if _, err := s.Resolve("busy"); err != nil {
		t.Fatalf("a refused Remove changed the store: %v", err)
	}
	// --force drops the name, keeps the content while it is used.
	if err := s.Remove("busy", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("busy"); !errors.Is(err, ErrNotFound) {
		t.Errorf("name still resolves after rm --force: %v", err)
	}
	res, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || !slices.Equal(res.InUse, []string{img.Digest}) {
		t.Errorf("GC with the image in use = %+v", res)
	}
	if _, err := os.Stat(filepath.Join(img.Root, "usr/bin/sh")); err != nil {
		t.Fatalf("GC deleted a tree in use: %v", err)
	}

	// A lease whose owner died (nobody holds its lock) pins nothing.
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := release2(); err != nil {
		t.Fatal(err)
	}
	stale := writeFile(t, filepath.Join(s.Dir(), "uses", "deadbeef"), []byte(img.Digest+"\n"))
	res, err = s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Removed, []string{img.Digest}) || len(res.InUse) != 0 {
		t.Errorf("GC after the sandboxes ended = %+v", res)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale lease not pruned: %v", err)
	}

	// Use of an image removed meanwhile fails cleanly instead of starting a
	// sandbox on a missing tree.
	if _, err := Use(img); !errors.Is(err, ErrNotFound) {
		t.Errorf("Use of a removed image: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "uses")); len(ents) != 0 {
		t.Errorf("leases left behind: %v", ents)
	}
}

// TestUseNeedsNoLeaseOutsideTheStore: host and directory images are not
// the store's to delete.
func TestUseNeedsNoLeaseOutsideTheStore(t *testing.T) {
	for _, img := range []*Image{nil, {Name: "host", Root: "/x/rootfs"}, {Name: "fake", Digest: "sha256:" + strings.Repeat("a", 64), Root: t.TempDir()}} {
		release, err := Use(img)
		if err != nil || release() != nil {
			t.Errorf("Use(%+v): %v", img, err)
		}
	}
}
