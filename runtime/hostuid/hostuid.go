// Package hostuid hands out host uids to sandboxes, one each, from a range
// no account on a normal host uses, so that sandboxes never share the
// kernel's per-user limits and counters: inotify instances and watches,
// RLIMIT_NPROC, keyrings, POSIX message queue bytes, pending signals. (All
// sandboxes used to run as uid 65534, and one that took all 128 inotify
// instances left every other sandbox with EMFILE.)
//
// Why no user namespaces: runc 1.1 and crun 1.8 can map a sandbox's uid
// onto a per-sandbox host uid, but a user namespace created by root
// charges every per-user count of the processes inside it to root in the
// parent namespace as well (the kernel's ucounts are hierarchical), so a
// sandbox in its own user namespace would share, and could exhaust, host
// root's inotify instances; and without idmapped mounts (runc 1.2) every
// file of the shared images would appear as owned by the overflow uid,
// 65534. runsc runs the sandbox's processes inside its own kernel, where
// the uid is virtual; there the uid decides who owns the files the
// sandbox creates.
//
// Allocation is host-wide, whatever the state directory: slot i is the
// file Dir/<First+i>, held by an exclusive flock for as long as the uid is
// in use. The lock dies with its process, so a crashed owner's uid becomes
// free again: it is handed out anew only when no process on the host runs
// as it any more (the crashed owner's sandboxes may still be running until
// `vial gc` kills them), and Collect removes such files.
package hostuid

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The range: 65,536 uids from 2,000,000,000, inside 1879048192–2147352575,
// which systemd leaves unassigned (below its foreign-uid range and above
// the container ranges nspawn allocates; see
// https://systemd.io/UIDS-GIDS/), far above login.defs' UID_MAX and the
// subordinate ranges useradd hands out from 100000, and below 2^31 so that
// no program that stores uids as signed 32-bit numbers trips on it. Each
// sandbox also gets the gid of the same number.
const (
	First = 2_000_000_000
	Count = 65536
)

// Dir is the host-wide directory of slot files. It is under /run so that
// a reboot, which ends every sandbox, empties it.
const Dir = "/run/vial/uids"

// ErrExhausted: every uid of the range is in use.
var ErrExhausted = errdefs.ErrResourceExhausted

// Lease is one uid (and the gid of the same number) held until Release.
// It is safe for concurrent use.
type Lease struct {
	uid  int
	f    *os.File
	path string
}

// UID is the leased host uid.
func (l *Lease) UID() int { return l.uid }

// GID is the leased host gid (the same number as the uid).
func (l *Lease) GID() int { return l.uid }

// InRange reports whether uid is one of the range's.
func InRange(uid int) bool { return uid >= First && uid < First+Count }

// Acquire leases a uid nobody else holds, from slot files in dir (Dir on
// a real host; tests use their own). owner is recorded in the slot file
// for people reading it (e.g. the sandbox directory).
func Acquire(dir, owner string) (*Lease, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	var busy map[int]bool // uids with processes, read once if needed
	start := rand.IntN(Count)
	for i := 0; i < Count; i++ {
		uid := First + (start+i)%Count
		l, stale, err := try(dir, uid)
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		if stale {
			// The last owner died without releasing it: its sandboxes may
			// still be running as this uid.
			if busy == nil {
				busy = processUIDs()
			}
			if busy[uid] {
				l.f.Close()
				continue
			}
		}
		l.f.Truncate(0)
		fmt.Fprintf(l.f, "pid %d\n%s\n", os.Getpid(), owner)
		return l, nil
	}
	return nil, fmt.Errorf("leasing a host uid: %w: all %d uids from %d are in use", ErrExhausted, Count, First)
}

// try takes slot uid if it is free. stale reports that its file was there
// already (its last owner died without releasing it).
func try(dir string, uid int) (l *Lease, stale bool, err error) {
	path := filepath.Join(dir, strconv.Itoa(uid))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, os.ErrExist) {
		stale = true
		f, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil // released just now; the next pass may take it
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("opening uid slot: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking uid slot: %w", err)
	}
	// A releaser unlinks the file before it unlocks it: a lock taken on a
	// file no longer at path is worthless.
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Lstat(path, &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
		f.Close()
		return nil, false, nil
	}
	return &Lease{uid: uid, f: f, path: path}, stale, nil
}

// Release gives the uid back. Every process running as it must be gone:
// the next sandbox to lease it must not share anything with them. It is
// safe to call more than once.
func (l *Lease) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path)
	l.f.Close()
	l.f = nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("releasing uid %d: %w", l.uid, err)
	}
	return nil
}

// Collect removes the slot files of owners that died (their lock is free)
// when no process runs as their uid any more, and returns how many. Slots
// whose uid still has processes are kept: garbage collection kills a dead
// owner's sandboxes first, then calls Collect.
func Collect(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", dir, err)
	}
	var busy map[int]bool
	n := 0
	for _, ent := range ents {
		uid, err := strconv.Atoi(ent.Name())
		if err != nil || !InRange(uid) {
			continue
		}
		l, _, err := try(dir, uid)
		if err != nil || l == nil {
			continue
		}
		if busy == nil {
			busy = processUIDs()
		}
		if busy[uid] {
			l.f.Close()
			continue
		}
		if l.Release() == nil {
			n++
		}
	}
	return n, nil
}

// processUIDs returns the uids in the range that a process on the host
// runs as (real, effective, saved or file-system uid). Zombies are left
// out: they hold nothing but their exit status (their files, memory and
// inotify instances are gone), and the one a killed sandbox leaves lasts
// only until its runtime reaps it.
func processUIDs() map[int]bool {
	out := map[int]bool{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, ent := range ents {
		if ent.Name()[0] < '0' || ent.Name()[0] > '9' {
			continue
		}
		for _, uid := range statusUIDs("/proc/" + ent.Name() + "/status") {
			if InRange(uid) {
				out[uid] = true
			}
		}
	}
	return out
}

// statusUIDs reads the Uid: line of a /proc/PID/status file, or nothing
// for a zombie.
func statusUIDs(path string) []int {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if state, ok := strings.CutPrefix(sc.Text(), "State:"); ok {
			if s := strings.TrimSpace(state); strings.HasPrefix(s, "Z") || strings.HasPrefix(s, "X") {
				return nil
			}
			continue
		}
		rest, ok := strings.CutPrefix(sc.Text(), "Uid:")
		if !ok {
			continue
		}
		var out []int
		for _, s := range strings.Fields(rest) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	return nil
}
