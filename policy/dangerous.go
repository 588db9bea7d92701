package policy

import (
	"regexp"
	"strings"
)

// DangerMode is what the dangerous-pattern check does with a finding.
type DangerMode string

const (
	// DangerOff skips the check. The zero DangerMode ("") is off too:
	// the seed's check is advisory, and the sandbox is the boundary.
	DangerOff DangerMode = "off"
	// DangerWarn lets the call run and adds a notice to its result, so
	// that the model and the person reading the transcript see it.
	DangerWarn DangerMode = "warn"
	// DangerDeny refuses code with a finding. Any mode other than these
	// three denies as well: a typo must fail closed (Validate reports
	// it).
	DangerDeny DangerMode = "deny"
)

// DefaultDangerousPatterns is seed 000's DANGEROUS_PATTERNS list.
var DefaultDangerousPatterns = []string{
	"os.system", "subprocess", "eval(", "exec(", "__import__", "open(", "socket", "requests", "urllib",
}

// DangerousPatterns is seed 000's check_safety: substrings of the code
// that suggest it does something risky, and two heuristics of the seed
// (while True with no break in the code; range() over a number of seven
// or more digits). It is a guard in front of the sandbox, and a crude
// one: a substring test cannot tell code from a comment or a string, and
// misses any spelling it does not list. In deny mode it refuses ordinary
// code (every open(...)); warn is the useful mode for most operators.
type DangerousPatterns struct {
	Mode DangerMode
	// Patterns are substrings looked for in the code; empty means
	// DefaultDangerousPatterns.
	Patterns []string
}

// Finding is one hit of the dangerous-pattern check.
type Finding struct {
	Pattern string // the pattern or heuristic that matched
	What    string // what it suggests, for the reason or notice
}

var (
	whileTrue = regexp.MustCompile(`while\s+True`)
	hugeRange = regexp.MustCompile(`range\(\d{7,}\)`)
)

// dangerWhat says what each of the seed's patterns suggests.
var dangerWhat = map[string]string{
	"os.system":  "runs a shell command",
	"subprocess": "starts other programs",
	"eval(":      "evaluates a string as code",
	"exec(":      "executes a string as code",
	"__import__": "imports a module chosen at run time",
	"open(":      "opens a file",
	"socket":     "opens network connections",
	"requests":   "makes HTTP requests",
	"urllib":     "makes HTTP requests",
}

// Check returns the findings in code, in the order of the patterns and
// then the heuristics. It ignores Mode.
func (d DangerousPatterns) Check(code string) []Finding {
	pats := d.Patterns
	if len(pats) == 0 {
		pats = DefaultDangerousPatterns
	}
	var out []Finding
	for _, p := range pats {
		if p == "" || !strings.Contains(code, p) {
			continue
		}
		what, ok := dangerWhat[p]
		if !ok {
			what = "matches a pattern the operator lists as dangerous"
		}
		out = append(out, Finding{Pattern: p, What: what})
	}
	if whileTrue.MatchString(code) && !strings.Contains(code, "break") {
		out = append(out, Finding{Pattern: "while True", What: "a possible endless loop (no break anywhere in the code)"})
	}
	if hugeRange.MatchString(code) {
		out = append(out, Finding{Pattern: "range(N)", What: "a possible resource abuse (a range of a million or more)"})
	}
	return out
}
