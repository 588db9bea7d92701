package runtime

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// DriverEnv returns the environment variables that give a context's
// driver the caps in opts: VIAL_OUTPUT_CAP (stdout, stderr and a value,
// each) and VIAL_IMAGE_BYTES (the images of one call together). Zero
// fields take the defaults. Pass them in the sandbox's environment
// (Request.Env) with the NewContext options they came from, so that the
// driver cuts its answers where vial would: a driver not told keeps its
// defaults (DefaultOutputCap, DefaultImageBytes), which vial's default
// MaxMessage allows for.
func DriverEnv(opts ContextOptions) []string {
	capN := opts.OutputCap
	if capN <= 0 {
		capN = DefaultOutputCap
	}
	img := opts.ImageBytes
	if img <= 0 {
		img = DefaultImageBytes
	}
	return []string{
		"VIAL_OUTPUT_CAP=" + strconv.Itoa(capN),
		"VIAL_IMAGE_BYTES=" + strconv.Itoa(img),
	}
}

// BlockedImportsEnv returns the environment variable that makes the
// Python driver refuse the imports an operator's blocked_imports lists
// ("" for an empty list). Each rule is a module ("subprocess", which
// blocks its submodules too) or a module's attribute ("os.system"); a rule
// that is not a dotted name of identifiers is an ErrInvalidArgument
// (errdefs) error naming it. The driver's hook is a guard in front of the
// sandbox, not the sandbox itself: drivers/README.md says what it cannot
// stop.
func BlockedImportsEnv(rules []string) (string, error) {
	var bad []string
	for _, r := range rules {
		if !dottedName(r) {
			bad = append(bad, strconv.Quote(r))
		}
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("blocked_imports: %s: want module names or module.attribute: %w", strings.Join(bad, ", "), errdefs.ErrInvalidArgument)
	}
	if len(rules) == 0 {
		return "", nil
	}
	return "VIAL_BLOCKED_IMPORTS=" + strings.Join(rules, ","), nil
}

// dottedName reports whether s is a dotted name of ASCII identifiers
// (what Python's import statement takes; non-ASCII names are refused
// rather than normalised).
func dottedName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || part[0] >= '0' && part[0] <= '9' {
			return false
		}
		for _, r := range part {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}
