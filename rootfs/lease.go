package rootfs

import (
	"github.com/containerd/errdefs"

	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrInUse classifies a refusal to remove an image that live sandboxes run
// from.
var ErrInUse = errdefs.ErrFailedPrecondition.WithMessage("image in use")

// Leases record which stored images live sandboxes run from, so that
// Remove and GC never delete a tree under a running sandbox:
//
//	images/uses/<random>    holds the digest; flock(2)ed by its owner
//
// A lease is live while its owner holds the flock: the lock goes with the
// owning process, so a vial killed with SIGKILL leaves a stale file that
// the next Remove or GC deletes, never a lease that pins an image for
// ever. (Its orphaned sandbox is the runtime's garbage to collect.)

// Use records that a sandbox runs from img until release is called or the
// calling process exits. Images that are not in a store (host, directory
// images) need no lease: release is then a no-op. Use and Remove exclude
// each other through the store lock, so either Remove sees the lease, or
// Use finds the image gone and returns an ErrNotFound error; the sandbox
// is never started on a tree that is being deleted. Safe for concurrent
// use by several goroutines and processes.
func Use(img *Image) (release func() error, err error) {
	noop := func() error { return nil }
	if img == nil || img.Digest == "" {
		return noop, nil
	}
	hexPart, ok := strings.CutPrefix(img.Digest, "sha256:")
	content := filepath.Dir(img.Root)
	if !ok || filepath.Base(img.Root) != "rootfs" || filepath.Base(content) != hexPart ||
		filepath.Base(filepath.Dir(content)) != "sha256" {
		return noop, nil // an Image made by hand, not by a Store
	}
	imagesDir := filepath.Dir(filepath.Dir(content))
	unlock, err := flockFile(filepath.Join(imagesDir, "lock"), syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	uses := filepath.Join(imagesDir, "uses")
	if err := os.MkdirAll(uses, 0o700); err != nil {
		return nil, fmt.Errorf("recording image use: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := hex.EncodeToString(b[:])
	// Written aside and locked before it gets its real name: Remove
	// ignores dot files, so it never finds a lease not yet locked.
	tmp := filepath.Join(uses, "."+name)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording image use: %w", err)
	}
	fail := func(err error) (func() error, error) {
		os.Remove(tmp)
		f.Close()
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fail(fmt.Errorf("locking image use: %w", err))
	}
	if _, err := f.WriteString(img.Digest + "\n"); err != nil {
		return fail(fmt.Errorf("recording image use: %w", err))
	}
	if _, err := os.Stat(filepath.Join(content, "image.json")); err != nil {
		return fail(fmt.Errorf("image %s (%s): %w: it was removed from the store", img.Name, img.Digest, ErrNotFound))
	}
	lease := filepath.Join(uses, name)
	if err := os.Rename(tmp, lease); err != nil {
		return fail(fmt.Errorf("recording image use: %w", err))
	}
	return func() error {
		// Removed before it is unlocked, so no one sees it stale.
		err := os.Remove(lease)
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("releasing image use: %w", err)
		}
		return nil
	}, nil
}

// flockFile opens (creating) name and takes how (LOCK_SH or LOCK_EX) on
// it, waiting as long as it takes; the returned func releases it.
func flockFile(name string, how int) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening store lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking image store: %w", err)
	}
	return func() { f.Close() }, nil
}

// inUse counts the live leases per digest. With prune set (the caller
// holds the store lock exclusively, so no Use is half-way) it also deletes
// the stale ones: leases whose owner died.
func (s *Store) inUse(prune bool) (map[string]int, error) {
	uses := filepath.Join(s.dir, "uses")
	ents, err := os.ReadDir(uses)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing image uses: %w", err)
	}
	out := map[string]int{}
	for _, e := range ents {
		p := filepath.Join(uses, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			if prune && !busy(p) {
				os.Remove(p)
			}
			continue
		}
		if busy(p) {
			b, err := os.ReadFile(p)
			if err != nil {
				continue // released between the two calls
			}
			out[strings.TrimSpace(string(b))]++
			continue
		}
		if prune {
			os.Remove(p)
		}
	}
	return out, nil
}
