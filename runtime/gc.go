package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vial-run/vial/cgroups"
	"github.com/vial-run/vial/internal/mountinfo"
	"github.com/vial-run/vial/internal/rmtree"
	"github.com/vial-run/vial/runtime/hostuid"
	"github.com/vial-run/vial/runtime/volume"
)

// GCReport counts what a garbage collection removed.
type GCReport struct {
	Sandboxes  int // orphaned sandbox directories removed
	Containers int // runtime containers deleted
	Cgroups    int // cgroups removed
	Mounts     int // mounts under the state directory unmounted
	Volumes    int // workspace volumes discarded (unmounted, loop device detached, image removed)
	UIDs       int // host uid leases of dead owners freed (host-wide)
	// Other counts what every other collector removed, by its name.
	Other map[string]int
	// Left lists what could not be removed, one line each; GC went on
	// with everything else, and the next GC tries again.
	Left []string
}

func (r GCReport) String() string {
	s := fmt.Sprintf("removed %d sandboxes, %d containers, %d cgroups, %d mounts, %d volumes, %d uid leases",
		r.Sandboxes, r.Containers, r.Cgroups, r.Mounts, r.Volumes, r.UIDs)
	for _, name := range slices.Sorted(maps.Keys(r.Other)) {
		s += fmt.Sprintf(", %d %s", r.Other[name], name)
	}
	if len(r.Left) > 0 {
		s += fmt.Sprintf("; %d left behind", len(r.Left))
	}
	return s
}

// Empty reports whether nothing was collected and nothing left behind.
func (r GCReport) Empty() bool {
	for _, n := range r.Other {
		if n != 0 {
			return false
		}
	}
	return r.Sandboxes+r.Containers+r.Cgroups+r.Mounts+r.Volumes+r.UIDs == 0 && len(r.Left) == 0
}

// youngGrace protects a sandbox directory that another vial process has
// just created and not yet locked.
const youngGrace = 10 * time.Second

// GC removes everything left behind by vial processes that died without
// tearing their sandboxes down (e.g. SIGKILL): their containers, the
// processes in them, their cgroups, workspace volumes, mounts and
// directories, and the host uids they leased. A sandbox whose owner is
// alive holds an exclusive flock on its lock file and is left alone, so
// GC is safe to run next to live vial processes.
//
// One thing that cannot be removed never stops the rest: GC goes on, lists
// it in the report's Left and returns an error that joins the reasons
// (ErrPartial among them), and the next GC tries again. Any other error
// means GC could not look at the state directory at all.
func (e *Engine) GC(ctx context.Context) (GCReport, error) { return e.gc(ctx, true) }

// ErrPartial marks a GC that removed what it could and left something.
var ErrPartial = errors.New("some leftovers could not be removed")

// gc collects orphans; with listRuntimes it also asks every runtime for
// containers in vial's roots (a runtime exec each, so start-up recovery,
// which runs before every `vial run`, leaves that to `vial gc`: an orphaned
// container always has an orphaned sandbox directory next to it).
func (e *Engine) gc(ctx context.Context, listRuntimes bool) (rep GCReport, err error) {
	var errs []error
	defer func() {
		if err == nil && len(errs) > 0 {
			for _, err := range errs {
				rep.Left = append(rep.Left, strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			err = fmt.Errorf("%w: %w", ErrPartial, errors.Join(errs...))
		}
	}()
	live := map[string]bool{}
	dir := filepath.Join(e.stateDir, "sandboxes")
	ents, rerr := os.ReadDir(dir)
	if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return rep, fmt.Errorf("reading %s: %w", dir, rerr)
	}
	for _, ent := range ents {
		id := ent.Name()
		if !validID.MatchString(id) {
			continue
		}
		sdir := filepath.Join(dir, id)
		orphan, err := OwnerDead(sdir)
		if err != nil {
			errs = append(errs, err)
		}
		if !orphan {
			live[id] = true
			continue
		}
		if err := e.collect(ctx, id, sdir, &rep); err != nil {
			errs = append(errs, err)
		}
	}
	// Containers in the runtimes' roots with no live sandbox.
	for _, b := range e.backends {
		if b.Path == "" || !listRuntimes {
			continue
		}
		root := e.runtimeRoot(b)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		out, err := runWithContext(ctx, b, b.command(root, "list", "--quiet"))
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			if !validID.MatchString(id) || live[id] {
				continue
			}
			if err := e.forceDelete(ctx, b, root, id); err != nil {
				errs = append(errs, err)
				continue
			}
			rep.Containers++
		}
		if b.Cleanup != nil && len(live) == 0 {
			b.Cleanup(root)
		}
	}
	// cgroups with no live sandbox. Only this state directory's: another
	// vial instance's sandboxes share the /vial tree, and their directories
	// are not in ours (the cgroup of one of our orphans whose directory is
	// gone — its removal failed — carries our tag).
	ids, _ := cgroups.List()
	for _, id := range ids {
		if live[id] || !validID.MatchString(id) || !e.Owns(id) || e.bornSince(dir, id) {
			continue
		}
		if g, err := cgroups.Load(id); err == nil {
			g.Kill(5 * time.Second)
		}
		if err := cgroups.Remove(id); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Cgroups++
	}
	// uid leases of dead owners, host-wide: freed only once no process
	// runs as the uid, so never one of a live sandbox, whoever owns it.
	n, err := hostuid.Collect(hostuid.Dir)
	rep.UIDs += n
	if err != nil {
		errs = append(errs, err)
	}
	// Everything else: the built-in workspaces collector, then those
	// registered. One failing collector does not stop the others.
	for _, c := range append([]Collector{{Name: "workspaces", Collect: e.collectWorkspaces}}, e.collectors...) {
		n, err := c.Collect(ctx)
		if n > 0 {
			if rep.Other == nil {
				rep.Other = map[string]int{}
			}
			rep.Other[c.Name] += n
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("collecting %s: %w", c.Name, err))
		}
	}
	return rep, nil
}

// bornSince reports whether sandbox id, whose cgroup gc found without a
// live sandbox directory when it listed them, has a live one now: a vial
// process (this one, or another on the state directory) created and
// locked it after gc read the directory. A sandbox's directory is locked
// before its cgroup is created, so a cgroup whose directory is missing
// now is a stray one. Without this check gc could remove the cgroup of a
// sandbox being prepared beside it (start-up recovery runs beside `vial
// run`'s own sandbox).
func (e *Engine) bornSince(sandboxes, id string) bool {
	sdir := filepath.Join(sandboxes, id)
	if _, err := os.Stat(sdir); err != nil {
		return false
	}
	dead, err := OwnerDead(sdir)
	return err != nil || !dead
}

// OwnerDead is vial's one rule for telling leftovers from live state: a
// directory a vial process owns holds a file "lock" on which the owner
// keeps an exclusive flock for as long as it lives. The owner is dead when
// that lock can be taken. A directory without a lock file is dead only
// once it is older than youngGrace: another process may have just created
// it and not yet locked it. Every collector (sandboxes, workspaces,
// network namespaces, volumes, ...) uses this rule. The lock is released
// at once; the caller is about to remove the directory.
func OwnerDead(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		fi, serr := os.Stat(dir)
		if serr != nil {
			return false, nil
		}
		return time.Since(fi.ModTime()) > youngGrace, nil
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("locking %s: %w", dir, err)
	}
	return true, nil
}

// Collector removes one kind of state that dead vial processes left under
// the state directory. GC and start-up recovery run every collector; each
// must leave a live owner's state alone (OwnerDead tells which is which)
// and keep going past a directory it cannot remove, reporting it.
type Collector struct {
	Name string // what it collects, plural: "workspaces", "network namespaces"
	// Collect removes what it finds and reports how many it removed.
	Collect func(ctx context.Context) (removed int, err error)
}

// AddCollector registers c with the engine's GC and Recover. Not safe to
// call concurrently with them: register at start-up.
func (e *Engine) AddCollector(c Collector) { e.collectors = append(e.collectors, c) }

// collect tears down one orphaned sandbox.
func (e *Engine) collect(ctx context.Context, id, sdir string, rep *GCReport) error {
	var errs []error
	meta := readMeta(sdir)
	if b, ok := e.backends[meta.Runtime]; ok && b.Path != "" {
		root := e.runtimeRoot(b)
		if err := e.forceDelete(ctx, b, root, id); err != nil {
			errs = append(errs, err)
		} else {
			rep.Containers++
		}
	}
	if g, err := cgroups.Load(id); err == nil {
		g.Kill(5 * time.Second)
	}
	if ids, _ := cgroups.List(); slices.Contains(ids, id) {
		if err := cgroups.Remove(id); err != nil {
			errs = append(errs, err)
		} else {
			rep.Cgroups++
		}
	}
	// The workspace volume first, shut down so that whatever the sandbox
	// left dirty in memory is not written to an image about to go; then
	// any other mount (runsc's leftovers).
	n, err := volume.Collect(sdir)
	rep.Volumes += n
	if err != nil {
		errs = append(errs, err)
	}
	n, err = unmountUnder(sdir)
	rep.Mounts += n
	if err != nil {
		errs = append(errs, err)
	}
	// rmtree: the directory holds whatever the sandbox wrote, of any depth.
	if err := rmtree.RemoveAll(sdir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", sdir, err))
	} else {
		rep.Sandboxes++
	}
	return errors.Join(errs...)
}

// Recover runs GC and logs what it found; the CLI calls it at start-up so
// a crash never leaves anything behind for long.
func (e *Engine) Recover(ctx context.Context) {
	rep, err := e.gc(ctx, false)
	if !rep.Empty() {
		e.log.Info("recovered from an earlier crash", "report", rep.String())
	}
	if err != nil {
		e.log.Warn("recovering orphaned sandboxes", "err", err)
	}
}

// Mounts returns the mount points at or under dir, deepest first.
func Mounts(dir string) []string { return mountinfo.PointsUnder(dir) }

func unmountUnder(dir string) (int, error) {
	var errs []error
	n := 0
	for _, mp := range Mounts(dir) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// SandboxInfo describes one sandbox directory.
type SandboxInfo struct {
	ID, Runtime string
	Created     time.Time
	PID         int  // the vial process that owns it
	Orphan      bool // its owner is gone
}

// List returns every sandbox under the state directory.
func (e *Engine) List() ([]SandboxInfo, error) {
	dir := filepath.Join(e.stateDir, "sandboxes")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []SandboxInfo
	for _, ent := range ents {
		if !validID.MatchString(ent.Name()) {
			continue
		}
		sdir := filepath.Join(dir, ent.Name())
		meta := readMeta(sdir)
		orphan, _ := OwnerDead(sdir)
		out = append(out, SandboxInfo{ID: ent.Name(), Runtime: meta.Runtime, Created: meta.Created, PID: meta.PID, Orphan: orphan})
	}
	return out, nil
}
