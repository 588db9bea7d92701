package policy

import (
	"fmt"
	"strings"
)

// String renders the decision on one line for people and logs:
//
//	deny read_file by tools.read_file.constraints.blocked_paths "**/.env": .env is protected ... [guard]
func (d Decision) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", d.Effect, nameOr(d.Tool))
	if d.Rule != "" {
		fmt.Fprintf(&b, " by %s", d.Rule)
	}
	if d.Reason != "" {
		fmt.Fprintf(&b, ": %s", d.Reason)
	}
	if d.Guard {
		b.WriteString(" [guard]")
	}
	if len(d.Notices) > 0 {
		fmt.Fprintf(&b, " (%d notice", len(d.Notices))
		if len(d.Notices) > 1 {
			b.WriteByte('s')
		}
		fmt.Fprintf(&b, ": %s)", strings.Join(d.Notices, "; "))
	}
	// One line, whatever a reason holds.
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(b.String())
}

// guardNote tells the model what a guard is, so that it neither mistakes
// the guard for the boundary nor treats getting around it as the task.
const guardNote = "This check is a guard in front of the sandbox, not its boundary: it refuses the usual spellings of an action the operator does not want. Do not try to get around it; do the task another way, or ask the user."

// ModelText is the short text a model gets for the decision: for a
// denial, what was refused, by which rule, why, and that only the
// operator can change it; for Ask, that a human must approve; for Allow,
// the notices (empty when there are none).
func (d Decision) ModelText() string {
	tool := nameOr(d.Tool)
	switch d.Effect {
	case Allow:
		return strings.Join(d.Notices, "\n")
	case Ask:
		return fmt.Sprintf("%s needs a human's approval (%s): %s.", tool, d.Rule, d.Reason)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s denied", tool)
	if strings.Contains(ruleKey(d.Rule), ".") {
		fmt.Fprintf(&b, " by %s (operator policy)", shortRule(d.Rule))
	} else if d.Rule != "" {
		// One of vial's own checks ("workspace", "hosts"), not a
		// setting.
		fmt.Fprintf(&b, " by vial's %s check", d.Rule)
	}
	if d.Reason != "" {
		fmt.Fprintf(&b, ": %s.", d.Reason)
	} else {
		b.WriteByte('.')
	}
	if key := ruleKey(d.Rule); strings.Contains(key, ".") {
		fmt.Fprintf(&b, " Only the operator can change this, in the configuration key %s.", key)
	}
	if d.Guard {
		b.WriteString(" " + guardNote)
	}
	return b.String()
}

// ruleKey is the configuration key of a rule: the part before the entry.
func ruleKey(rule string) string {
	k, _, _ := strings.Cut(rule, " ")
	return k
}

// shortRule drops the table path from a constraint rule:
// `tools.read_file.constraints.blocked_paths "**/.env"` is
// `blocked_paths "**/.env"`.
func shortRule(rule string) string {
	key, rest, _ := strings.Cut(rule, " ")
	if _, after, ok := strings.Cut(key, ".constraints."); ok {
		key = after
	}
	if rest == "" {
		return key
	}
	return key + " " + rest
}

func nameOr(tool string) string {
	if tool == "" {
		return "the call"
	}
	return shown(tool, 100)
}
