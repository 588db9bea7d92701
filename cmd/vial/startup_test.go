package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vial-run/vial/internal/testutil"
)

// maxInitAllocs bounds the allocations of any one package's initialisation
// in the vial binary. Every vial process — each `vial run`, each `vial gc`,
// the init in front of a JavaScript context — pays for every package's
// init before main, whether or not it uses the package. Allocations are
// counted, not time: the count is the same on every machine, a time would
// be a flaky wall-clock assertion. Before the fast paths of issue 13 the
// worst were the JSON-schema library mcp-go links (21 000 allocations, 3.5–5
// ms: it compiled every draft's metaschema at init) and vial's own
// bounded-repetition regular expressions (up to 3 400 per package).
const maxInitAllocs = 1000

// TestStartupInitIsCheap builds the vial binary and reads the Go runtime's
// own init trace (GODEBUG=inittrace=1) of a process that does nothing, so
// that a dependency or a package variable that does heavy work at init
// cannot creep back into every vial process's start.
func TestStartupInitIsCheap(t *testing.T) {
	goBin := testutil.RequireBinary(t, "go")
	bin := filepath.Join(t.TempDir(), "vial")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vial: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("vial version: %v\n%s", err, stderr.String())
	}
	seen := 0
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		// init github.com/x/y @1.2 ms, 0.5 ms clock, 1234 bytes, 56 allocs
		f := strings.Fields(sc.Text())
		if len(f) != 11 || f[0] != "init" || f[10] != "allocs" {
			continue
		}
		seen++
		n, err := strconv.Atoi(f[9])
		if err != nil {
			t.Fatalf("cannot read the init trace line %q", sc.Text())
		}
		if n > maxInitAllocs {
			t.Errorf("package %s allocates %d times at init (at most %d): make that work lazy (sync.OnceValue), every vial process pays for it", f[1], n, maxInitAllocs)
		}
	}
	if seen < 50 {
		t.Fatalf("found only %d init trace lines; has the GODEBUG=inittrace=1 format changed?\n%s", seen, stderr.String())
	}
}
