package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

var dottedName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// Validate reports every entry of r that cannot work as written, joined,
// each with class errdefs.ErrInvalidArgument. The matchers fail closed on
// such entries (a malformed blocked path blocks every path), so an
// operator must see them before serving: cmd/vial should refuse to start
// on an error here, as it does on a bad configuration file.
func (r *Rules) Validate() error {
	if r == nil {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument))
	}
	keys := make([]string, 0, len(r.Tools))
	for k := range r.Tools {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t := r.Tools[k]
		if _, err := path.Match(k, ""); err != nil {
			bad("tools %q: malformed pattern", k)
		}
		if t.MaxFileSize < 0 {
			bad("tools.%s.constraints.max_file_size: negative", k)
		}
		for _, p := range t.BlockedPaths {
			if _, _, ok := compilePathPattern(p); !ok {
				bad("tools.%s.constraints.blocked_paths %q: empty or malformed glob (it would block every path)", k, p)
			}
		}
		for _, c := range t.BlockedCommands {
			if len(compileCommand(c)) == 0 {
				bad("tools.%s.constraints.blocked_commands %q: empty pattern (it would block nothing)", k, c)
			}
		}
		for _, m := range t.BlockedImports {
			if !dottedName.MatchString(strings.TrimSpace(m)) {
				bad("tools.%s.constraints.blocked_imports %q: not a module or module.attr name", k, m)
			}
		}
		if err := (HostRules{Blocked: t.BlockedHosts}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("tools.%s.constraints.blocked_hosts: %w", k, err))
		}
		for _, m := range t.AutoApproveMethods {
			if !httpToken(strings.TrimSpace(m)) {
				bad("tools.%s.constraints.auto_approve_methods %q: not an HTTP method", k, m)
			}
		}
		for _, a := range t.Aliases {
			if a == "" || hasMeta(a) {
				bad("tools.%s: alias %q is not a tool name", k, a)
			}
		}
	}
	checkPatterns := func(what string, list []Listed) {
		for _, l := range list {
			v := strings.TrimSpace(l.Value)
			if _, err := path.Match(v, ""); v == "" || err != nil {
				bad("%s %q: empty or malformed pattern", keyOr(l.Key, what), l.Value)
			}
		}
	}
	checkPatterns("require_confirmation", r.RequireConfirmation)
	checkPatterns("auto_approve_patterns", r.AutoApprovePatterns)
	checkPatterns("unattended", List("", r.UnattendedPatterns...))
	switch r.Dangerous.Mode {
	case "", DangerOff, DangerWarn, DangerDeny:
	default:
		bad("dangerous_patterns mode %q: use off, warn or deny", r.Dangerous.Mode)
	}
	return errors.Join(errs...)
}

// httpToken reports whether m is an HTTP method name (RFC 9110 token).
func httpToken(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
